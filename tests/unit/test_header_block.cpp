// test_header_block.cpp - the bounded header block parser (mime/header_block.h):
// field lookup as mm-fetcher uses it (lenient), and the problems it reports, which
// mmsend -t turns into refusals (test_mmsend.cpp checks those exit codes).
#include "mime/header_block.h"

#include <doctest/doctest.h>

#include <string>

using namespace mm;

TEST_CASE("header fields are found case-insensitively, unfolded, only in the header block")
{
    const std::string h = "Received: from x\r\n\tby y\r\nfrom: Alice <Alice@Example.TEST>\r\n"
                          "Subject: a\r\n long subject\r\nDelivered-To: bob@example.test\r\n\r\n"
                          "X-Original-To: body@example.test\r\n";
    CHECK(header_value(h, "From") == "Alice <Alice@Example.TEST>");
    CHECK(header_value(h, "subject") == "a long subject");
    CHECK(header_value(h, "Delivered-To") == "bob@example.test");
    CHECK(header_value(h, "X-Original-To") == "");   // in the body
    CHECK(header_value(h, "To") == "");              // not a prefix match of X-Original-To or Delivered-To
    CHECK(header_value("", "From") == "");
    CHECK(header_value("From:\r\n\r\n", "From") == "");
    CHECK(header_value("From: a@b\n\n", "From") == "a@b");   // bare LF
}

TEST_CASE("header blocks: each malformed line is reported at its line, left out, and the rest still read")
{
    struct Case {
        const char* why;
        std::string block;
        bool at_eof;
        HeaderError want;
        size_t line;
        size_t fields;   // fields still read around the problem
    };
    const Case cases[] = {
        {"clean", "A: 1\r\nB: 2\r\n\r\nbody", true, HeaderError::none, 0, 2},
        {"continuation first", " cont\r\nA: 1\r\n\r\n", true, HeaderError::continuation_first, 1, 1},
        {"no colon", "A: 1\r\nno colon here\r\nB: 2\r\n\r\n", true, HeaderError::not_a_field, 2, 2},
        {"empty name", ": x\r\nB: 2\r\n\r\n", true, HeaderError::not_a_field, 1, 1},
        {"space in name", "A: 1\r\nBad Name: x\r\n more\r\nB: 2\r\n\r\n", true, HeaderError::bad_name, 2, 2},
        {"control byte in name", std::string("Na\x01me: x\n\n"), true, HeaderError::bad_name, 1, 0},
        {"8-bit byte in name", "N\xc3\xa4me: x\n\n", true, HeaderError::bad_name, 1, 0},
        {"last line unended", "A: 1\r\nB: 2", true, HeaderError::no_line_break, 2, 2},
        {"data ends inside the block", "A: 1\r\nB: 2\r\n", false, HeaderError::too_long, 3, 2},
        {"first problem wins", "bad\r\n x\r\nBad Name: y\r\n\r\n", true, HeaderError::not_a_field, 1, 0},
    };
    for (const auto& c : cases) {
        CAPTURE(c.why);
        HeaderBlock hb = parse_header_block(c.block, c.at_eof, 1 << 20);
        CHECK(hb.error == c.want);
        CHECK(hb.error_line == c.line);
        CHECK(hb.fields.size() == c.fields);
    }
}

TEST_CASE("header blocks: the cap stops the parse; a field keeps its raw range and continuation lines")
{
    const std::string big = "A: " + std::string(100, 'a') + "\r\nB: 2\r\n\r\n";
    HeaderBlock capped = parse_header_block(big, true, 50);
    CHECK(capped.error == HeaderError::too_long);
    CHECK(capped.fields.size() == 1);   // the line that started within the cap
    CHECK(parse_header_block(big, true, big.size()).error == HeaderError::none);

    const std::string msg = "From: a@x\r\nTo: b@x,\r\n  c@x\r\nBcc: d@x\r\n\r\nbody\r\n";
    HeaderBlock hb = parse_header_block(msg, true, 1 << 20);
    REQUIRE(hb.fields.size() == 3);
    CHECK(hb.fields[1].value == "b@x,  c@x");
    CHECK(msg.substr(hb.fields[1].begin, hb.fields[1].end - hb.fields[1].begin) == "To: b@x,\r\n  c@x\r\n");
    CHECK(msg.substr(hb.size) == "body\r\n");
    CHECK(header_value(hb, "to") == "b@x,  c@x");
    CHECK(header_value(hb, "Cc") == "");
}
