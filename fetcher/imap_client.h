// imap_client.h - the IMAP client side of mm-fetcher's mailbox agent (imap_agent.h):
// connect (implicit TLS on imaps://, STARTTLS on imap://, RFC 9051 / RFC 2595),
// LOGIN, SELECT, UID SEARCH/FETCH/STORE/EXPUNGE/MOVE/COPY (RFC 4315, RFC 6851),
// APPEND streamed from a file as a literal, and IDLE (RFC 2177). Every response
// goes through imap_parse.h: bounded, literals counted.
// Config keys (via ImapConfig): fetcher.imap, fetcher.upstream_tls, fetcher.upstream_pin,
// fetcher.timeout; the TLS context is the POP3 upstream's (upstream_tls_context).
//
// Why a client of our own: the agent needs IDLE, APPEND with flags and
// INTERNALDATE from a multi-GB file in bounded memory, UID EXPUNGE and strict
// bounds on everything the server sends. libetpan (C, has all of it) cannot be
// installed beside libcurl4-openssl-dev on Debian 12, which the downloader is
// built on; libvmime has no IDLE (kisli/vmime issue 46, open since 2013) and
// expunges with plain EXPUNGE only; libcurl's IMAP has no IDLE and no streaming
// APPEND with flags and date. So, as for POP3 (upstream.h), a small client here:
// the same Stream and TLS code, a parser that takes bytes (fuzz/fuzz_imap.cpp).
#pragma once

#include "core/stream.h"
#include "fetcher/imap_parse.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mm {

struct ImapConfig {
    std::string host;
    uint16_t port = 0;
    bool implicit_tls = false;   // imaps://
    bool tls_required = true;    // fetcher.upstream_tls = required: imap:// must upgrade with STARTTLS
    std::chrono::seconds timeout{60};
    std::string pin;             // fetcher.upstream_pin
};

/// Parses fetcher.imap ("imap://host[:port]" or "imaps://host[:port]", default
/// ports 143 and 993).
bool parse_imap_url(const std::string& url, ImapConfig& out);

class ImapClient {
public:
    /// Connects, reads the greeting, sets up TLS as configured and learns the
    /// capabilities. False with `err` set.
    bool connect(const ImapConfig& cfg, std::string& err);
    /// LOGIN (quoted strings or literals); then the capabilities again.
    bool login(const std::string& user, const std::string& pass, std::string& err);
    const std::vector<std::string>& capabilities() const { return caps_; }
    bool has(std::string_view cap) const { return imap_has(caps_, cap); }

    /// Sends one command (tag added) and reads responses up to its tagged one.
    /// Untagged ones are kept in `untagged` when given; `sink` gets large
    /// literals. False (err set) when the connection failed or the server broke
    /// the grammar; a NO or BAD is true with tagged.status saying so.
    bool run(const std::string& command, ImapResponse& tagged, std::vector<ImapResponse>* untagged,
             std::string& err, LiteralSink* sink = nullptr);

    /// SELECT: false with err set also on NO. `uidvalidity` from its code.
    bool select(const std::string& folder, uint32_t& uidvalidity, std::string& err);
    /// UID SEARCH `criteria` (e.g. UNDELETED HEADER X-Media-Handles ""):
    /// at most kMaxImapSearch UIDs.
    bool uid_search(const std::string& criteria, std::vector<uint32_t>& uids, std::string& err);
    /// UID FETCH of UID, FLAGS, INTERNALDATE, RFC822.SIZE and the Message-ID
    /// header field; `found` false when the message is gone.
    bool uid_fetch_meta(uint32_t uid, ImapFetch& f, bool& found, std::string& err);
    enum class Body { ok, gone, too_big, io };
    /// UID FETCH BODY.PEEK[] into a new file at `path` (at most max_size octets).
    Body uid_fetch_body(uint32_t uid, const std::string& path, uint64_t max_size, std::string& err);
    /// APPEND the file at `path` to `folder` with `flags` and `date` ("": none), the file
    /// sent as a literal from a fixed buffer. `uid` is the APPENDUID (0 without
    /// UIDPLUS). False with err set when the server did not confirm it.
    bool append(const std::string& folder, const std::vector<std::string>& flags, const std::string& date,
                const std::string& path, uint32_t& uid, std::string& err);
    /// The server's hierarchy delimiter (LIST "" "", RFC 9051 6.3.9): '/' or
    /// '.' mostly; 0 for a flat namespace.
    bool delimiter(char& d, std::string& err);
    /// A command that must be answered OK ("UID EXPUNGE 7"); false with err otherwise.
    bool ok(const std::string& command, std::string& err);
    /// IDLE until the mailbox gets a new message (`changed`), `max` passes, or
    /// `stop` turns true (checked every second); then DONE.
    bool idle(std::chrono::seconds max, const std::atomic<bool>* stop, bool& changed, std::string& err);
    /// Whether the server reported new mail (an untagged EXISTS) in any answer
    /// since clear_news(): mail that came while we worked, told outside IDLE.
    bool news() const { return news_; }
    void clear_news() { news_ = false; }
    void logout();
    void close() { stream_.reset(); }
    bool connected() const { return stream_ != nullptr; }

private:
    bool read_response(ImapResponse& r, LiteralSink* sink, std::string& err);
    bool send(const std::string& line, std::string& err);
    std::string next_tag();
    /// `s` as a quoted string, or a literal sent with its continuation first.
    bool send_astring_line(const std::string& prefix, const std::vector<std::string>& args, std::string& tag,
                           std::string& err);
    void note_capabilities(const ImapResponse& r);
    std::unique_ptr<Stream> stream_;
    std::vector<std::string> caps_;
    unsigned tag_n_ = 0;
    bool news_ = false;
};

constexpr size_t kMaxImapSearch = 100000;

} // namespace mm
