// test_detach.cpp - detaching media (mime/detach.h), checked by putting them back
// (mime/reinsert.h): the original must come back byte for byte; messages without
// media, or signed, encrypted or over max_size, must come out untouched; every
// corpus message must go through without a crash.
#include <doctest/doctest.h>

#include "mime/detach.h"
#include "mime/find_handles.h"
#include "mime/reinsert.h"
#include "core/util.h"
#include "mime_fixtures.h"

#include <cstring>
#include <strings.h>
#include <unistd.h>

using namespace mm;
using namespace mm::fixtures;

namespace {

struct RoundTrip {
    DetachResult r;
    std::string rewritten, restored;
};

RoundTrip round_trip(TempDir& t, const std::string& msg, const DetachPolicy& policy)
{
    RoundTrip rt;
    write_file(t.path + "/in.eml", msg);
    FileSink sink(t.path);
    rt.r = detach_message(t.path + "/in.eml", t.path + "/out.eml", policy, sink);
    if (rt.r.detached == 0)
        return rt;
    rt.rewritten = read_file(t.path + "/out.eml");
    auto found = find_handles(t.path + "/out.eml");
    REQUIRE(found.size() == sink.files.size());
    std::string err;
    REQUIRE_MESSAGE(reinsert_media(t.path + "/out.eml", sink.files, t.path + "/back.eml", err), err);
    rt.restored = read_file(t.path + "/back.eml");
    return rt;
}

/// The original as re-insertion gives it back: the sender side's
/// X-Media-Handles gone, the receiver's trace field on top (handle-format.md).
std::string restored_as(const std::string& msg, const DetachResult& r, const std::string& eol)
{
    std::string hashes;
    for (const auto& h : r.handles)
        hashes += (hashes.empty() ? "" : ",") + h.sha256;
    return "X-Media-Restored: " + std::to_string(r.handles.size()) + "; sha256=" + hashes + eol + msg;
}

} // namespace

TEST_CASE("a video attachment is detached and re-inserted byte for byte")
{
    for (std::string eol : {"\r\n", "\n"}) {
        CAPTURE(eol.size());
        TempDir t;
        std::string video = fake_mp4(300000);
        std::string msg = media_message(eol, video);
        DetachPolicy p;
        p.min_size = 100000;
        RoundTrip rt = round_trip(t, msg, p);
        REQUIRE(rt.r.detached == 1);
        const Handle& h = rt.r.handles[0];
        CHECK(h.size == video.size());
        CHECK(h.sha256 == sha256_hex(video));
        CHECK(h.name == "beach.mp4");
        CHECK(h.type == "video/mp4");
        CHECK(h.line_len == 76);
        CHECK(h.eol == eol);
        CHECK(rt.rewritten.size() < 8000);
        CHECK(rt.rewritten.find("Here it is." + eol + "--b1") != std::string::npos);
        CHECK(rt.rewritten.find("X-Media-Handle:") != std::string::npos);
        CHECK(rt.rewritten.compare(0, 18, "X-Media-Handles: 1") == 0);
        CHECK(rt.restored == restored_as(msg, rt.r, eol));
        // The body offset the milter uses points just past the empty line.
        std::string hdr_end = eol + eol;
        CHECK(rt.r.out_body_offset == rt.rewritten.find(hdr_end) + hdr_end.size());
    }
}

TEST_CASE("layouts: other line lengths, a final line break, an exact multiple")
{
    struct Case {
        size_t size, line_len;
        std::string tail;
    } cases[] = {{300000, 76, ""}, {300001, 72, ""}, {300002, 64, ""}, {299997, 76, "\r\n"}, {57 * 1000, 76, ""}};
    for (const auto& c : cases) {
        CAPTURE(c.size);
        CAPTURE(c.line_len);
        TempDir t;
        std::string msg = media_message("\r\n", fake_mp4(c.size), "video/mp4", c.line_len, c.tail);
        DetachPolicy p;
        p.min_size = 1000;
        RoundTrip rt = round_trip(t, msg, p);
        REQUIRE(rt.r.detached == 1);
        CHECK(rt.restored == restored_as(msg, rt.r, "\r\n"));
    }
}

TEST_CASE("what is not detached")
{
    TempDir t;
    DetachPolicy p;
    p.min_size = 100000;
    struct Case {
        const char* what;
        std::string msg;
    } cases[] = {
        {"small video", media_message("\r\n", fake_mp4(1000))},
        {"large non-media", media_message("\r\n", std::string(300000, 'x'), "application/pdf")},
        {"signed", "Content-Type: multipart/signed; boundary=s; protocol=\"application/pgp-signature\"\r\n\r\n"
                   "--s\r\n" +
                       media_message("\r\n", fake_mp4(300000)) +
                       "--s\r\nContent-Type: application/pgp-signature\r\n\r\nsig\r\n--s--\r\n"},
        {"no MIME at all", "Subject: hi\r\n\r\nplain text\r\n"},
        {"empty", ""},
        {"headers only", "Subject: x\r\n"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.what);
        unlink((t.path + "/out.eml").c_str());
        RoundTrip rt = round_trip(t, c.msg, p);
        CHECK(rt.r.detached == 0);
        struct stat st;
        CHECK(stat((t.path + "/out.eml").c_str(), &st) != 0);   // nothing written
    }
}

TEST_CASE("octet-stream that sniffs as video is detached; its declared type is kept")
{
    TempDir t;
    std::string msg = media_message("\r\n", fake_mp4(300000), "application/octet-stream");
    DetachPolicy p;
    p.min_size = 1000;
    RoundTrip rt = round_trip(t, msg, p);
    REQUIRE(rt.r.detached == 1);
    CHECK(rt.r.handles[0].type == "application/octet-stream");
    CHECK(rt.restored == restored_as(msg, rt.r, "\r\n"));
    p.sniff = false;
    unlink((t.path + "/out.eml").c_str());
    CHECK(round_trip(t, msg, p).r.detached == 0);
}

TEST_CASE("nested: forwarded message/rfc822, alternative, several media")
{
    TempDir t;
    std::string inner = media_message("\r\n", fake_mp4(200000));
    std::string msg = "Subject: fwd\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n"
                      "--outer\r\nContent-Type: multipart/alternative; boundary=alt\r\n\r\n"
                      "--alt\r\nContent-Type: text/plain\r\n\r\nplain\r\n--alt\r\nContent-Type: text/html\r\n\r\n"
                      "<p>html</p>\r\n--alt--\r\n"
                      "--outer\r\nContent-Type: message/rfc822\r\n\r\n" +
                      inner +
                      "--outer\r\nContent-Type: audio/mpeg; name=song.mp3\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
                      b64_lines(std::string("ID3\x03\0\0\0\0\0\0", 10) + std::string(150000, 'a'), 76, "\r\n") +
                      "\r\n--outer--\r\n";
    DetachPolicy p;
    p.min_size = 1000;
    RoundTrip rt = round_trip(t, msg, p);
    REQUIRE(rt.r.detached == 2);
    CHECK(rt.r.handles[0].name == "beach.mp4");
    CHECK(rt.r.handles[1].name == "song.mp3");
    CHECK(rt.restored == restored_as(msg, rt.r, "\r\n"));
}

TEST_CASE("irregular base64 is detached and re-encoded; the decoded bytes are the same")
{
    TempDir t;
    std::string video = fake_mp4(200000);
    std::string enc = base64_encode(video);
    // Lines of varying length, as some broken encoders write.
    std::string body;
    for (size_t i = 0, n = 60; i < enc.size(); i += n, n = n == 60 ? 76 : 60)
        body += enc.substr(i, n) + "\r\n";
    body.resize(body.size() - 2);
    std::string msg = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: video/mp4\r\n"
                      "Content-Transfer-Encoding: base64\r\n\r\n" +
                      body + "\r\n--b--\r\n";
    DetachPolicy p;
    p.min_size = 1000;
    RoundTrip rt = round_trip(t, msg, p);
    REQUIRE(rt.r.detached == 1);
    CHECK(rt.r.handles[0].sha256 == sha256_hex(video));
    CHECK(rt.restored != restored_as(msg, rt.r, "\r\n"));
    CHECK(rt.restored.find(b64_lines(video, 76, "\r\n")) != std::string::npos);
}

TEST_CASE("a failing store aborts the rewrite")
{
    TempDir t;
    write_file(t.path + "/in.eml", media_message("\r\n", fake_mp4(200000)));
    FileSink sink(t.path);
    sink.fail = true;
    DetachPolicy p;
    p.min_size = 1000;
    CHECK_THROWS(detach_message(t.path + "/in.eml", t.path + "/out.eml", p, sink));
}

TEST_CASE("every corpus message: no crash, untouched without media, exact round trip with")
{
    std::vector<std::string> files = corpus_files();
    if (files.empty()) {
        WARN_MESSAGE(false, ("corpus not found at " + corpus_dir()).c_str());
        return;
    }
    CHECK(files.size() >= 500);

    unsigned untouched = 0, detached_files = 0, exact = 0, parts = 0;
    for (const auto& f : files) {
        CAPTURE(f);
        TempDir t;
        std::string original = read_file(f);
        // Default policy: the corpus holds no large media, so nothing may change.
        {
            FileSink sink(t.path);
            DetachResult r = detach_message(f, t.path + "/out.eml", DetachPolicy{}, sink);
            if (r.detached == 0)
                ++untouched;
        }
        // Aggressive policy: every base64 attachment of any type and size.
        DetachPolicy all;
        all.min_size = 1;
        all.types = {"*/*"};
        FileSink sink(t.path);
        unlink((t.path + "/out.eml").c_str());
        DetachResult r = detach_message(f, t.path + "/out.eml", all, sink);
        if (r.detached == 0)
            continue;
        ++detached_files;
        parts += r.detached;
        std::string err;
        REQUIRE_MESSAGE(reinsert_media(t.path + "/out.eml", sink.files, t.path + "/back.eml", err), err);
        std::string back = read_file(t.path + "/back.eml");
        size_t nl = original.find('\n');
        std::string eol = (nl == std::string::npos || (nl > 0 && original[nl - 1] == '\r')) ? "\r\n" : "\n";
        bool all_regular = r.skipped_why.empty();
        if (back == restored_as(original, r, eol))
            ++exact;
        else
            CHECK_MESSAGE(!all_regular, "regular layout but not restored exactly");
    }
    MESSAGE("corpus: " << files.size() << " files, " << untouched << " untouched by default policy, "
                       << detached_files << " with attachments detached (" << parts << " parts), " << exact
                       << " restored byte for byte");
    CHECK(untouched == files.size());
}

namespace {

/// The header block `headers` (fields and the empty line) with its Content-Type
/// field (folded lines included) replaced by `type`, first.
std::string retype(const std::string& headers, const std::string& type, const std::string& eol)
{
    std::string out = "Content-Type: " + type + eol;
    bool skipping = false;
    size_t pos = 0;
    while (pos < headers.size()) {
        size_t nl = headers.find('\n', pos);
        size_t end = nl == std::string::npos ? headers.size() : nl + 1;
        std::string line = headers.substr(pos, end - pos);
        pos = end;
        bool continuation = !line.empty() && (line[0] == ' ' || line[0] == '\t');
        if (!continuation)
            skipping = line.size() >= 13 && strncasecmp(line.c_str(), "content-type:", 13) == 0;
        if (!skipping)
            out += line;
    }
    return out;
}

} // namespace

TEST_CASE("corpus with media: one attachment retyped video/mp4 and grown is detached; every other byte is kept")
{
    std::vector<std::string> files = corpus_files();
    if (files.empty()) {
        WARN_MESSAGE(false, ("corpus not found at " + corpus_dir()).c_str());
        return;
    }
    unsigned used = 0;
    for (const auto& f : files) {
        CAPTURE(f);
        TempDir t;
        std::string original = read_file(f);
        // Find a base64 attachment with a regular layout: detach everything once.
        DetachPolicy all;
        all.min_size = 1;
        all.types = {"*/*"};
        FileSink probe(t.path);
        DetachResult pr = detach_message(f, t.path + "/probe.eml", all, probe);
        if (pr.detached == 0 || !pr.skipped_why.empty())
            continue;
        const Handle& h = pr.handles[0];
        size_t hdr_start = original.find(h.headers);
        if (hdr_start == std::string::npos || original.find(h.headers, hdr_start + 1) != std::string::npos)
            continue;   // the header block must be unique to cut at it
        size_t body_start = hdr_start + h.headers.size();
        size_t body_end = body_start + base64_encoded_size(h.size, h.line_len, h.eol.size(), h.final_eol);
        std::string next = h.final_eol ? "--" : h.eol + "--";
        if (body_end > original.size() || original.compare(body_end, next.size(), next) != 0)
            continue;

        // The same message with that part retyped video/mp4 and grown past min_size.
        std::string media = read_file(probe.files[0]) + fake_mp4(70000);
        std::string part = retype(h.headers, "video/mp4; name=\"grown.mp4\"", h.eol) +
                           b64_lines(media, h.line_len, h.eol) + (h.final_eol ? h.eol : "");
        std::string modified = original.substr(0, hdr_start) + part + original.substr(body_end);
        size_t part_end = hdr_start + part.size();

        DetachPolicy p;
        p.min_size = 65536;
        p.types = {"video/mp4"};
        p.sniff = false;
        RoundTrip rt = round_trip(t, modified, p);
        if (rt.r.detached != 1)
            continue;   // the corpus message had media of its own: not this check's case
        ++used;
        size_t nl = original.find('\n');
        std::string eol = (nl == std::string::npos || (nl > 0 && original[nl - 1] == '\r')) ? "\r\n" : "\n";
        std::string top = "X-Media-Handles: 1" + eol;
        REQUIRE(rt.rewritten.compare(0, top.size(), top) == 0);
        std::string out = rt.rewritten.substr(top.size());
        // Outside the replaced part, the rewritten message is the original.
        REQUIRE(out.size() >= hdr_start + (modified.size() - part_end));
        CHECK(out.compare(0, hdr_start, modified, 0, hdr_start) == 0);
        CHECK(out.compare(out.size() - (modified.size() - part_end), std::string::npos, modified, part_end) == 0);
        CHECK(rt.r.handles[0].size == media.size());
        // And the round trip gives back the grown message byte for byte.
        CHECK(rt.restored == restored_as(modified, rt.r, eol));
    }
    MESSAGE("corpus: " << used << " messages with one attachment retyped video/mp4 and grown, detached");
    CHECK(used >= 20);
}

TEST_CASE("protected content and max_size")
{
    TempDir t;
    DetachPolicy p;
    p.min_size = 100000;
    std::string video = fake_mp4(300000);
    std::string pgp_text = "Content-Type: text/plain\r\n\r\n-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n";
    struct Case {
        const char* what;
        std::string msg;
        const char* why;
    } cases[] = {
        {"inline PGP in a text part",
         "Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n" + pgp_text + "\r\n--o\r\n" +
             media_message("\r\n", video).substr(strlen("From: Alice <alice@example.test>\r\n")) + "--o--\r\n",
         "inline PGP"},
        {"pkcs7 inside a multipart",
         "Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: application/pkcs7-mime; "
         "smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\nMIIB\r\n--o\r\n" +
             media_message("\r\n", video).substr(strlen("From: Alice <alice@example.test>\r\n")) + "--o--\r\n",
         "application/pkcs7-mime"},
        {"encrypted",
         "Content-Type: multipart/encrypted; boundary=e; protocol=\"application/pgp-encrypted\"\r\n\r\n--e\r\n"
         "Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--e\r\n" +
             media_message("\r\n", video).substr(strlen("From: Alice <alice@example.test>\r\n")) + "--e--\r\n",
         "multipart/encrypted"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.what);
        RoundTrip rt = round_trip(t, c.msg, p);
        CHECK(rt.r.detached == 0);
        CHECK(rt.r.protected_why == c.why);
    }
    // A PGP marker split across two 64 KiB reads is still found.
    std::string pad(65536 - 30, 'a');
    std::string split = "Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: text/plain\r\n\r\n" +
                        pad + "\r\n-----BEGIN PGP MESSAGE-----\r\n--o\r\n" +
                        media_message("\r\n", video).substr(strlen("From: Alice <alice@example.test>\r\n")) +
                        "--o--\r\n";
    CHECK(round_trip(t, split, p).r.protected_why == "inline PGP");

    struct SizeCase {
        uint64_t max;
        bool reject;
        unsigned detached, over;
        bool rejected;
    } sizes[] = {
        {300000, false, 1, 0, false},   // exactly max: detached
        {299999, false, 0, 1, false},   // one byte over: left in place
        {299999, true, 0, 1, true},     // ...or the message refused
        {0, true, 0, 1, true},
    };
    for (const auto& s : sizes) {
        CAPTURE(s.max);
        CAPTURE(s.reject);
        DetachPolicy q = p;
        q.max_size = s.max;
        q.reject_over_max = s.reject;
        unlink((t.path + "/out.eml").c_str());
        FileSink sink(t.path);
        write_file(t.path + "/in.eml", media_message("\r\n", video));
        DetachResult r = detach_message(t.path + "/in.eml", t.path + "/out.eml", q, sink);
        CHECK(r.detached == s.detached);
        CHECK(r.over_max == s.over);
        CHECK(r.rejected == s.rejected);
        CHECK(sink.files.size() == s.detached);   // a refused or passed part never reaches the store
        if (s.over)
            CHECK(r.largest_over_max == video.size());
    }
}
