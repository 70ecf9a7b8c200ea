// imap_client.cpp - the IMAP client of the mailbox agent (imap_client.h): one
// command at a time, each response assembled and parsed by imap_parse.h, large
// literals to and from files through fixed buffers.
#include "fetcher/imap_client.h"

#include "core/config.h"
#include "core/fileio.h"
#include "core/log.h"
#include "fetcher/upstream.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mm {

bool parse_imap_url(const std::string& url, ImapConfig& out)
{
    // The POP3 URL parser knows host, [v6] and port; only the schemes differ.
    UpstreamConfig up;
    std::string as_pop;
    bool tls;
    if (url.rfind("imaps://", 0) == 0) {
        tls = true;
        as_pop = "pop3s://" + url.substr(8);
    } else if (url.rfind("imap://", 0) == 0) {
        tls = false;
        as_pop = "pop3://" + url.substr(7);
    } else {
        return false;
    }
    if (!parse_upstream_url(as_pop, up))
        return false;
    out.host = up.host;
    out.implicit_tls = tls;
    // parse_upstream_url fills in 995/110 when no port was given.
    std::string rest = url.substr(tls ? 8 : 7);
    if (!rest.empty() && rest.back() == '/')
        rest.pop_back();
    bool has_port = rest.back() != ']' && rest.find(':') != std::string::npos &&
                    (rest.front() == '[' || rest.find(':') == rest.rfind(':'));
    out.port = has_port ? up.port : (tls ? 993 : 143);
    return true;
}

namespace {

/// A FETCH BODY[] literal into a new file, at most `max` octets.
class FileSink : public LiteralSink {
public:
    FileSink(const std::string& path, uint64_t max) : path_(path), max_(max) {}
    ~FileSink() override = default;
    bool begin(uint64_t size) override
    {
        if (fd_ || size > max_) {
            too_big_ = size > max_;
            return false;
        }
        fd_.reset(::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
        size_ = size;
        return static_cast<bool>(fd_);
    }
    bool write(const char* p, size_t n) override
    {
        written_ += n;
        return write_all(fd_.get(), p, n);
    }
    bool finish() { return fd_ && written_ == size_ && ::close(fd_.release()) == 0; }
    bool too_big() const { return too_big_; }
    bool started() const { return static_cast<bool>(fd_); }

private:
    std::string path_;
    uint64_t max_;
    UniqueFd fd_;
    uint64_t size_ = 0, written_ = 0;
    bool too_big_ = false;
};

std::string status_name(ImapResponse::Status s)
{
    switch (s) {
    case ImapResponse::Status::ok: return "OK";
    case ImapResponse::Status::no: return "NO";
    case ImapResponse::Status::bad: return "BAD";
    case ImapResponse::Status::bye: return "BYE";
    case ImapResponse::Status::preauth: return "PREAUTH";
    case ImapResponse::Status::none: break;
    }
    return "?";
}

std::string answer(const ImapResponse& r)
{
    return status_name(r.status) + (r.code.empty() ? "" : " [" + r.code + "]") + " " + printable(r.text, 120);
}

} // namespace

std::string ImapClient::next_tag()
{
    return "M" + std::to_string(++tag_n_);
}

bool ImapClient::send(const std::string& line, std::string& err)
{
    if (!stream_ || !stream_->write(line)) {
        err = "IMAP server: write failed";
        stream_.reset();
        return false;
    }
    return true;
}

bool ImapClient::read_response(ImapResponse& r, LiteralSink* sink, std::string& err)
{
    if (!stream_) {
        err = "not connected";
        return false;
    }
    ImapAssembler a;
    while (!a.done()) {
        std::string_view in = stream_->peek_buffer();
        if (in.empty()) {
            err = "IMAP server closed the connection or timed out";
            stream_.reset();
            return false;
        }
        size_t k = a.feed(in, sink);
        stream_->consume(k);
        if (a.failed()) {
            err = "IMAP server: " + a.error();
            stream_.reset();
            return false;
        }
    }
    if (!parse_imap_response(a.raw(), r, err)) {
        err = "IMAP server: " + err + ": " + printable(a.raw().text, 120);
        stream_.reset();
        return false;
    }
    if (r.kind == ImapResponse::Kind::untagged && r.name == "EXISTS")
        news_ = true;
    if (r.kind == ImapResponse::Kind::untagged && r.status == ImapResponse::Status::bye) {
        // A BYE before the tagged answer is the server hanging up (RFC 9051 7.1.5).
        log_debug("IMAP server says BYE: " + printable(r.text));
    }
    return true;
}

void ImapClient::note_capabilities(const ImapResponse& r)
{
    auto caps = imap_capabilities(r);
    if (!caps.empty())
        caps_ = std::move(caps);
}

bool ImapClient::run(const std::string& command, ImapResponse& tagged, std::vector<ImapResponse>* untagged,
                     std::string& err, LiteralSink* sink)
{
    const std::string tag = next_tag();
    if (!send(tag + " " + command + "\r\n", err))
        return false;
    for (;;) {
        ImapResponse r;
        if (!read_response(r, sink, err))
            return false;
        if (r.kind == ImapResponse::Kind::tagged) {
            if (r.tag != tag) {
                err = "IMAP server answered another tag";
                stream_.reset();
                return false;
            }
            note_capabilities(r);
            tagged = std::move(r);
            return true;
        }
        if (r.kind == ImapResponse::Kind::continuation) {
            err = "IMAP server asked for a continuation we did not announce";
            stream_.reset();
            return false;
        }
        note_capabilities(r);
        if (untagged && untagged->size() < 100000)
            untagged->push_back(std::move(r));
    }
}

bool ImapClient::ok(const std::string& command, std::string& err)
{
    ImapResponse t;
    if (!run(command, t, nullptr, err))
        return false;
    if (t.status != ImapResponse::Status::ok) {
        err = command.substr(0, command.find(' ', 4)) + ": " + answer(t);
        return false;
    }
    return true;
}

bool ImapClient::connect(const ImapConfig& cfg, std::string& err)
{
    tag_n_ = 0;
    caps_.clear();
    int fd = connect_tcp(cfg.host, cfg.port, cfg.timeout, err);
    if (fd < 0) {
        err = "cannot connect to the IMAP server: " + err;
        return false;
    }
    stream_ = std::make_unique<Stream>(fd);
    if (cfg.implicit_tls && !stream_->start_tls(upstream_tls_context(), cfg.host, cfg.pin, err)) {
        stream_.reset();
        return false;
    }
    ImapResponse g;
    if (!read_response(g, nullptr, err))
        return false;
    if (g.kind != ImapResponse::Kind::untagged ||
        (g.status != ImapResponse::Status::ok && g.status != ImapResponse::Status::preauth)) {
        err = "bad IMAP greeting";
        stream_.reset();
        return false;
    }
    note_capabilities(g);
    ImapResponse t;
    if (caps_.empty() && (!run("CAPABILITY", t, nullptr, err) || t.status != ImapResponse::Status::ok)) {
        if (err.empty())
            err = "CAPABILITY refused";
        stream_.reset();
        return false;
    }
    if (!cfg.implicit_tls && cfg.tls_required) {
        // No STARTTLS offered means the password would cross the network in
        // clear: refuse rather than downgrade (fetcher.upstream_tls = required).
        if (!has("STARTTLS")) {
            err = "IMAP server does not offer STARTTLS (fetcher.upstream_tls = required)";
            stream_.reset();
            return false;
        }
        if (!run("STARTTLS", t, nullptr, err) || t.status != ImapResponse::Status::ok) {
            if (err.empty())
                err = "IMAP server refused STARTTLS";
            stream_.reset();
            return false;
        }
        if (!stream_->start_tls(upstream_tls_context(), cfg.host, cfg.pin, err)) {
            stream_.reset();
            return false;
        }
        // RFC 2595 3.1: what the server said before TLS is forgotten.
        caps_.clear();
        if (!run("CAPABILITY", t, nullptr, err) || t.status != ImapResponse::Status::ok) {
            if (err.empty())
                err = "CAPABILITY refused";
            stream_.reset();
            return false;
        }
    }
    return true;
}

bool ImapClient::send_astring_line(const std::string& prefix, const std::vector<std::string>& args,
                                   std::string& tag, std::string& err)
{
    tag = next_tag();
    std::string line = tag + " " + prefix;
    for (const auto& a : args) {
        std::string q = imap_quote(a);
        if (!q.empty()) {
            line += " " + q;
            continue;
        }
        // 8-bit or control characters: a synchronising literal (RFC 9051 4.3).
        line += " {" + std::to_string(a.size()) + "}\r\n";
        if (!send(line, err))
            return false;
        ImapResponse r;
        if (!read_response(r, nullptr, err))
            return false;
        if (r.kind != ImapResponse::Kind::continuation) {
            err = "IMAP server refused a literal: " + answer(r);
            return false;
        }
        line = a;
    }
    return send(line + "\r\n", err);
}

bool ImapClient::login(const std::string& user, const std::string& pass, std::string& err)
{
    if (has("LOGINDISABLED")) {
        err = "IMAP server disables LOGIN on this connection (LOGINDISABLED)";
        return false;
    }
    std::string tag;
    if (!send_astring_line("LOGIN", {user, pass}, tag, err))
        return false;
    for (;;) {
        ImapResponse r;
        if (!read_response(r, nullptr, err))
            return false;
        if (r.kind == ImapResponse::Kind::tagged && r.tag == tag) {
            if (r.status != ImapResponse::Status::ok) {
                err = "IMAP login refused: " + answer(r);
                return false;
            }
            note_capabilities(r);
            break;
        }
        note_capabilities(r);
    }
    // Servers may offer more after login (RFC 9051 6.2.3): ask unless told.
    ImapResponse t;
    return run("CAPABILITY", t, nullptr, err) && t.status == ImapResponse::Status::ok;
}

bool ImapClient::select(const std::string& folder, uint32_t& uidvalidity, std::string& err)
{
    const std::string q = imap_quote(folder);
    if (q.empty()) {
        err = "folder name " + printable(folder) + " cannot be quoted";
        return false;
    }
    ImapResponse t;
    std::vector<ImapResponse> un;
    if (!run("SELECT " + q, t, &un, err))
        return false;
    if (t.status != ImapResponse::Status::ok) {
        err = "SELECT " + printable(folder) + ": " + answer(t);
        return false;
    }
    uidvalidity = 0;
    for (const auto& r : un) {
        uint64_t v = 0;
        if (r.code == "UIDVALIDITY" && r.code_args.size() == 1 && parse_u64(r.code_args[0], v) && v > 0 &&
            v <= 0xffffffffu)
            uidvalidity = static_cast<uint32_t>(v);
    }
    if (uidvalidity == 0) {
        err = "SELECT " + printable(folder) + ": no UIDVALIDITY";
        return false;
    }
    return true;
}

bool ImapClient::delimiter(char& d, std::string& err)
{
    ImapResponse t;
    std::vector<ImapResponse> un;
    if (!run("LIST \"\" \"\"", t, &un, err))
        return false;
    if (t.status != ImapResponse::Status::ok) {
        err = "LIST: " + answer(t);
        return false;
    }
    d = 0;
    for (const auto& r : un)
        if (r.name == "LIST" && r.data.size() >= 2) {
            const ImapValue& v = r.data[1];
            if (v.kind == ImapValue::Kind::string && v.text.size() == 1)
                d = v.text[0];
        }
    return true;
}

bool ImapClient::uid_search(const std::string& criteria, std::vector<uint32_t>& uids, std::string& err)
{
    ImapResponse t;
    std::vector<ImapResponse> un;
    if (!run("UID SEARCH " + criteria, t, &un, err))
        return false;
    if (t.status != ImapResponse::Status::ok) {
        err = "UID SEARCH: " + answer(t);
        return false;
    }
    uids.clear();
    for (const auto& r : un) {
        if (r.name != "SEARCH")
            continue;
        std::vector<uint32_t> part;
        if (!parse_imap_search(r, part, kMaxImapSearch - uids.size())) {
            err = "UID SEARCH: bad or too long answer";
            return false;
        }
        uids.insert(uids.end(), part.begin(), part.end());
    }
    return true;
}

bool ImapClient::uid_fetch_meta(uint32_t uid, ImapFetch& f, bool& found, std::string& err)
{
    ImapResponse t;
    std::vector<ImapResponse> un;
    if (!run("UID FETCH " + std::to_string(uid) +
                 " (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])",
             t, &un, err))
        return false;
    if (t.status != ImapResponse::Status::ok) {
        err = "UID FETCH: " + answer(t);
        return false;
    }
    found = false;
    for (const auto& r : un) {
        ImapFetch one;
        if (r.name != "FETCH")
            continue;
        if (!parse_imap_fetch(r, one)) {
            err = "UID FETCH: malformed FETCH response";
            return false;
        }
        // Unsolicited FETCHes (flag changes of other messages) may come too.
        if (one.uid == uid && one.has_flags) {
            f = std::move(one);
            found = true;
        }
    }
    return true;
}

ImapClient::Body ImapClient::uid_fetch_body(uint32_t uid, const std::string& path, uint64_t max_size,
                                            std::string& err)
{
    FileSink sink(path, max_size);
    ImapResponse t;
    std::vector<ImapResponse> un;
    if (!run("UID FETCH " + std::to_string(uid) + " (UID BODY.PEEK[])", t, &un, err, &sink)) {
        unlink(path.c_str());
        if (sink.too_big()) {
            err = "message over fetcher.max_message_size";
            return Body::too_big;
        }
        return Body::io;
    }
    if (t.status != ImapResponse::Status::ok) {
        unlink(path.c_str());
        err = "UID FETCH: " + answer(t);
        return Body::io;
    }
    bool got = false;
    for (const auto& r : un) {
        ImapFetch f;
        if (r.name != "FETCH" || !parse_imap_fetch(r, f) || f.uid != uid || !f.has_body || got)
            continue;
        got = true;
        if (!f.body_streamed) {
            // Small enough to have stayed in the response: written out here.
            if (f.body.size() > max_size || !sink.begin(f.body.size()) ||
                !sink.write(f.body.data(), f.body.size())) {
                unlink(path.c_str());
                err = sink.too_big() ? "message over fetcher.max_message_size" : "cannot write " + path;
                return sink.too_big() ? Body::too_big : Body::io;
            }
        }
    }
    if (!got) {
        unlink(path.c_str());
        return Body::gone;
    }
    if (!sink.finish()) {
        unlink(path.c_str());
        err = "UID FETCH: body not stored whole";
        return Body::io;
    }
    return Body::ok;
}

bool ImapClient::append(const std::string& folder, const std::vector<std::string>& flags, const std::string& date,
                        const std::string& path, uint32_t& uid, std::string& err)
{
    uid = 0;
    const std::string q = imap_quote(folder);
    if (q.empty() || (!date.empty() && !imap_date_time_ok(date))) {
        err = "APPEND: folder or date not sendable";
        return false;
    }
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st;
    if (!fd || fstat(fd.get(), &st) != 0) {
        err = "APPEND: cannot open " + path + ": " + std::strerror(errno);
        return false;
    }
    std::string fl;
    for (const auto& f : flags)
        if (imap_flag_ok(f))
            fl += (fl.empty() ? "" : " ") + f;
    const std::string tag = next_tag();
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    // No date known: the server's own arrival time (RFC 9051 6.3.12).
    const std::string when = date.empty() ? "" : " \"" + date + "\"";
    if (!send(tag + " APPEND " + q + " (" + fl + ")" + when + " {" + std::to_string(size) + "}\r\n", err))
        return false;
    // Synchronising literal: the server says "+" before any octet goes, so a
    // refusal (over quota, APPENDLIMIT) costs nothing.
    for (;;) {
        ImapResponse r;
        if (!read_response(r, nullptr, err))
            return false;
        if (r.kind == ImapResponse::Kind::continuation)
            break;
        if (r.kind == ImapResponse::Kind::tagged) {
            err = "APPEND refused: " + answer(r);
            return false;
        }
    }
    std::string buf(256 * 1024, '\0');
    uint64_t sent = 0;
    while (sent < size) {
        ssize_t n = ::read(fd.get(), buf.data(), static_cast<size_t>(std::min<uint64_t>(buf.size(), size - sent)));
        if (n <= 0) {
            // The literal was promised whole: the connection cannot go on.
            err = "APPEND: read of " + path + " failed";
            stream_.reset();
            return false;
        }
        if (!stream_->write(buf.data(), static_cast<size_t>(n))) {
            err = "APPEND: write to the IMAP server failed";
            stream_.reset();
            return false;
        }
        sent += static_cast<uint64_t>(n);
    }
    if (!send("\r\n", err))
        return false;
    for (;;) {
        ImapResponse r;
        if (!read_response(r, nullptr, err))
            return false;
        if (r.kind != ImapResponse::Kind::tagged)
            continue;
        if (r.tag != tag) {
            err = "IMAP server answered another tag";
            stream_.reset();
            return false;
        }
        if (r.status != ImapResponse::Status::ok) {
            err = "APPEND refused: " + answer(r);
            return false;
        }
        uint32_t validity = 0;
        parse_appenduid(r, validity, uid);
        return true;
    }
}

bool ImapClient::idle(std::chrono::seconds max, const std::atomic<bool>* stop, bool& changed, std::string& err)
{
    changed = news_;
    if (changed)
        return true;   // told already, in an answer to an earlier command
    const std::string tag = next_tag();
    if (!send(tag + " IDLE\r\n", err))
        return false;
    for (;;) {
        ImapResponse r;
        if (!read_response(r, nullptr, err))
            return false;
        if (r.kind == ImapResponse::Kind::continuation)
            break;
        if (r.kind == ImapResponse::Kind::tagged) {
            err = "IDLE refused: " + answer(r);
            return false;
        }
        changed |= r.name == "EXISTS";
    }
    const auto until = std::chrono::steady_clock::now() + max;
    while (!changed && std::chrono::steady_clock::now() < until && !(stop && stop->load())) {
        if (!stream_->buffered()) {
            struct pollfd p{stream_->fd(), POLLIN, 0};
            int n = ::poll(&p, 1, 1000);
            if (n < 0 && errno != EINTR) {
                err = "poll failed";
                stream_.reset();
                return false;
            }
            if (n <= 0)
                continue;
        }
        ImapResponse r;
        if (!read_response(r, nullptr, err))
            return false;
        if (r.kind == ImapResponse::Kind::untagged && r.status == ImapResponse::Status::bye) {
            err = "IMAP server ended the connection: " + printable(r.text);
            stream_.reset();
            return false;
        }
        if (r.kind != ImapResponse::Kind::untagged) {
            err = "unexpected response during IDLE";
            stream_.reset();
            return false;
        }
        changed |= r.name == "EXISTS";
    }
    if (!send("DONE\r\n", err))
        return false;
    for (;;) {
        ImapResponse r;
        if (!read_response(r, nullptr, err))
            return false;
        if (r.kind == ImapResponse::Kind::tagged && r.tag == tag)
            return r.status == ImapResponse::Status::ok || (err = "IDLE ended with " + answer(r), false);
        changed |= r.name == "EXISTS";
    }
}

void ImapClient::logout()
{
    if (!stream_)
        return;
    ImapResponse t;
    std::string err;
    run("LOGOUT", t, nullptr, err);
    stream_.reset();
}

} // namespace mm
