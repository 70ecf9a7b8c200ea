// config.cpp - key table, INI reader and strict value parsers for mediamail.conf.
//
// The INI dialect: "[section]" lines, "key = value" lines, '#' or ';' starting a
// comment line or, after a blank, ending a line in a comment ("a = b  ; note");
// blank lines ignored. A key outside a section, a repeated key or an unknown key
// is an error: a typo must not silently fall back to a default.
#include "core/config.h"

#include "core/address.h"
#include "core/util.h"

#include <arpa/inet.h>
#include <charconv>
#include <cstring>
#include <fstream>
#include <strings.h>
#include <set>

namespace mm {

namespace {

enum class Type {
    text,               // anything, also empty
    path,               // an absolute path
    size,               // bytes with an optional K/M/G/T suffix; bounds in bytes
    integer,            // a whole number; bounds
    boolean,
    duration,           // bounds in seconds
    hostport,
    optional_hostport,  // host:port, or empty for "off"
    list,               // comma separated
    choice,             // one of `words`
    url,                // SCHEME://..., the scheme one of `words`
    address,            // a plain lowercase address local@domain, or empty
    pin,                // sha256//BASE64 of a 32-byte digest, or empty
    mode,               // an octal file mode, 0000 to 0777
    user,               // user[:group], names or numbers, or empty
    ssh_url,            // ssh://USER@HOST[:PORT] (parse_ssh_url), or empty
};

constexpr uint64_t kNoMax = UINT64_MAX;
constexpr uint64_t kIntMax = 1000000;   // an integer key's bound unless its entry says less

struct KeyDef {
    const char* key;
    Type type;
    const char* def;
    uint64_t min, max;   // integer and size: the value; duration: seconds
    const char* words;   // choice: the allowed words; url: the allowed schemes ('|' separated)
    const char* help;    // one line for --help; conf/mediamail.conf says more
};

constexpr KeyDef typed(const char* key, Type t, const char* def, const char* help)
{
    return {key, t, def, 0, kNoMax, nullptr, help};
}
constexpr KeyDef text(const char* key, const char* def, const char* help) { return typed(key, Type::text, def, help); }
constexpr KeyDef number(const char* key, const char* def, uint64_t min, uint64_t max, const char* help)
{
    return {key, Type::integer, def, min, max, nullptr, help};
}
constexpr KeyDef bytes(const char* key, const char* def, uint64_t min, const char* help)
{
    return {key, Type::size, def, min, kNoMax, nullptr, help};
}
constexpr KeyDef seconds(const char* key, const char* def, uint64_t min, uint64_t max, const char* help)
{
    return {key, Type::duration, def, min, max, nullptr, help};
}
constexpr KeyDef choice(const char* key, const char* def, const char* words, const char* help)
{
    return {key, Type::choice, def, 0, kNoMax, words, help};
}
constexpr KeyDef url(const char* key, const char* def, const char* schemes, const char* help)
{
    return {key, Type::url, def, 0, kNoMax, schemes, help};
}

// The one table of keys. conf/mediamail.conf documents each of these (a unit
// test holds the two together); --help prints them through config_help().
const KeyDef kKeys[] = {
    typed("store.dir", Type::path, "/var/lib/mediamail/store",
          "the sender's media store: media files, their index, the gateway's TLS key, the milter's spool"),
    bytes("store.max_bytes", "0", 0, "media bytes the store may hold in all; more is refused with 452 4.3.1 (0: no limit)"),
    bytes("store.min_free", "1G", 0, "free space kept on store.dir's file system; media that would eat into it is refused"),
    typed("store.direct_io", Type::boolean, "true",
          "write media with O_DIRECT where store.dir's file system takes it (false: through the page cache)"),

    typed("gateway.listen", Type::optional_hostport, "0.0.0.0:8443",
          "address mm-gateway listens on for HTTPS requests; empty: none (serve through gateway.relay only)"),
    url("gateway.public_url", "https://localhost:8443", "https",
        "base URL put into handles: how receivers reach this gateway from outside"),
    text("gateway.tls_cert", "", "PEM certificate chain of a gateway with a real name (empty: a self-made key)"),
    text("gateway.tls_key", "", "PEM private key of gateway.tls_cert; set both or neither"),
    typed("gateway.user", Type::user, "",
          "user[:group] mm-gateway runs as once it has bound and opened its files, when started as root"),
    seconds("gateway.retention", "30d", 0, kNoMax, "how long a stored item may be fetched"),
    number("gateway.threads", "16", 1, 1024, "worker threads running requests and sending answers"),
    number("gateway.max_connections", "4096", 1, kIntMax,
           "connections in all; at the cap the oldest one without a whole request is closed"),
    seconds("gateway.timeout", "60s", 1, kNoMax, "idle time after which a connection is closed"),
    seconds("gateway.header_timeout", "10s", 1, kNoMax,
            "time a client has to send a complete request line and headers"),
    number("gateway.max_connections_per_ip", "256", 1, kIntMax,
           "connections one client address (an IPv6 /64) may hold; in effect at most max_connections"),
    number("gateway.max_transfers_per_ip", "128", 1, kIntMax,
           "media downloads one client address may run at once; more get 503 with Retry-After"),
    {"gateway.min_rate", Type::size, "4K", 0, uint64_t{1} << 30, nullptr,
     "bytes per second a download must average over min_rate_window, or it is cut (0: off)"},
    seconds("gateway.min_rate_window", "60s", 1, 3600, "the window over which gateway.min_rate is measured"),
    choice("gateway.after_delivery", "keep", "keep|delete|archive",
           "what becomes of an item's media once every recipient confirmed its download"),
    typed("gateway.archive_dir", Type::path, "/var/lib/mediamail/archive",
          "where after_delivery = archive moves delivered media"),
    seconds("gateway.gc_interval", "1h", 1, kNoMax, "how often expired items are collected"),
    typed("gateway.admin_listen", Type::optional_hostport, "",
          "loopback ADDRESS:PORT serving /healthz and /metrics in plain HTTP; empty: off"),
    typed("gateway.relay", Type::ssh_url, "",
          "ssh://USER@HOST[:PORT] of an OpenSSH server that forwards gateway.relay_port here; empty: off"),
    text("gateway.relay_key", "", "private key file (OpenSSH format, no passphrase) for logging in to gateway.relay"),
    text("gateway.relay_known_hosts", "",
         "known_hosts file holding the relay's host key; required with gateway.relay (never trust on first use)"),
    number("gateway.relay_port", "8443", 1, 65535, "port the relay opens for receivers and forwards to this gateway"),
    text("gateway.relay_bind", "",
         "address on the relay that gateway.relay_port is opened on; empty: all of its addresses"),
    seconds("gateway.relay_backoff_max", "60s", 1, 3600,
            "longest wait between two attempts to reach the relay (the wait doubles from 1s)"),
    number("gateway.upload_max_open", "4", 1, 1000, "uploads one user may have open (not yet complete) at once"),
    seconds("gateway.upload_expiry", "24h", 60, kNoMax,
            "an upload not completed this long after its POST is removed, with its bytes"),

    text("milter.socket", "inet:8891@127.0.0.1",
         "where mm-milter listens for Postfix: inet:PORT@ADDRESS, inet6:PORT@ADDRESS, unix:PATH; empty: none"),
    typed("milter.user", Type::user, "",
          "user[:group] mm-milter runs as once it has bound and opened its files, when started as root"),
    typed("milter.socket_mode", Type::mode, "0660", "permissions of a unix:PATH milter.socket (octal)"),
    text("milter.socket_group", "", "group of a unix:PATH milter.socket, e.g. postfix; empty: the process's"),
    bytes("milter.min_size", "1M", 0, "attachments smaller than this (decoded) stay in the mail"),
    typed("milter.types", Type::list, "video/*, audio/*", "media types to detach; video/* matches every subtype"),
    choice("milter.on_error", "tempfail", "tempfail|accept",
           "answer to Postfix when the milter cannot do its work (store full, write error)"),
    bytes("milter.max_message_size", "4G", 0, "larger messages pass unchanged without being spooled"),
    choice("milter.apply_to", "outgoing", "outgoing|all",
           "whose mail is rewritten: authenticated or trusted senders only, or all"),
    typed("milter.trusted_networks", Type::list, "127.0.0.0/8, ::1/128",
          "client networks (CIDR) whose mail counts as outgoing"),
    bytes("milter.sender_quota", "20G", 0,
          "media bytes one sender (SASL login, else envelope sender) may store per sender_quota_window (0: no limit)"),
    seconds("milter.sender_quota_window", "1d", 1, kNoMax, "the window over which milter.sender_quota is counted"),
    bytes("milter.max_size", "4G", 0, "media larger than this (decoded) is not detached; see over_max_size"),
    choice("milter.over_max_size", "pass", "pass|reject",
           "mail with media over max_size: leave the media in, or reject it with 552"),
    typed("milter.rewrite_signed_dkim", Type::boolean, "false",
          "rewrite mail that already carries a DKIM-Signature (which breaks it)"),
    typed("milter.proxy_listen", Type::optional_hostport, "",
          "ADDRESS:PORT of the before-queue filter (smtpd_proxy_filter); empty: off"),
    typed("milter.proxy_next", Type::hostport, "127.0.0.1:10026",
          "the after-filter smtpd the filter hands each message on to"),
    seconds("milter.proxy_timeout", "300s", 1, kNoMax, "how long the filter waits for either side"),
    number("milter.proxy_max_clients", "100", 1, kIntMax, "sessions the filter serves at once; more get 421"),
    number("milter.max_recipient_copies", "1000", 0, 1000,
           "recipient groups the filter sends their own copy (own tokens); above: one shared copy"),

    typed("fetcher.listen", Type::hostport, "127.0.0.1:1110", "address the POP3 proxy listens on"),
    url("fetcher.upstream", "pop3s://localhost:995", "pop3|pop3s",
        "the real POP3 server: pop3s://HOST:PORT, or pop3://HOST:PORT with STLS"),
    choice("fetcher.upstream_tls", "required", "required|none",
           "whether pop3:// must switch to TLS with STLS (none: passwords in the clear)"),
    text("fetcher.upstream_ca", "", "PEM CA file of a private upstream server; empty: the system CAs"),
    typed("fetcher.upstream_pin", Type::pin, "",
          "public-key pin of the upstream server, sha256//BASE64; empty: certificate checks as usual"),
    typed("fetcher.status_listen", Type::optional_hostport, "",
          "loopback ADDRESS:PORT serving the status page, /healthz and /metrics in plain HTTP; empty: off"),
    typed("fetcher.tls_listen", Type::optional_hostport, "",
          "ADDRESS:PORT for clients speaking TLS from the start (POP3S); empty: off"),
    text("fetcher.tls_cert", "", "PEM certificate chain for tls_listen (then the plain listener offers STLS)"),
    text("fetcher.tls_key", "", "PEM private key of fetcher.tls_cert; set both or neither"),
    typed("fetcher.allow_plain_listen", Type::boolean, "false",
          "allow a fetcher.listen off loopback, where USER and PASS cross the network in clear"),
    typed("fetcher.cache_dir", Type::path, "/var/cache/mediamail/fetcher",
          "where fetched messages and downloaded media are kept"),
    typed("fetcher.allow_private", Type::boolean, "false",
          "allow downloads from loopback, private and link-local addresses"),
    typed("fetcher.allow_insecure", Type::boolean, "false", "allow media links with plain http://"),
    bytes("fetcher.max_size", "4G", 0, "larger media are not downloaded; larger messages are relayed as they are"),
    seconds("fetcher.timeout", "60s", 1, kNoMax, "network timeout for the upstream server and for downloads"),
    number("fetcher.max_sessions", "32", 1, 10000, "most client sessions served at once"),
    typed("fetcher.address", Type::address, "",
          "the mailbox owner's address for download receipts; empty: taken from each mail"),
    seconds("fetcher.hold_max", "24h", 0, kNoMax,
            "longest a mail is held back for its media before it is shown as it is"),
    // Mail clients give up on a login that takes much longer than a minute.
    seconds("fetcher.login_wait", "10s", 0, 60, "at login, wait this long for media still downloading; 0: never"),
    typed("fetcher.stream", Type::boolean, "false",
          "list a mail while its media still download, sending only checked segments"),
    choice("fetcher.mode", "auto", "auto|ask",
           "download media at once, or only when asked with \"mm-fetcher fetch\""),
    typed("fetcher.priority_senders", Type::list, "", "senders (or @domains) whose media is downloaded first"),
    typed("fetcher.ignore_senders", Type::list, "", "senders (or @domains) whose media is never downloaded"),
    bytes("fetcher.cache_quota", "20G", 1,
          "most bytes kept in cache_dir/media and cache_dir/msg, running downloads at their full size"),
    typed("fetcher.types", Type::list, "video/*, audio/*",
          "media types put back into mail; a location part of any other type stays as it is"),
    bytes("fetcher.max_message_size", "0", 0,
          "a mail that would grow past this with its media put back keeps its links; 0: max_size + 64M"),
    text("fetcher.clamd", "", "clamd to scan media before it is put back: unix:PATH or inet:HOST:PORT; empty: off"),
    seconds("fetcher.clamd_timeout", "120s", 1, 3600, "longest wait for clamd to connect, read or answer"),
    text("fetcher.authserv_id", "",
         "authserv-id of the receiving server's Authentication-Results; empty: sender lists never match"),
    number("fetcher.parallel", "4", 1, 64, "downloads at once"),
    number("fetcher.max_per_host", "2", 1, 64, "downloads and receipts at once to one host"),
    {"fetcher.min_rate", Type::size, "4K", 0, uint64_t{1} << 30, nullptr,
     "bytes per second a download must average over min_rate_window, or it is cut (0: off)"},
    seconds("fetcher.min_rate_window", "60s", 1, 3600, "the window over which fetcher.min_rate is measured"),
    typed("fetcher.receipts", Type::boolean, "true",
          "tell the sender's gateway when media was downloaded; false: never"),
    // At least the downloader's first wait (DownloadOptions::retry_min, 10s).
    seconds("fetcher.retry_max", "1h", 10, kNoMax, "longest wait between two attempts at a failing download"),
    seconds("fetcher.prefetch_interval", "0", 0, kNoMax,
            "poll the upstream mailbox this often in the background; 0: off"),
    text("fetcher.prefetch_user", "", "POP3 user name for background polling"),
    text("fetcher.prefetch_password_file", "", "file whose first line is that user's password"),
    text("fetcher.imap", "",
         "the IMAP server of mm-fetcher --imap: imaps://HOST[:PORT], or imap://HOST[:PORT] with STARTTLS"),
    text("fetcher.imap_user", "", "IMAP user name of the mailbox agent (mm-fetcher --imap)"),
    text("fetcher.imap_password_file", "", "file whose first line is that user's IMAP password"),
    typed("fetcher.imap_folders", Type::list, "INBOX", "folders whose mail the IMAP agent puts media back into"),
    text("fetcher.imap_originals", "MediaMail/Originals",
         "folder the originals are moved to when the IMAP server lacks UIDPLUS"),
    seconds("fetcher.imap_poll", "60s", 1, kNoMax,
            "how often the IMAP agent looks for new mail without IDLE, and retries mail left as it was"),

    text("mmsend.smtp", "sendmail", "how mmsend submits: sendmail, smtp://HOST:587 or smtps://HOST:465"),
    typed("mmsend.sendmail", Type::path, "/usr/sbin/sendmail", "the sendmail program used when smtp = sendmail"),
    text("mmsend.user", "", "SMTP AUTH user name; empty: no authentication"),
    text("mmsend.password_file", "", "file whose first line is the SMTP password"),
    choice("mmsend.auth", "any", "any|plain|login", "SASL mechanism for SMTP AUTH"),
    text("mmsend.ca_file", "", "CA certificates (PEM) for the SMTP server and mmsend.gateway; empty: the system's"),
    seconds("mmsend.timeout", "60s", 0, kNoMax, "network timeout for the SMTP server"),
    typed("mmsend.spool_dir", Type::path, "/var/tmp", "where mmsend writes the message before sending it"),
    text("mmsend.gateway", "",
         "upload media to this mm-gateway (https://HOST[:PORT]) instead of a local store; empty: local store"),
    text("mmsend.gateway_token_file", "", "file whose first line is this user's upload token (mm-gateway token add)"),
    typed("mmsend.gateway_pin", Type::pin, "",
          "the gateway's key pin (sha256//BASE64, as mm-gateway prints it); empty: check with mmsend.ca_file"),
    bytes("mmsend.gateway_chunk", "64M", 64 * 1024, "bytes sent per PATCH request of an upload"),
    number("mmsend.gateway_retries", "6", 0, 100, "attempts after a failed upload request, with a doubling pause"),
    {"mmsend.gateway_max_rate", Type::size, "0", 0, uint64_t{1} << 40, nullptr,
     "upload bytes per second at most (0: no limit)"},

    choice("log.level", "info", "error|warning|info|debug", "least important messages logged"),
    choice("log.target", "stderr", "stderr|syslog|file", "where log lines go: standard error, syslog, or log.file"),
    choice("log.facility", "mail", "mail|daemon|user|local0|local1|local2|local3|local4|local5|local6|local7",
           "syslog facility when log.target = syslog"),
    text("log.file", "", "the file log lines are appended to when log.target = file; SIGHUP reopens it"),
};

const KeyDef* find_key(std::string_view key)
{
    for (const auto& k : kKeys)
        if (key == k.key)
            return &k;
    return nullptr;
}

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

std::string trim(std::string_view s)
{
    size_t b = 0, e = s.size();
    while (b < e && is_blank(s[b]))
        ++b;
    while (e > b && is_blank(s[e - 1]))
        --e;
    return std::string(s.substr(b, e - b));
}

/// A file line without its trailing comment: '#' or ';' after a blank starts
/// one, so "upstream = pop3s://h:995   ; my provider" works as in most INI
/// readers, while a value such as "a;b" (no blank before ';') stays whole.
std::string_view strip_comment(std::string_view line)
{
    for (size_t i = 1; i < line.size(); ++i)
        if ((line[i] == '#' || line[i] == ';') && is_blank(line[i - 1]))
            return line.substr(0, i);
    return line;
}

/// Calls f(word) for each '|' separated word of `all` until f returns true.
template <class F>
bool any_word(std::string_view all, F f)
{
    size_t pos = 0;
    while (pos <= all.size()) {
        size_t bar = all.find('|', pos);
        if (bar == std::string_view::npos)
            bar = all.size();
        if (f(all.substr(pos, bar - pos)))
            return true;
        pos = bar + 1;
    }
    return false;
}

std::string bound_text(const KeyDef& k, uint64_t v)
{
    return std::to_string(v) + (k.type == Type::duration ? "s" : "");
}

/// "from 1 to 64", "at least 1s", "at most 60s", or "" when unbounded.
std::string bounds_text(const KeyDef& k)
{
    bool lo = k.min > 0, hi = k.max != kNoMax;
    if (lo && hi)
        return "from " + bound_text(k, k.min) + " to " + bound_text(k, k.max);
    if (lo)
        return "at least " + bound_text(k, k.min);
    if (hi)
        return "at most " + bound_text(k, k.max);
    return "";
}

std::string syntax_of(const KeyDef& k)
{
    std::string b = bounds_text(k);
    switch (k.type) {
    case Type::text: return "text";
    case Type::path: return "absolute path";
    case Type::size: return "size" + (b.empty() ? "" : ", " + b);
    case Type::integer: return "integer" + (b.empty() ? "" : ", " + b);
    case Type::boolean: return "boolean";
    case Type::duration: return "duration" + (b.empty() ? "" : ", " + b);
    case Type::hostport: return "host:port";
    case Type::optional_hostport: return "host:port or empty";
    case Type::list: return "comma-separated list";
    case Type::choice: return std::string("one of ") + k.words;
    case Type::url: return std::string("URL, scheme ") + k.words;
    case Type::address: return "address or empty";
    case Type::pin: return "sha256//BASE64 or empty";
    case Type::mode: return "octal mode, 0000 to 0777";
    case Type::user: return "user[:group] or empty";
    case Type::ssh_url: return "ssh://USER@HOST[:PORT] or empty";
    }
    return "";
}

/// Whether `v` is a valid value of `k`; if not, `why` says what is expected.
bool check_value(const KeyDef& k, const std::string& v, std::string& why)
{
    uint64_t n = 0;
    std::chrono::seconds d;
    bool b;
    HostPort hp;
    switch (k.type) {
    case Type::text:
    case Type::list:
        return true;
    case Type::path:
        why = "an absolute path is required";
        return !v.empty() && v[0] == '/';
    case Type::size:
        why = "expected a size in bytes, optionally with K, M, G or T";
        if (!parse_size(v, n))
            return false;
        break;
    case Type::integer:
        why = "expected a whole number";
        if (!parse_u64(v, n))
            return false;
        break;
    case Type::boolean:
        why = "expected true or false";
        return parse_bool(v, b);
    case Type::duration:
        why = "expected a duration such as 30d, 24h, 15m or 10s";
        if (!parse_duration(v, d))
            return false;
        n = static_cast<uint64_t>(d.count());
        break;
    case Type::optional_hostport:
        if (v.empty())
            return true;
        [[fallthrough]];
    case Type::hostport:
        why = "expected host:port with a port from 1 to 65535";
        return parse_hostport(v, hp);
    case Type::choice:
        why = std::string("expected one of ") + k.words;
        return any_word(k.words, [&](std::string_view w) { return w == v; });
    case Type::url: {
        why = std::string("expected a URL with scheme ") + k.words;
        size_t colon = v.find("://");
        if (colon == std::string::npos || colon == 0 || v.size() <= colon + 3)
            return false;
        std::string_view scheme = std::string_view(v).substr(0, colon);
        return any_word(k.words, [&](std::string_view w) { return w == scheme; });
    }
    case Type::address:
        why = "expected a plain lowercase address local@domain";
        return v.empty() || normalize_address(v) == v;
    case Type::pin: {
        why = "expected sha256//BASE64 of the server's public key";
        std::string raw;
        return v.empty() || (v.rfind("sha256//", 0) == 0 && base64_decode(v.substr(8), raw) && raw.size() == 32);
    }
    case Type::mode: {
        why = "expected an octal mode from 0000 to 0777, such as 0660";
        unsigned m;
        return parse_mode(v, m);
    }
    case Type::user: {
        why = "expected user or user:group (names or numbers)";
        std::string u, g;
        return v.empty() || parse_user_group(v, u, g);
    }
    case Type::ssh_url: {
        SshUrl u;
        return v.empty() || parse_ssh_url(v, u, why);
    }
    }
    // A number: inside the entry's bounds.
    if (n < k.min || n > k.max) {
        why = "must be " + bounds_text(k);
        return false;
    }
    return true;
}

std::string bad_value(const std::string& origin, const std::string& key, const std::string& value,
                      const std::string& why)
{
    return origin + ": bad value for " + key + " = '" + value + "': " + why;
}

} // namespace

std::vector<KeyInfo> config_keys()
{
    std::vector<KeyInfo> out;
    for (const auto& k : kKeys)
        out.push_back(KeyInfo{k.key, k.def, syntax_of(k), k.help});
    return out;
}

std::string config_help(std::initializer_list<std::string_view> prefixes)
{
    std::string out = "keys read (see conf/mediamail.conf):\n";
    for (const auto& k : kKeys) {
        bool wanted = false;
        for (std::string_view p : prefixes)
            wanted = wanted || std::string_view(k.key).substr(0, p.size()) == p;
        if (!wanted)
            continue;
        out += "  " + std::string(k.key) + " (" + syntax_of(k) + "; default " + (*k.def ? k.def : "empty") + ")\n";
        out += "      " + std::string(k.help) + "\n";
    }
    return out;
}

bool parse_u64(std::string_view s, uint64_t& out)
{
    if (s.empty() || s[0] < '0' || s[0] > '9')
        return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
}

bool parse_size(std::string_view s, uint64_t& out)
{
    uint64_t mul = 1;
    if (!s.empty()) {
        switch (s.back()) {
        case 'K': case 'k': mul = 1ULL << 10; break;
        case 'M': case 'm': mul = 1ULL << 20; break;
        case 'G': case 'g': mul = 1ULL << 30; break;
        case 'T': case 't': mul = 1ULL << 40; break;
        default: break;
        }
        if (mul != 1)
            s.remove_suffix(1);
    }
    uint64_t n;
    if (!parse_u64(s, n) || n > UINT64_MAX / mul)
        return false;
    out = n * mul;
    return true;
}

bool parse_duration(std::string_view s, std::chrono::seconds& out)
{
    uint64_t mul = 1;
    if (!s.empty()) {
        switch (s.back()) {
        case 's': mul = 1; s.remove_suffix(1); break;
        case 'm': mul = 60; s.remove_suffix(1); break;
        case 'h': mul = 3600; s.remove_suffix(1); break;
        case 'd': mul = 86400; s.remove_suffix(1); break;
        default: break;
        }
    }
    uint64_t n;
    if (!parse_u64(s, n) || n > (1ULL << 40) / mul)
        return false;
    out = std::chrono::seconds(n * mul);
    return true;
}

bool parse_bool(std::string_view s, bool& out)
{
    if (s == "true" || s == "yes" || s == "on" || s == "1") {
        out = true;
        return true;
    }
    if (s == "false" || s == "no" || s == "off" || s == "0") {
        out = false;
        return true;
    }
    return false;
}

bool parse_mode(std::string_view s, unsigned& out)
{
    // Octal digits only, at most four with a leading 0: no setuid, setgid or sticky bits.
    if (s.empty() || s.size() > 4 || (s.size() == 4 && s[0] != '0'))
        return false;
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 8);
    if (ec != std::errc() || p != s.data() + s.size() || v > 0777)
        return false;
    out = v;
    return true;
}

bool parse_user_group(std::string_view s, std::string& user, std::string& group)
{
    // Names as useradd(8) allows them (and numeric ids): nothing a shell or a
    // log line could misread.
    auto name_ok = [](std::string_view n) {
        if (n.empty() || n.size() > 32 || n[0] == '-')
            return false;
        for (char c : n)
            if (!(isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'))
                return false;
        return true;
    };
    size_t colon = s.find(':');
    std::string_view u = s.substr(0, colon);
    std::string_view g = colon == std::string_view::npos ? std::string_view() : s.substr(colon + 1);
    if (!name_ok(u) || (colon != std::string_view::npos && !name_ok(g)))
        return false;
    user = std::string(u);
    group = std::string(g);
    return true;
}

bool parse_hostport(std::string_view s, HostPort& out)
{
    size_t colon = s.rfind(':');
    if (colon == std::string_view::npos || colon == 0)
        return false;
    std::string_view host = s.substr(0, colon);
    if (host.front() == '[') {
        if (host.size() < 3 || host.back() != ']')
            return false;
        host = host.substr(1, host.size() - 2);
    }
    uint64_t port;
    if (!parse_u64(s.substr(colon + 1), port) || port == 0 || port > 65535)
        return false;
    for (char c : host)
        if (!(isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':'))
            return false;
    out.host = std::string(host);
    out.port = static_cast<uint16_t>(port);
    return true;
}

bool parse_ssh_url(std::string_view s, SshUrl& out, std::string& why)
{
    // ssh://USER@HOST[:PORT] and nothing else: no password, no path, no
    // ";fingerprint=" parameter (the host key comes from gateway.relay_known_hosts),
    // no percent-encoding. Anything the relay login could misread is refused.
    why = "expected ssh://USER@HOST[:PORT]";
    constexpr std::string_view kScheme = "ssh://";
    if (s.size() > 300 || s.substr(0, kScheme.size()) != kScheme)
        return false;
    s.remove_prefix(kScheme.size());
    size_t at = s.find('@');
    if (at == std::string_view::npos) {
        why += ": the user is missing";
        return false;
    }
    std::string_view user = s.substr(0, at), rest = s.substr(at + 1);
    if (user.empty() || user.size() > 32 || user[0] == '-') {
        why += ": bad user";
        return false;
    }
    for (char c : user)
        if (!(isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) {
            why += ": bad user";
            return false;
        }
    std::string_view host, port;
    if (!rest.empty() && rest[0] == '[') {   // an IPv6 literal
        size_t close = rest.find(']');
        if (close == std::string_view::npos) {
            why += ": no ']' after the IPv6 address";
            return false;
        }
        host = rest.substr(1, close - 1);
        rest.remove_prefix(close + 1);
        unsigned char a[16];
        if (inet_pton(AF_INET6, std::string(host).c_str(), a) != 1) {
            why += ": bad IPv6 address";
            return false;
        }
        if (!rest.empty() && rest[0] != ':') {
            why += ": unexpected text after the host";
            return false;
        }
    } else {
        size_t colon = rest.find(':');
        host = rest.substr(0, colon);
        rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon);
        // A DNS name or an IPv4 literal: labels of letters, digits and '-'.
        bool ok = !host.empty() && host.size() <= 253 && host.front() != '.' && host.back() != '.';
        size_t label = 0;
        for (size_t i = 0; ok && i < host.size(); ++i) {
            char c = host[i];
            if (c == '.') {
                ok = label > 0 && host[i - 1] != '-';
                label = 0;
            } else {
                ok = (isalnum(static_cast<unsigned char>(c)) || (c == '-' && label > 0)) && ++label <= 63;
            }
        }
        if (!ok || host.back() == '-') {
            why += ": bad host";
            return false;
        }
    }
    uint64_t p = 22;
    if (!rest.empty()) {   // ":PORT", the whole rest
        if (!parse_u64(rest.substr(1), p) || p == 0 || p > 65535) {
            why += ": bad port (1 to 65535, nothing after it)";
            return false;
        }
    }
    out.user = std::string(user);
    out.host = std::string(host);
    out.port = static_cast<uint16_t>(p);
    why.clear();
    return true;
}

void Config::set(const std::string& key, const std::string& value, const std::string& origin)
{
    const KeyDef* k = find_key(key);
    if (!k)
        throw ConfigError(origin + ": unknown key '" + key + "'");
    std::string why;
    if (!check_value(*k, value, why))
        throw ConfigError(bad_value(origin, key, value, why));
    values_[key] = Value{value, origin};
}

Config Config::load(const std::string& path, const std::vector<std::string>& overrides)
{
    Config c;
    for (const auto& k : kKeys)
        c.set(k.key, k.def, "default");   // a default its own bounds refuse fails every start, and the unit tests
    if (!path.empty()) {
        std::ifstream in(path);
        if (!in)
            throw ConfigError("cannot open configuration file " + path);
        std::string line, section;
        std::set<std::string> seen;
        unsigned lineno = 0;
        while (std::getline(in, line)) {
            ++lineno;
            std::string where = path + ":" + std::to_string(lineno);
            if (line.size() > 4096)
                throw ConfigError(where + ": line longer than 4096 bytes");
            std::string t = trim(line);
            if (t.empty() || t[0] == '#' || t[0] == ';')
                continue;
            t = trim(strip_comment(t));
            if (t[0] == '[') {
                if (t.back() != ']' || t.size() < 3)
                    throw ConfigError(where + ": bad section line '" + t + "'");
                section = trim(std::string_view(t).substr(1, t.size() - 2));
                continue;
            }
            size_t eq = t.find('=');
            if (eq == std::string::npos)
                throw ConfigError(where + ": expected 'key = value', got '" + t + "'");
            if (section.empty())
                throw ConfigError(where + ": key outside of a [section]");
            std::string key = section + "." + trim(std::string_view(t).substr(0, eq));
            if (!seen.insert(key).second)
                throw ConfigError(where + ": key '" + key + "' set twice");
            c.set(key, trim(std::string_view(t).substr(eq + 1)), where);
        }
    }
    for (const auto& o : overrides) {
        size_t eq = o.find('=');
        if (eq == std::string::npos)
            throw ConfigError("--set " + o + ": expected section.key=value");
        c.set(trim(std::string_view(o).substr(0, eq)), trim(std::string_view(o).substr(eq + 1)), "--set");
    }
    return c;
}

/// A listening host that only this machine can reach: 127.0.0.0/8, ::1 (also as
/// ::ffff:127.x.y.z) or the name "localhost" (RFC 6761 6.3).
bool loopback_host(const std::string& host)
{
    unsigned char a[16];
    if (inet_pton(AF_INET, host.c_str(), a) == 1)
        return a[0] == 127;
    if (inet_pton(AF_INET6, host.c_str(), a) == 1) {
        static const unsigned char one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        return std::memcmp(a, one, 16) == 0 || (std::memcmp(a, mapped, 12) == 0 && a[12] == 127);
    }
    return strcasecmp(host.c_str(), "localhost") == 0;
}

ConfigError Config::invalid(const std::string& key, const std::string& why) const
{
    const Value& v = get(key);
    return ConfigError(bad_value(v.origin, key, v.text, why));
}

// The status and metrics listeners speak plain HTTP without authentication:
// what they tell (items, senders, subjects) is for this machine only.
void Config::verify_loopback(const std::string& key) const
{
    if (!str(key).empty() && !loopback_host(hostport(key).host))
        throw invalid(key, "must be a loopback address (127.0.0.1, ::1 or localhost): it serves plain HTTP "
                           "without authentication");
}

// The IMAP agent's keys (mm-fetcher --imap): a URL it can use, someone to
// log in as, and folder names that go into commands as quoted strings.
void Config::verify_imap() const
{
    const std::string url = str("fetcher.imap");
    if (url.empty())
        return;
    if (url.rfind("imap://", 0) != 0 && url.rfind("imaps://", 0) != 0)
        throw invalid("fetcher.imap", "expected imaps://HOST[:PORT] or imap://HOST[:PORT]");
    if (str("fetcher.imap_user").empty())
        throw invalid("fetcher.imap", "needs fetcher.imap_user");
    if (str("fetcher.imap_password_file").empty())
        throw invalid("fetcher.imap", "needs fetcher.imap_password_file");
    auto plain = [](const std::string& name) {
        if (name.empty() || name.size() > 200)
            return false;
        for (unsigned char c : name)
            if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
                return false;
        return true;
    };
    const auto folders = list("fetcher.imap_folders");
    if (folders.empty())
        throw invalid("fetcher.imap_folders", "name at least one folder, e.g. INBOX");
    for (const auto& f : folders)
        if (!plain(f))
            throw invalid("fetcher.imap_folders", "folder names are printable US-ASCII without \" or \\");
    if (!plain(str("fetcher.imap_originals")))
        throw invalid("fetcher.imap_originals", "a folder name of printable US-ASCII without \" or \\");
    for (const auto& f : folders)
        if (f == str("fetcher.imap_originals"))
            throw invalid("fetcher.imap_originals", "is also one of fetcher.imap_folders");
}

void Config::verify(std::string_view program) const
{
    // Every program that logs: a file target needs its file.
    if (is("log.target", "file") && str("log.file").empty())
        throw invalid("log.target", "log.file is empty: name the file to log to");
    if (!str("log.file").empty() && str("log.file")[0] != '/')
        throw invalid("log.file", "an absolute path is required");
    // The gateway's key pair is read by the gateway, the milter and mmsend (the pin in handles).
    if (program != "fetcher") {
        if (!str("gateway.tls_cert").empty() && str("gateway.tls_key").empty())
            throw invalid("gateway.tls_cert", "gateway.tls_key is empty: set both or neither");
        if (str("gateway.tls_cert").empty() && !str("gateway.tls_key").empty())
            throw invalid("gateway.tls_key", "gateway.tls_cert is empty: set both or neither");
    }
    if (program == "milter") {
        if (str("milter.socket").empty() && str("milter.proxy_listen").empty())
            throw invalid("milter.socket", "milter.proxy_listen is empty too: nothing to listen on");
    } else if (program == "fetcher") {
        if (!str("fetcher.tls_cert").empty() && str("fetcher.tls_key").empty())
            throw invalid("fetcher.tls_cert", "fetcher.tls_key is empty: set both or neither");
        if (str("fetcher.tls_cert").empty() && !str("fetcher.tls_key").empty())
            throw invalid("fetcher.tls_key", "fetcher.tls_cert is empty: set both or neither");
        if (!str("fetcher.tls_listen").empty() && str("fetcher.tls_cert").empty())
            throw invalid("fetcher.tls_listen", "needs fetcher.tls_cert and fetcher.tls_key");
        // The plain listener passes USER and PASS (and AUTH PLAIN) in clear, STLS
        // being only offered: off loopback it needs saying so explicitly.
        if (!loopback_host(hostport("fetcher.listen").host) && !boolean("fetcher.allow_plain_listen"))
            throw invalid("fetcher.listen",
                          "not a loopback address: passwords would cross the network in clear; keep it on "
                          "loopback and use fetcher.tls_listen instead, or set fetcher.allow_plain_listen = true");
        if (duration("fetcher.prefetch_interval").count() > 0 && str("fetcher.prefetch_user").empty())
            throw invalid("fetcher.prefetch_interval", "needs fetcher.prefetch_user");
        verify_loopback("fetcher.status_listen");
        verify_imap();
    } else if (program == "gateway") {
        verify_loopback("gateway.admin_listen");
        bool relay = !str("gateway.relay").empty();
        if (str("gateway.listen").empty() && !relay)
            throw invalid("gateway.listen", "empty, and gateway.relay is empty too: nothing to serve on");
        if (relay) {
            for (const char* key : {"gateway.relay_key", "gateway.relay_known_hosts"}) {
                if (str(key).empty())
                    throw invalid(key, std::string("required with gateway.relay") +
                                           (std::string_view(key) == "gateway.relay_known_hosts"
                                                ? ": the gateway never trusts a relay's host key on first use"
                                                : ""));
                if (str(key)[0] != '/')
                    throw invalid(key, "an absolute path is required");
            }
            // Handed to the relay as the forward's bind address: a name or an IP literal, nothing else.
            for (char c : str("gateway.relay_bind"))
                if (!(isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':'))
                    throw invalid("gateway.relay_bind", "expected an address or a host name, or empty");
        }
    } else if (program == "mmsend") {
        // Uploads carry the user's token: HTTPS only, and an URL that is only a base.
        const std::string& gw = str("mmsend.gateway");
        if (!gw.empty()) {
            if (gw.rfind("https://", 0) != 0 || gw.size() <= 8 || gw.size() > 2048 ||
                gw.find_first_of("?# \t\r\n", 8) != std::string::npos)
                throw invalid("mmsend.gateway", "expected https://HOST[:PORT][/PATH] without query or spaces");
            if (str("mmsend.gateway_token_file").empty())
                throw invalid("mmsend.gateway", "needs mmsend.gateway_token_file");
        }
    } else {
        // gateway.tls_cert/tls_key and gateway.archive_dir are checked where the
        // store uses them (store/tls_identity.cpp, store/lifecycle.cpp).
        throw std::logic_error("Config::verify: no program " + std::string(program));
    }
}

const Config::Value& Config::get(const std::string& key) const
{
    auto it = values_.find(key);
    if (it == values_.end())
        throw std::logic_error("configuration key not in table: " + key);
    return it->second;
}

const std::string& Config::str(const std::string& key) const { return get(key).text; }
const std::string& Config::origin(const std::string& key) const { return get(key).origin; }

const std::string& Config::word(const std::string& key) const
{
    const KeyDef* k = find_key(key);
    if (!k || k->type != Type::choice)
        throw std::logic_error("configuration key has no words: " + key);
    return get(key).text;
}

bool Config::is(const std::string& key, std::string_view w) const
{
    const std::string& v = word(key);
    if (!any_word(find_key(key)->words, [&](std::string_view allowed) { return allowed == w; }))
        throw std::logic_error("'" + std::string(w) + "' is not a word of " + key);
    return v == w;
}

uint64_t Config::size(const std::string& key) const
{
    uint64_t v = 0;
    parse_size(get(key).text, v);
    return v;
}

int64_t Config::integer(const std::string& key) const
{
    uint64_t v = 0;
    parse_u64(get(key).text, v);
    return static_cast<int64_t>(v);
}

bool Config::boolean(const std::string& key) const
{
    bool b = false;
    parse_bool(get(key).text, b);
    return b;
}

unsigned Config::mode(const std::string& key) const
{
    unsigned m = 0;
    parse_mode(get(key).text, m);
    return m;
}

std::chrono::seconds Config::duration(const std::string& key) const
{
    std::chrono::seconds d{0};
    parse_duration(get(key).text, d);
    return d;
}

HostPort Config::hostport(const std::string& key) const
{
    HostPort hp;
    parse_hostport(get(key).text, hp);
    return hp;
}

std::vector<std::string> Config::list(const std::string& key) const
{
    std::vector<std::string> out;
    const std::string& s = get(key).text;
    size_t pos = 0;
    while (pos <= s.size()) {
        size_t comma = s.find(',', pos);
        if (comma == std::string::npos)
            comma = s.size();
        std::string item = trim(std::string_view(s).substr(pos, comma - pos));
        if (!item.empty())
            out.push_back(item);
        pos = comma + 1;
    }
    return out;
}

CommonArgs parse_common_args(int argc, char** argv)
{
    CommonArgs a;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        auto value = [&](const char* name) -> std::string {
            if (i + 1 >= argc)
                throw ConfigError(std::string(name) + " needs a value");
            return argv[++i];
        };
        if (arg == "-c" || arg == "--config")
            a.config_path = value("--config");
        else if (arg.rfind("--config=", 0) == 0)
            a.config_path = arg.substr(9);
        else if (arg == "--set")
            a.overrides.push_back(value("--set"));
        else if (arg.rfind("--set=", 0) == 0)
            a.overrides.push_back(arg.substr(6));
        else if (arg == "-h" || arg == "--help")
            a.help = true;
        else if (arg == "-V" || arg == "--version")
            a.version = true;
        else if (arg == "--check")
            a.check = true;
        else
            a.rest.push_back(arg);
    }
    return a;
}

} // namespace mm
