// test_pop3.cpp - the POP3 dialogue (fetcher/pop3_parse.h, fetcher/upstream.h):
// command lines and message numbers (RFC 1939, RFC 2449 line limit), TOP's cut, and
// the upstream client against scripted servers. Mostly bad input.
#include <doctest/doctest.h>

#include "fetcher/pop3_parse.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cstring>
#include <netinet/in.h>
#include <string>
#include <vector>

using namespace mm;
using namespace mm::pop3;

TEST_CASE("pop3 command lines")
{
    struct Case {
        std::string line;
        ParseError error;
        Verb verb;
        size_t nargs;
    };
    const Case cases[] = {
        {"", ParseError::empty, Verb::noop, 0},
        {std::string(254, 'A'), ParseError::too_long, Verb::noop, 0},
        {"NOOP" + std::string(300, ' '), ParseError::too_long, Verb::noop, 0},
        {"FOO", ParseError::unknown_verb, Verb::noop, 0},
        {"XTND XMIT", ParseError::unknown_verb, Verb::noop, 0},
        {"RETRX 1", ParseError::unknown_verb, Verb::noop, 0},
        {"RET 1", ParseError::unknown_verb, Verb::noop, 0},
        {" STAT", ParseError::bad_syntax, Verb::noop, 0},
        {"STAT ", ParseError::bad_syntax, Verb::stat, 0},
        {"STAT 1", ParseError::bad_syntax, Verb::stat, 0},
        {"RETR", ParseError::bad_syntax, Verb::retr, 0},
        {"RETR 1 2", ParseError::bad_syntax, Verb::retr, 0},
        {"RETR  1", ParseError::bad_syntax, Verb::retr, 0},
        {"RETR 1 ", ParseError::bad_syntax, Verb::retr, 0},
        {"TOP 1", ParseError::bad_syntax, Verb::top, 0},
        {"TOP 1 2 3", ParseError::bad_syntax, Verb::top, 0},
        {"LIST 1 2", ParseError::bad_syntax, Verb::list, 0},
        {"DELE " + std::string(41, '1'), ParseError::bad_syntax, Verb::dele, 0},
        {"QUIT now", ParseError::bad_syntax, Verb::quit, 0},
        {"PASS", ParseError::bad_syntax, Verb::pass, 0},
        {"PASS ", ParseError::bad_syntax, Verb::pass, 0},
        {"USER", ParseError::bad_syntax, Verb::user, 0},
        {"USER bob\rPASS x", ParseError::bad_bytes, Verb::noop, 0},
        {std::string("USER bob\0x", 10), ParseError::bad_bytes, Verb::noop, 0},
        {"USER b\xc3\xb6""b", ParseError::bad_bytes, Verb::noop, 0},
        {"NOOP\t", ParseError::bad_bytes, Verb::noop, 0},
        // good ones
        {"STAT", ParseError::none, Verb::stat, 0},
        {"stat", ParseError::none, Verb::stat, 0},
        {"rEtR 1", ParseError::none, Verb::retr, 1},
        {"LIST", ParseError::none, Verb::list, 0},
        {"list 3", ParseError::none, Verb::list, 1},
        {"UIDL", ParseError::none, Verb::uidl, 0},
        {"TOP 1 0", ParseError::none, Verb::top, 2},
        {"USER bob", ParseError::none, Verb::user, 1},
        {"USER a.very.long.address.for.bob@mail.example.test", ParseError::none, Verb::user, 1},
        {"PASS secret with spaces ", ParseError::none, Verb::pass, 1},
        {"CAPA", ParseError::none, Verb::capa, 0},
        {"quit", ParseError::none, Verb::quit, 0},
        {"AUTH", ParseError::none, Verb::auth, 0},
        {"AUTH PLAIN", ParseError::none, Verb::auth, 1},
        {"APOP bob 0123456789abcdef", ParseError::none, Verb::apop, 2},
        {std::string(4, 'N').replace(1, 3, "OOP"), ParseError::none, Verb::noop, 0},
    };
    for (const auto& c : cases) {
        CAPTURE(c.line);
        Command got = parse_command(c.line);
        CHECK(got.error == c.error);
        if (c.error == ParseError::none || c.error == ParseError::bad_syntax) {
            if (c.error == ParseError::none)
                CHECK(got.verb == c.verb);
        }
        if (c.error == ParseError::none)
            CHECK(got.args.size() == c.nargs);
    }
    CHECK(parse_command("PASS secret with spaces ").args[0] == "secret with spaces ");
    CHECK(parse_command("TOP 4 10").args[1] == "10");
}

TEST_CASE("pop3 message numbers are strict")
{
    struct Case {
        std::string in;
        uint64_t count;
        bool ok;
        uint64_t want;
    };
    const Case cases[] = {
        {"1", 3, true, 1},
        {"3", 3, true, 3},
        {"0", 3, false, 0},
        {"4", 3, false, 0},
        {"1", 0, false, 0},
        {"-1", 3, false, 0},
        {"+1", 3, false, 0},
        {"1a", 3, false, 0},
        {"a1", 3, false, 0},
        {" 1", 3, false, 0},
        {"1 ", 3, false, 0},
        {"", 3, false, 0},
        {"0x1", 3, false, 0},
        {"1.0", 3, false, 0},
        {"01", 3, true, 1},
        {"99999999999999999999", UINT64_MAX, false, 0},
        {"18446744073709551615", UINT64_MAX, true, UINT64_MAX},
        {"18446744073709551616", UINT64_MAX, false, 0},
        {"000000000000000000001", 3, false, 0},
    };
    for (const auto& c : cases) {
        CAPTURE(c.in);
        uint64_t got = 0;
        CHECK(parse_msgnum(c.in, c.count, got) == c.ok);
        if (c.ok)
            CHECK(got == c.want);
    }
    uint64_t k = 7;
    CHECK(parse_count("0", k));
    CHECK(k == 0);
    CHECK_FALSE(parse_count("-0", k));
    CHECK_FALSE(parse_count("", k));
    CHECK_FALSE(parse_count("1e3", k));
}

namespace {

/// TOP's answer the slow way, one byte at a time: the header block, the blank
/// line, then `lines` lines of the body (a line is what ends in LF).
std::string top_reference(const std::string& m, uint64_t lines)
{
    bool in_body = false, blank = true;
    uint64_t n = 0;
    for (size_t i = 0; i < m.size(); ++i) {
        bool line_start = i == 0 || m[i - 1] == '\n';
        if (line_start && in_body && n >= lines)
            return m.substr(0, i);
        if (line_start)
            blank = true;
        if (m[i] == '\n') {
            if (in_body)
                ++n;
            else if (blank)
                in_body = true;
        } else if (m[i] != '\r') {
            blank = false;
        }
    }
    return m;
}

} // namespace

TEST_CASE("APOP and AUTH command lines")
{
    using namespace mm::pop3;
    struct Case {
        std::string line;
        ParseError want;
        size_t args;
    };
    const std::string b64(200, 'Q');
    const Case cases[] = {
        {"APOP bob c4c9334bac560ecc979e58001b3e22fb", ParseError::none, 2},
        {"APOP " + std::string(60, 'u') + "@example.test c4c9334bac560ecc979e58001b3e22fb", ParseError::none, 2},
        {"APOP bob", ParseError::bad_syntax, 0},
        {"APOP bob digest extra", ParseError::bad_syntax, 0},
        {"APOP  bob digest", ParseError::bad_syntax, 0},
        {"AUTH", ParseError::none, 0},
        {"AUTH PLAIN", ParseError::none, 1},
        {"AUTH PLAIN " + b64, ParseError::none, 2},
        {"AUTH PLAIN =", ParseError::none, 2},
        {"AUTH PLAIN a b", ParseError::bad_syntax, 0},
        {"AUTH PLAIN " + std::string(260, 'Q'), ParseError::too_long, 0},
        {"AUTH PLAIN AGJvYgBzZWNyZXQ=\r", ParseError::bad_bytes, 0},
        {std::string("AUTH PLAIN AGJv\0Yg==", 20), ParseError::bad_bytes, 0},
    };
    for (const auto& c : cases) {
        CAPTURE(c.line);
        Command cmd = parse_command(c.line);
        CHECK(cmd.error == c.want);
        if (c.want == ParseError::none)
            CHECK(cmd.args.size() == c.args);
    }
}

TEST_CASE("TOP's cut: the header block and N body lines, wherever the chunks split")
{
    const std::vector<std::string> messages = {
        "",
        "Subject: x\r\n\r\nline 1\r\nline 2\r\nline 3",
        "Subject: x\r\n\r\nline 1\r\nline 2\r\nline 3\r\n",
        "Subject: x\nFrom: y\n\nbare LF 1\nbare LF 2\n",
        "no header end\r\nstill header\r\n",
        "\r\n\r\n\r\nempty lines only\r\n",
        "A: b\r\n\r\r\nnot blank: CR CR LF counts as blank\r\nx\r\n",
        "A: b\r\n \r\nspace: not blank\r\n\r\nbody\r\n",
        "A: b\r\n\r\n" + std::string(70000, 'x') + "\r\nsecond\r\n",
    };
    for (const std::string& m : messages) {
        for (uint64_t lines : {0u, 1u, 2u, 5u}) {
            const std::string want = top_reference(m, lines);
            for (size_t step : {1u, 2u, 3u, 7u, 64u, 65536u}) {
                CAPTURE(m.substr(0, 40));
                CAPTURE(lines);
                CAPTURE(step);
                TopCut cut(lines);
                std::string got;
                for (size_t i = 0; i < m.size() && !cut.done(); i += step) {
                    size_t n = std::min(step, m.size() - i);
                    size_t k = cut.take(m.data() + i, n);
                    REQUIRE(k <= n);
                    if (k < n)
                        CHECK(cut.done());
                    got.append(m, i, k);
                }
                CHECK(got == want);
            }
        }
    }
    TopCut cut(0);
    CHECK(cut.take("A: b\r\n\r\nbody\r\n", 15) == 8);
    CHECK(cut.done());
    CHECK(cut.take("more", 4) == 0);   // nothing after the cut
}

// ---- the upstream client against a scripted fake POP3 server ----

#include "fetcher/upstream.h"
#include "loopback_upstream.h"

#include <fstream>
#include <sstream>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

namespace {

/// Greets, then for each step reads one command line and sends the canned bytes;
/// then hangs up. Records the commands it got.
class FakePop3 {
public:
    FakePop3(std::string greeting, std::vector<std::string> replies)
    {
        lfd_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(listen(lfd_, 1) == 0);
        socklen_t len = sizeof a;
        getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        thread_ = std::thread([this, greeting, replies] {
            int fd = accept(lfd_, nullptr, nullptr);
            if (fd < 0)
                return;
            send(fd, greeting.data(), greeting.size(), MSG_NOSIGNAL);
            for (const auto& r : replies) {
                std::string line;
                char c;
                while (recv(fd, &c, 1, 0) == 1 && c != '\n')
                    line.push_back(c);
                commands_.push_back(line);
                send(fd, r.data(), r.size(), MSG_NOSIGNAL);
            }
            shutdown(fd, SHUT_WR);
            char sink[256];
            while (recv(fd, sink, sizeof sink, 0) > 0) {
            }
            close(fd);
        });
    }
    ~FakePop3()
    {
        shutdown(lfd_, SHUT_RDWR);
        thread_.join();
        close(lfd_);
    }
    UpstreamConfig config() const { return loopback_upstream(port_); }
    std::vector<std::string> commands_;

private:
    int lfd_ = -1;
    uint16_t port_ = 0;
    std::thread thread_;
};

std::string slurp(const std::string& path)
{
    std::ifstream f(path, std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

std::string temp_path()
{
    return "/tmp/mm-pop3-test-" + std::to_string(getpid()) + "-" + std::to_string(rand());
}

} // namespace

TEST_CASE("upstream RETR undoes dot-stuffing and normalises line ends")
{
    FakePop3 fake("+OK hi\r\n", {"+OK 30 octets\r\n..a\r\nline\nbare\r\n.\r\n", "+OK\r\n"});
    Upstream up;
    std::string err, text;
    REQUIRE(up.connect(fake.config(), err));
    std::string path = temp_path();
    uint64_t written = 0;
    CHECK(up.retr_to_file(7, path, 1000, written, err) == Upstream::Fetch::ok);
    CHECK(slurp(path) == ".a\r\nline\r\nbare\r\n");
    CHECK(written == 16);
    unlink(path.c_str());
    CHECK(up.command("NOOP", text) == Reply::ok);   // the terminator was consumed: in sync
    CHECK(fake.commands_.at(0) == "RETR 7\r");
}

TEST_CASE("upstream RETR over fetcher.max_size is refused and the dialogue stays in sync")
{
    FakePop3 fake("+OK hi\r\n", {"+OK\r\n" + std::string(5000, 'x') + "\r\n.\r\n", "+OK still here\r\n"});
    Upstream up;
    std::string err, text;
    REQUIRE(up.connect(fake.config(), err));
    std::string path = temp_path();
    uint64_t written = 0;
    CHECK(up.retr_to_file(1, path, 100, written, err) == Upstream::Fetch::too_big);
    CHECK(access(path.c_str(), F_OK) != 0);
    CHECK(up.command("NOOP", text) == Reply::ok);
    CHECK(text == "still here");
}

TEST_CASE("upstream misbehaviour ends the upstream session")
{
    std::string err, text;
    SUBCASE("overlong status line") {
        FakePop3 fake("+OK hi\r\n", {"+OK " + std::string(5000, 'y') + "\r\n"});
        Upstream up;
        REQUIRE(up.connect(fake.config(), err));
        CHECK(up.command("NOOP", text) == Reply::io);
        CHECK_FALSE(up.connected());
    }
    SUBCASE("garbage instead of +OK/-ERR") {
        FakePop3 fake("+OK hi\r\n", {"HELLO\r\n"});
        Upstream up;
        REQUIRE(up.connect(fake.config(), err));
        CHECK(up.command("NOOP", text) == Reply::io);
    }
    SUBCASE("-ERR is an answer, not a failure") {
        FakePop3 fake("+OK hi\r\n", {"-ERR [AUTH] no\r\n"});
        Upstream up;
        REQUIRE(up.connect(fake.config(), err));
        CHECK(up.command("PASS x", text) == Reply::err);
        CHECK(up.connected());
    }
    SUBCASE("connection lost in the middle of RETR") {
        FakePop3 fake("+OK hi\r\n", {"+OK\r\nhalf a mess"});
        Upstream up;
        REQUIRE(up.connect(fake.config(), err));
        std::string path = temp_path();
        uint64_t written = 0;
        CHECK(up.retr_to_file(1, path, 1000, written, err) == Upstream::Fetch::io);
        CHECK(access(path.c_str(), F_OK) != 0);
    }
    SUBCASE("bad greeting") {
        FakePop3 fake("-ERR go away\r\n", {});
        Upstream up;
        CHECK_FALSE(up.connect(fake.config(), err));
    }
    SUBCASE("TLS required but STLS not offered") {
        FakePop3 fake("+OK hi\r\n", {"+OK\r\nUSER\r\nUIDL\r\n.\r\n"});
        Upstream up;
        UpstreamConfig c = fake.config();
        c.tls_required = true;
        CHECK_FALSE(up.connect(c, err));
        CHECK(err.find("STLS") != std::string::npos);
    }
}

TEST_CASE("fetcher.upstream URLs")
{
    struct Case {
        const char* url;
        bool ok;
        const char* host;
        uint16_t port;
        bool tls;
    };
    const Case cases[] = {
        {"pop3://127.0.0.1:110", true, "127.0.0.1", 110, false},
        {"pop3s://mail.example.test", true, "mail.example.test", 995, true},
        {"pop3://mail.example.test/", true, "mail.example.test", 110, false},
        {"pop3s://mail.example.test:9995", true, "mail.example.test", 9995, true},
        {"imap://mail.example.test", false, "", 0, false},
        {"pop3://", false, "", 0, false},
        {"pop3://user@host:110", false, "", 0, false},
        {"pop3://host:0", false, "", 0, false},
        {"pop3://host:99999", false, "", 0, false},
        {"pop3://host:11x", false, "", 0, false},
        {"pop3://host/inbox", false, "", 0, false},
    };
    for (const auto& c : cases) {
        CAPTURE(c.url);
        UpstreamConfig u;
        CHECK(parse_upstream_url(c.url, u) == c.ok);
        if (c.ok) {
            CHECK(u.host == c.host);
            CHECK(u.port == c.port);
            CHECK(u.implicit_tls == c.tls);
        }
    }
}

TEST_CASE("pipelined RETRs: each answer to its own file, refusals and oversize in between, still in sync")
{
    FakePop3 fake("+OK hi\r\n", {"+OK\r\none\r\n.\r\n", "-ERR no such message\r\n",
                                 "+OK\r\n" + std::string(500, 'y') + "\r\n.\r\n", "+OK\r\n..three\r\n.\r\n",
                                 "+OK after\r\n"});
    Upstream up;
    std::string err, text;
    REQUIRE(up.connect(fake.config(), err));
    std::vector<std::string> paths = {temp_path(), temp_path(), temp_path(), temp_path()};
    std::vector<Upstream::Fetch> results;
    uint64_t written = 0;
    REQUIRE(up.retr_many({1, 2, 3, 4}, paths, 100, results, written, err));
    REQUIRE(results.size() == 4);
    CHECK(results[0] == Upstream::Fetch::ok);
    CHECK(results[1] == Upstream::Fetch::err);
    CHECK(results[2] == Upstream::Fetch::too_big);
    CHECK(results[3] == Upstream::Fetch::ok);
    CHECK(slurp(paths[0]) == "one\r\n");
    CHECK(slurp(paths[3]) == ".three\r\n");
    CHECK(access(paths[1].c_str(), F_OK) != 0);
    CHECK(access(paths[2].c_str(), F_OK) != 0);
    CHECK(up.command("NOOP", text) == Reply::ok);
    CHECK(text == "after");
    CHECK(fake.commands_.at(3) == "RETR 4\r");
    for (const auto& p : paths)
        unlink(p.c_str());
}

TEST_CASE("pipelined RETRs: a connection lost half way is reported, the rest marked failed")
{
    FakePop3 fake("+OK hi\r\n", {"+OK\r\none\r\n.\r\n", "+OK\r\ncut off in the midd"});
    Upstream up;
    std::string err;
    REQUIRE(up.connect(fake.config(), err));
    std::vector<std::string> paths = {temp_path(), temp_path(), temp_path()};
    std::vector<Upstream::Fetch> results;
    uint64_t written = 0;
    CHECK_FALSE(up.retr_many({1, 2, 3}, paths, 1000, results, written, err));
    CHECK(results[0] == Upstream::Fetch::ok);
    CHECK(results[1] == Upstream::Fetch::io);
    CHECK(results[2] == Upstream::Fetch::err);
    CHECK(access(paths[1].c_str(), F_OK) != 0);
    CHECK_FALSE(up.connected());
    for (const auto& p : paths)
        unlink(p.c_str());
}
