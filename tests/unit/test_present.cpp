// test_present.cpp - presenting mail that names location parts (fetcher/present.h):
// which senders' media are fetched first or never, and a presented file in place at
// once, durable soon after (fetcher/background_fsync.h), built again after a crash.
#include "fetcher/present.h"
#include "core/util.h"
#include "fetcher/sync.h"
#include "fetcher_fixtures.h"
#include "mime_fixtures.h"

#include <sys/stat.h>

#include <doctest/doctest.h>

#include <string>

using namespace mm;
using namespace mm::fetch_fixtures;

TEST_CASE("sender lists match addresses and domains")
{
    const std::vector<std::string> list = {"Boss@Work.Example", "@family.example", "friends.example", ""};
    struct Case {
        const char* addr;
        bool want;
    };
    const Case cases[] = {
        {"boss@work.example", true},     {"other@work.example", false}, {"mum@family.example", true},
        {"x@sub.family.example", false}, {"pal@friends.example", true}, {"pal@notfriends.example", false},
        {"", false},                     {"noat", false},
    };
    for (const auto& c : cases) {
        CAPTURE(c.addr);
        CHECK(sender_matches(c.addr, list) == c.want);
    }
    CHECK_FALSE(sender_matches("a@b.c", {}));
}

TEST_CASE("a presented file is in place at once and durable soon after; one beside its raw copy after a crash is built again")
{
    fixtures::TempDir t;
    const std::string video = fixtures::fake_mp4(300000);
    fixtures::write_file(t.path + "/in.eml", fixtures::media_message("\r\n", video));
    fixtures::FileSink sink(t.path);
    DetachPolicy p;
    p.min_size = 100000;
    DetachResult r = detach_message(t.path + "/in.eml", t.path + "/out.eml", p, sink);
    REQUIRE(r.detached == 1);
    const std::string mail = fixtures::read_file(t.path + "/out.eml");
    REQUIRE(mail.find("\r\n.") == std::string::npos);   // no dot-stuffing in the script below
    std::string err;
    REQUIRE(reinsert_media(t.path + "/out.eml", sink.files, t.path + "/want.eml", err));
    const std::string want = fixtures::read_file(t.path + "/want.eml");

    TempCache c;
    SyncOptions opt = options(c, 100000000);
    DownloadOptions dopt;
    dopt.media_dir = c.dir + "/media";
    dopt.jobs_dir = c.dir + "/jobs";
    Downloader dl(dopt);   // not started: its verified file is put in place here
    opt.downloader = &dl;
    fixtures::write_file(dl.final_path(r.handles[0].sha256), video);

    auto login = [&](bool retr) {
        std::vector<std::string> script{"+OK\r\n1 u1\r\n.\r\n", "+OK\r\n1 " + std::to_string(mail.size()) + "\r\n.\r\n"};
        if (retr)
            script.push_back("+OK\r\n" + mail + ".\r\n");
        script.push_back("+OK bye\r\n");
        ScriptedPop3 up(script);
        Upstream u;
        std::string e, text;
        REQUIRE(u.connect(up.config(), e));
        std::vector<ShownMessage> shown;
        SyncStats st;
        REQUIRE(synchronise(u, "bob", opt, shown, st, e));
        CHECK(u.command("QUIT", text) == Reply::ok);
        u.close();
        up.wait();
        CHECK(up.commands.size() == script.size());
        return shown;
    };
    auto settled = [](const std::string& raw) {
        for (int i = 0; i < 500 && access(raw.c_str(), F_OK) == 0; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        return access(raw.c_str(), F_OK) != 0;
    };

    auto shown = login(true);
    REQUIRE(shown.size() == 1);
    CHECK(shown[0].source == ShownMessage::Source::presented);
    CHECK(shown[0].size == want.size());
    const std::string eml = shown[0].path;
    const std::string raw = eml.substr(0, eml.size() - 4) + ".raw";
    CHECK(fixtures::read_file(eml) == want);
    CHECK(settled(raw));   // synced in the background, then the raw copy went

    // A power cut before the sync: the raw copy is still there, the presented
    // file is short. The next login builds it again from the raw copy.
    fixtures::write_file(raw, mail);
    REQUIRE(truncate(eml.c_str(), static_cast<off_t>(want.size() / 2)) == 0);
    shown = login(false);
    REQUIRE(shown.size() == 1);
    CHECK(shown[0].size == want.size());
    CHECK(fixtures::read_file(eml) == want);
    CHECK(settled(raw));
}

namespace {

/// A mail from `from_hdrs` (header lines, CRLF) with `copies` location parts for
/// the handle `h`, each built by build_location_part.
std::string mail_with_handles(const Handle& h, size_t copies, const std::string& from_hdrs = "")
{
    std::string m = from_hdrs + "From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: x\r\n"
                                "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
                                "--b1\r\nContent-Type: text/plain\r\n\r\nHello.\r\n";
    for (size_t i = 0; i < copies; ++i)
        m += "--b1\r\n" + build_location_part(h, "\r\n") + "\r\n";
    return m + "--b1--\r\n";
}

/// One present_raw of `mail` with `media` as the verified file of h, in a fresh
/// cache: the presented file, or "" when held back.
struct Presenting {
    TempCache c;
    DownloadOptions dopt;
    std::unique_ptr<Downloader> dl;
    SyncOptions opt;
    Presenting()
    {
        opt = options(c, 100000000);
        dopt.media_dir = c.dir + "/media";
        dopt.jobs_dir = c.dir + "/jobs";
        dl = std::make_unique<Downloader>(dopt);   // not started: its verified file is put in place here
        opt.downloader = dl.get();
    }
    std::string run(const std::string& mail, const Handle& h, const std::string& media, Presented* result = nullptr)
    {
        if (!media.empty())
            fixtures::write_file(dl->final_path(h.sha256), media);
        const std::string base = c.dir + "/msg/m" + std::to_string(n++);
        fixtures::write_file(base + ".raw", mail);
        std::string why;
        std::shared_ptr<GrowingMessage> growing;
        Presented p = present_raw(base, "bob", opt, why, growing);
        if (result)
            *result = p;
        return p == Presented::shown ? fixtures::read_file(base + ".eml") : "";
    }
    int n = 0;
};

Handle handle_for(const std::string& media, const std::string& type, const std::string& headers)
{
    Handle h;
    h.url = "https://gw.example.test/m/abc?t=x";
    h.sha256 = sha256_hex(media);
    h.size = media.size();
    h.type = type;
    h.name = "clip.mp4";
    h.pin = "sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    h.expires = "2030-01-01T00:00:00Z";
    h.headers = headers;
    h.eol = "\r\n";
    h.final_eol = true;
    h.part_size = h.headers.size() + base64_encoded_size(h.size, h.line_len, h.eol.size(), h.final_eol);
    return h;
}

const std::string kGoodHdr = "Content-Type: video/mp4; name=\"clip.mp4\"\r\nContent-Transfer-Encoding: base64\r\n"
                             "Content-Disposition: attachment; filename=\"clip.mp4\"\r\n\r\n";

} // namespace

TEST_CASE("re-insertion: only one plain media part of an allowed type that sniffs as such goes back")
{
    const std::string video = fixtures::fake_mp4(20000);
    const std::string exe = "MZ\x90\0" + std::string(20000, 'x');
    const std::string enc_video = fixtures::b64_lines(video, 76, "\r\n").substr(0, 200);
    struct Case {
        const char* what;
        std::string type, headers;
        bool use_exe;
        bool put_back;
    };
    const Case cases[] = {
        {"plain video", "video/mp4", kGoodHdr, false, true},
        {"html part under a video handle", "video/mp4",
         "Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n", false, false},
        {"a second part injected",  "video/mp4",
         "Content-Type: video/mp4\r\nContent-Transfer-Encoding: base64\r\n\r\nhi\r\n--b1\r\n"
         "Content-Type: application/x-msdownload; name=\"invoice.pdf.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
         false, false},
        {"an allowed-looking handle type not in fetcher.types", "application/x-msdownload",
         "Content-Type: application/x-msdownload\r\nContent-Transfer-Encoding: base64\r\n\r\n", true, false},
        {"an exe sent as video/mp4", "video/mp4", kGoodHdr, true, false},
        {"multipart header", "video/mp4",
         "Content-Type: multipart/mixed; boundary=b2\r\nContent-Transfer-Encoding: base64\r\n\r\n", false, false},
    };
    for (const auto& c : cases) {
        CAPTURE(c.what);
        const std::string& media = c.use_exe ? exe : video;
        Handle h = handle_for(media, c.type, c.headers);
        Presenting p;
        Presented r{};
        const std::string out = p.run(mail_with_handles(h, 1), h, media, &r);
        REQUIRE(r == Presented::shown);
        const std::string enc = fixtures::b64_lines(media, 76, "\r\n").substr(0, 200);
        if (c.put_back) {
            CHECK(out.find(enc) != std::string::npos);
            CHECK(out.find("X-Media-Handle") == std::string::npos);
            CHECK(out.find("[MediaMail]") == std::string::npos);
        } else {
            CHECK(out.find(enc) == std::string::npos);
            CHECK(out.find("X-Media-Handle") != std::string::npos);
            CHECK(out.find("[MediaMail] The file named below was not put back") != std::string::npos);
            CHECK(out.find("text/html\r\nContent-Transfer") == std::string::npos);   // not as a part header
            CHECK(out.find("\r\n--b1\r\nContent-Type: application/x-msdownload") == std::string::npos);
        }
    }
}

TEST_CASE("fetcher.max_message_size: forty location parts naming one item keep their links")
{
    const std::string video = fixtures::fake_mp4(300000);
    Handle h = handle_for(video, "video/mp4", kGoodHdr);
    const std::string enc = fixtures::b64_lines(video, 76, "\r\n").substr(0, 200);
    {
        Presenting p;
        p.opt.max_message_size = 5000000;
        const std::string out = p.run(mail_with_handles(h, 40, ""), h, video);
        CHECK(out.size() < 1000000);
        CHECK(out.find(enc) == std::string::npos);
        size_t notes = 0;
        for (size_t at = out.find("fetcher.max_message_size"); at != std::string::npos;
             at = out.find("fetcher.max_message_size", at + 1))
            ++notes;
        CHECK(notes == 40);
    }
    {
        Presenting p;   // the default: max_size + 64M, so ten fit
        p.opt.max_size = 1000000;
        const std::string out = p.run(mail_with_handles(h, 10, ""), h, video);
        CHECK(out.find(enc) != std::string::npos);
        CHECK(out.find("[MediaMail]") == std::string::npos);
    }
}

TEST_CASE("sender lists apply only when the receiving server vouches for From:")
{
    const std::string video = fixtures::fake_mp4(20000);
    Handle h = handle_for(video, "video/mp4", kGoodHdr);
    const std::string enc = fixtures::b64_lines(video, 76, "\r\n").substr(0, 200);
    struct Case {
        const char* what;
        std::string auth_hdr, authserv_id;
        bool ignored;
    };
    const Case cases[] = {
        {"no authserv_id: never trusted", "Authentication-Results: mx.test; dmarc=pass\r\n", "", false},
        {"vouched", "Authentication-Results: mx.test; dmarc=pass\r\n", "mx.test", true},
        {"another id", "Authentication-Results: evil.test; dmarc=pass\r\n", "mx.test", false},
        {"forged below ours",
         "Authentication-Results: mx.test; dmarc=fail\r\nAuthentication-Results: mx.test; dmarc=pass\r\n", "mx.test",
         false},
        {"no header", "", "mx.test", false},
    };
    for (const auto& c : cases) {
        CAPTURE(c.what);
        Presenting p;
        p.opt.ignore_senders = {"@example.test"};
        p.opt.authserv_id = c.authserv_id;
        const std::string out = p.run(mail_with_handles(h, 1, c.auth_hdr), h, video);
        CHECK((out.find(enc) == std::string::npos) == c.ignored);
    }
}
