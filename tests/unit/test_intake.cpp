// test_intake.cpp - a message on its way into mm-milter: the SMTP filter's intake
// (milter/intake.h) fed in pieces, and the prescan thread beside the milter
// callbacks (milter/prescan_thread.h).
#include <doctest/doctest.h>

#include "core/config.h"
#include "milter/intake.h"
#include "milter/prescan_thread.h"
#include "mime/detach.h"
#include "store/store.h"
#include "mime_fixtures.h"

#include <chrono>
#include <future>
#include <sys/stat.h>
#include <thread>

using namespace mm;
using namespace mm::fixtures;

// The SMTP filter's intake (milter/intake.h with keep_all): the raw message in
// pieces, as DATA brings it. A message that passes must come out of the spool
// byte for byte (it is the only copy), and the intake must find the same media
// the engine finds in the whole file.
namespace {

struct FilterIntake {
    TempDir t;
    MilterSettings s;
    explicit FilterIntake(uint64_t max_message_size = uint64_t(4) << 30)
    {
        Config cfg = Config::load("", {"store.dir=" + t.path + "/store", "gateway.public_url=https://gw.example.test/"});
        s.store = std::make_unique<Store>(cfg);
        s.spool_dir = t.path + "/spool";
        REQUIRE(mkdir(s.spool_dir.c_str(), 0700) == 0);
        s.policy.min_size = 1;
        s.policy.types = {"video/*", "audio/*"};
        s.max_message_size = max_message_size;
    }
    /// Feeds msg in pieces of `step` bytes; returns the verdict and, for a
    /// pass, the spooled bytes (for a detach, the rewritten message).
    Verdict run(const std::string& msg, size_t step, std::string& bytes)
    {
        Intake in(s, true);
        in.begin();
        in.recipient("<bob@example.test>");
        RawIntake raw(in);
        for (size_t i = 0; i < msg.size(); i += step)
            raw.feed(msg.data() + i, std::min(step, msg.size() - i));
        raw.finish();
        Verdict v = in.finish(nullptr);
        bytes.clear();
        if (v.kind == Verdict::Kind::pass)
            bytes = read_file(in.spool_path());
        else if (v.kind == Verdict::Kind::detached)
            bytes = read_file(v.out_path);
        return v;
    }
};

} // namespace

TEST_CASE("filter intake: every corpus message in pieces; what passes is kept byte for byte")
{
    std::vector<std::string> files = corpus_files();
    if (files.empty()) {
        WARN_MESSAGE(false, ("corpus not found at " + corpus_dir()).c_str());
        return;
    }
    FilterIntake fi;
    const size_t steps[] = {13, 997, 65536};
    unsigned passed = 0, detached = 0, i = 0;
    for (const auto& f : files) {
        CAPTURE(f);
        std::string original = read_file(f), bytes;
        Verdict v = fi.run(original, steps[i++ % 3], bytes);
        FileSink probe(fi.t.path);
        DetachResult direct;
        bool threw = false;
        try {
            direct = detach_message(f, fi.t.path + "/direct.eml", fi.s.policy, probe);
        } catch (const std::exception&) {
            threw = true;
        }
        if (v.kind == Verdict::Kind::fail) {
            CHECK(threw);   // only what the engine refuses on the whole file fails here
            continue;
        }
        CHECK_FALSE(threw);
        if (v.kind == Verdict::Kind::pass) {
            ++passed;
            CHECK(direct.detached == 0);
            CHECK(bytes == original);
        } else {
            ++detached;
            REQUIRE(v.kind == Verdict::Kind::detached);
            CHECK(v.detached == direct.detached);
            CHECK(bytes.compare(0, 16, "X-Media-Handles:") == 0);
        }
    }
    MESSAGE("filter intake: " << passed << " corpus messages passed unchanged, " << detached << " detached");
    CHECK(passed >= 400);
}

TEST_CASE("filter intake: media detached in any piece size; DKIM, header-only and oversized mail")
{
    FilterIntake fi;
    std::string msg = media_message("\r\n", fake_mp4(300000)), bytes;
    for (size_t step : {1u, 4u, 76u, 4096u, 65536u, 1u << 20}) {
        CAPTURE(step);
        Verdict v = fi.run(msg, step, bytes);
        REQUIRE(v.kind == Verdict::Kind::detached);
        CHECK(v.detached == 1);
        CHECK(bytes.size() < 4096);
        CHECK(bytes.find("Here it is.") != std::string::npos);
    }
    // Signed: passed whole, media and all.
    std::string signed_msg = "DKIM-Signature: v=1; a=rsa-sha256; d=example.test\r\n" + msg;
    Verdict v = fi.run(signed_msg, 1000, bytes);
    CHECK(v.kind == Verdict::Kind::pass);
    CHECK(v.action.find("DKIM") != std::string::npos);
    CHECK(bytes == signed_msg);
    // A single text part: passed at end of headers, still kept whole.
    std::string plain = "Subject: hi\r\nContent-Type: text/plain\r\n\r\n" + std::string(200000, 'x') + "\r\n";
    v = fi.run(plain, 333, bytes);
    CHECK(v.kind == Verdict::Kind::pass);
    CHECK(bytes == plain);
    // Header lines only, the last without its line break.
    std::string head_only = "Subject: only\r\nX-Last: no break";
    v = fi.run(head_only, 5, bytes);
    CHECK(v.kind == Verdict::Kind::pass);
    CHECK(bytes == head_only);
    // Over milter.max_message_size: nothing else holds it, so it is refused.
    FilterIntake small(100000);
    v = small.run(msg, 4096, bytes);
    CHECK(v.kind == Verdict::Kind::reject);
    CHECK(v.text.find("larger") != std::string::npos);
}

// A store that fails (disk full) while the prescan queue is full must not leave
// the milter's callback waiting for room for ever (found when faults.test.sh
// hung once in CI: Postfix got no answer, the client no reply).
TEST_CASE("prescan thread: a sink that fails while the queue is full does not block feed()")
{
    struct FailingSink : MediaSink {
        struct P : Part {
            void write(const void*, size_t) override
            {
                // Long enough for the feeder to fill the 4 MiB queue, then the disk is full.
                std::this_thread::sleep_for(std::chrono::milliseconds(300));
                throw std::runtime_error("No space left on device");
            }
            void finish(Handle&) override {}
        };
        std::unique_ptr<Part> begin(const std::string&, const std::string&) override { return std::make_unique<P>(); }
    } sink;
    DetachPolicy policy;
    policy.min_size = 1;
    policy.types = {"video/*"};
    std::string msg = media_message("\r\n", fake_mp4(12 << 20));
    PrescanThread pre(policy, sink);
    auto fed = std::async(std::launch::async, [&] {
        for (size_t i = 0; i < msg.size(); i += 65536)
            pre.feed(msg.data() + i, std::min<size_t>(65536, msg.size() - i));
    });
    REQUIRE(fed.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
    std::string why;
    CHECK(pre.finish(why).empty());
    CHECK(why.find("No space") != std::string::npos);
}
