// test_download.cpp - the downloader's scheduling rules without sockets
// (fetcher/download.h): retry backoff bounds and the order due jobs start in.
#include "fetcher/download.h"

#include <doctest/doctest.h>

using namespace mm;

TEST_CASE("retry backoff doubles, is capped, and is jittered downwards only")
{
    using std::chrono::seconds;
    struct Case {
        unsigned attempts;
        double jitter;
        int64_t want;
    };
    const Case cases[] = {
        {1, 0.0, 5},      {1, 0.999, 9},   {2, 0.0, 10},    {3, 0.0, 20},
        {10, 0.0, 1800},  {10, 0.999, 3598}, {1000, 0.0, 1800}, {0, 0.0, 5},
        {1, -5.0, 5},     {1, 7.0, 9},
    };
    for (const auto& c : cases) {
        CAPTURE(c.attempts);
        CAPTURE(c.jitter);
        CHECK(backoff(c.attempts, seconds(10), seconds(3600), c.jitter).count() == c.want);
    }
    CHECK(backoff(5, seconds(0), seconds(0), 0.0).count() >= 1);   // never a busy loop
}

TEST_CASE("due downloads start priority senders first, then the least-failed")
{
    auto job = [](bool priority, unsigned attempts) {
        Job j;
        j.priority = priority;
        j.attempts = attempts;
        return j;
    };
    struct Case {
        Job a, b;
        bool a_first, b_first;
    };
    const Case cases[] = {
        {job(true, 0), job(false, 0), true, false},
        {job(true, 9), job(false, 0), true, false},   // priority beats a clean record
        {job(false, 0), job(false, 3), true, false},
        {job(true, 1), job(true, 2), true, false},
        {job(false, 2), job(false, 2), false, false}, // equal: neither (stable order kept)
    };
    for (const auto& c : cases) {
        CHECK(runs_before(c.a, c.b) == c.a_first);
        CHECK(runs_before(c.b, c.a) == c.b_first);
    }
}
