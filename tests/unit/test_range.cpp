// test_range.cpp - mm-gateway's Range header parser (gateway/range.h, RFC 9110
// section 14.2): single ranges clipped to the file, and every malformed or
// multi-range header answered with the whole file.
#include <doctest/doctest.h>

#include "gateway/range.h"

#include <cstdint>
#include <string>

using namespace mm;

TEST_CASE("parse_range: single ranges")
{
    using K = ByteRange::Kind;
    struct Case {
        const char* header;
        uint64_t size;
        K kind;
        uint64_t first, last;
    };
    const Case cases[] = {
        {"bytes=0-0", 100, K::partial, 0, 0},
        {"bytes=0-99", 100, K::partial, 0, 99},
        {"bytes=10-19", 100, K::partial, 10, 19},
        {"bytes=10-1000", 100, K::partial, 10, 99},      // clipped to the end
        {"bytes=90-", 100, K::partial, 90, 99},
        {"bytes=99-", 100, K::partial, 99, 99},
        {"bytes=-10", 100, K::partial, 90, 99},
        {"bytes=-100", 100, K::partial, 0, 99},
        {"bytes=-1000", 100, K::partial, 0, 99},
        {"Bytes=1-2", 100, K::partial, 1, 2},            // unit is case-insensitive
        {" bytes= 1-2 ", 100, K::partial, 1, 2},         // OWS
        {"bytes=100-", 100, K::unsatisfiable, 0, 0},
        {"bytes=100-200", 100, K::unsatisfiable, 0, 0},
        {"bytes=-0", 100, K::unsatisfiable, 0, 0},
        {"bytes=0-", 0, K::unsatisfiable, 0, 0},
        {"bytes=-5", 0, K::unsatisfiable, 0, 0},
        {"bytes=18446744073709551615-", 100, K::unsatisfiable, 0, 0},
        {"bytes=0-18446744073709551615", 100, K::partial, 0, 99},
    };
    for (const auto& c : cases) {
        CAPTURE(c.header);
        ByteRange r = parse_range(c.header, c.size);
        CHECK(r.kind == c.kind);
        if (c.kind == K::partial) {
            CHECK(r.first == c.first);
            CHECK(r.last == c.last);
        }
    }
}

TEST_CASE("parse_range: anything malformed means the whole file")
{
    const char* bad[] = {
        "", "bytes", "bytes=", "bytes=-", "bytes=a-b", "bytes=1-a", "bytes=+1-2", "bytes=1-+2", "bytes=1 -2",
        "bytes=1- 2", "bytes=0x10-20", "bytes=10-5", "bytes=1-2-3", "bytes=--5", "bytes=-5-", "bytes=1.5-2",
        "bytes=18446744073709551616-", "bytes=-18446744073709551616", "bytes=0-18446744073709551616",
        "items=0-10", "bytes 0-10", "bytes:0-10", "bytes=0-1,5-6", "bytes=0-1, 5-6", "bytes=,0-1", "bytes=0-1,",
        "bytes=\x01" "0-1", "bytes=0-1\r\n", "bytes=\xff",
    };
    for (const char* h : bad) {
        CAPTURE(h);
        CHECK(parse_range(h, 100).kind == ByteRange::Kind::whole);
    }
    CHECK(parse_range("bytes=0-1" + std::string(300, ' '), 100).kind == ByteRange::Kind::whole);
}
