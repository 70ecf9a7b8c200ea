// test_rewrite.cpp - the MIME rewriting engine: detach then re-insert must give
// back the original message byte for byte; messages without media must come out
// untouched; every corpus message must go through without a crash.
#include <doctest/doctest.h>

#include "mime/rewrite.h"
#include "core/util.h"
#include "rewrite_fixtures.h"

#include <cstdio>
#include <cstring>
#include <strings.h>
#include <dirent.h>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

using namespace mm;
using namespace mm::fixtures;

namespace {

std::string corpus_dir()
{
    const char* env = getenv("MM_CORPUS_DIR");
    return env ? env : MM_CORPUS_DIR;
}

/// Every message file under the corpus directory (README and index left out).
std::vector<std::string> corpus_files()
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
    return files;
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
        CHECK(rt.restored == top + modified);
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

#include "milter/policy.h"

TEST_CASE("milter.trusted_networks: CIDR parsing and matching")
{
    struct Case {
        const char* text;
        bool ok;
    } parse[] = {
        {"127.0.0.0/8", true}, {"::1/128", true}, {"10.1.2.3", true}, {"fd00::/8", true}, {"0.0.0.0/0", true},
        {"127.0.0.0/33", false}, {"::/129", false}, {"127.0.0.0/", false}, {"127.0.0.0/+8", false},
        {"127.0.0.0/08x", false}, {"127.0.0/8", false}, {"", false}, {"/8", false}, {" 127.0.0.1", false},
        {"127.0.0.1/8/8", false}, {"localhost", false}, {"127.0.0.1/99999999999999999999", false},
    };
    for (const auto& c : parse) {
        CAPTURE(c.text);
        mm::Cidr n;
        CHECK(mm::parse_cidr(c.text, n) == c.ok);
    }
    std::vector<mm::Cidr> nets;
    for (const char* s : {"127.0.0.1/32", "10.0.0.0/9", "2001:db8::/32"}) {
        mm::Cidr n;
        REQUIRE(mm::parse_cidr(s, n));
        nets.push_back(n);
    }
    struct Addr {
        const char* ip;
        bool in;
    } addrs[] = {
        {"127.0.0.1", true}, {"127.0.0.2", false}, {"10.127.255.255", true}, {"10.128.0.0", false},
        {"2001:db8:ffff::1", true}, {"2001:db9::1", false}, {"::ffff:127.0.0.1", true}, {"::1", false},
    };
    for (const auto& a : addrs) {
        CAPTURE(a.ip);
        sockaddr_storage ss{};
        if (strchr(a.ip, ':')) {
            auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
            s6->sin6_family = AF_INET6;
            REQUIRE(inet_pton(AF_INET6, a.ip, &s6->sin6_addr) == 1);
        } else {
            auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
            s4->sin_family = AF_INET;
            REQUIRE(inet_pton(AF_INET, a.ip, &s4->sin_addr) == 1);
        }
        CHECK(mm::address_in(reinterpret_cast<sockaddr*>(&ss), nets) == a.in);
    }
    CHECK_FALSE(mm::address_in(nullptr, nets));
}

TEST_CASE("milter: top-level headers that rule out media, and nothing else")
{
    using V = std::vector<std::string>;
    CHECK(mm::headers_rule_out_media({}, {}));                                 // RFC 2045 default text/plain
    CHECK(mm::headers_rule_out_media({"text/plain; charset=utf-8"}, {}));
    CHECK(mm::headers_rule_out_media({" TEXT/HTML"}, {"quoted-printable"}));
    CHECK(mm::headers_rule_out_media({"text/plain"}, {"7bit (comment)"}));
    CHECK_FALSE(mm::headers_rule_out_media({"text/plain"}, {"BASE64"}));      // decoded bytes could sniff as video
    CHECK_FALSE(mm::headers_rule_out_media({}, {" base64 "}));
    CHECK_FALSE(mm::headers_rule_out_media({"multipart/mixed; boundary=x"}, {}));
    CHECK_FALSE(mm::headers_rule_out_media({"message/rfc822"}, {}));
    CHECK_FALSE(mm::headers_rule_out_media({"video/mp4"}, {}));
    CHECK_FALSE(mm::headers_rule_out_media({"application/octet-stream"}, {}));
    CHECK_FALSE(mm::headers_rule_out_media({"text/plain", "multipart/mixed; boundary=x"}, {}));   // which one wins is the parser's
    CHECK_FALSE(mm::headers_rule_out_media({"text/plain"}, {"7bit", "base64"}));
    CHECK_FALSE(mm::headers_rule_out_media({""}, {}));
    CHECK_FALSE(mm::headers_rule_out_media({"text"}, {}));
    CHECK_FALSE(mm::headers_rule_out_media({"text/"}, {}));
    CHECK_FALSE(mm::headers_rule_out_media({"text/plain/x"}, {}));
    CHECK_FALSE(mm::headers_rule_out_media({"textual/plain"}, {}));
    CHECK_FALSE(mm::headers_rule_out_media({"multipart/mixed"}, V{}));

    // Over TCP every event Postfix may send unanswered gets a reply (Nagle and
    // delayed ACK); on a unix socket replies are saved where possible.
    auto tcp = mm::protocol_flags("inet:8891@127.0.0.1");
    CHECK((tcp.no_reply & (SMFIP_NR_CONN | SMFIP_NR_RCPT | SMFIP_NR_EOH)) == 0);
    CHECK((tcp.skip & SMFIP_NODATA) == 0);
    CHECK((mm::protocol_flags("inet6:8891@[::1]").skip & SMFIP_NODATA) == 0);
    auto local = mm::protocol_flags("unix:/run/mm.sock");
    CHECK((local.no_reply & SMFIP_NR_RCPT) != 0);
    CHECK((local.skip & SMFIP_NODATA) != 0);
    CHECK((local.no_reply & SMFIP_NR_EOH) == 0);   // end of headers is where plain mail is accepted
}

TEST_CASE("corpus: a message whose top-level headers rule out media never has any detached")
{
    std::vector<std::string> files = corpus_files();
    if (files.empty())
        return;
    unsigned ruled_out = 0;
    for (const auto& f : files) {
        CAPTURE(f);
        // The top-level header fields, unfolded, as Postfix hands them to the milter.
        std::string text = read_file(f);
        std::vector<std::string> types, encodings;
        std::string field;
        auto take = [&] {
            size_t colon = field.find(':');
            if (colon != std::string::npos) {
                std::string name = field.substr(0, colon);
                if (strcasecmp(name.c_str(), "Content-Type") == 0)
                    types.push_back(field.substr(colon + 1));
                else if (strcasecmp(name.c_str(), "Content-Transfer-Encoding") == 0)
                    encodings.push_back(field.substr(colon + 1));
            }
            field.clear();
        };
        size_t pos = 0;
        while (pos < text.size()) {
            size_t nl = text.find('\n', pos);
            std::string line = text.substr(pos, (nl == std::string::npos ? text.size() : nl) - pos);
            pos = nl == std::string::npos ? text.size() : nl + 1;
            if (!line.empty() && line.back() == '\r')
                line.pop_back();
            if (line.empty())
                break;
            if (line[0] == ' ' || line[0] == '\t')
                field += line;
            else {
                take();
                field = line;
            }
        }
        take();
        if (!mm::headers_rule_out_media(types, encodings))
            continue;
        ++ruled_out;
        mm::DetachPolicy all;
        all.min_size = 1;
        all.types = {"*/*"};
        TempDir t;
        FileSink sink(t.path);
        CHECK(detach_message(f, t.path + "/out.eml", all, sink).detached == 0);
    }
    MESSAGE("corpus: " << ruled_out << " of " << files.size() << " messages accepted at end of headers");
    CHECK(ruled_out > 0);
}

#include "mime/growing.h"
#include "mime/prescan.h"

#include <fcntl.h>
#include <thread>

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

// The SMTP filter's intake (milter/intake.h with keep_all): the raw message in
// pieces, as DATA brings it. A message that passes must come out of the spool
// byte for byte (it is the only copy), and the intake must find the same media
// the engine finds in the whole file.
#include "store/store.h"
#include "milter/intake.h"
#include "core/config.h"

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
#include "milter/prescan_thread.h"

#include <chrono>
#include <future>

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
