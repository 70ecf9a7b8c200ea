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
