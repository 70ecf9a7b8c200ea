// test_segments.cpp - segment digests (mime/segments.h) against a reference
// written out the slow way, and their place in the handle (strict both ways).
#include "mime/detach.h"
#include "mime/handle.h"
#include "mime_fixtures.h"
#include "mime/segments.h"

#include <cstring>

using namespace mm;
using namespace mm::fixtures;

namespace {

/// The digests as segments.h defines them: SHA-256 of each 1 MiB block, and
/// per segment the SHA-256 of its blocks' raw digests, hex, concatenated.
std::string reference(const std::string& data, uint64_t seg_size)
{
    std::string out;
    for (size_t s = 0; s < data.size(); s += seg_size) {
        std::string blocks;
        std::string seg = data.substr(s, seg_size);
        for (size_t b = 0; b < seg.size(); b += kSegmentBlock) {
            Sha256 h;
            std::string block = seg.substr(b, kSegmentBlock);
            h.update(block.data(), block.size());
            blocks += h.raw_digest();
        }
        out += sha256_hex(blocks);
    }
    return out;
}

} // namespace

TEST_CASE("segments: the segment length keeps a handle to at most 64 digests")
{
    CHECK(segment_size_for(0) == 0);
    CHECK(segment_size_for(1) == 16 * kSegmentBlock);
    CHECK(segment_size_for(1ULL << 30) == 16 * kSegmentBlock);            // 1 GiB: 64 segments
    CHECK(segment_size_for((1ULL << 30) + 1) == 17 * kSegmentBlock);      // one byte more: longer ones
    for (uint64_t size : {1ULL, 5ULL << 20, 1ULL << 30, (1ULL << 30) + 1, 3ULL << 30, 1ULL << 40, (1ULL << 40) + 7}) {
        CAPTURE(size);
        uint64_t seg = segment_size_for(size);
        CHECK(seg % kSegmentBlock == 0);
        CHECK(segment_count(size, seg) <= kSegmentMaxCount);
        CHECK(segment_count(size, seg) >= 1);
    }
    CHECK(segment_count(32 * kSegmentBlock, 16 * kSegmentBlock) == 2);
    CHECK(segment_count(32 * kSegmentBlock + 1, 16 * kSegmentBlock) == 3);
}

TEST_CASE("segments: the hasher gives the reference digests, however the bytes are fed")
{
    for (size_t size : {size_t{0}, size_t{1}, size_t(kSegmentBlock - 1), size_t(kSegmentBlock),
                        size_t(kSegmentBlock + 1), size_t(16 * kSegmentBlock), size_t(33 * kSegmentBlock + 12345)}) {
        CAPTURE(size);
        std::string data = fake_mp4(size).substr(0, size);
        for (size_t chunk : {size_t{1000}, size_t{65536}, size_t{3 << 20}}) {
            if (size > (2u << 20) && chunk == 1000)
                continue;   // slow, and says nothing the others do not
            CAPTURE(chunk);
            SegmentHasher h;
            for (size_t at = 0; at < data.size(); at += chunk)
                h.update(data.data() + at, std::min(chunk, data.size() - at));
            uint64_t seg = 99;
            std::string hex = h.finish(seg);
            CHECK(seg == segment_size_for(size));
            CHECK(hex == (size ? reference(data, seg) : ""));
            CHECK(valid_segments(size, seg, hex));
            // And the receiver's check agrees segment by segment.
            for (uint64_t s = 0; s < segment_count(size, seg); ++s) {
                SegmentCheck c;
                std::string part = data.substr(s * seg, seg);
                c.update(part.data(), part.size());
                CHECK(c.matches(std::string_view(hex).substr(s * 64, 64)));
            }
        }
    }
}

TEST_CASE("segments: one changed byte fails its segment's check only")
{
    std::string data = fake_mp4(33 * kSegmentBlock);
    SegmentHasher h;
    h.update(data.data(), data.size());
    uint64_t seg = 0;
    std::string hex = h.finish(seg);
    REQUIRE(segment_count(data.size(), seg) == 3);
    data[seg + 777] ^= 0x40;   // in the second segment
    for (uint64_t s = 0; s < 3; ++s) {
        SegmentCheck c;
        std::string part = data.substr(s * seg, seg);
        c.update(part.data(), part.size());
        CHECK(c.matches(std::string_view(hex).substr(s * 64, 64)) == (s != 1));
    }
    // A check used again starts from nothing.
    SegmentCheck c;
    c.update("x", 1);
    CHECK(!c.matches(std::string(64, '0')));
    c.update(data.data(), seg);
    CHECK(c.matches(std::string_view(hex).substr(0, 64)));
}

TEST_CASE("segments: malformed lists are refused")
{
    const std::string d(64, 'a');
    CHECK(valid_segments(0, 0, ""));
    CHECK(!valid_segments(0, kSegmentBlock, d));
    CHECK(!valid_segments(10, 0, ""));
    CHECK(!valid_segments(10, 0, d));
    CHECK(valid_segments(10, kSegmentBlock, d));
    CHECK(!valid_segments(10, kSegmentBlock + 1, d));          // not whole blocks
    CHECK(!valid_segments(10, kSegmentBlock, d + d));          // one digest too many
    CHECK(!valid_segments(kSegmentBlock + 1, kSegmentBlock, d));   // one too few
    CHECK(!valid_segments(10, kSegmentBlock, std::string(64, 'A')));   // uppercase
    CHECK(!valid_segments(10, kSegmentBlock, std::string(63, 'a') + "g"));
    std::string many;
    for (int i = 0; i < 65; ++i)
        many += d;
    CHECK(!valid_segments(65 * kSegmentBlock, kSegmentBlock, many));   // over 64 segments
    CHECK(valid_segments(64 * kSegmentBlock, kSegmentBlock, many.substr(64)));
}

TEST_CASE("segments: in the handle they round-trip, and come as a pair or not at all")
{
    std::string video = fake_mp4(200000);
    TempDir t;
    write_file(t.path + "/in.eml", media_message("\r\n", video));
    FileSink sink(t.path);
    DetachPolicy p;
    p.min_size = 100000;
    DetachResult r = detach_message(t.path + "/in.eml", t.path + "/out.eml", p, sink);
    REQUIRE(r.detached == 1);
    Handle h = r.handles[0];
    SegmentHasher sh;
    sh.update(video.data(), video.size());
    h.seg_sha256 = sh.finish(h.seg_size);
    std::string detail;
    REQUIRE(validate_handle(h, detail) == HandleError::none);
    std::string field = format_handle_field(h, "\r\n");
    CHECK(field.find("segsize=16777216") != std::string::npos);
    std::string value = field.substr(std::strlen("X-Media-Handle:"));
    HandleParse back = parse_handle(value);
    REQUIRE(back.error == HandleError::none);
    CHECK(back.handle.seg_size == h.seg_size);
    CHECK(back.handle.seg_sha256 == h.seg_sha256);

    // Without them the handle is what it always was.
    Handle plain = r.handles[0];
    CHECK(format_handle_field(plain, "\r\n").find("seg") == std::string::npos);

    // One without the other, or a list that does not fit the size.
    auto without = [&](const std::string& name) {
        std::string v = value;
        size_t at = v.find(name + "=");
        REQUIRE(at != std::string::npos);
        size_t end = v.find(';', at);
        v.erase(at, end == std::string::npos ? std::string::npos : end + 1 - at);
        return parse_handle(v);
    };
    HandleParse a = without("segsha256");
    CHECK(a.error == HandleError::missing);
    CHECK(a.detail == "segsha256");
    HandleParse b = without("segsize");
    CHECK(b.error == HandleError::missing);
    CHECK(b.detail == "segsize");
    Handle wrong = h;
    wrong.seg_size = kSegmentBlock / 2;
    CHECK(parse_handle(format_handle_field(wrong, "\r\n").substr(15)).error == HandleError::bad_value);
    wrong.seg_size = h.seg_size;
    wrong.seg_sha256 += wrong.seg_sha256;
    CHECK(parse_handle(format_handle_field(wrong, "\r\n").substr(15)).error == HandleError::bad_value);
    wrong.seg_sha256 = h.seg_sha256;
    wrong.seg_sha256[5] = 'Z';
    HandleParse z = parse_handle(format_handle_field(wrong, "\r\n").substr(15));
    CHECK(z.error == HandleError::bad_value);
    CHECK(z.detail == "segsha256");
}
