// test_job_file.cpp - the download queue's on-disk job format (fetcher/job_file.h):
// a round trip, and strict refusal of every kind of damaged file.
#include "fetcher/job_file.h"

#include <doctest/doctest.h>

#include <string>

using namespace mm;

namespace {

const std::string kSha(64, 'a');

Job sample_job()
{
    Job j;
    j.handle.sha256 = kSha;
    j.handle.size = 12345;
    j.handle.url = "https://gw.example:8443/m/abc/def";
    j.handle.pin = "sha256//AAAA";
    j.state = Job::State::receipt;
    j.priority = true;
    j.attempts = 3;
    j.next_try = 1700000000;
    j.recipients = {"bob@example.test", "carol@example.test"};
    return j;
}

} // namespace

TEST_CASE("download jobs survive a round trip through their file")
{
    Job j = sample_job(), back;
    std::string text = format_job(j);
    REQUIRE(parse_job(text, back));
    CHECK(back.handle.sha256 == j.handle.sha256);
    CHECK(back.handle.size == j.handle.size);
    CHECK(back.handle.url == j.handle.url);
    CHECK(back.handle.pin == j.handle.pin);
    CHECK(back.state == j.state);
    CHECK(back.priority);
    CHECK(back.attempts == 3);
    CHECK(back.next_try == 1700000000);
    CHECK(back.recipients == j.recipients);
    CHECK(format_job(back) == text);
}

TEST_CASE("damaged download job files are refused")
{
    const std::string good = format_job(sample_job());
    auto replaced = [&](const std::string& from, const std::string& to) {
        std::string s = good;
        size_t p = s.find(from);
        REQUIRE(p != std::string::npos);
        return s.replace(p, from.size(), to);
    };
    struct Case {
        const char* why;
        std::string text;
    };
    const Case cases[] = {
        {"empty", ""},
        {"no final newline", good.substr(0, good.size() - 1)},
        {"unknown key", good + "colour=blue\n"},
        {"line without =", good + "garbage\n"},
        {"sha256 not hex", replaced("sha256=" + kSha, "sha256=" + std::string(64, 'g'))},
        {"sha256 upper case", replaced("sha256=" + kSha, "sha256=" + std::string(64, 'A'))},
        {"sha256 short", replaced("sha256=" + kSha, "sha256=abc")},
        {"size negative", replaced("size=12345", "size=-1")},
        {"size with sign", replaced("size=12345", "size=+1")},
        {"size overflow", replaced("size=12345", "size=99999999999999999999999")},
        {"size trailing junk", replaced("size=12345", "size=12a")},
        {"empty url", replaced("url=https://gw.example:8443/m/abc/def", "url=")},
        {"control byte in url", replaced("/m/abc/def", "/m/a\x01" "bc")},
        {"carriage return", replaced("pin=sha256//AAAA", "pin=sha256//AAAA\r")},
        {"unknown state", replaced("state=receipt", "state=done")},
        {"priority 2", replaced("priority=1", "priority=2")},
        {"attempts empty", replaced("attempts=3", "attempts=")},
        {"next not a number", replaced("next=1700000000", "next=soon")},
        {"empty recipient", good + "rcpt=\n"},
        {"recipient too long", good + "rcpt=" + std::string(300, 'x') + "\n"},
        {"missing sha256", replaced("sha256=" + kSha + "\n", "")},
        {"missing size", replaced("size=12345\n", "")},
        {"missing state", replaced("state=receipt\n", "")},
        {"too large", good + std::string(70000, '#') + "\n"},
    };
    for (const auto& c : cases) {
        Job out;
        CAPTURE(c.why);
        CHECK_FALSE(parse_job(c.text, out));
    }
    std::string many = good;
    for (int i = 0; i < 70; ++i)
        many += "rcpt=u" + std::to_string(i) + "@example.test\n";
    Job out;
    CHECK_FALSE(parse_job(many, out));   // more recipients than any one job keeps
}

TEST_CASE("a job is one source: (sha256, url, pin) name it; old files named by sha256 are recognised")
{
    const Job j = sample_job();
    const std::string id = job_id(j.handle);
    CHECK(id.size() == 64);
    struct Case {
        const char* why;
        std::string sha, url, pin;
        bool same;
    };
    const Case cases[] = {
        {"same source", kSha, j.handle.url, j.handle.pin, true},
        {"other URL", kSha, "https://gw.example:8443/m/abc/deg", j.handle.pin, false},
        {"other pin", kSha, j.handle.url, "sha256//BBBB", false},
        {"no pin", kSha, j.handle.url, "", false},
        {"other hash", std::string(64, 'b'), j.handle.url, j.handle.pin, false},
        // NUL separators: moving bytes between fields never gives the same id.
        {"url end moved to pin", kSha, "https://gw.example:8443/m/abc/de", "fsha256//AAAA", false},
    };
    for (const auto& c : cases) {
        CAPTURE(c.why);
        Handle h;
        h.sha256 = c.sha;
        h.url = c.url;
        h.pin = c.pin;
        h.size = 1;   // the size is not part of the source
        CHECK((job_id(h) == id) == c.same);
    }
    struct NameCase {
        const char* why;
        std::string name_id;
        JobFileName want;
    };
    const NameCase names[] = {
        {"named by its id", id, JobFileName::current},
        {"older layout, named by sha256", kSha, JobFileName::old_layout},
        {"another job's id", job_id(Handle{}), JobFileName::mismatch},
        {"some other digest", std::string(64, 'c'), JobFileName::mismatch},
    };
    for (const auto& n : names) {
        CAPTURE(n.why);
        CHECK(classify_job_file(n.name_id, j) == n.want);
    }
    std::string got;
    CHECK(job_file_name(id + ".job", got));
    CHECK(got == id);
    CHECK(job_path("/q", id) == "/q/" + id + ".job");
    CHECK(want_path("/q", id) == "/q/" + id + ".want");
    CHECK_FALSE(job_file_name(id + ".job.bad", got));
    CHECK_FALSE(job_file_name(id.substr(1) + ".job", got));
}
