// test_upstream_parse.cpp - the pure parsers of what the real POP3 server sends
// (fetcher/upstream_parse.h): status and SASL lines, multi-line answers, listing
// lines, and RETR bodies split into pieces at every position.
#include "fetcher/upstream_parse.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace mm;

TEST_CASE("upstream status lines: +OK and -ERR with their text, anything else broken")
{
    struct Case {
        const char* line;
        Reply want;
        const char* text;
    };
    const Case cases[] = {
        {"+OK", Reply::ok, ""},
        {"+OK ", Reply::ok, ""},
        {"+OK 2 messages", Reply::ok, "2 messages"},
        {"-ERR", Reply::err, ""},
        {"-ERR [AUTH] bad password", Reply::err, "[AUTH] bad password"},
        {"+ok", Reply::io, ""},
        {"OK", Reply::io, ""},
        {"", Reply::io, ""},
        {" +OK", Reply::io, ""},
        {"+", Reply::io, ""},
        {"+ challenge", Reply::io, ""},
        {"-ER", Reply::io, ""},
        {"* OK imap", Reply::io, ""},
    };
    for (const auto& c : cases) {
        CAPTURE(c.line);
        std::string text = "unset";
        CHECK(parse_status_line(c.line, text) == c.want);
        if (c.want != Reply::io)
            CHECK(text == c.text);
        else
            CHECK(text == "unset");
    }
}

TEST_CASE("upstream SASL lines: continuations besides +OK and -ERR")
{
    struct Case {
        const char* line;
        Reply want;
        const char* text;
    };
    const Case cases[] = {
        {"+ VXNlcm5hbWU6", Reply::more, "VXNlcm5hbWU6"},
        {"+", Reply::more, ""},
        {"+ ", Reply::more, ""},
        {"+OK logged in", Reply::ok, "logged in"},
        {"-ERR no", Reply::err, "no"},
        {"+x", Reply::io, ""},
        {"", Reply::io, ""},
    };
    for (const auto& c : cases) {
        CAPTURE(c.line);
        std::string text;
        CHECK(parse_sasl_line(c.line, text) == c.want);
        if (c.want != Reply::io)
            CHECK(text == c.text);
    }
}

TEST_CASE("multi-line answers: the lone dot ends them, one leading dot removed, a cap on lines")
{
    using V = std::vector<std::string>;
    struct Case {
        V in;
        size_t cap;
        V want;
        bool ended, over;
    };
    const Case cases[] = {
        {{"1 120", "2 3400", "."}, 10, {"1 120", "2 3400"}, true, false},
        {{"."}, 10, {}, true, false},
        {{"..", ".STLS", "...x", "."}, 10, {".", "STLS", "..x"}, true, false},
        {{"", "."}, 10, {""}, true, false},
        {{". ", "."}, 10, {" "}, true, false},
        {{"a", "b"}, 10, {"a", "b"}, false, false},
        {{"a", "b", "."}, 2, {"a", "b"}, true, false},
        {{"a", "b", "c", "."}, 2, {"a", "b"}, false, true},
        {{"a", "."}, 0, {}, false, true},
    };
    for (const auto& c : cases) {
        MultilineReader r(c.cap);
        V lines;
        bool ended = false;
        for (const auto& l : c.in) {
            if (!r.take(l, lines)) {
                ended = true;
                break;
            }
            if (r.over())
                break;
        }
        CHECK(lines == c.want);
        CHECK(ended == c.ended);
        CHECK(r.over() == c.over);
    }
}

TEST_CASE("LIST and UIDL lines: a message number from 1 and a non-empty value")
{
    struct Case {
        const char* line;
        bool ok;
        uint64_t num;
        const char* value;
    };
    const Case cases[] = {
        {"1 120", true, 1, "120"},
        {"42 whqtswO00WBw418f9t5JxYwZ", true, 42, "whqtswO00WBw418f9t5JxYwZ"},
        {"3 a b", true, 3, "a b"},
        {"0 120", false, 0, ""},
        {"1", false, 0, ""},
        {"1 ", false, 0, ""},
        {" 1 120", false, 0, ""},
        {"x 120", false, 0, ""},
        {"-1 120", false, 0, ""},
        {"18446744073709551616 1", false, 0, ""},   // 2^64
        {"", false, 0, ""},
    };
    for (const auto& c : cases) {
        CAPTURE(c.line);
        uint64_t num = 0;
        std::string value;
        REQUIRE(parse_listing(c.line, num, value) == c.ok);
        if (c.ok) {
            CHECK(num == c.num);
            CHECK(value == c.value);
        }
    }
}

namespace {

struct Out {
    std::string text;
    size_t used = 0;
    bool done = false, eof_ok = false;
};

/// `wire` fed in two pieces split at `at` (then, if not done, nothing more).
Out decode_split(const std::string& wire, size_t at, bool keep)
{
    RetrDecoder d(keep);
    Out o;
    auto emit = [&o](const char* p, size_t n) { o.text.append(p, n); };
    std::string_view w(wire);
    o.used = d.feed(w.substr(0, at), emit);
    if (!d.done() && o.used == at)
        o.used += d.feed(w.substr(at), emit);
    o.done = d.done();
    o.eof_ok = d.complete_at_eof();
    return o;
}

Out decode_bytes(const std::string& wire, bool keep)
{
    RetrDecoder d(keep);
    Out o;
    auto emit = [&o](const char* p, size_t n) { o.text.append(p, n); };
    while (o.used < wire.size() && !d.done())
        o.used += d.feed(std::string_view(wire).substr(o.used, 1), emit);
    o.done = d.done();
    o.eof_ok = d.complete_at_eof();
    return o;
}

} // namespace

TEST_CASE("RETR bodies: line ends and dot-stuffing undone, the terminator found, at every split")
{
    struct Case {
        const char* wire;
        const char* unstuffed;
        const char* stuffed;   // as relayed: stuffing kept
        size_t used;           // octets taken: up to and with the terminator
        bool done, eof_ok;
    };
    const Case cases[] = {
        {"a\r\n.\r\n", "a\r\n", "a\r\n", 6, true, true},
        {"a\n.\n", "a\r\n", "a\r\n", 4, true, true},
        {"..x\r\n.\r\nNEXT", ".x\r\n", "..x\r\n", 8, true, true},
        {".x\r\n.\r\n", "x\r\n", ".x\r\n", 7, true, true},
        {"lone\rcr\r\n.\r\n", "lone\rcr\r\n", "lone\rcr\r\n", 12, true, true},
        {"cr at end\r\r\n.\r\n", "cr at end\r\r\n", "cr at end\r\r\n", 15, true, true},
        {"\r\n\n.\r\n", "\r\n\r\n", "\r\n\r\n", 6, true, true},
        {".\r\n", "", "", 3, true, true},
        {".\rX", "", "", 2, true, true},          // "." CR and no LF: the end, X is the next answer's
        {"body\r\n.\r", "body\r\n", "body\r\n", 8, false, true},   // complete if the input ends here
        {"body\r\n.", "body\r\n", "body\r\n", 7, false, false},    // broke off
        {"body\r\n", "body\r\n", "body\r\n", 6, false, false},
        {"no end", "no end", "no end", 6, false, false},
        {"", "", "", 0, false, false},
        {"a.\r\n.\r\n", "a.\r\n", "a.\r\n", 7, true, true},      // a dot inside a line is data
        {"\n.\n", "\r\n", "\r\n", 3, true, true},
    };
    for (const auto& c : cases) {
        const std::string wire = c.wire;
        CAPTURE(wire);
        for (bool keep : {false, true}) {
            CAPTURE(keep);
            const char* want = keep ? c.stuffed : c.unstuffed;
            for (size_t at = 0; at <= wire.size(); ++at) {
                CAPTURE(at);
                Out o = decode_split(wire, at, keep);
                CHECK(o.text == want);
                CHECK(o.used == c.used);
                CHECK(o.done == c.done);
                CHECK(o.eof_ok == c.eof_ok);
            }
            Out b = decode_bytes(wire, keep);
            CHECK(b.text == want);
            CHECK(b.used == c.used);
            CHECK(b.done == c.done);
        }
    }
}
