// test_prescan.cpp - decoding media while the message arrives (mime/prescan.h,
// with the parse of the growing file, mime/growing.h): the result must be
// exactly the one without, for any piece size and for every corpus message.
#include <doctest/doctest.h>

#include "mime/detach.h"
#include "mime/growing.h"
#include "mime/prescan.h"
#include "mime_fixtures.h"

#include <fcntl.h>
#include <thread>
#include <unistd.h>

using namespace mm;
using namespace mm::fixtures;

namespace {

/// Detaches `path` with the bodies prescanned from its bytes fed in `chunk`-byte
/// pieces (0: no prescan). Returns the output file's bytes (empty when nothing
/// was detached), the stored files' bytes and how many prescanned bodies were used.
struct DetachRun {
    DetachResult r;
    std::string out;
    std::vector<std::string> media;
    unsigned used = 0;
};
DetachRun detach_with(const std::string& path, const DetachPolicy& policy, size_t chunk, const std::string& dir)
{
    DetachRun run;
    FileSink sink(dir);
    std::vector<Predecoded> pre;
    ParsedMessagePtr parsed;
    std::string in_path = path;
    if (chunk > 0) {
        // As the milter does it: the file is written piece by piece while one
        // thread parses it (parse_growing) and the prescanner decodes it.
        in_path = dir + "/grown.eml";
        auto file = std::make_shared<GrowingFile>();
        int fd = open(in_path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
        REQUIRE(fd >= 0);
        std::thread parser([&] { parsed = parse_growing(in_path, file); });
        Prescanner scan(policy, sink);
        std::string text = read_file(path);
        size_t piece = std::max<size_t>(chunk, 997);   // the file grows by at least this
        bool written = true;
        for (size_t i = 0; i < text.size(); i += piece) {
            size_t n = std::min(piece, text.size() - i);
            written = written && write(fd, text.data() + i, n) == static_cast<ssize_t>(n);
            for (size_t k = 0; k < n; k += chunk)
                scan.feed(text.data() + i + k, std::min(chunk, n - k));
            file->grew(i + n);
        }
        CHECK(written);
        close(fd);
        file->finish();
        parser.join();
        pre = scan.finish();
    }
    std::string out_path = dir + "/out." + std::to_string(chunk);
    unlink(out_path.c_str());
    run.r = detach_message(in_path, out_path, policy, sink, chunk > 0 ? &pre : nullptr, std::move(parsed));
    if (run.r.detached > 0)
        run.out = read_file(out_path);
    for (const auto& f : sink.files)
        run.media.push_back(read_file(f));
    for (const auto& p : pre)
        run.used += p.part ? 0 : 1;
    return run;
}

} // namespace

TEST_CASE("prescan: bodies decoded while the message arrives give exactly the result without")
{
    std::string video = fake_mp4(3 << 19), audio = "ID3" + std::string(1 << 20, '\x07');
    struct Case {
        const char* name;
        std::string eol;
        unsigned line_len;
        bool nested;
        unsigned expect_used;
    } cases[] = {
        {"CRLF, 76 columns", "\r\n", 76, false, 1},
        {"LF, 76 columns", "\n", 76, false, 1},
        {"CRLF, 64 columns", "\r\n", 64, false, 1},
        {"nested multiparts and a forwarded message", "\r\n", 76, true, 3},
    };
    for (const auto& c : cases) {
        CAPTURE(c.name);
        const std::string& e = c.eol;
        std::string media_part = "Content-Type: video/mp4; name=\"v.mp4\"" + e + "Content-Transfer-Encoding: base64" + e +
                                 e + b64_lines(video, c.line_len, e) + e;
        std::string msg = "From: a@example.test" + e + "To: b@example.test" + e + "Subject: media" + e +
                          "MIME-Version: 1.0" + e + "Content-Type: multipart/mixed; boundary=\"outer\"" + e + e +
                          "preamble" + e + "--outer" + e + "Content-Type: text/plain" + e + e + "Hello -- see" + e +
                          "-- not a boundary" + e + "--outer" + e + media_part;
        if (c.nested) {
            msg += "--outer" + e + "Content-Type: multipart/alternative; boundary=inner" + e + e + "--inner" + e +
                   "Content-Type: text/plain" + e + e + "alt" + e + "--inner" + e + "Content-Type: audio/mpeg" + e +
                   "Content-Transfer-Encoding: BASE64" + e + e + b64_lines(audio, c.line_len, e) + e + "--inner--" + e +
                   e + "--outer" + e + "Content-Type: message/rfc822" + e + e + "From: c@example.test" + e +
                   "Subject: fwd" + e + "MIME-Version: 1.0" + e + "Content-Type: multipart/mixed; boundary=fw" + e +
                   e + "--fw" + e + media_part + "--fw--" + e;
        }
        msg += "--outer--" + e + "epilogue" + e;
        TempDir t;
        std::string path = t.path + "/in.eml";
        write_file(path, msg);
        DetachRun plain = detach_with(path, DetachPolicy{}, 0, t.path);
        REQUIRE(plain.r.detached == c.expect_used);
        for (size_t chunk : {size_t(1), size_t(7), size_t(4096), size_t(65536), msg.size()}) {
            CAPTURE(chunk);
            DetachRun fast = detach_with(path, DetachPolicy{}, chunk, t.path);
            CHECK(fast.used == c.expect_used);
            CHECK(fast.r.detached == plain.r.detached);
            CHECK(fast.out == plain.out);
            CHECK(fast.media == plain.media);
            CHECK(fast.r.skipped_why == plain.r.skipped_why);
        }
    }
}

TEST_CASE("prescan: every corpus message comes out the same with and without it")
{
    std::vector<std::string> files = corpus_files();
    if (files.empty())
        return;
    DetachPolicy all;
    all.min_size = 1;
    all.types = {"*/*"};
    unsigned used = 0;
    for (const auto& f : files) {
        CAPTURE(f);
        TempDir t;
        DetachRun plain = detach_with(f, all, 0, t.path);
        DetachRun fast = detach_with(f, all, 4093, t.path);
        CHECK(fast.r.detached == plain.r.detached);
        CHECK(fast.out == plain.out);
        CHECK(fast.media == plain.media);
        used += fast.used;
    }
    MESSAGE("corpus: " << used << " bodies of " << files.size() << " messages taken from the prescan");
}
