// test_status.cpp - fetcher/status.h and core/status_http.h: the receiver's status
// page and text with hostile mail text escaped, progress from the cache, the
// metrics, the held list following the raw copies, and the status server's
// request parsing (mostly bad requests).
#include <doctest/doctest.h>

#include "core/status_http.h"
#include "fetcher/status.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

using namespace mm;

namespace {

struct TempDir {
    std::string dir;
    TempDir()
    {
        char tmpl[] = "/tmp/mm-status-test-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        dir = tmpl;
    }
    ~TempDir() { std::filesystem::remove_all(dir); }
};

void write_file(const std::string& path, size_t bytes)
{
    std::ofstream(path, std::ios::binary) << std::string(bytes, 'x');
}

HeldMail hostile_mail(const std::string& raw)
{
    HeldMail m;
    m.key = "k1";
    m.raw_path = raw;
    m.sender = "\"Eve <script>\" <eve@example.org>";
    m.subject = "<script>alert(1)</script> & \"quoted\" 'single'\x1b[31m";
    m.message_id = "<m1@example.org>";
    m.media.push_back(HeldMedia{"<img src=x onerror=alert(2)>.mp4", "video/mp4", std::string(64, 'a'),
                                std::string(32, 'b'), 1000});
    return m;
}

} // namespace

TEST_CASE("status page: hostile sender, subject and name are escaped; progress shown")
{
    HeldView v;
    v.mail = hostile_mail("/nonexistent");
    v.progress.push_back(MediaProgress{250, 1000, false});
    std::string h = render_status_html({v}, 5);
    CHECK(h.find("<script>") == std::string::npos);
    CHECK(h.find("<img") == std::string::npos);
    CHECK(h.find("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot;") != std::string::npos);
    CHECK(h.find("&lt;img src=x onerror=alert(2)&gt;.mp4") != std::string::npos);
    CHECK(h.find("<meta http-equiv=\"refresh\" content=\"5\">") != std::string::npos);
    CHECK(h.find("<progress max=\"100\" value=\"25\">") != std::string::npos);
    CHECK(h.find("default-src 'none'") != std::string::npos);

    std::string t = render_status_text({v});
    CHECK(t.find("\x1b") == std::string::npos);   // no terminal escapes
    CHECK(t.find("[#####...............] 25%") != std::string::npos);

    CHECK(render_status_html({}, 5).find("No mail is waiting") != std::string::npos);
    CHECK(render_status_text({}) == "no mail held back: every mail fetched is ready\n");

    // Progress never shows more than the whole, or divides by zero.
    v.progress[0] = MediaProgress{5000, 1000, false};
    CHECK(render_status_html({v}, 5).find("value=\"100\"") != std::string::npos);
    v.progress[0] = MediaProgress{0, 0, false};
    CHECK(render_status_html({v}, 5).find("value=\"100\"") != std::string::npos);
}

TEST_CASE("status: progress from the cache, held list follows the raw copies")
{
    TempDir t;
    HeldMedia m{"a.mp4", "video/mp4", std::string(64, 'c'), "", 100};
    CHECK(media_progress(t.dir, m).have == 0);
    write_file(t.dir + "/" + m.sha256 + ".part", 40);
    CHECK(media_progress(t.dir, m).have == 40);
    CHECK_FALSE(media_progress(t.dir, m).done);
    write_file(t.dir + "/" + m.sha256, 100);
    CHECK(media_progress(t.dir, m).done);

    FetcherStatus s;
    const std::string raw = t.dir + "/k1.raw";
    write_file(raw, 10);
    HeldMail first = hostile_mail(raw);
    first.since_unix = 1000;
    s.held(first);
    HeldMail again = hostile_mail(raw);
    again.since_unix = 2000;
    s.held(again);   // refreshed at the next login: still waiting since the first time
    auto held = s.held_mails();
    REQUIRE(held.size() == 1);
    CHECK(held[0].since_unix == 1000);
    CHECK(s.message_id_of(std::string(64, 'a')) == "<m1@example.org>");
    CHECK(s.message_id_of(std::string(64, 'f')).empty());

    unlink(raw.c_str());   // shown (or gone upstream): the entry ends
    CHECK(s.held_mails().empty());
    s.held(hostile_mail(t.dir + "/k2.raw"));
    s.released("k1");
    CHECK(s.held_mails().empty());
}

TEST_CASE("status: item id of a handle URL")
{
    const std::string id(32, 'a');
    CHECK(item_id_of_url("https://g.example/m/" + id + "/tok") == id);
    CHECK(item_id_of_url("https://g.example/base/m/" + id + "/tok") == id);
    CHECK(item_id_of_url("https://g.example/m/" + id) == id);
    CHECK(item_id_of_url("https://g.example/m/" + id + "x/tok").empty());
    CHECK(item_id_of_url("https://g.example/m/" + std::string(32, 'G') + "/tok").empty());
    CHECK(item_id_of_url("https://g.example/m/abc/tok").empty());
    CHECK(item_id_of_url("").empty());
}

TEST_CASE("status: fetcher metrics and the listener's answers")
{
    FetcherStatus s;
    s.bytes_downloaded = 12345;
    s.downloads_active = 2;
    s.verify_failures = 1;
    std::string m = render_fetcher_metrics(s, 3);
    CHECK(m.find("# TYPE mm_fetcher_mails_held gauge\nmm_fetcher_mails_held 3\n") != std::string::npos);
    CHECK(m.find("mm_fetcher_downloaded_bytes_total 12345\n") != std::string::npos);
    CHECK(m.find("mm_fetcher_downloads_active 2\n") != std::string::npos);
    CHECK(m.find("mm_fetcher_verify_failures_total 1\n") != std::string::npos);
    CHECK(m.find("# HELP mm_fetcher_downloads_active ") != std::string::npos);

    TempDir t;
    CHECK(fetcher_status_reply("/healthz", s, t.dir).status == 503);
    s.listening = true;
    StatusReply r = fetcher_status_reply("/healthz", s, t.dir);
    CHECK(r.status == 200);
    CHECK(r.body == "ok\n");
    CHECK(fetcher_status_reply("/", s, t.dir).content_type == "text/html; charset=utf-8");
    CHECK(fetcher_status_reply("/status.txt", s, t.dir).body.find("no mail held back") == 0);
    CHECK(fetcher_status_reply("/metrics", s, t.dir).content_type == "text/plain; version=0.0.4; charset=utf-8");
    CHECK(fetcher_status_reply("/../etc/passwd", s, t.dir).status == 404);
}

TEST_CASE("status server: request heads, mostly bad ones")
{
    struct Case {
        const char* what;
        std::string head;
        bool ok;
        std::string method, path;
    } cases[] = {
        {"GET", "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", true, "GET", "/metrics"},
        {"HEAD", "HEAD /healthz HTTP/1.0\r\n\r\n", true, "HEAD", "/healthz"},
        {"query cut off", "GET /?x=1 HTTP/1.1\r\n\r\n", true, "GET", "/"},
        {"POST", "POST /metrics HTTP/1.1\r\n\r\n", false, "", ""},
        {"lower-case method", "get / HTTP/1.1\r\n\r\n", false, "", ""},
        {"no version", "GET /\r\n\r\n", false, "", ""},
        {"HTTP/2", "GET / HTTP/2\r\n\r\n", false, "", ""},
        {"absolute URI", "GET http://x/ HTTP/1.1\r\n\r\n", false, "", ""},
        {"two spaces", "GET  / HTTP/1.1\r\n\r\n", false, "", ""},
        {"trailing space", "GET / HTTP/1.1 \r\n\r\n", false, "", ""},
        {"control byte in target", std::string("GET /\x01 HTTP/1.1\r\n\r\n"), false, "", ""},
        {"non-ASCII target", "GET /\xc3\xa9 HTTP/1.1\r\n\r\n", false, "", ""},
        {"bare LF", "GET / HTTP/1.1\n\n", false, "", ""},
        {"empty", "", false, "", ""},
    };
    for (const auto& c : cases) {
        CAPTURE(std::string(c.what));
        std::string method, path;
        CHECK(parse_status_request(c.head, method, path) == c.ok);
        if (c.ok) {
            CHECK(method == c.method);
            CHECK(path == c.path);
        }
    }
}
