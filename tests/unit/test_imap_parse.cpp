// test_imap_parse.cpp - the pure parsers of what the user's IMAP server sends
// (fetcher/imap_parse.h): the response assembler fed in pieces of every size,
// literals counted and streamed, the response grammar, FETCH/SEARCH/APPENDUID,
// capabilities, dates and flags. Mostly bad input.
#include "fetcher/imap_parse.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace mm;

namespace {

struct StringSink : LiteralSink {
    std::string got;
    uint64_t announced = 0;
    bool refuse = false;
    unsigned begins = 0;
    bool begin(uint64_t size) override
    {
        ++begins;
        announced = size;
        return !refuse;
    }
    bool write(const char* p, size_t n) override
    {
        got.append(p, n);
        return true;
    }
};

/// Feeds `in` in pieces of `piece` octets; returns the octets used.
size_t feed_all(ImapAssembler& a, const std::string& in, size_t piece, LiteralSink* sink)
{
    size_t used = 0;
    while (used < in.size() && !a.done() && !a.failed()) {
        size_t k = std::min(piece, in.size() - used);
        size_t took = a.feed(std::string_view(in).substr(used, k), sink);
        used += took;
        if (took < k)
            break;
    }
    return used;
}

bool parse(const std::string& wire, ImapResponse& r, std::string& err)
{
    ImapAssembler a;
    StringSink sink;
    feed_all(a, wire, wire.size() + 1, &sink);
    if (!a.done()) {
        err = "not done: " + a.error();
        return false;
    }
    return parse_imap_response(a.raw(), r, err);
}

} // namespace

TEST_CASE("imap assembler: one response per call, at every split, literals inline")
{
    const std::string wire = "* 1 FETCH (UID 7 BODY[HEADER.FIELDS (MESSAGE-ID)] {21}\r\nMessage-ID: <a@b>\r\n\r\n)\r\n"
                             "A1 OK done\r\n";
    for (size_t piece = 1; piece <= wire.size(); ++piece) {
        CAPTURE(piece);
        ImapAssembler a;
        size_t used = feed_all(a, wire, piece, nullptr);
        REQUIRE(a.done());
        CHECK(used == wire.find("A1"));
        CHECK(a.raw().literals.size() == 1);
        CHECK_FALSE(a.raw().literals[0].streamed);
        ImapResponse r;
        std::string err;
        REQUIRE(parse_imap_response(a.raw(), r, err));
        ImapFetch f;
        REQUIRE(parse_imap_fetch(r, f));
        CHECK(f.uid == 7);
        CHECK(f.header == "Message-ID: <a@b>\r\n\r\n");
        a.reset();
        feed_all(a, wire.substr(used), piece, nullptr);
        REQUIRE(a.done());
        REQUIRE(parse_imap_response(a.raw(), r, err));
        CHECK(r.kind == ImapResponse::Kind::tagged);
        CHECK(r.tag == "A1");
        CHECK(r.status == ImapResponse::Status::ok);
    }
}

TEST_CASE("imap assembler: a large literal goes to the sink, counted, whatever the pieces")
{
    std::string body(kMaxImapInlineLiteral + 5000, 'x');
    body[10] = '\r';
    body[11] = '\n';
    body[100] = ')';
    const std::string wire = "* 3 FETCH (UID 9 BODY[] {" + std::to_string(body.size()) + "}\r\n" + body + ")\r\n";
    for (size_t piece : {1ul, 7ul, 4096ul, 65536ul, wire.size()}) {
        CAPTURE(piece);
        ImapAssembler a;
        StringSink sink;
        CHECK(feed_all(a, wire, piece, &sink) == wire.size());
        REQUIRE(a.done());
        CHECK(sink.got == body);
        CHECK(a.raw().text.size() < 100);   // not buffered
        ImapResponse r;
        std::string err;
        REQUIRE(parse_imap_response(a.raw(), r, err));
        ImapFetch f;
        REQUIRE(parse_imap_fetch(r, f));
        CHECK(f.body_streamed);
        CHECK(f.body_size == body.size());
        CHECK(f.uid == 9);
    }
}

TEST_CASE("imap assembler: bad input fails the response")
{
    struct Case {
        std::string wire;
        bool sink;
        const char* why;
    };
    const std::string big = std::to_string(kMaxImapInlineLiteral + 1);
    const std::vector<Case> cases = {
        {"* OK bare LF\n", false, "bare LF"},
        {"* OK bare CR\rx\r\n", false, "bare CR"},
        {"* 1 FETCH (BODY[] {" + big + "}\r\n", false, "over the cap"},
        {"* 1 FETCH (BODY[] {99999999999999999999999}\r\n", true, "bad literal length"},
        {"* 1 FETCH (BODY[] {12a}\r\n", true, "bad literal length"},
        {"* 1 FETCH (BODY[] {}\r\n", true, "bad literal length"},
        {"* OK oops}\r\n", false, "without '{'"},
        {"* SEARCH " + std::string(kMaxImapResponse, '1') + "\r\n", false, "longer than"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.wire.substr(0, 60));
        ImapAssembler a;
        StringSink sink;
        feed_all(a, c.wire, 3, c.sink ? &sink : nullptr);
        CHECK(a.failed());
        CHECK(a.error().find(c.why) != std::string::npos);
    }
    // A sink that refuses the literal fails the response before any octet.
    ImapAssembler a;
    StringSink sink;
    sink.refuse = true;
    feed_all(a, "* 1 FETCH (BODY[] {" + big + "}\r\nxxxx", 5, &sink);
    CHECK(a.failed());
    CHECK(sink.got.empty());
}

TEST_CASE("imap assembler: a flood of small literals stays within the response cap")
{
    std::string wire = "* LIST";
    for (int i = 0; i < 40; ++i)
        wire += " {60000}\r\n" + std::string(60000, 'a');
    wire += "\r\n";
    ImapAssembler a;
    StringSink sink;
    feed_all(a, wire, 65536, &sink);
    // Past kMaxImapResponse the rest goes to the sink (counted, not kept) or fails.
    CHECK((a.failed() || a.raw().text.size() <= kMaxImapResponse));
    ImapAssembler b;
    feed_all(b, wire, 65536, nullptr);
    CHECK(b.failed());
}

TEST_CASE("imap responses: the grammar, good and bad")
{
    struct Case {
        std::string wire;
        bool ok;
    };
    const std::vector<Case> cases = {
        {"* OK [CAPABILITY IMAP4rev1 IDLE UIDPLUS] Dovecot ready.\r\n", true},
        {"* PREAUTH hi\r\n", true},
        {"* BYE shutting down\r\n", true},
        {"* OK\r\n", true},
        {"A1 OK\r\n", true},
        {"A1 NO [TRYCREATE] no such mailbox\r\n", true},
        {"A1 BYE nope\r\n", false},
        {"A1 FETCH (UID 1)\r\n", false},
        {"+ idling\r\n", true},
        {"+\r\n", true},
        {"+x\r\n", false},
        {"*OK\r\n", false},
        {"* \r\n", false},
        {"\r\n", false},
        {"A+1 OK x\r\n", false},
        {"A1OK\r\n", false},
        {"* 12 EXISTS\r\n", true},
        {"* 12 EXISTS now\r\n", false},
        {"* 4294967296 EXISTS\r\n", false},
        {"* 12 FOO\r\n", false},
        {"* 12 FETCH\r\n", false},
        {"* 12 FETCH (UID 1\r\n", false},
        {"* 12 FETCH (UID 1))\r\n", false},
        {"* 12 FETCH (FLAGS (\\Seen \\Flagged $Junk) UID 5)\r\n", true},
        {"* 12 FETCH (UID  5)\r\n", false},
        {"* 12 FETCH (BODY[HEADER \"x\")\r\n", false},
        {"* 1 FETCH (X \"unterminated)\r\n", false},
        {"* 1 FETCH (X \"bad \\q escape\")\r\n", false},
        {"* 1 FETCH (X ~{3}\r\nabc)\r\n", false},
        {"* 1 FETCH (X {3}\r\nabc)\r\n", true},
        {"* 1 FETCH (X {3+}\r\nabc)\r\n", true},
        {"* 1 FETCH (X {0}\r\n)\r\n", true},
        {"* SEARCH 1 2 3\r\n", true},
        {"* SEARCH\r\n", true},
        {"* SEARCH 1  2\r\n", false},
        {"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n", true},
        {"* LIST (\\HasNoChildren) \"/\" INBOX\r\n", true},
        {"* LIST (\\HasNoChildren) \"/\" {5}\r\nINBOX\r\n", true},
        {"* OK [UNCLOSED code\r\n", false},
        {"* OK [] empty code\r\n", false},
        {"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n", true},
        {"* X " + std::string(kMaxImapDepth + 1, '(') + std::string(kMaxImapDepth + 1, ')') + "\r\n", false},
        {"* X " + std::string(kMaxImapDepth, '(') + std::string(kMaxImapDepth, ')') + "\r\n", true},
        {"* X (a b\r\n", false},
        {"* X a)\r\n", false},
    };
    for (const auto& c : cases) {
        CAPTURE(c.wire);
        ImapResponse r;
        std::string err;
        CHECK(parse(c.wire, r, err) == c.ok);
    }
}

TEST_CASE("imap responses: codes, capabilities, APPENDUID")
{
    ImapResponse r;
    std::string err;
    REQUIRE(parse("A3 OK [APPENDUID 38505 3955] APPEND completed\r\n", r, err));
    uint32_t v = 0, u = 0;
    CHECK(parse_appenduid(r, v, u));
    CHECK(v == 38505);
    CHECK(u == 3955);
    CHECK(r.text == "APPEND completed");
    const char* bad[] = {"A3 OK [APPENDUID 0 3955] x\r\n", "A3 OK [APPENDUID 1] x\r\n",
                         "A3 OK [APPENDUID 1 2 3] x\r\n", "A3 NO [APPENDUID 1 2] x\r\n",
                         "A3 OK [APPENDUID 1 4294967296] x\r\n", "A3 OK [APPENDUID 1 -2] x\r\n",
                         "A3 OK [COPYUID 1 2 3] x\r\n"};
    for (const char* b : bad) {
        CAPTURE(b);
        REQUIRE(parse(b, r, err));
        CHECK_FALSE(parse_appenduid(r, v, u));
    }
    REQUIRE(parse("* CAPABILITY IMAP4rev1 idle UIDPLUS APPENDLIMIT=35651584 MOVE\r\n", r, err));
    auto caps = imap_capabilities(r);
    CHECK(imap_has(caps, "IDLE"));
    CHECK(imap_has(caps, "UIDPLUS"));
    CHECK_FALSE(imap_has(caps, "STARTTLS"));
    CHECK(imap_appendlimit(caps) == 35651584);
    CHECK(imap_appendlimit({"APPENDLIMIT"}) == 0);
    CHECK(imap_appendlimit({"APPENDLIMIT=x"}) == 0);
    CHECK(imap_appendlimit({"APPENDLIMIT=99999999999999999999999"}) == 0);
    REQUIRE(parse("* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n", r, err));
    CHECK(imap_has(imap_capabilities(r), "STARTTLS"));
}

TEST_CASE("imap FETCH and SEARCH data: strict numbers and dates")
{
    ImapResponse r;
    std::string err;
    REQUIRE(parse("* 2 FETCH (UID 42 FLAGS (\\Seen \\Flagged) INTERNALDATE \"02-Dec-2026 18:23:21 +0000\" "
                  "RFC822.SIZE 1234 MODSEQ (7))\r\n",
                  r, err));
    ImapFetch f;
    REQUIRE(parse_imap_fetch(r, f));
    CHECK(f.uid == 42);
    CHECK(f.flags == std::vector<std::string>{"\\Seen", "\\Flagged"});
    CHECK(f.internal_date == "02-Dec-2026 18:23:21 +0000");
    CHECK(f.size == 1234);
    const char* bad[] = {
        "* 2 FETCH (UID 0)\r\n",
        "* 2 FETCH (UID x)\r\n",
        "* 2 FETCH (UID)\r\n",
        "* 2 FETCH (UID 1 FLAGS \\Seen)\r\n",
        "* 2 FETCH (FLAGS (\"quoted\"))\r\n",
        "* 2 FETCH (INTERNALDATE \"2-Dec-2026 18:23:21 +0000\")\r\n",
        "* 2 FETCH (INTERNALDATE \"02-Dez-2026 18:23:21 +0000\")\r\n",
        "* 2 FETCH (INTERNALDATE \"02-Dec-2026 25:23:21 +0000\")\r\n",
        "* 2 FETCH (INTERNALDATE \"02-Dec-2026 18:23:21 +0000\" \")\r\n",
        "* 2 FETCH (INTERNALDATE NIL)\r\n",
        "* 2 FETCH (RFC822.SIZE -1)\r\n",
        "* 2 FETCH (BODY[] (x))\r\n",
        "* 2 FETCH (\"UID\" 1)\r\n",
    };
    for (const char* b : bad) {
        CAPTURE(b);
        if (parse(b, r, err))
            CHECK_FALSE(parse_imap_fetch(r, f));
    }
    std::vector<uint32_t> uids;
    REQUIRE(parse("* SEARCH 3 17 4294967295\r\n", r, err));
    CHECK(parse_imap_search(r, uids, 10));
    CHECK(uids == std::vector<uint32_t>{3, 17, 4294967295u});
    CHECK_FALSE(parse_imap_search(r, uids, 2));
    for (const char* b : {"* SEARCH 0\r\n", "* SEARCH 4294967296\r\n", "* SEARCH a\r\n", "* SEARCH 1:3\r\n"}) {
        CAPTURE(b);
        REQUIRE(parse(b, r, err));
        CHECK_FALSE(parse_imap_search(r, uids, 10));
    }
}

TEST_CASE("imap helpers: dates, flags, quoting")
{
    CHECK(imap_date_time_ok("02-Dec-2026 18:23:21 +0000"));
    CHECK(imap_date_time_ok(" 2-Dec-2026 18:23:21 -0530"));
    for (const char* b : {"", "02-Dec-2026 18:23:21", "02-Dec-2026 18:23:21 +000", "32-Dec-2026 18:23:21 +0000",
                          "00-Dec-2026 18:23:21 +0000", "02-dec-2026 18:23:21 +0000", "02-Dec-2026 18:60:21 +0000",
                          "02-Dec-2026 18:23:21 *0000", "02-Dec-2026\t18:23:21 +0000", "02-Dec-2026 18:23:21 +0000\""})
        CHECK_FALSE(imap_date_time_ok(b));
    CHECK(imap_flag_ok("\\Seen"));
    CHECK(imap_flag_ok("\\flagged"));
    CHECK(imap_flag_ok("$Label1"));
    CHECK_FALSE(imap_flag_ok("\\Recent"));
    CHECK_FALSE(imap_flag_ok("\\*"));
    CHECK_FALSE(imap_flag_ok("a b"));
    CHECK_FALSE(imap_flag_ok("a)"));
    CHECK_FALSE(imap_flag_ok(""));
    CHECK_FALSE(imap_flag_ok("\\Unknown"));
    CHECK(imap_quote("pa\"ss\\") == "\"pa\\\"ss\\\\\"");
    CHECK(imap_quote("a\r\nb").empty());
    CHECK(imap_quote(std::string("a\0b", 3)).empty());
    CHECK(imap_quote("caf\xc3\xa9").empty());
}
