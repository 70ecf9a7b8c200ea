// config.cpp - key table, INI reader and strict value parsers for mediamail.conf.
//
// The INI dialect: "[section]" lines, "key = value" lines, '#' or ';' starting a
// comment line, blank lines ignored. A key outside a section, a repeated key or an
// unknown key is an error: a typo must not silently fall back to a default.
#include "core/config.h"

#include <charconv>
#include <fstream>
#include <set>

namespace mm {

namespace {

enum class Type { string, path, size, integer, boolean, duration, hostport, list, choice, url };

struct KeyDef {
    const char* key;
    Type type;
    const char* def;
    const char* choices;   // for Type::choice: '|' separated; for url: allowed schemes
};

// The one table of keys. conf/mediamail.conf documents each of these.
const KeyDef kKeys[] = {
    {"store.dir", Type::path, "/var/lib/mediamail/store", nullptr},
    {"gateway.listen", Type::hostport, "0.0.0.0:8443", nullptr},
    {"gateway.public_url", Type::url, "https://localhost:8443", "https"},
    {"gateway.tls_cert", Type::string, "", nullptr},
    {"gateway.tls_key", Type::string, "", nullptr},
    {"gateway.retention", Type::duration, "30d", nullptr},
    {"gateway.threads", Type::integer, "16", nullptr},
    {"gateway.max_connections", Type::integer, "4096", nullptr},
    {"gateway.timeout", Type::duration, "60s", nullptr},
    {"gateway.header_timeout", Type::duration, "10s", nullptr},
    {"gateway.max_connections_per_ip", Type::integer, "256", nullptr},
    {"gateway.max_transfers_per_ip", Type::integer, "128", nullptr},
    {"gateway.min_rate", Type::size, "4K", nullptr},
    {"gateway.min_rate_window", Type::duration, "60s", nullptr},
    {"gateway.after_delivery", Type::choice, "keep", "keep|delete|archive"},
    {"gateway.archive_dir", Type::path, "/var/lib/mediamail/archive", nullptr},
    {"gateway.gc_interval", Type::duration, "1h", nullptr},
    {"milter.socket", Type::string, "inet:8891@127.0.0.1", nullptr},
    {"milter.min_size", Type::size, "1M", nullptr},
    {"milter.types", Type::list, "video/*, audio/*", nullptr},
    {"milter.on_error", Type::choice, "tempfail", "tempfail|accept"},
    {"milter.max_message_size", Type::size, "4G", nullptr},
    {"milter.apply_to", Type::choice, "outgoing", "outgoing|all"},
    {"milter.trusted_networks", Type::list, "127.0.0.0/8, ::1/128", nullptr},
    {"milter.max_size", Type::size, "4G", nullptr},
    {"milter.over_max_size", Type::choice, "pass", "pass|reject"},
    {"milter.rewrite_signed_dkim", Type::boolean, "false", nullptr},
    {"milter.proxy_listen", Type::string, "", nullptr},
    {"milter.proxy_next", Type::hostport, "127.0.0.1:10026", nullptr},
    {"milter.proxy_timeout", Type::duration, "300s", nullptr},
    {"milter.proxy_max_clients", Type::integer, "100", nullptr},
    {"fetcher.listen", Type::hostport, "127.0.0.1:1110", nullptr},
    {"fetcher.upstream", Type::url, "pop3s://localhost:995", "pop3|pop3s"},
    {"fetcher.upstream_tls", Type::choice, "required", "required|none"},
    {"fetcher.upstream_ca", Type::string, "", nullptr},
    {"fetcher.upstream_pin", Type::string, "", nullptr},
    {"fetcher.tls_listen", Type::string, "", nullptr},
    {"fetcher.tls_cert", Type::string, "", nullptr},
    {"fetcher.tls_key", Type::string, "", nullptr},
    {"fetcher.cache_dir", Type::path, "/var/cache/mediamail/fetcher", nullptr},
    {"fetcher.allow_private", Type::boolean, "false", nullptr},
    {"fetcher.allow_insecure", Type::boolean, "false", nullptr},
    {"fetcher.max_size", Type::size, "4G", nullptr},
    {"fetcher.timeout", Type::duration, "60s", nullptr},
    {"fetcher.max_sessions", Type::integer, "32", nullptr},
    {"fetcher.address", Type::string, "", nullptr},
    {"fetcher.hold_max", Type::duration, "24h", nullptr},
    {"fetcher.login_wait", Type::duration, "10s", nullptr},
    {"fetcher.stream", Type::boolean, "false", nullptr},
    {"fetcher.mode", Type::choice, "auto", "auto|ask"},
    {"fetcher.priority_senders", Type::list, "", nullptr},
    {"fetcher.ignore_senders", Type::list, "", nullptr},
    {"fetcher.cache_quota", Type::size, "20G", nullptr},
    {"fetcher.parallel", Type::integer, "4", nullptr},
    {"fetcher.retry_max", Type::duration, "1h", nullptr},
    {"fetcher.prefetch_interval", Type::duration, "0", nullptr},
    {"fetcher.prefetch_user", Type::string, "", nullptr},
    {"fetcher.prefetch_password_file", Type::string, "", nullptr},
    {"mmsend.smtp", Type::string, "sendmail", nullptr},
    {"mmsend.sendmail", Type::path, "/usr/sbin/sendmail", nullptr},
    {"mmsend.user", Type::string, "", nullptr},
    {"mmsend.password_file", Type::string, "", nullptr},
    {"mmsend.auth", Type::choice, "any", "any|plain|login"},
    {"mmsend.ca_file", Type::string, "", nullptr},
    {"mmsend.timeout", Type::duration, "60s", nullptr},
    {"mmsend.spool_dir", Type::path, "/var/tmp", nullptr},
    {"log.level", Type::choice, "info", "error|warning|info|debug"},
};

const KeyDef* find_key(const std::string& key)
{
    for (const auto& k : kKeys)
        if (key == k.key)
            return &k;
    return nullptr;
}

std::string trim(std::string_view s)
{
    size_t b = 0, e = s.size();
    while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r'))
        ++b;
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r'))
        --e;
    return std::string(s.substr(b, e - b));
}

bool check_value(const KeyDef& k, const std::string& v, std::string& why)
{
    uint64_t u;
    std::chrono::seconds d;
    bool b;
    HostPort hp;
    switch (k.type) {
    case Type::string:
        return true;
    case Type::path:
        if (v.empty() || v[0] != '/') {
            why = "an absolute path is required";
            return false;
        }
        return true;
    case Type::size:
        if (!parse_size(v, u)) {
            why = "expected a size in bytes, optionally with K, M, G or T";
            return false;
        }
        return true;
    case Type::integer:
        if (!parse_u64(v, u) || u > 1000000) {
            why = "expected a whole number from 0 to 1000000";
            return false;
        }
        return true;
    case Type::boolean:
        if (!parse_bool(v, b)) {
            why = "expected true or false";
            return false;
        }
        return true;
    case Type::duration:
        if (!parse_duration(v, d)) {
            why = "expected a duration such as 30d, 24h, 15m or 10s";
            return false;
        }
        return true;
    case Type::hostport:
        if (!parse_hostport(v, hp)) {
            why = "expected host:port with a port from 1 to 65535";
            return false;
        }
        return true;
    case Type::list:
        return true;
    case Type::choice: {
        std::string_view all = k.choices;
        size_t pos = 0;
        while (pos <= all.size()) {
            size_t bar = all.find('|', pos);
            if (bar == std::string_view::npos)
                bar = all.size();
            if (all.substr(pos, bar - pos) == v)
                return true;
            pos = bar + 1;
        }
        why = std::string("expected one of ") + k.choices;
        return false;
    }
    case Type::url: {
        size_t colon = v.find("://");
        std::string scheme = colon == std::string::npos ? "" : v.substr(0, colon);
        std::string_view all = k.choices;
        size_t pos = 0;
        while (!scheme.empty() && pos <= all.size()) {
            size_t bar = all.find('|', pos);
            if (bar == std::string_view::npos)
                bar = all.size();
            if (all.substr(pos, bar - pos) == scheme && v.size() > colon + 3)
                return true;
            pos = bar + 1;
        }
        why = std::string("expected a URL with scheme ") + k.choices;
        return false;
    }
    }
    return false;
}

} // namespace

std::vector<KeyInfo> config_keys()
{
    std::vector<KeyInfo> out;
    for (const auto& k : kKeys)
        out.push_back(KeyInfo{k.key, k.def});
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

void Config::set(const std::string& key, const std::string& value, const std::string& origin)
{
    const KeyDef* k = find_key(key);
    if (!k)
        throw ConfigError(origin + ": unknown key '" + key + "'");
    std::string why;
    if (!check_value(*k, value, why))
        throw ConfigError(origin + ": bad value for " + key + " = '" + value + "': " + why);
    values_[key] = Value{value, origin};
}

Config Config::load(const std::string& path, const std::vector<std::string>& overrides)
{
    Config c;
    for (const auto& k : kKeys)
        c.values_[k.key] = Value{k.def, "default"};
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

const Config::Value& Config::get(const std::string& key) const
{
    auto it = values_.find(key);
    if (it == values_.end())
        throw std::logic_error("configuration key not in table: " + key);
    return it->second;
}

const std::string& Config::str(const std::string& key) const { return get(key).text; }
const std::string& Config::origin(const std::string& key) const { return get(key).origin; }

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
        else
            a.rest.push_back(arg);
    }
    return a;
}

} // namespace mm
