// test_download.cpp - the downloader's scheduling rules without sockets
// (fetcher/download.h): retry backoff bounds, the order due jobs start in, the
// host fetcher.max_per_host counts, quota accounting, one job per source and the
// older job files' migration.
#include "fetcher/download.h"
#include "fetcher/sync.h"
#include "fetcher_fixtures.h"
#include "mime_fixtures.h"

#include <dirent.h>

#include <doctest/doctest.h>

#include <fstream>

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

TEST_CASE("the host fetcher.max_per_host counts")
{
    struct Case {
        const char* url;
        const char* host;
    };
    const Case cases[] = {
        {"https://gw.example/m/x", "gw.example"},
        {"https://GW.Example:8443/m/x", "gw.example"},
        {"https://user:pw@gw.example:1/m", "gw.example"},
        {"https://gw.example?x=1", "gw.example"},
        {"https://gw.example#f", "gw.example"},
        {"http://127.0.0.1:8080/", "127.0.0.1"},
        {"https://[::1]:8443/m", "[::1]"},
        {"https://[::1/m", ""},
        {"https://a@b@gw.example/", "gw.example"},
        {"gw.example/m/x", ""},
        {"", ""},
        {"https://", ""},
    };
    for (const auto& c : cases) {
        CAPTURE(c.url);
        CHECK(url_host(c.url) == c.host);
    }
}

TEST_CASE("quota accounting: files plus running downloads at full size, no overflow")
{
    const uint64_t M = 1024 * 1024, big = UINT64_MAX;
    struct Case {
        const char* why;
        uint64_t files, reserved, need, quota;
        bool fits;
    };
    const Case cases[] = {
        {"empty cache", 0, 0, 3 * M, 4 * M, true},
        {"exactly full", 1 * M, 0, 3 * M, 4 * M, true},
        {"one running 3 MB download, a second 3 MB", 0, 3 * M, 3 * M, 4 * M, false},
        {"two running downloads already over", 0, 6 * M, 0, 4 * M, false},
        {"mail copies fill it", 4 * M + 1, 0, 0, 4 * M, false},
        {"mail copies and one download", 1 * M, 2 * M, 1 * M, 4 * M, true},
        {"one byte over", 1 * M, 2 * M, 1 * M + 1, 4 * M, false},
        {"huge need does not wrap", 1, 0, big, 4 * M, false},
        {"huge files do not wrap", big, 0, 1, 4 * M, false},
        {"huge reserved does not wrap", 0, big, 1, 4 * M, false},
        {"unlimited quota", big / 2, big / 4, big / 8, big, true},
    };
    for (const auto& c : cases) {
        CAPTURE(c.why);
        QuotaUse u;
        u.files = c.files;
        u.reserved = c.reserved;
        CHECK(u.fits(c.need, c.quota) == c.fits);
    }
}

namespace {

std::vector<std::string> names_in(const std::string& dir, const std::string& suffix)
{
    std::vector<std::string> out;
    if (DIR* d = opendir(dir.c_str())) {
        while (dirent* e = readdir(d)) {
            std::string n = e->d_name;
            if (n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0)
                out.push_back(n);
        }
        closedir(d);
    }
    std::sort(out.begin(), out.end());
    return out;
}

Handle media_handle(const std::string& url)
{
    Handle h;
    h.sha256 = std::string(64, 'a');
    h.size = 1000;
    h.url = url;
    return h;
}

} // namespace

TEST_CASE("two sources of one file are two jobs: one refused never stands for the other")
{
    fetch_fixtures::TempCache c;
    DownloadOptions opt;
    opt.media_dir = c.dir + "/media";
    opt.jobs_dir = c.dir + "/jobs";
    Downloader dl(opt);   // not started: nothing is fetched
    std::string path;
    const Handle bad = media_handle("https://bad.example/m/x"), good = media_handle("https://gw.example/m/x");
    CHECK(dl.want(bad, false, true, "", path) == MediaState::pending);
    CHECK(dl.want(good, false, true, "", path) == MediaState::pending);
    CHECK(dl.want(good, false, true, "", path) == MediaState::pending);   // the same source again: no new job
    CHECK(names_in(opt.jobs_dir, ".job") ==
          std::vector<std::string>{std::min(job_id(bad), job_id(good)) + ".job",
                                   std::max(job_id(bad), job_id(good)) + ".job"});
    Handle pinned = good;
    pinned.pin = "sha256//AAAA";
    CHECK(dl.want(pinned, false, true, "", path) == MediaState::pending);
    CHECK(names_in(opt.jobs_dir, ".job").size() == 3);
    CHECK(dl.peek(good.sha256, good.size) == MediaState::pending);
    // The verified file is shared by hash: any source of it is ready at once.
    mm::fixtures::write_file(dl.final_path(good.sha256), std::string(1000, 'x'));
    CHECK(dl.want(media_handle("https://third.example/m"), false, true, "", path) == MediaState::ready);
    CHECK(path == dl.final_path(good.sha256));
    CHECK(names_in(opt.jobs_dir, ".job").size() == 3);
}

TEST_CASE("job files of the older layout (named by sha256) are renamed to their id at start")
{
    fetch_fixtures::TempCache c;
    DownloadOptions opt;
    opt.media_dir = c.dir + "/media";
    opt.jobs_dir = c.dir + "/jobs";
    opt.allow_private = false;
    Job j;
    j.handle = media_handle("https://127.0.0.1:1/m/x");   // never fetched: asked only
    j.state = Job::State::asked;
    j.recipients = {"bob@example.test"};
    {
        std::ofstream(job_path(opt.jobs_dir, j.handle.sha256)) << format_job(j);
        Job other = j;
        other.handle.url = "https://127.0.0.1:1/m/other";
        std::ofstream(job_path(opt.jobs_dir, std::string(64, 'd'))) << format_job(other);   // name matches nothing
    }
    for (bool receipts : {true, false}) {
        CAPTURE(receipts);
        opt.receipts = receipts;
        Downloader dl(opt);
        std::string err;
        REQUIRE(dl.start(err));
        dl.stop();
        CHECK(names_in(opt.jobs_dir, ".job") == std::vector<std::string>{job_id(j.handle) + ".job"});
        CHECK(names_in(opt.jobs_dir, ".bad") == std::vector<std::string>{std::string(64, 'd') + ".job.bad"});
        Job back;
        REQUIRE(load_job(job_path(opt.jobs_dir, job_id(j.handle)), back));
        CHECK(back.handle.url == j.handle.url);
        CHECK(back.state == Job::State::asked);
        CHECK(back.recipients.size() == (receipts ? 1u : 0u));   // fetcher.receipts = false keeps none
    }
}
