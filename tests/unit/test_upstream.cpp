// test_upstream.cpp - the POP3 client side of the proxy (fetcher/upstream.h) against
// scripted servers: what it passes on from upstream's greeting and CAPA, relaying a
// message as it is, and RETR undoing line ends and dot-stuffing wherever the buffer
// splits them. More upstream dialogue cases are in test_pop3.cpp.
#include "fetcher/upstream.h"
#include "core/stream.h"
#include "fetcher_fixtures.h"

#include <sys/socket.h>

#include <doctest/doctest.h>

#include <string>

using namespace mm;
using namespace mm::fetch_fixtures;

TEST_CASE("APOP timestamps from upstream greetings are passed on only when clean")
{
    struct Case {
        const char* greeting;
        const char* want;
    };
    const Case cases[] = {
        {"Dovecot ready. <1896.697170952@dbc.mtview.ca.us>", "<1896.697170952@dbc.mtview.ca.us>"},
        {"<a@b>", "<a@b>"},
        {"Dovecot ready.", ""},
        {"ready <no-at-sign>", ""},
        {"ready <unterminated@x", ""},
        {"ready <sp ace@x>", ""},
        {"ready <ctl\x01@x>", ""},
        {"ready <8bit\xff@x>", ""},
        {"", ""},
    };
    for (const auto& c : cases) {
        CAPTURE(c.greeting);
        CHECK(apop_timestamp(c.greeting) == c.want);
    }
    CHECK(apop_timestamp("<" + std::string(300, 'a') + "@b>") == "");   // longer than any real one
}

TEST_CASE("SASL mechanisms passed through are PLAIN and LOGIN only, as upstream offers them")
{
    using V = std::vector<std::string>;
    CHECK(sasl_mechanisms({"USER", "SASL PLAIN LOGIN", "TOP"}) == V{"PLAIN", "LOGIN"});
    CHECK(sasl_mechanisms({"sasl login cram-md5 plain"}) == V{"LOGIN", "PLAIN"});
    CHECK(sasl_mechanisms({"SASL CRAM-MD5 GSSAPI"}).empty());
    CHECK(sasl_mechanisms({"SASL"}).empty());
    CHECK(sasl_mechanisms({"SASLPLAIN"}).empty());
    CHECK(sasl_mechanisms({"SASL PLAIN PLAIN", "SASL PLAIN"}) == V{"PLAIN"});
    CHECK(sasl_mechanisms({}).empty());
    CHECK(sasl_mechanisms({"X-SASL PLAIN"}).empty());
}

TEST_CASE("relaying a message as it is: dot-stuffing kept, bare LF made CRLF, refusal sends nothing")
{
    ScriptedPop3 up({"+OK\r\n..dot\r\nbare\nend\r\n.\r\n", "-ERR no such message\r\n"});
    Upstream u;
    std::string err;
    REQUIRE(u.connect(up.config(), err));
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    uint64_t sent = 0;
    {
        Stream out(sv[0]);
        CHECK(u.relay("RETR 2", "+OK 16 octets\r\n", out, sent) == Reply::ok);
        CHECK(u.relay("RETR 9", "+OK 1 octets\r\n", out, sent) == Reply::err);
    }
    CHECK(read_fd(sv[1]) == "+OK 16 octets\r\n..dot\r\nbare\r\nend\r\n.\r\n");
    CHECK(sent == 18);   // octets on the wire, stuffing included, terminator not
    close(sv[1]);
}

TEST_CASE("upstream RETR over many buffer fills: line ends and dot-stuffing undone wherever the buffer splits them")
{
    // Lines of every length 0..300 with CRLF, bare LF and lone CR, dot-stuffed
    // ones among them: 16 KiB stream buffers end at every kind of position.
    std::string wire, want;
    for (int i = 0; i < 3000; ++i) {
        std::string line(static_cast<size_t>(i % 301), static_cast<char>('a' + i % 26));
        if (i % 7 == 0 && !line.empty())
            line[line.size() / 2] = '\r';   // a lone CR inside a line stays
        bool dot = i % 5 == 0;
        wire += (dot ? ".." : "") + line + (i % 3 == 0 ? "\n" : "\r\n");
        want += (dot ? "." : "") + line + "\r\n";
    }
    wire += ".\r\n";
    ScriptedPop3 up({"+OK\r\n" + wire, "+OK\r\n"});
    Upstream u;
    std::string err, text;
    REQUIRE(u.connect(up.config(), err));
    TempCache c;
    const std::string path = c.dir + "/msg/big";
    uint64_t written = 0;
    REQUIRE(u.retr_to_file(1, path, want.size(), written, err) == Upstream::Fetch::ok);
    CHECK(written == want.size());
    CHECK(read_all(path) == want);
    CHECK(u.command("NOOP", text) == Reply::ok);
}
