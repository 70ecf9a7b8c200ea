// test_admin.cpp - gateway/admin.h: the date `mm-gateway list --since` takes.
#include <doctest/doctest.h>

#include "gateway/admin.h"

#include <string>

using namespace mm;

TEST_CASE("parse_since: a date, or an ISO 8601 date and time; nothing else")
{
    struct Case {
        const char* in;
        bool ok;
        time_t want;
    } cases[] = {
        {"2026-03-01", true, 1772323200},
        {"2026-03-01T10:20", true, 1772323200 + 10 * 3600 + 20 * 60},
        {"2026-03-01T10:20:30Z", true, 1772323200 + 10 * 3600 + 20 * 60 + 30},
        {"2026-03-01t10:20:30z", true, 1772323200 + 10 * 3600 + 20 * 60 + 30},
        {"2026-03-01 10:20:30", true, 1772323200 + 10 * 3600 + 20 * 60 + 30},
        {"2026-03-01T10:20:30+02:00", true, 1772323200 + 8 * 3600 + 20 * 60 + 30},
        {"2026-03-01T00:00:00-01:30", true, 1772323200 + 90 * 60},
        {"2024-02-29", true, 1709164800},
        {"2025-02-29", false, 0},
        {"2026-04-31", false, 0},
        {"2026-13-01", false, 0},
        {"2026-00-10", false, 0},
        {"2026-1-01", false, 0},
        {"26-01-01", false, 0},
        {"2026-01-01T", false, 0},
        {"2026-01-01T24:00", false, 0},
        {"2026-01-01T10:60", false, 0},
        {"2026-01-01T10:20:30+2", false, 0},
        {"2026-01-01T10:20:30Zjunk", false, 0},
        {"2026-01-01x", false, 0},
        {"+026-01-01", false, 0},
        {"2026-+1-01", false, 0},
        {"yesterday", false, 0},
        {"", false, 0},
        {"1712345678", false, 0},
        {"2026-01-01\n", false, 0},
    };
    for (const auto& c : cases) {
        CAPTURE(std::string(c.in));
        time_t t = 0;
        CHECK(parse_since(c.in, t) == c.ok);
        if (c.ok)
            CHECK(t == c.want);
    }
}
