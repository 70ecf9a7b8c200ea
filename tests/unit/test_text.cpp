// test_text.cpp - core/text.h: HTML and JSON escaping, sizes for people.
#include <doctest/doctest.h>

#include "core/text.h"

#include <cstdint>
#include <string>

using namespace mm;

TEST_CASE("html_escape and json_quote")
{
    CHECK(html_escape("<a href=\"x\">&'</a>") == "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    CHECK(html_escape("line\nnext\ttab") == "line\nnext\ttab");
    CHECK(html_escape(std::string("a\x01" "b\x1b", 4)) == "a&#xFFFD;b&#xFFFD;");
    CHECK(html_escape("Ferien ü.mp4") == "Ferien ü.mp4");

    CHECK(json_quote("plain") == "\"plain\"");
    CHECK(json_quote("a\"b\\c") == "\"a\\\"b\\\\c\"");
    CHECK(json_quote("\n\x01\x7f") == "\"\\u000a\\u0001\\u007f\"");
    CHECK(json_quote("ü€😀") == "\"ü€😀\"");
    CHECK(json_quote("\xff") == "\"\xef\xbf\xbd\"");            // not UTF-8
    CHECK(json_quote("\xc3") == "\"\xef\xbf\xbd\"");            // truncated sequence
    CHECK(json_quote("\xc0\xaf") == "\"\xef\xbf\xbd\xef\xbf\xbd\"");   // overlong '/'
    CHECK(json_quote("\xed\xa0\x80") == "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");   // surrogate
}

TEST_CASE("human_size")
{
    CHECK(human_size(0) == "0 bytes");
    CHECK(human_size(1) == "1 byte");
    CHECK(human_size(1023) == "1023 bytes");
    CHECK(human_size(1024) == "1.0 KiB");
    CHECK(human_size(1536) == "1.5 KiB");
    CHECK(human_size(300000) == "293 KiB");
    CHECK(human_size(1ULL << 30) == "1.0 GiB");
    CHECK(human_size(UINT64_MAX) == "16 EiB");
}
