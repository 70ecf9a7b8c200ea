// test_follow.cpp - re-insertion that follows a download still being written
// (fetcher/follow.h): its result is what the finished file gives, and bytes that
// are not the handle's, a download that stops, starts over or is not done in
// time all make it fail, so that nothing unverified is ever shown. Also the
// engine's report that a rebuilt message is CRLF throughout.
#include "fetcher/download.h"
#include "fetcher/follow.h"
#include "rewrite_fixtures.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <sys/stat.h>
#include <thread>

using namespace mm;
using namespace mm::fixtures;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

namespace {

/// A message whose video was detached, and a downloader (not started: its
/// transfers are played by the test) that has been asked for the video.
struct Detached {
    TempDir t;
    std::string video, out, media;
    Handle h;
    std::unique_ptr<Downloader> dl;

    explicit Detached(const std::string& eol, bool schedule = true)
    {
        video = fake_mp4(700000);
        write_file(t.path + "/in.eml", media_message(eol, video));
        out = t.path + "/out.eml";
        FileSink sink(t.path);
        DetachPolicy p;
        p.min_size = 100000;
        DetachResult r = detach_message(t.path + "/in.eml", out, p, sink);
        REQUIRE(r.detached == 1);
        h = r.handles[0];
        media = sink.files[0];
        DownloadOptions opt;
        opt.media_dir = t.path + "/media";
        opt.jobs_dir = t.path + "/jobs";
        REQUIRE(mkdir(opt.media_dir.c_str(), 0700) == 0);
        REQUIRE(mkdir(opt.jobs_dir.c_str(), 0700) == 0);
        dl = std::make_unique<Downloader>(opt);
        std::string path;
        CHECK(dl->want(h, false, schedule, "", path) == MediaState::pending);
        CHECK(dl->peek(h.sha256, h.size) == (schedule ? MediaState::pending : MediaState::waiting));
    }
    std::string part() const { return dl->part_path(h.sha256); }
    std::string final_path() const { return dl->final_path(h.sha256); }

    /// What re-insertion from the finished file gives.
    std::string expected()
    {
        std::string err;
        REQUIRE_MESSAGE(reinsert_media(out, {media}, t.path + "/want.eml", err), err);
        return read_file(t.path + "/want.eml");
    }
    /// Re-insertion following the download; "" on success, else the error.
    std::string follow(milliseconds budget, bool* crlf = nullptr, const std::atomic<bool>* stop = nullptr)
    {
        FollowedMedia fm(*dl, h, steady_clock::now() + budget, stop);
        std::string err;
        std::vector<MediaInput*> in{&fm};
        bool ok = reinsert_media(out, in, t.path + "/back.eml", err, crlf);
        CHECK(ok == err.empty());
        return ok ? "" : err;
    }
};

/// Appends `data` to `path` in pieces with pauses, as a transfer would.
void write_slowly(const std::string& path, const std::string& data, size_t piece = 50000)
{
    for (size_t off = 0; off < data.size(); off += piece) {
        FILE* f = fopen(path.c_str(), "ab");
        REQUIRE(f);
        fwrite(data.data() + off, 1, std::min(piece, data.size() - off), f);
        fclose(f);
        std::this_thread::sleep_for(milliseconds(3));
    }
}

} // namespace

TEST_CASE("re-insertion following a download gives what the finished file gives")
{
    for (std::string eol : {"\r\n", "\n"}) {
        CAPTURE(eol.size());
        Detached d(eol);
        std::thread writer([&] {
            write_slowly(d.part(), d.video);
            REQUIRE(rename(d.part().c_str(), d.final_path().c_str()) == 0);
        });
        bool crlf = !(eol == "\r\n");
        std::string err = d.follow(milliseconds(20000), &crlf);
        writer.join();
        CHECK(err == "");
        CHECK(read_file(d.t.path + "/back.eml") == d.expected());
        // What the fetcher needs to know to skip its CRLF pass over the whole file.
        CHECK(crlf == (eol == "\r\n"));
    }
}

TEST_CASE("a download already finished, or finished before the follower looked, is read as it is")
{
    Detached d("\r\n");
    write_file(d.final_path(), d.video);
    CHECK(d.follow(milliseconds(2000)) == "");
    CHECK(read_file(d.t.path + "/back.eml") == d.expected());
}

TEST_CASE("bytes that are not the handle's are never re-inserted")
{
    Detached d("\r\n");
    std::string bad = d.video;
    bad[bad.size() / 2] ^= 0x01;
    std::thread writer([&] { write_slowly(d.part(), bad); });
    std::string err = d.follow(milliseconds(20000));
    writer.join();
    CHECK(err.find("SHA-256 differs") != std::string::npos);
}

TEST_CASE("a download that stops, starts over or is not done in time ends the following")
{
    SUBCASE("not done in time")
    {
        Detached d("\r\n");
        write_file(d.part(), d.video.substr(0, 300000));
        auto t0 = steady_clock::now();
        std::string err = d.follow(milliseconds(400));
        CHECK(err.find("not done in time") != std::string::npos);
        CHECK(steady_clock::now() - t0 < milliseconds(3000));
    }
    SUBCASE("the process shutting down")
    {
        Detached d("\r\n");
        write_file(d.part(), d.video.substr(0, 300000));
        std::atomic<bool> stop{false};
        std::thread stopper([&] {
            std::this_thread::sleep_for(milliseconds(200));
            stop = true;
        });
        auto t0 = steady_clock::now();
        std::string err = d.follow(milliseconds(20000), nullptr, &stop);
        stopper.join();
        CHECK(err.find("shutting down") != std::string::npos);
        CHECK(steady_clock::now() - t0 < milliseconds(3000));
    }
    SUBCASE("stopped: the job is no longer downloading")
    {
        Detached d("\r\n", false);   // fetcher.mode = ask: recorded, not fetched
        write_file(d.part(), d.video.substr(0, 300000));
        CHECK(d.follow(milliseconds(20000)).find("download stopped") != std::string::npos);
    }
    SUBCASE("started over in a new file")
    {
        Detached d("\r\n");
        write_file(d.part(), d.video.substr(0, 300000));
        std::thread writer([&] {
            std::this_thread::sleep_for(milliseconds(300));
            REQUIRE(unlink(d.part().c_str()) == 0);
            write_file(d.part(), d.video.substr(0, 1000));
        });
        std::string err = d.follow(milliseconds(20000));
        writer.join();
        CHECK(err.find("started over") != std::string::npos);
    }
}
