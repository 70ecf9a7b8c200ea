// test_present.cpp - presenting mail that names location parts (fetcher/present.h):
// which senders' media are fetched first or never, and a presented file in place at
// once, durable soon after (fetcher/background_fsync.h), built again after a crash.
#include "fetcher/present.h"
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
