// test_smtp.cpp - the SMTP pieces of mm-milter's before-queue filter
// (milter/smtp.h): reply parsing with bad input, DATA framing in chunks of any
// size, dot-stuffing both ways, and the top header block as it streams by.
#include <doctest/doctest.h>

#include "milter/smtp.h"

#include <algorithm>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace mm;
using namespace mm::smtp;

namespace {

/// Reads one reply from `bytes`, as a peer would send them.
ReadResult reply_from(const std::string& bytes, Reply& r)
{
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    std::thread writer([&] {
        size_t off = 0;
        while (off < bytes.size()) {
            ssize_t n = write(sv[1], bytes.data() + off, bytes.size() - off);
            if (n <= 0)
                break;
            off += static_cast<size_t>(n);
        }
        shutdown(sv[1], SHUT_WR);
    });
    Stream s(sv[0]);
    ReadResult res = read_reply(s, r);
    shutdown(sv[0], SHUT_RD);   // the writer may still be blocked on what was not read
    writer.join();
    close(sv[1]);
    return res;
}

/// DATA content decoded in pieces of `step` bytes; `used` is how many bytes it took.
std::string decode(const std::string& in, size_t step, size_t& used, bool& done)
{
    DotDecoder d;
    std::string out;
    used = 0;
    while (used < in.size() && !d.done()) {
        size_t n = std::min(step, in.size() - used);
        used += d.feed(in.data() + used, n, out);
    }
    done = d.done();
    return out;
}

std::string encode(const std::string& in, size_t step)
{
    DotEncoder e;
    std::string out;
    for (size_t i = 0; i < in.size(); i += step)
        e.feed(in.data() + i, std::min(step, in.size() - i), out);
    e.finish(out);
    return out;
}

} // namespace

TEST_CASE("smtp replies: single and multi-line replies are read")
{
    Reply r;
    REQUIRE(reply_from("250 2.0.0 Ok: queued as ABC\r\n", r) == ReadResult::ok);
    CHECK(r.code == 250);
    CHECK(r.lines == std::vector<std::string>{"2.0.0 Ok: queued as ABC"});
    CHECK(r.wire() == "250 2.0.0 Ok: queued as ABC\r\n");

    REQUIRE(reply_from("250-mx.example\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-STARTTLS\r\n250 SMTPUTF8\r\n", r) ==
            ReadResult::ok);
    CHECK(r.lines.size() == 5);
    filter_ehlo(r);
    CHECK(r.wire() == "250-mx.example\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n");

    REQUIRE(reply_from("354\r\n", r) == ReadResult::ok);   // a bare code is a reply too
    CHECK(r.code == 354);
    CHECK(r.wire() == "354 \r\n");
}

TEST_CASE("smtp replies: malformed or cut-off replies are refused")
{
    Reply r;
    CHECK(reply_from("", r) == ReadResult::io);
    CHECK(reply_from("250-first line only\r\n", r) == ReadResult::io);   // the peer went away
    CHECK(reply_from("25\r\n", r) == ReadResult::bad);
    CHECK(reply_from("hello\r\n", r) == ReadResult::bad);
    CHECK(reply_from("650 no such class\r\n", r) == ReadResult::bad);
    CHECK(reply_from("150 nor this\r\n", r) == ReadResult::bad);
    CHECK(reply_from("2x0 letters\r\n", r) == ReadResult::bad);
    CHECK(reply_from("250_bad separator\r\n", r) == ReadResult::bad);
    CHECK(reply_from("250-a\r\n251 b\r\n", r) == ReadResult::bad);   // codes differ
    CHECK(reply_from("250 " + std::string(kMaxReplyLine + 10, 'x') + "\r\n", r) == ReadResult::bad);
    std::string many;
    for (size_t i = 0; i < kMaxReplyLines + 5; ++i)
        many += "250-line\r\n";
    many += "250 end\r\n";
    CHECK(reply_from(many, r) == ReadResult::bad);
}

TEST_CASE("smtp commands: verb and path argument")
{
    CHECK(verb("mail FROM:<a@b>") == "MAIL");
    CHECK(verb("DATA") == "DATA");
    CHECK(verb("") == "");
    CHECK(verb(" leading") == "");
    std::string a;
    CHECK(path_argument("MAIL FROM:<alice@example.test> SIZE=10", a));
    CHECK(a == "alice@example.test");
    CHECK(path_argument("RCPT TO: <bob@example.test>", a));
    CHECK(a == "bob@example.test");
    CHECK(path_argument("MAIL FROM:<>", a));
    CHECK(a.empty());
    CHECK_FALSE(path_argument("MAIL FROM alice", a));
    CHECK_FALSE(path_argument("RCPT TO:bob@example.test", a));
    CHECK_FALSE(path_argument("RCPT TO:<bob@example.test", a));
}

TEST_CASE("smtp DATA: end of data and dot-unstuffing, in pieces of every size")
{
    const std::string data = "Subject: x\r\n\r\n..leading dot\r\n.\tdot-tab\r\nmid.dle\r\n.\r\nEHLO after\r\n";
    const std::string want = "Subject: x\r\n\r\n.leading dot\r\n\tdot-tab\r\nmid.dle\r\n";
    for (size_t step = 1; step <= data.size(); ++step) {
        size_t used = 0;
        bool done = false;
        CAPTURE(step);
        CHECK(decode(data, step, used, done) == want);
        CHECK(done);
        CHECK(data.substr(used) == "EHLO after\r\n");   // what follows the dot is the next command
    }
}

TEST_CASE("smtp DATA: odd line ends and a cut-off message")
{
    size_t used = 0;
    bool done = false;
    // Bare LF lines, and a dot line ended by a bare LF.
    CHECK(decode("a\n..b\n.\nrest", 3, used, done) == "a\n.b\n");
    CHECK(done);
    // ".\r" without LF is content: the CR stays, the dot goes (it started the line).
    CHECK(decode(".\rx\r\n.\r\n", 1, used, done) == "\rx\r\n");
    CHECK(done);
    // An empty message.
    CHECK(decode(".\r\n", 2, used, done).empty());
    CHECK(done);
    // No terminator: everything is content so far, and the decoder waits for more.
    CHECK(decode("a\r\nb\r\n.", 4, used, done) == "a\r\nb\r\n");
    CHECK_FALSE(done);
    CHECK(used == 7);
}

TEST_CASE("dot-stuffing: a dot doubled at every line start and nowhere else, in chunks of any size")
{
    const std::vector<std::string> messages = {
        "", ".", "a.b\r\n.c\r\n", ".a\r\n..b\r\nc.\r\n.", "\n.\n.\n", "x\r\n.\r\n", "\r.\r\n.\r",
        std::string(70000, '.') + "\r\n" + std::string(70000, 'y') + "\n.",
    };
    for (const std::string& m : messages) {
        // The reference, one byte at a time.
        std::string want;
        for (size_t i = 0; i < m.size(); ++i) {
            if (m[i] == '.' && (i == 0 || m[i - 1] == '\n'))
                want += '.';
            want += m[i];
        }
        if (!m.empty() && m.back() != '\n')
            want += "\r\n";
        want += ".\r\n";
        for (size_t step : {1u, 2u, 3u, 7u, 65536u}) {
            CAPTURE(m.substr(0, 20));
            CAPTURE(step);
            CHECK(encode(m, step) == want);
            // The same through the emitter: runs without empty ones.
            DotEncoder e;
            std::string out;
            bool empty_run = false;
            for (size_t i = 0; i < m.size(); i += step)
                e.feed(m.data() + i, std::min(step, m.size() - i), [&](const char* q, size_t k) {
                    empty_run = empty_run || k == 0;
                    out.append(q, k);
                });
            e.finish(out);
            CHECK(out == want);
            CHECK_FALSE(empty_run);
        }
    }
    CHECK(encode(".a\r\n..b\r\nc.\r\n.", 65536) == "..a\r\n...b\r\nc.\r\n..\r\n.\r\n");
}

TEST_CASE("smtp DATA: dot-stuffing and unstuffing give the message back")
{
    const std::vector<std::string> messages = {
        "", "x", ".", "..", ".\r\n", "a\r\n.\r\nb", "line\r\n.starts\r\n..two\r\n", "no final break", "\r\n\r\n.",
        std::string(70000, '.') + "\r\n.\r\n",
    };
    for (const std::string& m : messages) {
        for (size_t step : {1u, 2u, 7u, 65536u}) {
            CAPTURE(m.size());
            CAPTURE(step);
            std::string wire = encode(m, step);
            REQUIRE(wire.size() >= 3);
            CHECK(wire.compare(wire.size() - 3, 3, ".\r\n") == 0);
            size_t used = 0;
            bool done = false;
            std::string back = decode(wire, step, used, done);
            CHECK(done);
            CHECK(used == wire.size());
            // A message without a final line break gets one (as Postfix adds it).
            bool ends_in_break = !m.empty() && m.back() == '\n';
            CHECK(back == (m.empty() || ends_in_break ? m : m + "\r\n"));
        }
    }
}

namespace {

struct Split {
    std::vector<HeaderSplitter::Field> fields;
    bool done = false;
    std::string end;
    size_t used = 0;
};

Split split(const std::string& in, size_t step, bool finish = false)
{
    HeaderSplitter h;
    Split s;
    while (s.used < in.size() && !h.done()) {
        size_t n = std::min(step, in.size() - s.used);
        s.used += h.feed(in.data() + s.used, n, s.fields);
    }
    if (finish && !h.done())
        h.finish(s.fields);
    s.done = h.done();
    s.end = h.end();
    return s;
}

} // namespace

TEST_CASE("smtp headers: fields, folding and the blank line, in pieces of every size")
{
    const std::string msg = "Received: from a\r\n\tby b\r\nSubject : hi\r\nContent-Type: multipart/mixed;\r\n"
                            " boundary=\"x\"\r\n\r\nbody\r\n";
    for (size_t step = 1; step <= msg.size(); ++step) {
        CAPTURE(step);
        Split s = split(msg, step);
        REQUIRE(s.fields.size() == 3);
        CHECK(s.done);
        CHECK(s.end == "\r\n");
        CHECK(s.fields[0].name == "Received");
        CHECK(s.fields[0].raw == "Received: from a\r\n\tby b\r\n");
        CHECK(s.fields[1].name == "Subject");   // obsolete space before the colon
        CHECK(s.fields[1].value == "hi");
        CHECK(s.fields[2].name == "Content-Type");
        CHECK(s.fields[2].value == "multipart/mixed;\r\n boundary=\"x\"");
        CHECK(msg.substr(s.used) == "body\r\n");
        std::string raw;
        for (const auto& f : s.fields)
            raw += f.raw;
        CHECK(raw + s.end == msg.substr(0, s.used));
    }
}

TEST_CASE("smtp headers: lines that are not header fields keep their bytes and no name")
{
    Split s = split("From alice Mon\r\n no colon here\r\nBad Name: x\r\n:empty\r\nX\x01: y\r\n\n", 5);
    CHECK(s.done);
    CHECK(s.end == "\n");
    REQUIRE(s.fields.size() == 4);
    CHECK(s.fields[0].name.empty());   // an mbox "From " line with a folded tail
    CHECK(s.fields[0].raw == "From alice Mon\r\n no colon here\r\n");
    CHECK(s.fields[1].name.empty());   // a space in the name
    CHECK(s.fields[2].name.empty());   // nothing before the colon
    CHECK(s.fields[3].name.empty());   // a control character
}

TEST_CASE("smtp headers: an overlong field passes in raw pieces without a name")
{
    std::string big = "X-Big: " + std::string(kMaxHeaderLine + 100, 'a') + "\r\n";
    std::string msg = "Subject: s\r\n" + big + " folded tail\r\nContent-Type: text/plain\r\n\r\nb";
    for (size_t step : {1000u, 4096u, 70000u, 200000u}) {
        CAPTURE(step);
        Split s = split(msg, step);
        CHECK(s.done);
        std::string raw;
        bool unnamed = false, ct = false;
        for (const auto& f : s.fields) {
            raw += f.raw;
            unnamed |= f.name.empty();
            ct |= f.name == "Content-Type";
            CHECK(f.raw.size() <= kMaxHeaderLine + 100 + 16);
        }
        CHECK(raw + s.end == msg.substr(0, s.used));
        CHECK(unnamed);
        CHECK(ct);
        CHECK(s.fields.front().name == "Subject");
    }
}

TEST_CASE("smtp headers: a message of header lines only")
{
    Split s = split("Subject: only\r\nX-Last: no break", 4, true);
    CHECK_FALSE(s.done);
    REQUIRE(s.fields.size() == 2);
    CHECK(s.fields[1].raw == "X-Last: no break");
    CHECK(s.fields[1].name == "X-Last");
}
