// test_rewrite.cpp - the MIME rewriting engine: detach then re-insert must give
// back the original message byte for byte; messages without media must come out
// untouched; every corpus message must go through without a crash.
#include <doctest/doctest.h>

#include "mime/rewrite.h"
#include "mime/util.h"

#include <cstdio>
#include <dirent.h>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

using namespace mm;

namespace {

std::string corpus_dir()
{
    const char* env = getenv("MM_CORPUS_DIR");
    return env ? env : MM_CORPUS_DIR;
}

std::string read_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write_file(const std::string& path, const std::string& data)
{
    std::ofstream out(path, std::ios::binary);
    out << data;
}

struct TempDir {
    std::string path;
    TempDir()
    {
        char tmpl[] = "/tmp/mm-rewrite-test-XXXXXX";
        REQUIRE(mkdtemp(tmpl));
        path = tmpl;
    }
    ~TempDir() { (void)!system(("rm -rf '" + path + "'").c_str()); }
};

/// A sink that keeps each detached attachment in a file, as the store would.
class FileSink : public MediaSink {
public:
    explicit FileSink(std::string dir) : dir_(std::move(dir)) {}
    std::vector<std::string> files;
    bool fail = false;

    struct FilePart : Part {
        FileSink& sink;
        std::string path;
        std::ofstream out;
        FilePart(FileSink& s, std::string p) : sink(s), path(std::move(p)), out(path, std::ios::binary) {}
        void write(const void* d, size_t n) override { out.write(static_cast<const char*>(d), n); }
        void finish(Handle& h) override
        {
            if (sink.fail)
                throw std::runtime_error("store full");
            out.close();
            h.url = "https://gw.example.test:8443/m/0123456789abcdef0123456789abcdef/"
                    "fedcba9876543210fedcba9876543210";
            h.pin = "sha256//" + base64_encode(std::string(32, '\x01'));
            h.expires = "2026-12-25T10:00:00Z";
            sink.files.push_back(path);
        }
    };
    std::unique_ptr<Part> begin(const std::string&, const std::string&) override
    {
        return std::make_unique<FilePart>(*this, dir_ + "/media." + std::to_string(n_++));
    }

private:
    std::string dir_;
    int n_ = 0;
};

std::string b64_lines(const std::string& data, size_t line_len, const std::string& eol)
{
    std::string enc = base64_encode(data), out;
    for (size_t i = 0; i < enc.size(); i += line_len) {
        if (i)
            out += eol;
        out += enc.substr(i, line_len);
    }
    return out;
}

std::string fake_mp4(size_t size)
{
    std::string v = std::string("\0\0\0\x20" "ftypisom\0\0\x02\0isomiso2avc1mp41", 32);
    unsigned x = 12345;
    while (v.size() < size) {
        x = x * 1103515245 + 12345;
        v += static_cast<char>(x >> 16);
    }
    return v;
}

std::string media_message(const std::string& eol, const std::string& video, const std::string& type = "video/mp4",
                          size_t line_len = 76, const std::string& tail = "")
{
    std::string m;
    auto L = [&](const std::string& s) { m += s + eol; };
    L("From: Alice <alice@example.test>");
    L("To: bob@example.test");
    L("Subject: holiday video");
    L("MIME-Version: 1.0");
    L("Content-Type: multipart/mixed; boundary=\"b1\"");
    L("");
    L("preamble");
    L("--b1");
    L("Content-Type: text/plain; charset=utf-8");
    L("");
    L("Here it is.");
    L("--b1");
    L("Content-Type: " + type + "; name=\"beach.mp4\"");
    L("Content-Disposition: attachment; filename=\"beach.mp4\"");
    L("Content-Transfer-Encoding: base64");
    L("");
    m += b64_lines(video, line_len, eol) + tail + eol;
    L("--b1--");
    L("epilogue");
    return m;
}

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

/// The original with the header that detaching adds.
std::string with_header(const std::string& msg, unsigned n, const std::string& eol)
{
    return "X-Media-Handles: " + std::to_string(n) + eol + msg;
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
        CHECK(rt.restored == with_header(msg, 1, eol));
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
        CHECK(rt.restored == with_header(msg, 1, "\r\n"));
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
    CHECK(rt.restored == with_header(msg, 1, "\r\n"));
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
    CHECK(rt.restored == with_header(msg, 2, "\r\n"));
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
    CHECK(rt.restored != with_header(msg, 1, "\r\n"));
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

TEST_CASE("sniffing")
{
    struct Case {
        std::string bytes, want;
    } cases[] = {
        {std::string("\0\0\0\x18" "ftypmp42", 12), "video/mp4"},
        {std::string("\0\0\0\x18" "ftypqt  ", 12), "video/quicktime"},
        {std::string("\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", 16), "video/webm"},
        {std::string("\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska", 20), "video/x-matroska"},
        {std::string("RIFF\x10\0\0\0AVI LIST", 16), "video/x-msvideo"},
        {std::string("RIFF\x10\0\0\0WAVEfmt ", 16), "audio/wav"},
        {std::string("\0\0\x01\xba\x44", 5), "video/mpeg"},
        {std::string("OggS\0\x02", 6), "audio/ogg"},
        {std::string("fLaC\0\0\0\x22", 8), "audio/flac"},
        {std::string("ID3\x04\0\0\0\0\0\0", 10), "audio/mpeg"},
        {"\xff\xfb\x90\x64", "audio/mpeg"},
        {"GIF89a", ""},
        {"%PDF-1.4", ""},
        {"", ""},
        {"ftyp", ""},
        {"\xff\xfb", ""},
        {"RIFF", ""},
    };
    for (const auto& c : cases) {
        CAPTURE(c.want);
        CHECK(sniff_media(reinterpret_cast<const unsigned char*>(c.bytes.data()), c.bytes.size()) == c.want);
    }
    std::string ts(400, 'x');
    ts[0] = ts[188] = ts[376] = 0x47;
    CHECK(sniff_media(reinterpret_cast<const unsigned char*>(ts.data()), ts.size()) == "video/mp2t");
    ts[188] = 'x';
    CHECK(sniff_media(reinterpret_cast<const unsigned char*>(ts.data()), ts.size()) == "");
}

TEST_CASE("every corpus message: no crash, untouched without media, exact round trip with")
{
    std::vector<std::string> files;
    std::vector<std::string> dirs{corpus_dir()};
    while (!dirs.empty()) {
        std::string d = dirs.back();
        dirs.pop_back();
        DIR* dp = opendir(d.c_str());
        if (!dp)
            continue;
        while (dirent* e = readdir(dp)) {
            std::string n = e->d_name;
            if (n == "." || n == ".." || n == "README.md" || n == "INDEX.tsv")
                continue;
            std::string p = d + "/" + n;
            struct stat st;
            if (stat(p.c_str(), &st) != 0)
                continue;
            if (S_ISDIR(st.st_mode))
                dirs.push_back(p);
            else if (S_ISREG(st.st_mode))
                files.push_back(p);
        }
        closedir(dp);
    }
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
        if (back == "X-Media-Handles: " + std::to_string(r.detached) + eol + original)
            ++exact;
        else
            CHECK_MESSAGE(!all_regular, "regular layout but not restored exactly");
    }
    MESSAGE("corpus: " << files.size() << " files, " << untouched << " untouched by default policy, "
                       << detached_files << " with attachments detached (" << parts << " parts), " << exact
                       << " restored byte for byte");
    CHECK(untouched == files.size());
}
