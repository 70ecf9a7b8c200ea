// test_log_fields.cpp - core/log_fields.h: key=value log fields that a hostile
// value (from a mail header or a peer) can neither split nor forge.
#include <doctest/doctest.h>

#include "core/log_fields.h"

#include <string>

using namespace mm;

TEST_CASE("kv: plain values bare, the rest quoted and escaped")
{
    struct Case {
        const char* what;
        std::string value, want;
    } cases[] = {
        {"plain", "4QX1", " k=4QX1"},
        {"Message-ID", "<abc.123@example.org>", " k=<abc.123@example.org>"},
        {"empty is quoted", "", " k=\"\""},
        {"space", "a b", " k=\"a b\""},
        {"forged field", "x item=evil", " k=\"x item=evil\""},
        {"equals alone", "a=b", " k=\"a=b\""},
        {"quote", "a\"b", " k=\"a\\\"b\""},
        {"quote closing early", "\" item=evil \"", " k=\"\\\" item=evil \\\"\""},
        {"backslash escaped as a byte", "a\\b", " k=a\\x5cb"},
        {"newline cannot start a line", "a\nb", " k=a\\x0ab"},
        {"CR", "a\rb", " k=a\\x0db"},
        {"NUL", std::string("a\0b", 3), " k=a\\x00b"},
        {"ESC (terminal)", "\x1b[31mred", " k=\\x1b[31mred"},
        {"non-ASCII", "caf\xc3\xa9", " k=caf\\xc3\\xa9"},
    };
    for (const auto& c : cases) {
        CAPTURE(std::string(c.what));
        CHECK(kv("k", c.value) == c.want);
    }
    CHECK(kv("bytes", 1234ULL) == " bytes=1234");
}

TEST_CASE("kv: a long value is cut, and the cut cannot leave an open quote")
{
    std::string v = kv("k", std::string(1000, 'a'));
    CHECK(v == " k=" + std::string(160, 'a') + "...");
    std::string spaced = kv("k", std::string(1000, ' '));
    CHECK(spaced.size() < 180);
    CHECK(spaced.back() == '"');
    // Every value ends a field: nothing after it looks like a field of its own.
    std::string hostile = kv("k", std::string(159, 'x') + "\" item=evil");
    CHECK(hostile.find(" item=evil") == std::string::npos);
}
