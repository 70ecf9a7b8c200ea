// session.cpp - the POP3 server side of mm-fetcher (RFC 1939 incl. APOP, CAPA and
// RESP-CODES from RFC 2449, AUTH PLAIN/LOGIN passed through per RFC 5034, STLS per
// RFC 2595): an explicit state machine with a command table, strict numbers, capped
// lines and a bad-command limit. Where a message's octets come from is retrieve.h's
// business; this file only sends them. Config keys come in through SessionConfig.
#include "fetcher/session.h"

#include "fetcher/pop3_parse.h"
#include "fetcher/retrieve.h"
#include "core/log.h"
#include "core/util.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <sys/socket.h>
#include <sys/time.h>
#include <thread>
#include <unistd.h>

namespace mm {

namespace {

using pop3::Verb;

enum class State { authorization, got_user, transaction, closed };

constexpr unsigned bit(State s) { return 1u << static_cast<unsigned>(s); }
constexpr unsigned kAuth = bit(State::authorization) | bit(State::got_user);
constexpr unsigned kTrans = bit(State::transaction);

// Which state allows which command (RFC 1939 4-7, RFC 2449 5).
struct Allowed {
    Verb verb;
    unsigned states;
};
constexpr Allowed kTable[] = {
    {Verb::capa, kAuth | kTrans},
    {Verb::quit, kAuth | kTrans},
    {Verb::user, kAuth},
    {Verb::pass, bit(State::got_user)},
    {Verb::apop, kAuth},
    {Verb::auth, kAuth},
    {Verb::stls, kAuth},
    {Verb::stat, kTrans},
    {Verb::list, kTrans},
    {Verb::uidl, kTrans},
    {Verb::retr, kTrans},
    {Verb::top, kTrans},
    {Verb::dele, kTrans},
    {Verb::rset, kTrans},
    {Verb::noop, kTrans},
};

bool allowed(Verb v, State s)
{
    for (const auto& a : kTable)
        if (a.verb == v)
            return (a.states & bit(s)) != 0;
    return false;
}

constexpr unsigned kMaxBadCommands = 10;

class Session {
public:
    Session(int fd, const SessionConfig& cfg, const std::atomic<bool>& stop, bool implicit_tls)
        : client_(fd), cfg_(cfg), stop_(stop), implicit_tls_(implicit_tls), retrieve_(up_, cfg_.sync) {}
    void run();

private:
    void reply(const std::string& line) { client_.write(line + "\r\n"); }
    bool bad(const std::string& why);
    void dispatch(const pop3::Command& c);
    void do_pass(const std::string& pass);
    void do_apop(const pop3::Command& c);
    void do_auth(const pop3::Command& c);
    void do_stls();
    void do_capa();
    bool upstream_ready();
    void login_refused(Reply r);
    void finish_login();
    void do_quit();
    const ShownMessage* message(const std::string& arg);
    void send_file(const ShownMessage& m, bool top, uint64_t body_lines);
    int64_t send_octets(MessageReader& reader, bool top, uint64_t body_lines);

    Stream client_;
    const SessionConfig& cfg_;
    const std::atomic<bool>& stop_;
    bool implicit_tls_;
    std::string timestamp_;   // upstream's APOP timestamp, passed on in our greeting
    State state_ = State::authorization;
    unsigned bad_ = 0;
    std::string user_;
    Upstream up_;
    std::vector<ShownMessage> shown_;   // client number n is shown_[n - 1]
    SyncStats stats_;
    uint64_t sent_bytes_ = 0;
    unsigned deleted_upstream_ = 0;
    std::string result_ = "disconnected";
    Retriever retrieve_;   // the octets of shown_ messages, wherever they are kept
};

bool Session::bad(const std::string& why)
{
    ++bad_;
    if (bad_ > kMaxBadCommands) {
        reply("-ERR too many bad commands");
        result_ = "too many bad commands";
        state_ = State::closed;
        return false;
    }
    reply("-ERR " + why);
    return true;
}

const ShownMessage* Session::message(const std::string& arg)
{
    uint64_t n = 0;
    if (!pop3::parse_msgnum(arg, shown_.size(), n)) {
        bad("no such message");
        return nullptr;
    }
    const ShownMessage& m = shown_[n - 1];
    if (m.deleted) {
        reply("-ERR message " + std::to_string(n) + " already deleted");
        return nullptr;
    }
    return &m;
}

void Session::send_file(const ShownMessage& m, bool top, uint64_t body_lines)
{
    const std::string status = top ? std::string("+OK top of message follows\r\n")
                                   : "+OK " + std::to_string(m.size) + " octets\r\n";
    if (m.source == ShownMessage::Source::as_is) {
        std::string cmd = (top ? "TOP " : "RETR ") + std::to_string(m.upstream_num) +
                          (top ? " " + std::to_string(body_lines) : std::string());
        Reply r = up_.relay(cmd, status, client_, sent_bytes_);
        if (r == Reply::err) {
            reply("-ERR [SYS/TEMP] message unavailable");
        } else if (r == Reply::io) {
            // Half an answer already went out: only hanging up tells the client.
            log_warning("upstream broke off relaying message " + std::to_string(m.upstream_num));
            result_ = "upstream lost";
            state_ = State::closed;
        }
        return;
    }
    std::string why;
    std::unique_ptr<MessageReader> reader = retrieve_.open(m, user_, why);
    if (!reader) {
        if (!why.empty())
            log_warning("message " + std::to_string(m.upstream_num) + ": " + printable(why));
        reply("-ERR [SYS/TEMP] message unavailable");
        return;
    }
    client_.put(status);
    if (send_octets(*reader, top, body_lines) < 0) {
        // Half an answer already went out (a growing message whose media failed
        // a check): only hanging up tells the client.
        log_warning("message " + std::to_string(m.upstream_num) + " cut short: " +
                    printable(reader->why().empty() ? "rebuilt file shorter than listed" : reader->why()));
        client_.flush();
        result_ = "media failed";
        state_ = State::closed;
    }
}

/// Sends a message's octets from `reader`, dot-stuffed, at most its limit()
/// (TOP: the headers and body_lines lines), then the final dot. Returns how
/// many it read, or -1 when the reader failed, or (exact()) ended before its
/// limit: then the final dot is not sent, and the caller hangs up.
int64_t Session::send_octets(MessageReader& reader, bool top, uint64_t body_lines)
{
    const uint64_t limit = reader.limit();
    DotEncoder dots;
    pop3::TopCut cut(body_lines);
    auto emit = [this](const char* q, size_t k) { client_.put(q, k); };
    char buf[65536];
    uint64_t pos = 0;
    while (pos < limit && !cut.done()) {
        ssize_t got = reader.read(buf, static_cast<size_t>(std::min<uint64_t>(sizeof buf, limit - pos)), pos);
        if (got < 0)
            return -1;
        if (got == 0)
            break;
        size_t n = static_cast<size_t>(got);
        pos += n;
        if (top)
            n = cut.take(buf, n);
        dots.feed(buf, n, emit);
        sent_bytes_ += n;
    }
    if (reader.exact() && pos < limit && !cut.done())
        return -1;
    std::string end;
    dots.finish(end);
    client_.put(end);
    client_.flush();
    return static_cast<int64_t>(pos);
}

bool Session::upstream_ready()
{
    if (up_.connected())
        return true;
    std::string err;
    if (!up_.connect(cfg_.upstream, err)) {
        log_warning("upstream: " + printable(err));
        reply("-ERR [SYS/TEMP] mail server unavailable");
        return false;
    }
    return true;
}

void Session::login_refused(Reply r)
{
    // Upstream's verdict passed on as a resp-code, without its text. The upstream
    // session stays (RFC 1939 allows another try) unless the line broke.
    state_ = State::authorization;
    reply(r == Reply::err ? "-ERR [AUTH] authentication failed" : "-ERR [SYS/TEMP] mail server unavailable");
    bad_ += r == Reply::err ? 1 : 0;
}

void Session::do_pass(const std::string& pass)
{
    state_ = State::authorization;
    if (!upstream_ready())
        return;
    std::string text;
    Reply r = up_.command("USER " + user_, text);
    if (r == Reply::io) {
        // The connection made at our greeting may have idled out upstream: one
        // fresh attempt (USER/PASS carry no timestamp, unlike APOP).
        up_.close();
        if (!upstream_ready())
            return;
        r = up_.command("USER " + user_, text);
    }
    if (r == Reply::ok)
        r = up_.command("PASS " + pass, text);
    if (r != Reply::ok) {
        login_refused(r);
        return;
    }
    finish_login();
}

void Session::do_apop(const pop3::Command& c)
{
    // The digest covers upstream's timestamp, which our greeting repeated: the
    // client's answer goes upstream unchanged, the secret never passes through us.
    if (timestamp_.empty() || !up_.connected()) {
        bad("APOP not available; use USER and PASS");
        return;
    }
    const std::string& digest = c.args[1];
    bool hex = digest.size() == 32;
    for (char ch : digest)
        hex = hex && ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'));
    if (!hex) {
        bad("APOP digest must be 32 lowercase hex digits");
        return;
    }
    user_ = c.args[0];
    std::string text;
    Reply r = up_.command("APOP " + user_ + " " + digest, text);
    if (r != Reply::ok) {
        login_refused(r);
        return;
    }
    finish_login();
}

void Session::do_auth(const pop3::Command& c)
{
    if (!upstream_ready())
        return;
    std::vector<std::string> mechs = sasl_mechanisms(up_.capabilities());
    if (c.args.empty()) {
        // The listing form some clients probe with (RFC 1734 era).
        std::string out = "+OK\r\n";
        for (const auto& m : mechs)
            out += m + "\r\n";
        client_.write(out + ".\r\n");
        return;
    }
    std::string mech = c.args[0];
    for (char& ch : mech)
        ch = static_cast<char>(ch >= 'a' && ch <= 'z' ? ch - 'a' + 'A' : ch);
    if (std::find(mechs.begin(), mechs.end(), mech) == mechs.end()) {
        bad("unsupported SASL mechanism");
        return;
    }
    // Who logs in, for the cache key: PLAIN's authzid or authcid, LOGIN's first answer.
    auto learn_user = [&](const std::string& b64, bool first) {
        std::string raw;
        if (!base64_decode(b64, raw))
            return;
        if (mech == "LOGIN" && first) {
            user_ = raw;
        } else if (mech == "PLAIN") {
            size_t a = raw.find('\0');
            size_t b = a == std::string::npos ? a : raw.find('\0', a + 1);
            if (b != std::string::npos)
                user_ = a > 0 ? raw.substr(0, a) : raw.substr(a + 1, b - a - 1);
        }
    };
    user_.clear();
    std::string line = "AUTH " + mech, text;
    unsigned answers = 0;
    if (c.args.size() == 2) {
        line += " " + c.args[1];
        if (c.args[1] != "=")
            learn_user(c.args[1], answers == 0);
        ++answers;
    }
    for (unsigned round = 0; round < 8; ++round) {
        Reply r = up_.sasl_step(line, text);
        if (r == Reply::ok) {
            if (user_.empty() || user_.size() > 255 || user_.find_first_of(std::string("\0\r\n", 3)) != std::string::npos) {
                // Without a clean identity there is no cache key to keep mail apart.
                up_.close();
                reply("-ERR [AUTH] cannot tell which user logged in");
                return;
            }
            finish_login();
            return;
        }
        if (r != Reply::more) {
            login_refused(r);
            return;
        }
        reply("+ " + text);
        std::string answer;
        LineResult lr = client_.read_line(answer, pop3::kMaxCommandLine);
        if (lr != LineResult::ok) {
            up_.close();
            state_ = State::closed;
            return;
        }
        if (answer == "*") {
            // The client cancels (RFC 5034 4): upstream answers -ERR.
            Reply rr = up_.sasl_step("*", text);
            reply("-ERR authentication cancelled");
            if (rr == Reply::io)
                up_.close();
            return;
        }
        learn_user(answer, answers == 0);
        ++answers;
        line = answer;
    }
    up_.close();
    reply("-ERR [AUTH] too many SASL rounds");
}

void Session::do_stls()
{
    if (!cfg_.tls || client_.tls()) {
        bad(client_.tls() ? "already using TLS" : "STLS not available");
        return;
    }
    reply("+OK begin TLS negotiation");
    std::string err;
    if (!client_.accept_tls(cfg_.tls, err)) {
        log_warning("client " + printable(err));
        result_ = "TLS failed";
        state_ = State::closed;
        return;
    }
    // RFC 2595 4: forget what the client said before; it starts over.
    user_.clear();
    state_ = State::authorization;
}

void Session::do_capa()
{
    std::string out = "+OK capability list follows\r\nUSER\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n";
    if (state_ != State::transaction) {
        std::vector<std::string> mechs = up_.connected() ? sasl_mechanisms(up_.capabilities()) : std::vector<std::string>{};
        if (!mechs.empty()) {
            out += "SASL";
            for (const auto& m : mechs)
                out += " " + m;
            out += "\r\n";
        }
        if (cfg_.tls && !client_.tls())
            out += "STLS\r\n";
    }
    client_.write(out + "IMPLEMENTATION MediaMail\r\n.\r\n");
}

void Session::finish_login()
{
    std::string err;
    shown_.clear();
    stats_ = {};
    // A video mailed a moment ago is often seconds from verified: wait a little
    // (fetcher.login_wait) so it shows in this poll; beyond that, the next one.
    // Meanwhile its re-insertion follows the download (SyncOptions::follow_until).
    SyncOptions opt = cfg_.sync;
    auto until = std::chrono::steady_clock::now() + opt.login_wait;
    opt.follow_until = until;
    Downloader* dl = opt.downloader;
    Downloader::Progress seen = dl ? dl->progress() : Downloader::Progress{};
    if (!synchronise(up_, user_, opt, shown_, stats_, err)) {
        log_warning("sync user=" + printable(user_) + ": " + printable(err));
        up_.close();
        reply("-ERR [SYS/TEMP] cannot read mailbox");
        return;
    }
    while (stats_.pending > 0 && std::chrono::steady_clock::now() < until && !stop_.load()) {
        // Woken when a download ends; the second's cap is for stop_.
        auto tick = std::min(until, std::chrono::steady_clock::now() + std::chrono::seconds(1));
        if (dl)
            seen = dl->wait_progress(seen, false, tick);
        else
            std::this_thread::sleep_until(tick);
        std::vector<ShownMessage> again;
        SyncStats st;
        if (!synchronise(up_, user_, opt, again, st, err))
            break;
        st.fetched_bytes += stats_.fetched_bytes;
        shown_.swap(again);
        stats_ = st;
    }
    state_ = State::transaction;
    reply("+OK " + std::to_string(shown_.size()) + " messages ready");
}

void Session::do_quit()
{
    if (state_ != State::transaction) {
        reply("+OK bye");
        result_ = "quit";
        state_ = State::closed;
        return;
    }
    // UPDATE: deletions go upstream only now, so a dropped connection deletes nothing.
    bool ok = true;
    std::string text;
    for (const auto& m : shown_) {
        if (!m.deleted)
            continue;
        if (up_.command("DELE " + std::to_string(m.upstream_num), text) == Reply::ok)
            ++deleted_upstream_;
        else
            ok = false;
    }
    if (up_.command("QUIT", text) != Reply::ok)
        ok = false;
    up_.close();
    reply(ok ? "+OK bye" : "-ERR [SYS/TEMP] some deleted messages not removed");
    result_ = ok ? "quit" : "update failed";
    state_ = State::closed;
}

void Session::dispatch(const pop3::Command& c)
{
    if (!allowed(c.verb, state_)) {
        bad(std::string(pop3::verb_name(c.verb)) + " not allowed now");
        return;
    }
    switch (c.verb) {
    case Verb::capa:
        do_capa();
        return;
    case Verb::quit:
        do_quit();
        return;
    case Verb::user:
        user_ = c.args[0];
        state_ = State::got_user;
        reply("+OK send PASS");
        return;
    case Verb::pass:
        do_pass(c.args[0]);
        return;
    case Verb::apop:
        do_apop(c);
        return;
    case Verb::auth:
        do_auth(c);
        return;
    case Verb::stls:
        do_stls();
        return;
    case Verb::stat: {
        uint64_t count = 0, octets = 0;
        for (const auto& m : shown_)
            if (!m.deleted) {
                ++count;
                octets += m.size;
            }
        reply("+OK " + std::to_string(count) + " " + std::to_string(octets));
        return;
    }
    case Verb::list:
    case Verb::uidl: {
        bool list = c.verb == Verb::list;
        auto entry = [&](size_t i) {
            return std::to_string(i + 1) + " " + (list ? std::to_string(shown_[i].size) : shown_[i].uidl);
        };
        if (!c.args.empty()) {
            if (const ShownMessage* m = message(c.args[0]))
                reply("+OK " + entry(static_cast<size_t>(m - shown_.data())));
            return;
        }
        client_.put(std::string("+OK\r\n"));
        for (size_t i = 0; i < shown_.size(); ++i)
            if (!shown_[i].deleted)
                client_.put(entry(i) + "\r\n");
        client_.put(std::string(".\r\n"));
        client_.flush();
        return;
    }
    case Verb::retr:
        if (const ShownMessage* m = message(c.args[0]))
            send_file(*m, false, 0);
        return;
    case Verb::top: {
        uint64_t k = 0;
        const ShownMessage* m = message(c.args[0]);
        if (!m)
            return;
        if (!pop3::parse_count(c.args[1], k)) {
            bad("bad line count");
            return;
        }
        send_file(*m, true, k);
        return;
    }
    case Verb::dele:
        if (const ShownMessage* m = message(c.args[0])) {
            const_cast<ShownMessage*>(m)->deleted = true;
            reply("+OK message deleted");
        }
        return;
    case Verb::rset:
        for (auto& m : shown_)
            m.deleted = false;
        reply("+OK");
        return;
    case Verb::noop:
        reply("+OK");
        return;
    }
}

void Session::run()
{
    timeval tv{static_cast<time_t>(cfg_.client_idle.count()), 0};
    setsockopt(client_.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(client_.fd(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (implicit_tls_) {
        std::string err;
        if (!client_.accept_tls(cfg_.tls, err)) {
            log_info("client " + printable(err));
            return;
        }
    }
    // Connect upstream now: its greeting's APOP timestamp goes into ours, so that
    // a digest the client computes is the one upstream expects.
    std::string err;
    if (up_.connect(cfg_.upstream, err))
        timestamp_ = apop_timestamp(up_.greeting());
    else
        log_warning("upstream: " + printable(err));
    reply("+OK MediaMail fetcher ready" + (timestamp_.empty() ? std::string() : " " + timestamp_));
    std::string line;
    while (state_ != State::closed && !stop_.load()) {
        LineResult r = client_.read_line(line, pop3::kMaxCommandLine);
        if (r == LineResult::eof || r == LineResult::error)
            break;
        if (r == LineResult::too_long) {
            if (!bad("line too long"))
                break;
            continue;
        }
        pop3::Command c = pop3::parse_command(line);
        if (c.error != pop3::ParseError::none) {
            if (!bad(pop3::parse_error_text(c.error)))
                break;
            continue;
        }
        dispatch(c);
    }
    if (stop_.load() && state_ != State::closed) {
        reply("-ERR [SYS/TEMP] shutting down");
        result_ = "shutdown";
    }
    up_.close();
    if (state_ == State::closed) {
        // We end the session (QUIT, too many bad commands): a pipelining client
        // may have sent more. Closing with unread input makes the kernel send a
        // reset that can overtake our last replies, so stop writing, then drain
        // briefly (bounded in bytes and time) before the close.
        client_.flush();
        ::shutdown(client_.fd(), SHUT_WR);
        timeval drain{1, 0};
        setsockopt(client_.fd(), SOL_SOCKET, SO_RCVTIMEO, &drain, sizeof drain);
        char buf[4096];
        size_t total = 0;
        ssize_t n;
        while (total < 65536 && (n = ::recv(client_.fd(), buf, sizeof buf, 0)) > 0)
            total += static_cast<size_t>(n);
    }
    unsigned deleted = 0;
    for (const auto& m : shown_)
        deleted += m.deleted ? 1 : 0;
    // One line per session; never the password, the user name escaped.
    log_info("session user=" + (user_.empty() ? std::string("-") : printable(user_, 64)) +
             " shown=" + std::to_string(stats_.shown) + " held=" + std::to_string(stats_.held) +
             " fetched=" + std::to_string(stats_.fetched_bytes) + " sent=" + std::to_string(sent_bytes_) +
             " deleted=" + std::to_string(deleted_upstream_) + " result=" + result_);
}

} // namespace

void run_session(int fd, const SessionConfig& cfg, const std::atomic<bool>& stop, bool implicit_tls)
{
    Session s(fd, cfg, stop, implicit_tls);
    s.run();
}

} // namespace mm
