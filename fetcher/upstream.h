// upstream.h - the POP3 client side of the proxy: connect to the real server
// (plain, STLS per RFC 2595, or implicit TLS), log in, list, and RETR into files.
// RFC 1939. Config keys (via UpstreamConfig): fetcher.upstream, fetcher.upstream_tls, fetcher.timeout.
#pragma once

#include "core/stream.h"
#include "fetcher/upstream_parse.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mm {

struct UpstreamConfig {
    std::string host;
    uint16_t port = 0;
    bool implicit_tls = false;   // pop3s://
    bool tls_required = true;    // fetcher.upstream_tls = required: pop3:// must upgrade with STLS
    std::chrono::seconds timeout{60};
    std::string pin;             // fetcher.upstream_pin: "sha256//BASE64" of the server's public key
};

/// Parses fetcher.upstream ("pop3://host[:port]" or "pop3s://host[:port]").
bool parse_upstream_url(const std::string& url, UpstreamConfig& out);

/// The process-wide client TLS context (system CAs, or fetcher.upstream_ca when
/// given; TLS 1.2+). The first call creates it: call once at start.
SSL_CTX* upstream_tls_context(const std::string& ca_file = "");

/// The APOP timestamp of a greeting ("<...@...>", RFC 1939 7), or "".
std::string apop_timestamp(const std::string& greeting_text);

/// The SASL mechanisms of a CAPA answer ("SASL PLAIN LOGIN") that we pass
/// through (PLAIN and LOGIN only), upper case.
std::vector<std::string> sasl_mechanisms(const std::vector<std::string>& capa);

/// Caps on what the upstream server may send us.
constexpr size_t kMaxUpstreamLine = 1024;          // status and listing lines
constexpr size_t kMaxUpstreamMessages = 1000000;   // entries in a LIST/UIDL answer

/// Where the octets of one RETR answer go, dot-stuffing undone and line ends
/// CRLF: write() gets them in order in chunks of up to 64 KiB; finish() after
/// the terminating dot (false: could not be stored); abandon() instead when the
/// answer was too big, broke off, or a write failed. Nothing is called for -ERR.
class RetrSink {
public:
    virtual ~RetrSink() = default;
    virtual bool write(const char* p, size_t n) = 0;
    virtual bool finish() = 0;
    virtual void abandon() = 0;
};

class Upstream {
public:
    /// Connects, reads the greeting and sets up TLS as configured.
    bool connect(const UpstreamConfig& cfg, std::string& err);
    /// Sends one command line and reads the status line into `text` (after +OK/-ERR).
    Reply command(const std::string& line, std::string& text);
    /// A multi-line answer (LIST, UIDL, CAPA): its lines, dot-unstuffed.
    Reply multiline(const std::string& line, std::vector<std::string>& lines, std::string& text);

    enum class Fetch { ok, too_big, err, io };
    /// RETR n into `path`: dot-stuffing undone, line ends normalised to CRLF, at
    /// most max_size octets (beyond that the rest is read and discarded, too_big).
    /// sync false: the caller makes the file durable later (one syncfs per login).
    Fetch retr_to_file(uint64_t n, const std::string& path, uint64_t max_size,
                       uint64_t& written, std::string& err, bool sync = true);
    /// RFC 2449 PIPELINING: all the RETRs at once, then each answer into paths[i]
    /// as retr_to_file does (not fsynced). False (err set) if the connection broke.
    bool retr_many(const std::vector<uint64_t>& nums, const std::vector<std::string>& paths,
                   uint64_t max_size, std::vector<Fetch>& results, uint64_t& written, std::string& err);
    /// retr_many into sinks of the caller's making (the message cache's format).
    bool retr_many(const std::vector<uint64_t>& nums, const std::vector<RetrSink*>& sinks,
                   uint64_t max_size, std::vector<Fetch>& results, uint64_t& written, std::string& err);
    /// Sends `line` (RETR or TOP) and copies a +OK answer to `out` as it comes,
    /// still dot-stuffed, bare LF made CRLF, with the terminating dot: for
    /// messages shown as they are without a cached copy. The status line is the
    /// caller's to write (`status_line`, sent before the first octet). Reply::err
    /// (refused, or no upstream connection) leaves `out` untouched; Reply::io means
    /// upstream broke off mid-answer: the client's answer is cut short and its
    /// connection must end.
    Reply relay(const std::string& line, const std::string& status_line, Stream& out, uint64_t& sent);
    bool connected() const { return stream_ != nullptr; }
    /// The greeting's text after "+OK", and the CAPA lines after TLS set-up
    /// (empty if the server has no CAPA).
    const std::string& greeting() const { return greeting_; }
    /// CAPA is asked on first use only: most logins never need it.
    const std::vector<std::string>& capabilities();
    /// One step of a SASL exchange: sends `line`, reads one reply line; `text` is
    /// what follows "+OK", "-ERR" or "+ ".
    Reply sasl_step(const std::string& line, std::string& text);
    void close() { stream_.reset(); }

private:
    Reply status(std::string& text);
    Fetch read_retr(RetrSink& sink, uint64_t max_size, uint64_t& written, std::string& err);
    std::unique_ptr<Stream> stream_;
    std::string greeting_;
    std::vector<std::string> caps_;
    bool caps_known_ = false;
};

} // namespace mm
