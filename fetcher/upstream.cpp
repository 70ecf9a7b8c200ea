// upstream.cpp - POP3 client towards the real mail server (RFC 1939, STLS from
// RFC 2595, implicit TLS on pop3s). Every reply line is length-capped.
// Config keys: fetcher.upstream, fetcher.upstream_tls, fetcher.timeout (through UpstreamConfig).
#include "fetcher/upstream.h"

#include "core/config.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <strings.h>
#include <algorithm>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

namespace mm {

bool parse_upstream_url(const std::string& url, UpstreamConfig& out)
{
    std::string rest;
    if (url.rfind("pop3s://", 0) == 0) {
        out.implicit_tls = true;
        rest = url.substr(8);
    } else if (url.rfind("pop3://", 0) == 0) {
        out.implicit_tls = false;
        rest = url.substr(7);
    } else {
        return false;
    }
    if (!rest.empty() && rest.back() == '/')
        rest.pop_back();
    if (rest.empty() || rest.find('/') != std::string::npos || rest.find('@') != std::string::npos)
        return false;
    HostPort hp;
    bool has_port = rest.back() != ']' && rest.find(':') != std::string::npos &&
                    rest.find(':') == rest.rfind(':');
    if (rest.front() == '[' && rest.find("]:") != std::string::npos)
        has_port = true;
    if (has_port) {
        if (!parse_hostport(rest, hp))
            return false;
    } else {
        hp.host = rest;
        if (hp.host.size() > 2 && hp.host.front() == '[' && hp.host.back() == ']')
            hp.host = hp.host.substr(1, hp.host.size() - 2);
        hp.port = out.implicit_tls ? 995 : 110;
    }
    if (hp.host.empty() || hp.port == 0)
        return false;
    out.host = hp.host;
    out.port = hp.port;
    return true;
}

SSL_CTX* upstream_tls_context(const std::string& ca_file)
{
    static SSL_CTX* ctx = [&ca_file]() -> SSL_CTX* {
        SSL_CTX* c = SSL_CTX_new(TLS_client_method());
        if (c) {
            SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
            // A private server's CA replaces the system store rather than adding
            // to it: then only that CA can vouch for the mail server.
            if (!ca_file.empty()) {
                if (SSL_CTX_load_verify_locations(c, ca_file.c_str(), nullptr) != 1) {
                    SSL_CTX_free(c);
                    return nullptr;
                }
            } else {
                SSL_CTX_set_default_verify_paths(c);
            }
            SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
        }
        return c;
    }();
    return ctx;
}

std::string apop_timestamp(const std::string& g)
{
    size_t lt = g.find('<');
    if (lt == std::string::npos)
        return "";
    size_t gt = g.find('>', lt);
    if (gt == std::string::npos || gt - lt > 200)
        return "";
    std::string ts = g.substr(lt, gt - lt + 1);
    if (ts.find('@') == std::string::npos)
        return "";
    for (unsigned char c : ts)
        if (c <= 0x20 || c >= 0x7f)
            return "";   // goes to the client verbatim: printable only
    return ts;
}

std::vector<std::string> sasl_mechanisms(const std::vector<std::string>& capa)
{
    std::vector<std::string> out;
    for (const auto& line : capa) {
        if (line.size() < 5 || strncasecmp(line.c_str(), "SASL ", 5) != 0)
            continue;
        size_t pos = 5;
        while (pos < line.size()) {
            size_t sp = line.find(' ', pos);
            std::string m = line.substr(pos, sp == std::string::npos ? std::string::npos : sp - pos);
            for (char& c : m)
                c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
            if ((m == "PLAIN" || m == "LOGIN") && std::find(out.begin(), out.end(), m) == out.end())
                out.push_back(m);
            if (sp == std::string::npos)
                break;
            pos = sp + 1;
        }
    }
    return out;
}


Reply Upstream::status(std::string& text)
{
    std::string line;
    LineResult r = stream_->read_line(line, kMaxUpstreamLine);
    if (r != LineResult::ok)
        return Reply::io;   // an overlong status line is as good as a broken server
    return parse_status_line(line, text);
}

bool Upstream::connect(const UpstreamConfig& cfg, std::string& err)
{
    int fd = connect_tcp(cfg.host, cfg.port, cfg.timeout, err);
    if (fd < 0) {
        err = "cannot connect to upstream: " + err;
        return false;
    }
    stream_ = std::make_unique<Stream>(fd);
    std::string text;
    if (cfg.implicit_tls && !stream_->start_tls(upstream_tls_context(), cfg.host, cfg.pin, err)) {
        stream_.reset();
        return false;
    }
    if (status(text) != Reply::ok) {
        err = "bad upstream greeting";
        stream_.reset();
        return false;
    }
    greeting_ = text;
    caps_.clear();
    caps_known_ = false;
    if (!cfg.implicit_tls && cfg.tls_required) {
        std::vector<std::string> caps;
        bool stls = false;
        if (multiline("CAPA", caps, text) == Reply::ok)
            for (const auto& c : caps)
                if (c == "STLS" || c.rfind("STLS ", 0) == 0)
                    stls = true;
        // No STLS offered means the password would cross the network in clear:
        // refuse rather than downgrade (fetcher.upstream_tls = required).
        if (!stls) {
            err = "upstream does not offer STLS (fetcher.upstream_tls = required)";
            stream_.reset();
            return false;
        }
        if (command("STLS", text) != Reply::ok) {
            err = "upstream refused STLS";
            stream_.reset();
            return false;
        }
        if (!stream_->start_tls(upstream_tls_context(), cfg.host, cfg.pin, err)) {
            stream_.reset();
            return false;
        }
    }
    // RFC 2595 4: what the server offered before TLS is forgotten; asked again
    // (lazily) by capabilities().
    caps_known_ = false;
    return true;
}

const std::vector<std::string>& Upstream::capabilities()
{
    if (!caps_known_ && stream_) {
        std::vector<std::string> caps;
        std::string text;
        if (multiline("CAPA", caps, text) == Reply::ok)
            caps_ = std::move(caps);
        caps_known_ = true;
    }
    return caps_;
}

Reply Upstream::sasl_step(const std::string& line, std::string& text)
{
    if (!stream_)
        return Reply::io;
    if (!stream_->write(line + "\r\n")) {
        stream_.reset();
        return Reply::io;
    }
    std::string l;
    // SASL challenges are base64 of at most a few hundred bytes; 2 KiB is ample.
    if (stream_->read_line(l, 2048) != LineResult::ok) {
        stream_.reset();
        return Reply::io;
    }
    Reply r = parse_sasl_line(l, text);
    if (r == Reply::io)
        stream_.reset();
    return r;
}

Reply Upstream::command(const std::string& line, std::string& text)
{
    if (!stream_)
        return Reply::io;
    if (!stream_->write(line + "\r\n")) {
        stream_.reset();
        return Reply::io;
    }
    Reply r = status(text);
    if (r == Reply::io)
        stream_.reset();
    return r;
}

Reply Upstream::multiline(const std::string& line, std::vector<std::string>& lines, std::string& text)
{
    lines.clear();
    Reply r = command(line, text);
    if (r != Reply::ok)
        return r;
    MultilineReader reader(kMaxUpstreamMessages);
    std::string l;
    for (;;) {
        if (stream_->read_line(l, kMaxUpstreamLine) != LineResult::ok) {
            stream_.reset();
            return Reply::io;
        }
        if (!reader.take(std::move(l), lines))
            return Reply::ok;
        if (reader.over()) {
            stream_.reset();
            return Reply::io;
        }
    }
}

namespace {

/// The sink of retr_to_file: the octets as they are into `path`, fsynced when asked.
class FileSink : public RetrSink {
public:
    FileSink(std::string path, bool sync) : path_(std::move(path)), sync_(sync) {}
    ~FileSink() override
    {
        if (fd_ >= 0)
            ::close(fd_);
    }
    bool write(const char* p, size_t n) override
    {
        if (!open_file())
            return false;
        return ::write(fd_, p, n) == static_cast<ssize_t>(n);
    }
    bool finish() override
    {
        // An empty message still leaves its (empty) file.
        bool ok = open_file() && (!sync_ || fsync(fd_) == 0);
        ok = ::close(fd_) == 0 && ok;
        fd_ = -1;
        if (!ok)
            unlink(path_.c_str());
        return ok;
    }
    void abandon() override
    {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = -1;
        unlink(path_.c_str());
    }

private:
    bool open_file()
    {
        if (fd_ < 0)
            fd_ = open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        return fd_ >= 0;
    }
    std::string path_;
    bool sync_;
    int fd_ = -1;
};

} // namespace

Upstream::Fetch Upstream::retr_to_file(uint64_t n, const std::string& path, uint64_t max_size,
                                       uint64_t& written, std::string& err, bool sync)
{
    written = 0;
    if (!stream_ || !stream_->write("RETR " + std::to_string(n) + "\r\n")) {
        stream_.reset();
        err = "upstream connection lost";
        return Fetch::io;
    }
    FileSink sink(path, sync);
    Fetch f = read_retr(sink, max_size, written, err);
    if (f != Fetch::ok && f != Fetch::err)
        unlink(path.c_str());
    return f;
}

bool Upstream::retr_many(const std::vector<uint64_t>& nums, const std::vector<std::string>& paths,
                         uint64_t max_size, std::vector<Fetch>& results, uint64_t& written, std::string& err)
{
    std::vector<std::unique_ptr<FileSink>> files;
    std::vector<RetrSink*> sinks;
    for (const auto& p : paths) {
        files.push_back(std::make_unique<FileSink>(p, false));
        sinks.push_back(files.back().get());
    }
    return retr_many(nums, sinks, max_size, results, written, err);
}

bool Upstream::retr_many(const std::vector<uint64_t>& nums, const std::vector<RetrSink*>& sinks,
                         uint64_t max_size, std::vector<Fetch>& results, uint64_t& written, std::string& err)
{
    results.assign(nums.size(), Fetch::err);
    written = 0;
    if (!stream_)
        return false;
    // The commands are small and the answers are read in order as they come, so
    // neither side can block the other however many are in flight.
    for (uint64_t n : nums)
        stream_->put("RETR " + std::to_string(n) + "\r\n");
    if (!stream_->flush()) {
        stream_.reset();
        err = "upstream connection lost";
        return false;
    }
    for (size_t i = 0; i < nums.size(); ++i) {
        uint64_t w = 0;
        results[i] = read_retr(*sinks[i], max_size, w, err);
        written += w;
        if (results[i] == Fetch::io)
            return false;
    }
    return true;
}

Upstream::Fetch Upstream::read_retr(RetrSink& sink, uint64_t max_size, uint64_t& written, std::string& err)
{
    written = 0;
    std::string text;
    Reply r = stream_ ? status(text) : Reply::io;
    if (r == Reply::io) {
        stream_.reset();
        err = "upstream connection lost";
        return Fetch::io;
    }
    if (r == Reply::err) {
        err = "upstream refused RETR";
        return Fetch::err;
    }
    bool too_big = false, write_failed = false;
    std::string out;
    out.reserve(65536 + 2);
    auto emit = [&](const char* p, size_t k) {
        if (too_big || write_failed)
            return;
        if (written + k > max_size) {
            too_big = true;
            return;
        }
        written += k;
        out.append(p, k);
        if (out.size() >= 65536) {
            write_failed = !sink.write(out.data(), out.size());
            out.clear();
        }
    };
    // Over the stream's buffer as it comes (upstream_parse.h): no line length
    // limit is needed because nothing is held beyond the 64 KiB output buffer.
    RetrDecoder decoder;
    for (;;) {
        std::string_view b = stream_->peek_buffer();
        if (b.empty()) {
            if (decoder.complete_at_eof())
                break;
            sink.abandon();
            stream_.reset();
            err = "upstream connection lost during RETR";
            return Fetch::io;
        }
        stream_->consume(decoder.feed(b, emit));
        if (decoder.done())
            break;
    }
    if (!write_failed && !too_big && !out.empty())
        write_failed = !sink.write(out.data(), out.size());
    if (too_big || write_failed) {
        sink.abandon();
        err = too_big ? "message larger than fetcher.max_size" : "cannot write the message";
        return too_big ? Fetch::too_big : Fetch::err;
    }
    if (!sink.finish()) {
        err = "cannot write the message";
        return Fetch::err;
    }
    return Fetch::ok;
}

Reply Upstream::relay(const std::string& line, const std::string& status_line, Stream& out, uint64_t& sent)
{
    std::string text;
    if (command(line, text) != Reply::ok)
        return Reply::err;   // nothing sent to `out` yet
    out.put(status_line);
    // Copied as it comes, dot-stuffing kept: the answer's own terminator ends it.
    RetrDecoder decoder(true);
    auto emit = [&](const char* p, size_t n) {
        out.put(p, n);
        sent += n;
    };
    for (;;) {
        std::string_view b = stream_->peek_buffer();
        if (b.empty() && !decoder.complete_at_eof()) {
            stream_.reset();
            out.flush();
            return Reply::io;
        }
        if (!b.empty())
            stream_->consume(decoder.feed(b, emit));
        if (b.empty() || decoder.done()) {
            out.put(".\r\n", 3);
            out.flush();
            return Reply::ok;
        }
    }
}

} // namespace mm
