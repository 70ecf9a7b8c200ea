// test_log.cpp - core/log.h: printable() and the key=value log fields, mostly hostile values.
#include <doctest/doctest.h>

#include "core/log.h"

#include <string>

using namespace mm;

TEST_CASE("kv: plain values and numbers")
{
    CHECK(kv("id", "abc123") == " id=abc123");
    CHECK(kv("path", "/var/lib/mediamail") == " path=/var/lib/mediamail");
    CHECK(kv("bytes", 0) == " bytes=0");
    CHECK(kv("bytes", 18446744073709551615ULL) == " bytes=18446744073709551615");
    CHECK(kv("delta", -5) == " delta=-5");
    CHECK(kv("n", 7u) == " n=7");
    CHECK(kv("id", "a") + kv("n", 2) == " id=a n=2");
}

TEST_CASE("kv: quoting and escaping")
{
    struct Case {
        std::string value;
        std::string want;
    };
    const Case cases[] = {
        {"", " k=\"\""},                                   // empty stays visible
        {"two words", " k=\"two words\""},
        {"a=b", " k=\"a=b\""},                             // would look like a second field
        {"say \"hi\"", " k=\"say \\\"hi\\\"\""},
        {"\"", " k=\"\\\"\""},
        {"back\\slash", " k=back\\x5cslash"},            // no way to end a quote early
        {std::string("nl\nx k2=forged", 14), " k=\"nl\\x0ax k2=forged\""},
        {std::string("cr\rtab\t", 7), " k=cr\\x0dtab\\x09"},
        {std::string("nul\0x", 5), " k=nul\\x00x"},
        {"\x1b[31mred", " k=\\x1b[31mred"},                // terminal escape
        {"caf\xc3\xa9", " k=caf\\xc3\\xa9"},               // non-ASCII
    };
    for (const auto& c : cases) {
        CAPTURE(c.value);
        CHECK(kv("k", c.value) == c.want);
    }
}

TEST_CASE("kv: long values are cut, keys are tamed")
{
    std::string big(10000, 'x');
    std::string got = kv("subject", big);
    CHECK(got == " subject=" + std::string(160, 'x') + "...");
    CHECK(kv("k", "abcdef", 3) == " k=abc...");
    CHECK(kv("k", "a b c d", 3) == " k=\"a b...\"");
    CHECK(kv("bad key", "v") == " bad_key=v");
    CHECK(kv("k=v", "v") == " k_v=v");
    CHECK(kv(std::string("k\n", 2), "v") == " k_=v");
    CHECK(kv("peer.addr-v6_x", "v") == " peer.addr-v6_x=v");
}

TEST_CASE("printable")
{
    CHECK(printable("hello") == "hello");
    CHECK(printable(std::string("a\0b", 3)) == "a\\x00b");
    CHECK(printable("abcdef", 4) == "abcd...");
    CHECK(printable("\\") == "\\x5c");
}
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
