// test_imap_client.cpp - the IMAP client of the mailbox agent (fetcher/imap_client.h)
// against scripted servers on loopback: the happy dialogue (LOGIN, SELECT, SEARCH,
// FETCH into a file, APPEND streamed as a literal, IDLE), and servers that lie,
// flood or break the grammar. The real server (Dovecot) is imap.test.sh's.
#include "fetcher/imap_client.h"

#include "core/fileio.h"
#include "fetcher/upstream.h"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <netinet/in.h>
#include <sstream>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace mm;

namespace {

/// One step of a scripted server: read a command line (or `bytes` raw octets),
/// then send `reply` with "{TAG}" made the tag of the last line read.
struct Step {
    std::string reply;
    size_t bytes = 0;   // 0: read one line
};

class ScriptedImap {
public:
    ScriptedImap(std::string greeting, std::vector<Step> steps)
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
        thread_ = std::thread([this, greeting, steps] {
            int fd = accept(lfd_, nullptr, nullptr);
            if (fd < 0)
                return;
            send(fd, greeting.data(), greeting.size(), MSG_NOSIGNAL);
            std::string tag;
            for (const auto& s : steps) {
                std::string got;
                char c;
                if (s.bytes) {
                    while (got.size() < s.bytes && recv(fd, &c, 1, 0) == 1)
                        got.push_back(c);
                    literal += got;
                } else {
                    while (recv(fd, &c, 1, 0) == 1 && c != '\n')
                        got.push_back(c);
                    if (!got.empty() && got.back() == '\r')
                        got.pop_back();
                    commands.push_back(got);
                    if (got.find(' ') != std::string::npos && got != "DONE")
                        tag = got.substr(0, got.find(' '));
                }
                std::string r = s.reply;
                for (size_t p; (p = r.find("{TAG}")) != std::string::npos;)
                    r.replace(p, 5, tag);
                send(fd, r.data(), r.size(), MSG_NOSIGNAL);
            }
            shutdown(fd, SHUT_WR);
            char sink[256];
            while (recv(fd, sink, sizeof sink, 0) > 0) {
            }
            close(fd);
        });
    }
    ~ScriptedImap()
    {
        shutdown(lfd_, SHUT_RDWR);
        if (thread_.joinable())
            thread_.join();
        close(lfd_);
    }
    ImapConfig config() const
    {
        ImapConfig c;
        c.host = "127.0.0.1";
        c.port = port_;
        c.tls_required = false;
        c.timeout = std::chrono::seconds(5);
        return c;
    }
    void wait() { thread_.join(); }
    std::vector<std::string> commands;
    std::string literal;

private:
    int lfd_ = -1;
    uint16_t port_ = 0;
    std::thread thread_;
};

const char kGreeting[] = "* OK [CAPABILITY IMAP4rev1 IDLE UIDPLUS LITERAL+] ready\r\n";

std::string temp_path(const char* name)
{
    char dir[] = "/tmp/mm-imapc-XXXXXX";
    REQUIRE(mkdtemp(dir));
    return std::string(dir) + "/" + name;
}

std::string slurp(const std::string& path)
{
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

} // namespace

TEST_CASE("imap client: login, select, search, fetch to a file, append streamed, expunge by UID, idle")
{
    REQUIRE(upstream_tls_context());
    std::string big(200000, 'v');
    big[5] = ')';
    big[6] = '\r';
    big[7] = '\n';
    const std::string small = "Subject: s\r\n\r\nbody\r\n";
    const std::string file = temp_path("append.eml");
    const std::string body = "From: a@b\r\nSubject: rebuilt\r\n\r\n" + std::string(100000, 'x') + "\r\n";
    {
        std::ofstream(file, std::ios::binary) << body;
    }
    ScriptedImap s(kGreeting,
                   {
                       {"{TAG} OK [CAPABILITY IMAP4rev1 IDLE UIDPLUS MOVE APPENDLIMIT=1000000] in\r\n"},   // LOGIN
                       {"* CAPABILITY IMAP4rev1 IDLE UIDPLUS MOVE APPENDLIMIT=1000000\r\n{TAG} OK done\r\n"},
                       {"* 3 EXISTS\r\n* OK [UIDVALIDITY 77] v\r\n* OK [UIDNEXT 9] n\r\n{TAG} OK [READ-WRITE] sel\r\n"},
                       {"* SEARCH 4 7\r\n{TAG} OK s\r\n"},
                       {"* 1 FETCH (UID 4 BODY[] {" + std::to_string(small.size()) + "}\r\n" + small + ")\r\n{TAG} OK f\r\n"},
                       {"* 2 FETCH (FLAGS (\\Seen) UID 7 BODY[] {" + std::to_string(big.size()) + "}\r\n" + big +
                        ")\r\n{TAG} OK f\r\n"},
                       {"+ go ahead\r\n"},   // APPEND line
                       {"", body.size()},     // the literal
                       {"{TAG} OK [APPENDUID 77 12] appended\r\n"},   // its final CRLF
                       {"{TAG} OK stored\r\n"},
                       {"* 2 EXPUNGE\r\n{TAG} OK expunged\r\n"},
                       {"+ idling\r\n* 4 EXISTS\r\n"},   // IDLE
                       {"{TAG} OK idle done\r\n"},       // DONE
                       {"* BYE bye\r\n{TAG} OK out\r\n"},
                   });
    ImapClient c;
    std::string err;
    REQUIRE_MESSAGE(c.connect(s.config(), err), err);
    CHECK(c.has("IDLE"));
    REQUIRE_MESSAGE(c.login("bob", "pa\"ss", err), err);
    CHECK(imap_appendlimit(c.capabilities()) == 1000000);
    uint32_t validity = 0;
    REQUIRE_MESSAGE(c.select("INBOX", validity, err), err);
    CHECK(validity == 77);
    CHECK(c.news());   // SELECT's "* 3 EXISTS": the caller clears it, as the agent does
    c.clear_news();
    std::vector<uint32_t> uids;
    REQUIRE_MESSAGE(c.uid_search("UNDELETED HEADER X-Media-Handles \"\"", uids, err), err);
    CHECK(uids == std::vector<uint32_t>{4, 7});
    const std::string got_small = temp_path("small.eml"), got_big = temp_path("big.eml");
    CHECK(c.uid_fetch_body(4, got_small, 1 << 20, err) == ImapClient::Body::ok);
    CHECK(slurp(got_small) == small);
    CHECK(c.uid_fetch_body(7, got_big, 1 << 20, err) == ImapClient::Body::ok);
    CHECK(slurp(got_big) == big);
    uint32_t uid = 0;
    REQUIRE_MESSAGE(c.append("INBOX", {"\\Seen", "\\Flagged", "\\Recent", "bad)flag"}, "02-Dec-2026 18:23:21 +0000",
                             file, uid, err),
                    err);
    CHECK(uid == 12);
    CHECK(c.ok("UID STORE 7 +FLAGS.SILENT (\\Deleted)", err));
    CHECK(c.ok("UID EXPUNGE 7", err));
    bool changed = false;
    std::atomic<bool> stop{false};
    REQUIRE_MESSAGE(c.idle(std::chrono::seconds(5), &stop, changed, err), err);
    CHECK(changed);
    // New mail told in an earlier answer: idle() returns at once, sends nothing.
    CHECK(c.news());
    REQUIRE(c.idle(std::chrono::seconds(5), &stop, changed, err));
    CHECK(changed);
    c.logout();
    s.wait();
    REQUIRE(s.commands.size() >= 12);
    CHECK(s.commands[0] == "M1 LOGIN \"bob\" \"pa\\\"ss\"");
    CHECK(s.commands[2] == "M3 SELECT \"INBOX\"");
    CHECK(s.commands[6] == "M7 APPEND \"INBOX\" (\\Seen \\Flagged) \"02-Dec-2026 18:23:21 +0000\" {" +
                               std::to_string(body.size()) + "}");
    CHECK(s.literal == body);   // streamed whole, octet for octet
    CHECK(s.commands[9] == "M9 UID EXPUNGE 7");
    CHECK(s.commands[11] == "DONE");
}

TEST_CASE("imap client: hostile and broken servers end the connection or the command, never the process")
{
    REQUIRE(upstream_tls_context());
    struct Case {
        const char* what;
        std::string greeting;
        std::vector<Step> steps;
    };
    const std::vector<Case> cases = {
        {"garbage greeting", "HTTP/1.1 200 OK\r\n", {}},
        {"tagged greeting", "M1 OK hi\r\n", {}},
        {"bare LF greeting", "* OK hi\n", {}},
        {"BYE greeting", "* BYE go away\r\n", {}},
        {"greeting over the cap", "* OK " + std::string(kMaxImapResponse + 10, 'a') + "\r\n", {}},
    };
    for (const auto& k : cases) {
        CAPTURE(k.what);
        ScriptedImap s(k.greeting, k.steps);
        ImapClient c;
        std::string err;
        CHECK_FALSE(c.connect(s.config(), err));
        CHECK_FALSE(err.empty());
    }
    // STARTTLS required and not offered: no login in clear.
    {
        ScriptedImap s(kGreeting, {});
        ImapConfig cfg = s.config();
        cfg.tls_required = true;
        ImapClient c;
        std::string err;
        CHECK_FALSE(c.connect(cfg, err));
        CHECK(err.find("STARTTLS") != std::string::npos);
    }
    // Wrong tag, unasked continuation, a body over the cap, a lying literal, a flood of untagged lines.
    struct After {
        const char* what;
        std::string reply;
        bool connection_ends;
    };
    const std::vector<After> after = {
        {"another tag", "X9 OK nope\r\n", true},
        {"continuation", "+ more please\r\n", true},
        {"NO", "{TAG} NO [TRYCREATE] no\r\n", false},
        {"bad grammar", "{TAG} OK\r\n* 1 FETCH (UID\r\n", false},
        {"literal length over 20 digits", "* 1 FETCH (BODY[] {123456789012345678901}\r\n", true},
        {"body over max", "* 1 FETCH (UID 4 BODY[] {300000}\r\n" + std::string(300000, 'x') + ")\r\n{TAG} OK\r\n",
         true},
        {"connection cut inside a literal", "* 1 FETCH (UID 4 BODY[] {300000}\r\nxxxx", true},
    };
    for (const auto& a : after) {
        CAPTURE(a.what);
        ScriptedImap s(kGreeting, {{a.reply}});
        ImapClient c;
        std::string err;
        REQUIRE_MESSAGE(c.connect(s.config(), err), err);
        const std::string path = temp_path("x.eml");
        ImapClient::Body b = c.uid_fetch_body(4, path, 100000, err);
        CHECK(b != ImapClient::Body::ok);
        CHECK(access(path.c_str(), F_OK) != 0);   // nothing half-written left behind
        if (a.connection_ends)
            CHECK_FALSE(c.connected());
    }
    // APPEND refused before the literal: no octet of the file goes out.
    {
        const std::string file = temp_path("a.eml");
        std::ofstream(file, std::ios::binary) << "Subject: x\r\n\r\nbody\r\n";
        ScriptedImap s(kGreeting, {{"{TAG} NO [OVERQUOTA] full\r\n"}, {"{TAG} OK\r\n"}});
        ImapClient c;
        std::string err;
        REQUIRE_MESSAGE(c.connect(s.config(), err), err);
        uint32_t uid = 0;
        CHECK_FALSE(c.append("INBOX", {}, "02-Dec-2026 18:23:21 +0000", file, uid, err));
        CHECK(err.find("OVERQUOTA") != std::string::npos);
        CHECK(c.connected());
        CHECK(c.ok("NOOP", err));
        c.logout();
        s.wait();
        CHECK(s.literal.empty());
        // A date or folder that cannot be sent is refused before anything goes out.
        CHECK_FALSE(c.append("IN\"BOX\r\n", {}, "02-Dec-2026 18:23:21 +0000", file, uid, err));
        CHECK_FALSE(c.append("INBOX", {}, "02-Dec-2026 18:23:21 +0000\" (x", file, uid, err));
    }
}

TEST_CASE("imap URLs: schemes, default ports, hosts")
{
    struct Case {
        const char* url;
        bool ok;
        const char* host;
        uint16_t port;
        bool tls;
    };
    const Case cases[] = {
        {"imaps://mail.example.org", true, "mail.example.org", 993, true},
        {"imap://mail.example.org", true, "mail.example.org", 143, false},
        {"imap://mail.example.org:1143", true, "mail.example.org", 1143, false},
        {"imaps://127.0.0.1:9993/", true, "127.0.0.1", 9993, true},
        {"imaps://[::1]", true, "::1", 993, true},
        {"imaps://[::1]:994", true, "::1", 994, true},
        {"pop3s://mail.example.org", false, "", 0, false},
        {"imaps://", false, "", 0, false},
        {"imaps://user@host", false, "", 0, false},
        {"imaps://host/INBOX", false, "", 0, false},
        {"imaps://host:0", false, "", 0, false},
        {"imaps://host:99999", false, "", 0, false},
    };
    for (const auto& k : cases) {
        CAPTURE(k.url);
        ImapConfig c;
        CHECK(parse_imap_url(k.url, c) == k.ok);
        if (k.ok) {
            CHECK(c.host == k.host);
            CHECK(c.port == k.port);
            CHECK(c.implicit_tls == k.tls);
        }
    }
}
