// test_reinsert.cpp - putting media back (mime/reinsert.h): reinsert_layout(),
// which lets mm-fetcher list a message before its media are in, against what
// reinsert_media() then writes; and failures reported as false with err, never
// thrown. Round trips through detach are in test_detach.cpp.
#include <doctest/doctest.h>

#include "mime/detach.h"
#include "mime/media_input.h"
#include "mime/reinsert.h"
#include "core/util.h"
#include "mime_fixtures.h"

#include <memory>
#include <string>
#include <vector>

using namespace mm;
using namespace mm::fixtures;

TEST_CASE("reinsert_layout: the size, the first media octet and the line ends, before any media")
{
    for (std::string eol : {"\r\n", "\n"}) {
        CAPTURE(eol.size());
        TempDir t;
        std::string video = fake_mp4(300000), video2 = fake_mp4(250001);
        std::string msg = media_message(eol, video);
        // A second video part before the closing boundary.
        size_t close = msg.rfind("--b1--");
        REQUIRE(close != std::string::npos);
        msg.insert(close, "--b1" + eol + "Content-Type: video/webm" + eol + "Content-Transfer-Encoding: base64" + eol +
                              eol + b64_lines(video2, 76, eol) + eol);
        write_file(t.path + "/in.eml", msg);
        FileSink sink(t.path);
        DetachPolicy p;
        p.min_size = 100000;
        DetachResult r = detach_message(t.path + "/in.eml", t.path + "/out.eml", p, sink);
        REQUIRE(r.detached == 2);
        for (std::vector<bool> replace : {std::vector<bool>{true, true}, {true, false}, {false, true}, {false, false}}) {
            std::vector<std::string> media;
            for (size_t i = 0; i < 2; ++i)
                media.push_back(replace[i] ? sink.files[i] : "");
            std::string err;
            REQUIRE_MESSAGE(reinsert_media(t.path + "/out.eml", media, t.path + "/back.eml", err), err);
            std::string back = read_file(t.path + "/back.eml");
            ReinsertLayout lay;
            REQUIRE_MESSAGE(reinsert_layout(t.path + "/out.eml", replace, lay, err), err);
            CHECK(lay.size == back.size());
            CHECK(lay.crlf_clean == (eol == "\r\n"));
            // The top: X-Media-Restored with what went back; X-Media-Handles
            // gone, or the number of location parts that stay.
            const size_t back_n = (replace[0] ? 1 : 0) + (replace[1] ? 1 : 0);
            if (back_n == 0) {
                CHECK(back == read_file(t.path + "/out.eml"));
            } else {
                std::string hashes = replace[0] ? r.handles[0].sha256 : "";
                if (replace[1])
                    hashes += (hashes.empty() ? "" : ",") + r.handles[1].sha256;
                std::string top = "X-Media-Restored: " + std::to_string(back_n) + "; sha256=" + hashes + eol;
                if (back_n == 1)
                    top += "X-Media-Handles: 1" + eol;
                CHECK(back.compare(0, top.size(), top) == 0);
                CHECK(back.find("X-Media-Handles: 2") == std::string::npos);
                if (back_n == 2)
                    CHECK(back.substr(top.size()) == msg);
            }
            if (!replace[0] && !replace[1]) {
                CHECK(lay.first_media == UINT64_MAX);
            } else {
                const std::string& first = replace[0] ? video : video2;
                CHECK(back.compare(lay.first_media, 76, base64_encode(first).substr(0, 76)) == 0);
            }
        }
        // Wrong count, and a message that is not there.
        ReinsertLayout lay;
        std::string err;
        CHECK(!reinsert_layout(t.path + "/out.eml", {true}, lay, err));
        CHECK(err.find("2 location parts") != std::string::npos);
        CHECK(!reinsert_layout(t.path + "/nothing.eml", {true}, lay, err));
        CHECK(!err.empty());
    }
}

TEST_CASE("reinsert_media: bad media and bad messages give false with err, never an exception")
{
    TempDir t;
    std::string video = fake_mp4(300000);
    write_file(t.path + "/in.eml", media_message("\r\n", video));
    FileSink sink(t.path);
    DetachPolicy p;
    p.min_size = 100000;
    DetachResult r = detach_message(t.path + "/in.eml", t.path + "/out.eml", p, sink);
    REQUIRE(r.detached == 1);
    const std::string out = t.path + "/out.eml", back = t.path + "/back.eml";

    std::string err;
    REQUIRE_MESSAGE(reinsert_media(out, sink.files, back, err), err);
    // Byte for byte the original, the sender's X-Media-Handles replaced by the trace field.
    CHECK(read_file(back) == "X-Media-Restored: 1; sha256=" + sha256_hex(video) + "\r\n" + media_message("\r\n", video));
    // Nothing replaced: the message as it is.
    REQUIRE_MESSAGE(reinsert_media(out, std::vector<std::string>{""}, back, err), err);
    CHECK(read_file(back) == read_file(out));

    struct Case {
        const char* name;
        std::string in;
        std::vector<std::string> media;
    } cases[] = {
        {"no media file", out, {t.path + "/missing"}},
        {"too many media files", out, {sink.files[0], sink.files[0]}},
        {"none given", out, {}},
        {"no message", t.path + "/nothing.eml", {sink.files[0]}},
        {"a media file shorter than its handle", out, {t.path + "/short"}},
        {"a media file longer than its handle", out, {t.path + "/long"}},
    };
    write_file(t.path + "/short", video.substr(0, video.size() - 1));
    write_file(t.path + "/long", video + "x");
    for (const auto& c : cases) {
        CAPTURE(c.name);
        err.clear();
        bool ok = true;
        CHECK_NOTHROW(ok = reinsert_media(c.in, c.media, back, err));
        CHECK_FALSE(ok);
        CHECK_FALSE(err.empty());
    }

    // A MediaInput that fails part way, as a download that breaks off does.
    struct Broken : MediaInput {
        size_t read(char*, size_t) override { throw std::runtime_error("download failed"); }
    } broken;
    std::vector<MediaInput*> in{&broken};
    bool ok = true;
    CHECK_NOTHROW(ok = reinsert_media(out, in, back, err));
    CHECK_FALSE(ok);
    CHECK(err == "download failed");
}

TEST_CASE("reinsert_media: a folded or repeated X-Media-Handles goes whole; one in the body stays")
{
    TempDir t;
    std::string video = fake_mp4(200000);
    write_file(t.path + "/in.eml", media_message("\r\n", video));
    FileSink sink(t.path);
    DetachPolicy p;
    p.min_size = 100000;
    DetachResult r = detach_message(t.path + "/in.eml", t.path + "/out.eml", p, sink);
    REQUIRE(r.detached == 1);
    std::string out = read_file(t.path + "/out.eml");
    REQUIRE(out.compare(0, 20, "X-Media-Handles: 1\r\n") == 0);
    // Folded, repeated, in another case; and the same words in the body.
    std::string edited = "x-media-HANDLES:\r\n\t1\r\nX-Media-Handles: 1\r\n" + out.substr(20);
    size_t body = edited.find("\r\n\r\n");
    REQUIRE(body != std::string::npos);
    edited.insert(body + 4, "X-Media-Handles: 9\r\n");
    write_file(t.path + "/edited.eml", edited);
    std::string err;
    REQUIRE_MESSAGE(reinsert_media(t.path + "/edited.eml", sink.files, t.path + "/back.eml", err), err);
    std::string back = read_file(t.path + "/back.eml");
    std::string want = media_message("\r\n", video);
    want.insert(want.find("\r\n\r\n") + 4, "X-Media-Handles: 9\r\n");
    CHECK(back == "X-Media-Restored: 1; sha256=" + sha256_hex(video) + "\r\n" + want);
    ReinsertLayout lay;
    REQUIRE(reinsert_layout(t.path + "/edited.eml", {true}, lay, err));
    CHECK(lay.size == back.size());
}
