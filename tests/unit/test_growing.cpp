// test_growing.cpp - re-insertion that follows a download still being written
// (fetcher/growing_media.h): its result is what the finished file gives, and bytes that
// are not the handle's, a download that stops, starts over or is not done in
// time all make it fail, so that nothing unverified is ever shown. Also the
// engine's report that a rebuilt message is CRLF throughout. With segment
// digests: no byte leaves the follower before its segment checks out, and a
// presented file read while it is built (fetcher/growing_message.h) is the same file.
#include "fetcher/growing_message.h"
#include "fetcher/download.h"
#include "fetcher/growing_media.h"
#include "mime_fixtures.h"
#include "mime/segments.h"

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

    explicit Detached(const std::string& eol, bool schedule = true, size_t size = 700000)
    {
        video = fake_mp4(size);
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
    /// Gives the handle the segment digests the store would have given it.
    void add_segments()
    {
        SegmentHasher sh;
        sh.update(video.data(), video.size());
        h.seg_sha256 = sh.finish(h.seg_size);
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
    std::string follow(milliseconds budget, bool* crlf = nullptr, const std::atomic<bool>* stop = nullptr,
                       bool by_segment = false)
    {
        GrowingMedia fm(*dl, h, steady_clock::now() + budget, stop, by_segment);
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
    const auto pause = milliseconds(piece > 500000 ? 1 : 3);
    for (size_t off = 0; off < data.size(); off += piece) {
        FILE* f = fopen(path.c_str(), "ab");
        REQUIRE(f);
        fwrite(data.data() + off, 1, std::min(piece, data.size() - off), f);
        fclose(f);
        std::this_thread::sleep_for(pause);
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

TEST_CASE("with segment digests, no byte leaves the follower before its segment checks out")
{
    Detached d("\r\n", true, 34 << 20);   // three segments: 16, 16 and 2 MiB
    d.add_segments();
    REQUIRE(segment_count(d.h.size, d.h.seg_size) == 3);
    SUBCASE("good bytes: the same message as from the finished file, segment by segment or not")
    {
        for (bool by_segment : {true, false}) {
            CAPTURE(by_segment);
            std::thread writer([&] {
                write_slowly(d.part(), d.video, 1 << 20);
                REQUIRE(rename(d.part().c_str(), d.final_path().c_str()) == 0);
            });
            std::string err = d.follow(milliseconds(60000), nullptr, nullptr, by_segment);
            writer.join();
            CHECK(err == "");
            CHECK(read_file(d.t.path + "/back.eml") == d.expected());
            REQUIRE(rename(d.final_path().c_str(), (d.t.path + "/done").c_str()) == 0);
        }
    }
    SUBCASE("a bad byte in the second segment: the first one only, then the error")
    {
        std::string bad = d.video;
        bad[d.h.seg_size + 777] ^= 0x01;
        std::thread writer([&] { write_slowly(d.part(), bad, 1 << 20); });
        GrowingMedia fm(*d.dl, d.h, steady_clock::now() + milliseconds(60000), nullptr, true);
        std::string got, err;
        std::vector<char> buf(300000);
        try {
            for (;;)
                got.append(buf.data(), fm.read(buf.data(), buf.size()));
        } catch (const std::exception& e) {
            err = e.what();
        }
        writer.join();
        CHECK(err.find("segment 2 differs") != std::string::npos);
        CHECK(got.size() == d.h.seg_size);
        CHECK(got == d.video.substr(0, d.h.seg_size));
    }
}

namespace {

/// A build of the presented file following the download, as mm-fetcher starts
/// one with fetcher.stream: the result goes to `presented` when done.
std::shared_ptr<GrowingMessage> start_build(Detached& d, std::shared_ptr<std::atomic<bool>>& cancel, uint64_t& first_media,
                                      const std::atomic<bool>* stop = nullptr)
{
    ReinsertLayout lay;
    std::string err;
    REQUIRE_MESSAGE(reinsert_layout(d.out, {true}, lay, err), err);
    first_media = lay.first_media;
    cancel = std::make_shared<std::atomic<bool>>(false);
    std::vector<std::unique_ptr<MediaInput>> media;
    media.push_back(std::make_unique<GrowingMedia>(*d.dl, d.h, steady_clock::now() + milliseconds(60000), stop,
                                                    true, cancel.get()));
    const std::string presented = d.t.path + "/presented.eml";
    auto finish = [presented](const std::string& rebuilt, std::string& why) {
        why = "rename";
        return rename(rebuilt.c_str(), presented.c_str()) == 0;
    };
    auto b = GrowingMessage::start(d.out, d.t.path + "/rebuilt.eml", presented, std::move(media), cancel, lay, finish, err);
    REQUIRE_MESSAGE(b, err);
    CHECK(b->size() == lay.size);
    return b;
}

/// Reads a build front to back as RETR does; `why` set if it failed.
std::string read_build(GrowingMessage& b, std::string& why)
{
    std::string got;
    char buf[65536];
    ssize_t n;
    while ((n = b.read(buf, sizeof buf, got.size(), why)) > 0)
        got.append(buf, static_cast<size_t>(n));
    if (n == 0)
        why.clear();
    return got;
}

} // namespace

TEST_CASE("a presented file read while it is built is the finished file")
{
    Detached d("\r\n", true, 34 << 20);
    d.add_segments();
    const std::string want = d.expected();
    std::shared_ptr<std::atomic<bool>> cancel;
    uint64_t first_media = 0;
    std::thread writer([&] {
        write_slowly(d.part(), d.video, 1 << 20);
        REQUIRE(rename(d.part().c_str(), d.final_path().c_str()) == 0);
    });
    auto b = start_build(d, cancel, first_media);
    CHECK(GrowingMessage::find(d.t.path + "/presented.eml") == b);
    std::string why;
    CHECK(b->wait_started(why));
    std::string got = read_build(*b, why);
    writer.join();
    CHECK(why == "");
    CHECK(got.size() == want.size());
    CHECK(got == want);
    CHECK(read_file(d.t.path + "/presented.eml") == want);
    b.reset();
    CHECK(GrowingMessage::find(d.t.path + "/presented.eml") == nullptr);
}

TEST_CASE("a build whose media fail a check: a clean refusal, or an answer cut short of the bad bytes")
{
    Detached d("\r\n", true, 34 << 20);
    d.add_segments();
    const std::string want = d.expected();
    SUBCASE("in the first segment: nothing is sent at all")
    {
        std::string bad = d.video;
        bad[100] ^= 0x01;
        std::thread writer([&] { write_slowly(d.part(), bad, 1 << 20); });
        std::shared_ptr<std::atomic<bool>> cancel;
        uint64_t first_media = 0;
        auto b = start_build(d, cancel, first_media);
        std::string why;
        CHECK(!b->wait_started(why));
        CHECK(why.find("segment 1 differs") != std::string::npos);
        // A new login does not get the failed build, though its reader still holds it.
        CHECK(GrowingMessage::find(d.t.path + "/presented.eml") == nullptr);
        writer.join();
        b.reset();
        CHECK(access((d.t.path + "/presented.eml").c_str(), F_OK) != 0);
        CHECK(access((d.t.path + "/rebuilt.eml").c_str(), F_OK) != 0);
    }
    SUBCASE("in the third segment: what was read is the true beginning, and stops before it")
    {
        std::string bad = d.video;
        bad[2 * d.h.seg_size + 5] ^= 0x01;
        std::thread writer([&] { write_slowly(d.part(), bad, 1 << 20); });
        std::shared_ptr<std::atomic<bool>> cancel;
        uint64_t first_media = 0;
        auto b = start_build(d, cancel, first_media);
        std::string why;
        CHECK(b->wait_started(why));
        std::string got = read_build(*b, why);
        writer.join();
        CHECK(why.find("segment 3 differs") != std::string::npos);
        CHECK(got.size() > first_media);
        CHECK(got.size() < want.size());
        CHECK(want.compare(0, got.size(), got) == 0);
        // Encoded, the two good segments are at most 4/3 of their size plus line ends.
        CHECK(got.size() <= first_media + (2 * d.h.seg_size) / 57 * 78 + 78);
        b.reset();
        CHECK(access((d.t.path + "/presented.eml").c_str(), F_OK) != 0);
    }
}

TEST_CASE("a build nobody reads any more is cancelled, not waited for")
{
    Detached d("\r\n", true, 34 << 20);
    d.add_segments();
    write_file(d.part(), d.video.substr(0, 20 << 20));   // the download stalls after 20 MiB
    std::shared_ptr<std::atomic<bool>> cancel;
    uint64_t first_media = 0;
    auto b = start_build(d, cancel, first_media);
    std::string why;
    CHECK(b->wait_started(why));
    auto t0 = steady_clock::now();
    b.reset();
    CHECK(steady_clock::now() - t0 < milliseconds(3000));
    CHECK(access((d.t.path + "/rebuilt.eml").c_str(), F_OK) != 0);
    CHECK(access((d.t.path + "/presented.eml").c_str(), F_OK) != 0);
}

TEST_CASE("a reader of a build whose download stalls is let go when the process stops")
{
    Detached d("\r\n", true, 34 << 20);
    d.add_segments();
    write_file(d.part(), d.video.substr(0, 20 << 20));   // stalls after 20 MiB
    std::shared_ptr<std::atomic<bool>> cancel;
    std::atomic<bool> stop{false};
    uint64_t first_media = 0;
    auto b = start_build(d, cancel, first_media, &stop);
    std::thread stopper([&] {
        std::this_thread::sleep_for(milliseconds(300));
        stop = true;
    });
    auto t0 = steady_clock::now();
    std::string why;
    std::string got = read_build(*b, why);
    stopper.join();
    CHECK(why.find("shutting down") != std::string::npos);
    CHECK(steady_clock::now() - t0 < milliseconds(3000));
    CHECK(got.size() > first_media);   // the first segment went out before
}
