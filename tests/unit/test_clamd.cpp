// test_clamd.cpp - the clamd client (fetcher/clamd.h): its address syntax, the
// replies it understands, a clamd that is not there, and the verdict kept per file.
#include "fetcher/clamd.h"
#include "mime_fixtures.h"

#include <doctest/doctest.h>

#include <string>

using namespace mm;

TEST_CASE("parse_clamd_address: unix:/PATH and inet:HOST:PORT only")
{
    struct Case {
        const char* s;
        bool ok;
    };
    const Case cases[] = {
        {"unix:/run/clamav/clamd.ctl", true}, {"inet:127.0.0.1:3310", true}, {"inet:[::1]:3310", true},
        {"inet:localhost:3310", true},        {"", false},                   {"unix:", false},
        {"unix:relative", false},             {"inet:127.0.0.1", false},     {"inet::3310", false},
        {"inet:h:0", false},                  {"inet:h:65536", false},       {"inet:h:33x", false},
        {"tcp:h:1", false},                   {"inet:a b:1", false},         {"/run/clamd.ctl", false},
    };
    for (const auto& c : cases) {
        CAPTURE(c.s);
        ClamdAddress a;
        CHECK(parse_clamd_address(c.s, a) == c.ok);
    }
}

TEST_CASE("parse_clamd_reply: OK, FOUND, and anything else is not a verdict")
{
    struct Case {
        std::string reply;
        ScanVerdict want;
        const char* detail;
    };
    const Case cases[] = {
        {"stream: OK", ScanVerdict::clean, ""},
        {"stream: OK\n", ScanVerdict::clean, ""},
        {"stream: Eicar-Test-Signature FOUND", ScanVerdict::infected, "Eicar-Test-Signature"},
        {"stream: Bad\x1b[31mName\r\n FOUND", ScanVerdict::infected, "Bad__31mName__"},
        {"INSTREAM size limit exceeded. ERROR", ScanVerdict::unavailable, nullptr},
        {"stream: lstat() failed ERROR", ScanVerdict::unavailable, nullptr},
        {"stream: ", ScanVerdict::unavailable, nullptr},
        {"stream: FOUND", ScanVerdict::unavailable, nullptr},
        {"", ScanVerdict::unavailable, nullptr},
        {"OK", ScanVerdict::unavailable, nullptr},
    };
    for (const auto& c : cases) {
        CAPTURE(c.reply);
        std::string detail;
        CHECK(parse_clamd_reply(c.reply, detail) == c.want);
        if (c.detail)
            CHECK(detail == c.detail);
    }
}

TEST_CASE("scan_media_once: no clamd is unavailable and leaves no verdict; a kept verdict is used")
{
    fixtures::TempDir t;
    const std::string media = t.path + "/m";
    fixtures::write_file(media, "bytes");
    ClamdAddress a;
    REQUIRE(parse_clamd_address("unix:" + t.path + "/no-such.sock", a));
    std::string detail;
    CHECK(scan_media_once(a, media, std::chrono::seconds(1), detail) == ScanVerdict::unavailable);
    CHECK_FALSE(detail.empty());
    CHECK(access((media + ".scan").c_str(), F_OK) != 0);
    fixtures::write_file(media + ".scan", "FOUND Test.Sig\n");
    CHECK(scan_media_once(a, media, std::chrono::seconds(1), detail) == ScanVerdict::infected);
    CHECK(detail == "Test.Sig");
    fixtures::write_file(media + ".scan", "OK\n");
    CHECK(scan_media_once(a, media, std::chrono::seconds(1), detail) == ScanVerdict::clean);
    fixtures::write_file(media + ".scan", "garbage");
    CHECK(scan_media_once(a, media, std::chrono::seconds(1), detail) == ScanVerdict::unavailable);
}
