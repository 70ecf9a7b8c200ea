// proxy.cpp - the before-queue filter (see proxy.h). One session: our greeting,
// then commands relayed to the next hop as they come; DATA answered here with 354,
// taken in through an Intake (spooled, media decoded as it arrives), and only
// when the rewrite is done and the media durable does the next hop get DATA
// and the new message. Its final reply is the client's. Anything that goes
// wrong before that is a 4xx for the client and RSET for the next hop, so a
// message is either handed on whole or stays with the client.
//
// A rewritten message goes to each envelope recipient (each group of RCPTs
// with the same normalized address) as its own copy, whose links carry that
// recipient's own token: one transaction per recipient on the same next-hop
// connection, all before the client hears its one reply to DATA. SMTP has no
// per-recipient answer after DATA, so the client gets the worst: a copy that
// failed while others were taken makes it 451 and the client sends the whole
// message again (duplicates, never losses). Above milter.max_recipient_copies
// recipients, or when the copies cannot be made safely, one shared copy goes
// with the item token (receipts with it count for nobody, docs/postfix.md).
// Reads milter.max_recipient_copies too.
#include "milter/proxy.h"

#include "milter/intake.h"
#include "milter/smtp.h"
#include "store/index.h"

#include "core/address.h"
#include "core/log.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <optional>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <poll.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace mm {

namespace {

using smtp::Reply;
using smtp::ReadResult;

constexpr size_t kIntakeChunk = 64 * 1024;   // message bytes handed to the Intake at once

const char kNextHopLost[] = "421 4.3.0 MediaMail filter: the next mail server did not answer, try again later\r\n";

class Session {
public:
    Session(int fd, const MilterSettings& s) : s_(s), client_(fd), intake_(s, true) {}
    void run();

private:
    bool connect_next();
    bool relay(const std::string& line, const std::string& verb);
    bool data();
    bool send_file(const std::string& path, Reply& final_reply, const Substitutions* subs = nullptr);
    bool send_copies(const std::string& path, Reply& final_reply, bool& split);
    void reset_next();
    void forget_envelope();
    void log_outcome(const Verdict& v, const std::string& next_reply, const std::string& queue_id = "");

    const MilterSettings& s_;
    Stream client_;
    std::unique_ptr<Stream> next_;
    Intake intake_;
    bool mail_ = false;     // a MAIL FROM the next hop accepted
    unsigned rcpts_ = 0;    // RCPT TOs it accepted since
    // The accepted envelope as sent, to replay it once per recipient.
    std::string mail_line_;
    std::vector<std::pair<std::string, std::string>> rcpt_lines_;   // line, normalized address
    // XFORWARD (Postfix) lasts one transaction: replayed before each copy's MAIL.
    std::vector<std::string> xforward_lines_;
};

std::string next_name(const MilterSettings& s)
{
    return s.proxy_next.host + ":" + std::to_string(s.proxy_next.port);
}

/// The first line of a reply, for the log.
std::string first_line(const Reply& r)
{
    return std::to_string(r.code) + (r.lines.empty() ? "" : " " + printable(r.lines[0], 200));
}

/// The next hop's session, opened at the client's first command that needs it:
/// a client that only connects (a health check) costs the next hop nothing.
/// False, with 421 for the client, when it cannot be had.
bool Session::connect_next()
{
    std::string err;
    int fd = connect_tcp(s_.proxy_next.host, s_.proxy_next.port, s_.proxy_timeout, err);
    if (fd < 0) {
        log_error("milter.proxy_next = " + next_name(s_) + ": " + err);
        client_.write(kNextHopLost, sizeof kNextHopLost - 1);
        return false;
    }
    next_ = std::make_unique<Stream>(fd);
    Reply greeting;
    if (smtp::read_reply(*next_, greeting) != ReadResult::ok || greeting.code != 220) {
        log_error("milter.proxy_next = " + next_name(s_) + ": no 220 greeting (" + first_line(greeting) + ")");
        client_.write(kNextHopLost, sizeof kNextHopLost - 1);
        next_.reset();
        return false;
    }
    return true;
}

void Session::run()
{
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    if (!client_.write("220 " + printable(host, 200) + " ESMTP MediaMail filter\r\n"))
        return;
    std::string line;
    for (;;) {
        LineResult lr = client_.read_line(line, smtp::kMaxCommandLine);
        if (lr == LineResult::eof || lr == LineResult::error)
            break;
        if (lr == LineResult::too_long) {
            if (!client_.write("500 5.5.2 Error: line too long\r\n"))
                break;
            continue;
        }
        std::string verb = smtp::verb(line);
        if (verb == "QUIT" && !next_) {
            client_.write("221 2.0.0 Bye\r\n");
            return;
        }
        if (verb == "DATA") {
            if (!data())
                break;
            continue;
        }
        if (verb == "BDAT" || verb == "STARTTLS") {
            // Not offered in our EHLO reply: CHUNKING and TLS do not pass a line relay.
            if (!client_.write("502 5.5.1 Error: command not implemented\r\n"))
                break;
            continue;
        }
        if ((!next_ && !connect_next()) || !relay(line, verb) || verb == "QUIT")
            return;
    }
    // The client went away without QUIT: so does the next hop's session, and
    // an open transaction there ends with it.
    if (next_)
        next_->write("QUIT\r\n");
}

/// One command to the next hop, its reply back to the client. False when either side is gone.
bool Session::relay(const std::string& line, const std::string& verb)
{
    Reply r;
    if (!next_->write(line + "\r\n") || smtp::read_reply(*next_, r) != ReadResult::ok) {
        log_error("next hop " + next_name(s_) + " lost after " + printable(verb, 20));
        client_.write(kNextHopLost, sizeof kNextHopLost - 1);
        return false;
    }
    if (verb == "EHLO")
        smtp::filter_ehlo(r);
    if (r.positive()) {
        if (verb == "MAIL") {
            intake_.begin();
            // Postfix's XFORWARD carries no SASL login: quotas go by envelope sender.
            std::string from;
            if (smtp::path_argument(line, from))
                intake_.sender("", from);
            mail_ = true;
            rcpts_ = 0;
            mail_line_ = line;
            rcpt_lines_.clear();
        } else if (verb == "RCPT") {
            std::string address;
            if (smtp::path_argument(line, address)) {
                intake_.recipient(address);
                rcpt_lines_.emplace_back(line, normalize_address(address));
            } else {
                rcpt_lines_.emplace_back(line, "");   // no token for it: the shared copy
            }
            ++rcpts_;
        } else if (verb == "XFORWARD") {
            if (xforward_lines_.size() < 16)
                xforward_lines_.push_back(line);
        } else if (verb == "RSET" || verb == "EHLO" || verb == "HELO") {
            forget_envelope();
        }
    }
    return client_.write(r.wire());
}

/// After a message the next hop did not get: its envelope is dropped there too.
void Session::reset_next()
{
    Reply r;
    if (!next_->write("RSET\r\n") || smtp::read_reply(*next_, r) != ReadResult::ok)
        log_warning("next hop " + next_name(s_) + " did not answer RSET");
    forget_envelope();
}

void Session::forget_envelope()
{
    intake_.reset();
    mail_ = false;
    rcpts_ = 0;
    mail_line_.clear();
    rcpt_lines_.clear();
    xforward_lines_.clear();
}

/// The queue id in the next hop's reply to the message, "" if it names none:
/// Postfix says "250 2.0.0 Ok: queued as 4Zx1Yk2Lm7z3".
std::string queued_as(const Reply& r)
{
    static constexpr std::string_view kQueuedAs = "queued as ";
    if (r.code != 250 || r.lines.empty())
        return "";
    const std::string& line = r.lines.back();
    size_t at = line.find(kQueuedAs);
    if (at == std::string::npos)
        return "";
    std::string id;
    for (size_t i = at + kQueuedAs.size(); i < line.size() && id.size() < kMaxQueueIdBytes; ++i) {
        char c = line[i];
        if (!std::isalnum(static_cast<unsigned char>(c)))
            break;   // Postfix queue ids are letters and digits
        id += c;
    }
    return id;
}

void Session::log_outcome(const Verdict& v, const std::string& next_reply, const std::string& queue_id)
{
    std::string more = v.eom_ms >= 0 ? " (end of message " + std::to_string(v.eom_ms) + " ms)" : "";
    log_info("filter: " + v.action + ", " + v.sizes + " bytes, " + std::to_string(intake_.elapsed_ms()) + " ms" + more +
             (next_reply.empty() ? "" : "; next hop: " + next_reply) + kv("queue_id", queue_id) +
             intake_.trace_fields());
}

/// DATA: the message in, the rewrite, the result on. False when a side is gone.
bool Session::data()
{
    if (!mail_)
        return client_.write("503 5.5.1 Error: need MAIL command\r\n");
    if (rcpts_ == 0)
        return client_.write("554 5.5.1 Error: no valid recipients\r\n");
    if (!client_.write("354 End data with <CR><LF>.<CR><LF>\r\n"))
        return false;

    smtp::DotDecoder dots;
    RawIntake raw(intake_);
    std::string bytes;
    bytes.reserve(kIntakeChunk + 16384);
    while (!dots.done()) {
        std::string_view in = client_.peek_buffer();
        if (in.empty()) {
            log_warning("filter: client lost during DATA after " + std::to_string(intake_.size()) + " bytes");
            intake_.reset();
            return false;
        }
        client_.consume(dots.feed(in.data(), in.size(), bytes));
        if (bytes.size() >= kIntakeChunk || dots.done()) {
            raw.feed(bytes.data(), bytes.size());
            bytes.clear();
        }
    }
    raw.finish();

    Verdict v = intake_.finish(nullptr);
    std::string path;
    switch (v.kind) {
    case Verdict::Kind::fail:
        if (s_.on_error == OnError::accept && intake_.failed_why().empty()) {
            // The spool is whole (the rewrite failed, not the spool): on it goes unchanged.
            log_error("filter: " + v.text + "; passing the message unchanged (milter.on_error = accept)");
            v.action = "passed (error)";
            path = intake_.spool_path();
            break;
        }
        log_error("filter: " + v.text + "; answering 451");
        reset_next();
        return client_.write("451 4.3.0 MediaMail could not store an attachment, try again later\r\n");
    case Verdict::Kind::reject:
        log_outcome(v, "");
        reset_next();
        return client_.write("552 5.3.4 " + v.text + "\r\n");
    case Verdict::Kind::over_quota:
        log_outcome(v, "");
        reset_next();
        return client_.write("452 4.3.1 " + v.text + "\r\n");
    case Verdict::Kind::pass:
        path = intake_.spool_path();
        break;
    case Verdict::Kind::detached:
        path = v.out_path;
        break;
    }
    Reply final_reply;
    bool split = false;
    bool sent = v.kind == Verdict::Kind::detached ? send_copies(path, final_reply, split)
                                                   : send_file(path, final_reply);
    if (!sent) {
        log_error("filter: next hop " + next_name(s_) + " lost while taking the message");
        client_.write(kNextHopLost, sizeof kNextHopLost - 1);
        return false;
    }
    if (split && final_reply.positive())
        v.action += ", one copy per recipient";
    // The reply first: once the next hop has queued the message, every moment
    // before the client hears so is one in which a crash makes it send again.
    bool told = client_.write(final_reply.wire());
    const std::string qid = queued_as(final_reply);
    if (v.kind == Verdict::Kind::detached)
        intake_.record_trace(qid);
    log_outcome(v, first_line(final_reply), qid);
    forget_envelope();
    return told;
}

/// The rewritten message at `path` to the next hop: each recipient group its
/// own copy when it can be made (see the top of this file), else the shared
/// one on the envelope already there. `split` says which. final_reply is the
/// answer for the client. False when the connection broke.
bool Session::send_copies(const std::string& path, Reply& final_reply, bool& split)
{
    split = false;
    const RecipientCopies& copies = intake_.copies();
    // Groups of RCPT lines by normalized address, in the client's order.
    std::vector<std::pair<std::string, std::vector<const std::string*>>> groups;
    std::vector<const Substitutions*> subs;
    std::string why = copies.usable() ? "" : copies.why();
    for (const auto& [line, address] : rcpt_lines_) {
        if (!why.empty())
            break;
        const Substitutions* own = address.empty() ? nullptr : copies.for_address(address);
        if (!own) {
            why = "a recipient without its own token";
            break;
        }
        auto g = std::find_if(groups.begin(), groups.end(), [&](const auto& x) { return x.first == address; });
        if (g != groups.end()) {
            g->second.push_back(&line);
        } else {
            groups.push_back({address, {&line}});
            subs.push_back(own);
        }
    }
    if (why.empty() && groups.size() > s_.max_recipient_copies)
        why = std::to_string(groups.size()) + " recipients, over milter.max_recipient_copies";
    if (!why.empty()) {
        log_info("filter: one shared copy for every recipient (" + why + "); their receipts will not count");
        return send_file(path, final_reply);
    }
    split = true;
    if (groups.size() == 1)
        return send_file(path, final_reply, subs[0]);   // the envelope is already there

    // The envelope the client gave goes; each group gets its own.
    Reply r;
    if (!next_->write("RSET\r\n") || smtp::read_reply(*next_, r) != ReadResult::ok)
        return false;
    unsigned taken = 0;
    std::optional<Reply> failed;
    for (size_t i = 0; i < groups.size(); ++i) {
        for (const auto& x : xforward_lines_) {
            Reply xr;   // its answer changes nothing: the copy goes either way
            if (!next_->write(x + "\r\n") || smtp::read_reply(*next_, xr) != ReadResult::ok)
                return false;
        }
        Reply got;
        bool ok = next_->write(mail_line_ + "\r\n") && smtp::read_reply(*next_, got) == ReadResult::ok;
        if (!ok)
            return false;
        bool any = false;
        if (got.positive()) {
            for (const std::string* line : groups[i].second) {
                Reply rr;
                if (!next_->write(*line + "\r\n") || smtp::read_reply(*next_, rr) != ReadResult::ok)
                    return false;
                if (rr.positive())
                    any = true;
                else
                    got = rr;
            }
            if (any && !send_file(path, got, subs[i]))
                return false;
        }
        if (any && got.positive()) {
            ++taken;
            final_reply = got;
        } else {
            log_warning("filter: next hop refused the copy for " + printable(groups[i].first, 80) + ": " +
                        first_line(got));
            if (!failed)
                failed = got;
            if (!next_->write("RSET\r\n") || smtp::read_reply(*next_, r) != ReadResult::ok)
                return false;
        }
    }
    if (!failed)
        return true;
    if (taken == 0) {
        final_reply = *failed;   // nobody has it: the next hop's own answer
        return true;
    }
    // Some have it, some not: the client must send it again (duplicates for
    // those that have it, but no recipient goes without).
    final_reply = Reply{};
    final_reply.code = 451;
    final_reply.lines = {"4.3.0 MediaMail: the next mail server took the message for only " + std::to_string(taken) +
                         " of " + std::to_string(groups.size()) + " recipients, try again later"};
    return true;
}

/// DATA to the next hop and the message at `path`, dot-stuffed, through
/// `subs` when given. final_reply is its answer to DATA when that is not 354,
/// else its answer to the message. False when the connection broke.
bool Session::send_file(const std::string& path, Reply& final_reply, const Substitutions* subs)
{
    if (!next_->write("DATA\r\n") || smtp::read_reply(*next_, final_reply) != ReadResult::ok)
        return false;
    if (final_reply.code != 354)
        return true;
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        // Nothing sent yet but DATA: dropping the connection is the only way
        // to abort it, and the client is told to come back.
        log_error("filter: cannot open " + path + ": " + strerror(errno));
        return false;
    }
    DotEncoder dots;
    std::optional<Substituter> sub;
    if (subs)
        sub.emplace(*subs);
    std::string buf(kIntakeChunk, '\0'), out, swapped;
    out.reserve(kIntakeChunk * 2);
    bool ok = true;
    for (;;) {
        ssize_t n = read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ok = false;
            break;
        }
        if (n == 0)
            break;
        out.clear();
        if (sub) {
            swapped.clear();
            sub->feed(buf.data(), static_cast<size_t>(n), swapped);
            dots.feed(swapped.data(), swapped.size(), out);
        } else {
            dots.feed(buf.data(), static_cast<size_t>(n), out);
        }
        if (!next_->write(out)) {
            ok = false;
            break;
        }
    }
    close(fd);
    if (!ok)
        return false;
    out.clear();
    if (sub) {
        swapped.clear();
        sub->finish(swapped);
        dots.feed(swapped.data(), swapped.size(), out);
    }
    dots.finish(out);
    return next_->write(out) && smtp::read_reply(*next_, final_reply) == ReadResult::ok;
}

} // namespace

void serve_proxy(int listen_fd, const MilterSettings& settings, const std::atomic<bool>& stop)
{
    static std::mutex mu;
    static unsigned active = 0;
    while (!stop.load()) {
        pollfd p{listen_fd, POLLIN, 0};
        if (poll(&p, 1, 500) <= 0)
            continue;
        int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        {
            std::lock_guard<std::mutex> lock(mu);
            if (active >= settings.proxy_max_clients) {
                static const char busy[] = "421 4.3.2 MediaMail filter busy, try again later\r\n";
                (void)!send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL);
                close(fd);
                log_warning("filter: refused a session: milter.proxy_max_clients reached");
                continue;
            }
            ++active;
        }
        timeval tv{static_cast<time_t>(settings.proxy_timeout.count()), 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        std::thread([fd, &settings] {
            try {
                Session(fd, settings).run();   // the Stream closes fd
            } catch (const std::exception& e) {
                log_error(std::string("filter: session ended by exception: ") + e.what());
            }
            std::lock_guard<std::mutex> lock(mu);
            --active;
        }).detach();
    }
}

} // namespace mm
