// test_fetch.cpp - unit tests of mm-fetcher's background download pieces without
// sockets: the on-disk job format (strict parsing of bad files), backoff bounds,
// receipt requests, URL schemes, and the header/address rules for senders and receipts.
#include "fetcher/download.h"
#include "fetcher/mailbox.h"
#include "fetcher/pop3_parse.h"
#include "fetcher/upstream.h"
#include "loopback_upstream.h"
#include "mime_fixtures.h"

#include <doctest/doctest.h>

#include <string>

using namespace mm;

namespace {

const std::string kSha(64, 'a');

Job sample_job()
{
    Job j;
    j.handle.sha256 = kSha;
    j.handle.size = 12345;
    j.handle.url = "https://gw.example:8443/m/abc/def";
    j.handle.pin = "sha256//AAAA";
    j.state = Job::State::receipt;
    j.priority = true;
    j.attempts = 3;
    j.next_try = 1700000000;
    j.recipients = {"bob@example.test", "carol@example.test"};
    return j;
}

} // namespace

TEST_CASE("download jobs survive a round trip through their file")
{
    Job j = sample_job(), back;
    std::string text = format_job(j);
    REQUIRE(parse_job(text, back));
    CHECK(back.handle.sha256 == j.handle.sha256);
    CHECK(back.handle.size == j.handle.size);
    CHECK(back.handle.url == j.handle.url);
    CHECK(back.handle.pin == j.handle.pin);
    CHECK(back.state == j.state);
    CHECK(back.priority);
    CHECK(back.attempts == 3);
    CHECK(back.next_try == 1700000000);
    CHECK(back.recipients == j.recipients);
    CHECK(format_job(back) == text);
}

TEST_CASE("damaged download job files are refused")
{
    const std::string good = format_job(sample_job());
    auto replaced = [&](const std::string& from, const std::string& to) {
        std::string s = good;
        size_t p = s.find(from);
        REQUIRE(p != std::string::npos);
        return s.replace(p, from.size(), to);
    };
    struct Case {
        const char* why;
        std::string text;
    };
    const Case cases[] = {
        {"empty", ""},
        {"no final newline", good.substr(0, good.size() - 1)},
        {"unknown key", good + "colour=blue\n"},
        {"line without =", good + "garbage\n"},
        {"sha256 not hex", replaced("sha256=" + kSha, "sha256=" + std::string(64, 'g'))},
        {"sha256 upper case", replaced("sha256=" + kSha, "sha256=" + std::string(64, 'A'))},
        {"sha256 short", replaced("sha256=" + kSha, "sha256=abc")},
        {"size negative", replaced("size=12345", "size=-1")},
        {"size with sign", replaced("size=12345", "size=+1")},
        {"size overflow", replaced("size=12345", "size=99999999999999999999999")},
        {"size trailing junk", replaced("size=12345", "size=12a")},
        {"empty url", replaced("url=https://gw.example:8443/m/abc/def", "url=")},
        {"control byte in url", replaced("/m/abc/def", "/m/a\x01" "bc")},
        {"carriage return", replaced("pin=sha256//AAAA", "pin=sha256//AAAA\r")},
        {"unknown state", replaced("state=receipt", "state=done")},
        {"priority 2", replaced("priority=1", "priority=2")},
        {"attempts empty", replaced("attempts=3", "attempts=")},
        {"next not a number", replaced("next=1700000000", "next=soon")},
        {"empty recipient", good + "rcpt=\n"},
        {"recipient too long", good + "rcpt=" + std::string(300, 'x') + "\n"},
        {"missing sha256", replaced("sha256=" + kSha + "\n", "")},
        {"missing size", replaced("size=12345\n", "")},
        {"missing state", replaced("state=receipt\n", "")},
        {"too large", good + std::string(70000, '#') + "\n"},
    };
    for (const auto& c : cases) {
        Job out;
        CAPTURE(c.why);
        CHECK_FALSE(parse_job(c.text, out));
    }
    std::string many = good;
    for (int i = 0; i < 70; ++i)
        many += "rcpt=u" + std::to_string(i) + "@example.test\n";
    Job out;
    CHECK_FALSE(parse_job(many, out));   // more recipients than any one job keeps
}

TEST_CASE("retry backoff doubles, is capped, and is jittered downwards only")
{
    using std::chrono::seconds;
    struct Case {
        unsigned attempts;
        double jitter;
        int64_t want;
    };
    const Case cases[] = {
        {1, 0.0, 5},      {1, 0.999, 9},   {2, 0.0, 10},    {3, 0.0, 20},
        {10, 0.0, 1800},  {10, 0.999, 3598}, {1000, 0.0, 1800}, {0, 0.0, 5},
        {1, -5.0, 5},     {1, 7.0, 9},
    };
    for (const auto& c : cases) {
        CAPTURE(c.attempts);
        CAPTURE(c.jitter);
        CHECK(backoff(c.attempts, seconds(10), seconds(3600), c.jitter).count() == c.want);
    }
    CHECK(backoff(5, seconds(0), seconds(0), 0.0).count() >= 1);   // never a busy loop
}

TEST_CASE("receipt requests")
{
    CHECK(receipt_url("https://h:1/m/id/tok") == "https://h:1/m/id/tok/receipt");
    CHECK(receipt_url("https://h:1/m/id/tok/") == "https://h:1/m/id/tok/receipt");
    CHECK(receipt_body("bob@example.test", kSha) == "recipient=bob%40example.test&sha256=" + kSha);
    CHECK(receipt_body("a+b&c=d@x", kSha) == "recipient=a%2Bb%26c%3Dd%40x&sha256=" + kSha);
    CHECK(receipt_body(std::string("\xc3\xa9@x"), kSha) == "recipient=%C3%A9%40x&sha256=" + kSha);
}

TEST_CASE("only https media URLs, http only when allowed")
{
    struct Case {
        const char* url;
        bool insecure;
        bool want;
    };
    const Case cases[] = {
        {"https://gw.example/m/a/b", false, true},
        {"http://gw.example/m/a/b", false, false},
        {"http://gw.example/m/a/b", true, true},
        {"file:///etc/passwd", true, false},
        {"ftp://gw.example/x", true, false},
        {"gopher://127.0.0.1:25/", true, false},
        {"HTTPS://gw.example/", false, false},   // the handle parser lowercases; anything else is suspect
        {"https:/gw.example", false, false},
        {"", true, false},
        {" https://gw.example/", false, false},
    };
    for (const auto& c : cases) {
        CAPTURE(c.url);
        CHECK(url_scheme_allowed(c.url, c.insecure) == c.want);
    }
}

TEST_CASE("header fields are found case-insensitively, unfolded, only in the header block")
{
    const std::string h = "Received: from x\r\n\tby y\r\nfrom: Alice <Alice@Example.TEST>\r\n"
                          "Subject: a\r\n long subject\r\nDelivered-To: bob@example.test\r\n\r\n"
                          "X-Original-To: body@example.test\r\n";
    CHECK(header_value(h, "From") == "Alice <Alice@Example.TEST>");
    CHECK(header_value(h, "subject") == "a long subject");
    CHECK(header_value(h, "Delivered-To") == "bob@example.test");
    CHECK(header_value(h, "X-Original-To") == "");   // in the body
    CHECK(header_value(h, "To") == "");              // not a prefix match of X-Original-To or Delivered-To
    CHECK(header_value("", "From") == "");
    CHECK(header_value("From:\r\n\r\n", "From") == "");
    CHECK(header_value("From: a@b\n\n", "From") == "a@b");   // bare LF
}


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

TEST_CASE("whose receipt: configured address, Delivered-To, X-Original-To, then the POP3 user")
{
    const std::string both = "Delivered-To: Bob@Example.test\r\nX-Original-To: alias@example.test\r\n\r\n";
    const std::string orig = "X-Original-To: alias@example.test\r\n\r\n";
    const std::string bad = "Delivered-To: not an address\r\n\r\n";
    CHECK(receipt_recipient("me@home.example", both, "bob") == "me@home.example");
    CHECK(receipt_recipient("", both, "bob") == "bob@example.test");
    CHECK(receipt_recipient("", orig, "bob") == "alias@example.test");
    CHECK(receipt_recipient("", bad, "bob@example.test") == "bob@example.test");
    CHECK(receipt_recipient("", bad, "bob") == "");
    CHECK(receipt_recipient("", "", "") == "");
}

TEST_CASE("APOP timestamps from upstream greetings are passed on only when clean")
{
    struct Case {
        const char* greeting;
        const char* want;
    };
    const Case cases[] = {
        {"Dovecot ready. <1896.697170952@dbc.mtview.ca.us>", "<1896.697170952@dbc.mtview.ca.us>"},
        {"<a@b>", "<a@b>"},
        {"Dovecot ready.", ""},
        {"ready <no-at-sign>", ""},
        {"ready <unterminated@x", ""},
        {"ready <sp ace@x>", ""},
        {"ready <ctl\x01@x>", ""},
        {"ready <8bit\xff@x>", ""},
        {"", ""},
    };
    for (const auto& c : cases) {
        CAPTURE(c.greeting);
        CHECK(apop_timestamp(c.greeting) == c.want);
    }
    CHECK(apop_timestamp("<" + std::string(300, 'a') + "@b>") == "");   // longer than any real one
}

TEST_CASE("SASL mechanisms passed through are PLAIN and LOGIN only, as upstream offers them")
{
    using V = std::vector<std::string>;
    CHECK(sasl_mechanisms({"USER", "SASL PLAIN LOGIN", "TOP"}) == V{"PLAIN", "LOGIN"});
    CHECK(sasl_mechanisms({"sasl login cram-md5 plain"}) == V{"LOGIN", "PLAIN"});
    CHECK(sasl_mechanisms({"SASL CRAM-MD5 GSSAPI"}).empty());
    CHECK(sasl_mechanisms({"SASL"}).empty());
    CHECK(sasl_mechanisms({"SASLPLAIN"}).empty());
    CHECK(sasl_mechanisms({"SASL PLAIN PLAIN", "SASL PLAIN"}) == V{"PLAIN"});
    CHECK(sasl_mechanisms({}).empty());
    CHECK(sasl_mechanisms({"X-SASL PLAIN"}).empty());
}

TEST_CASE("APOP and AUTH command lines")
{
    using namespace mm::pop3;
    struct Case {
        std::string line;
        ParseError want;
        size_t args;
    };
    const std::string b64(200, 'Q');
    const Case cases[] = {
        {"APOP bob c4c9334bac560ecc979e58001b3e22fb", ParseError::none, 2},
        {"APOP " + std::string(60, 'u') + "@example.test c4c9334bac560ecc979e58001b3e22fb", ParseError::none, 2},
        {"APOP bob", ParseError::bad_syntax, 0},
        {"APOP bob digest extra", ParseError::bad_syntax, 0},
        {"APOP  bob digest", ParseError::bad_syntax, 0},
        {"AUTH", ParseError::none, 0},
        {"AUTH PLAIN", ParseError::none, 1},
        {"AUTH PLAIN " + b64, ParseError::none, 2},
        {"AUTH PLAIN =", ParseError::none, 2},
        {"AUTH PLAIN a b", ParseError::bad_syntax, 0},
        {"AUTH PLAIN " + std::string(260, 'Q'), ParseError::too_long, 0},
        {"AUTH PLAIN AGJvYgBzZWNyZXQ=\r", ParseError::bad_bytes, 0},
        {std::string("AUTH PLAIN AGJv\0Yg==", 20), ParseError::bad_bytes, 0},
    };
    for (const auto& c : cases) {
        CAPTURE(c.line);
        Command cmd = parse_command(c.line);
        CHECK(cmd.error == c.want);
        if (c.want == ParseError::none)
            CHECK(cmd.args.size() == c.args);
    }
}

TEST_CASE("due downloads start priority senders first, then the least-failed")
{
    auto job = [](bool priority, unsigned attempts) {
        Job j;
        j.priority = priority;
        j.attempts = attempts;
        return j;
    };
    struct Case {
        Job a, b;
        bool a_first, b_first;
    };
    const Case cases[] = {
        {job(true, 0), job(false, 0), true, false},
        {job(true, 9), job(false, 0), true, false},   // priority beats a clean record
        {job(false, 0), job(false, 3), true, false},
        {job(true, 1), job(true, 2), true, false},
        {job(false, 2), job(false, 2), false, false}, // equal: neither (stable order kept)
    };
    for (const auto& c : cases) {
        CHECK(runs_before(c.a, c.b) == c.a_first);
        CHECK(runs_before(c.b, c.a) == c.b_first);
    }
}

// ---- cached copies of plain messages (fetcher/cache.h) and the sync around them ----

#include "fetcher/cache.h"
#include "core/stream.h"
#include "core/util.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <netinet/in.h>
#include <sstream>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace {

const std::string kKey(64, 'b');

std::string read_all(const std::string& path)
{
    std::ifstream f(path, std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

std::string read_fd(int fd)
{
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0)
        out.append(buf, static_cast<size_t>(n));
    return out;
}

/// A fresh cache directory, removed again at the end of the test.
struct TempCache {
    std::string dir;
    TempCache()
    {
        char tmpl[] = "/tmp/mm-cache-test-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        dir = tmpl;
        std::string err;
        REQUIRE(prepare_cache(dir, err));
    }
    ~TempCache() { std::system(("rm -rf '" + dir + "'").c_str()); }
};

/// Greets, then answers each command line it reads with the next canned reply;
/// records the commands. Pipelined commands are read and answered in order.
class ScriptedPop3 {
public:
    explicit ScriptedPop3(std::vector<std::string> replies)
    {
        lfd_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(listen(lfd_, 1) == 0);
        socklen_t len = sizeof a;
        getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        thread_ = std::thread([this, replies] {
            int fd = accept(lfd_, nullptr, nullptr);
            if (fd < 0)
                return;
            send(fd, "+OK hi\r\n", 8, MSG_NOSIGNAL);
            for (const auto& r : replies) {
                std::string line;
                char c;
                while (recv(fd, &c, 1, 0) == 1 && c != '\n')
                    line.push_back(c);
                if (!line.empty() && line.back() == '\r')
                    line.pop_back();
                commands.push_back(line);
                send(fd, r.data(), r.size(), MSG_NOSIGNAL);
            }
            shutdown(fd, SHUT_WR);
            char sink[256];
            while (recv(fd, sink, sizeof sink, 0) > 0) {
            }
            close(fd);
        });
    }
    ~ScriptedPop3()
    {
        shutdown(lfd_, SHUT_RDWR);
        if (thread_.joinable())
            thread_.join();
        close(lfd_);
    }
    void wait() { thread_.join(); }
    UpstreamConfig config() const { return loopback_upstream(port_); }
    std::vector<std::string> commands;

private:
    int lfd_ = -1;
    uint16_t port_ = 0;
    std::thread thread_;
};

SyncOptions options(const TempCache& c, uint64_t max_size)
{
    SyncOptions o;
    o.cache_dir = c.dir;
    o.upstream_id = "127.0.0.1:110";
    o.max_size = max_size;
    return o;
}

bool has(const std::vector<std::string>& v, const std::string& s)
{
    return std::find(v.begin(), v.end(), s) != v.end();
}

} // namespace

TEST_CASE("cache entry headers: round trip, and anything else refused")
{
    CacheHeader h;
    h.size = 3500;
    h.sha256 = kSha;
    h.key = kKey;
    h.boot = std::string(32, 'c');
    const std::string good = format_cache_header(h);
    REQUIRE(good.size() == kCacheHeaderLen);
    CacheHeader back;
    REQUIRE(parse_cache_header(good, back));
    CHECK(back.size == 3500);
    CHECK(back.sha256 == kSha);
    CHECK(back.key == kKey);
    CHECK(back.boot == h.boot);
    h.boot.clear();   // boot unknown when written
    REQUIRE(parse_cache_header(format_cache_header(h), back));
    CHECK(back.boot.empty());

    auto at = [&](size_t pos, char c) {
        std::string s = good;
        s[pos] = c;
        return s;
    };
    struct Case {
        const char* why;
        std::string text;
    };
    const Case cases[] = {
        {"empty", ""},
        {"zeros, as an unwritten block reads", std::string(kCacheHeaderLen, '\0')},
        {"short", good.substr(0, kCacheHeaderLen - 1)},
        {"long", good + "x"},
        {"other magic", at(7, '2')},
        {"size not hex", at(9, 'g')},
        {"size upper case", at(24, 'A')},
        {"sha256 not hex", at(30, 'z')},
        {"key with a space", at(100, ' ')},
        {"boot half dashes", at(156, '-')},
        {"missing separator", at(25, 'x')},
        {"LF only", at(188, '\n')},
    };
    for (const auto& c : cases) {
        CAPTURE(c.why);
        CHECK_FALSE(parse_cache_header(c.text, back));
    }
}

TEST_CASE("pack entries: one after another, each checked on open; damage is found")
{
    TempCache c;
    const std::string path = c.dir + "/msg/p.pack", boot(32, 'd');
    const std::string key2(64, 'e');
    std::string big;
    for (int i = 0; i < 5000; ++i)
        big += "line " + std::to_string(i) + " of a big plain message\r\n";
    {
        PackWriter pack(path, "0000abcd", boot);
        PackSink a(pack, kKey, c.dir + "/msg/a.raw"), b(pack, key2, c.dir + "/msg/b.raw");
        REQUIRE(a.write("one\r\n", 5));
        REQUIRE(a.finish());
        for (size_t off = 0; off < big.size(); off += 65536)   // as read_retr hands it over
            REQUIRE(b.write(big.data() + off, std::min<size_t>(65536, big.size() - off)));
        REQUIRE(b.finish());
        CHECK_FALSE(a.handle_name());
        CHECK(a.entry().offset == 0);
        CHECK(a.entry().size == 5);
        CHECK(b.entry().offset == kCacheHeaderLen + 5);
        CHECK(b.entry().size == big.size());
        CHECK(pack.end == 2 * kCacheHeaderLen + 5 + big.size());
    }
    std::string why;
    int fd = open_entry(path, 0, kKey, 5, why, boot);
    REQUIRE(fd >= 0);
    CHECK(read_fd(fd).substr(0, 5) == "one\r\n");
    close(fd);
    // Checked by SHA-256 when written in another boot, and still good.
    fd = open_entry(path, kCacheHeaderLen + 5, key2, big.size(), why, std::string(32, 'f'));
    REQUIRE(fd >= 0);
    CHECK(read_fd(fd) == big);
    close(fd);

    CHECK(open_entry(path, 0, key2, 5, why, boot) < 0);                    // names another message
    CHECK(open_entry(path, 0, kKey, 6, why, boot) < 0);                    // another size
    CHECK(open_entry(path, 1, kKey, 5, why, boot) < 0);                    // not an entry's start
    CHECK(open_entry(c.dir + "/msg/none.pack", 0, kKey, 5, why, boot) < 0);

    // A crash in an earlier boot left a block of the second entry unwritten.
    int w = open(path.c_str(), O_WRONLY);
    REQUIRE(w >= 0);
    const std::string zeros(4096, '\0');
    REQUIRE(pwrite(w, zeros.data(), zeros.size(), kCacheHeaderLen * 2 + 5 + 8192) == 4096);
    fd = open_entry(path, kCacheHeaderLen + 5, key2, big.size(), why, std::string(32, 'f'));
    CHECK(fd < 0);
    CHECK(why.find("SHA-256") != std::string::npos);
    fd = open_entry(path, kCacheHeaderLen + 5, key2, big.size(), why, "");   // boot unknown: checked too
    CHECK(fd < 0);
    // ... or cut the pack short.
    REQUIRE(ftruncate(w, static_cast<off_t>(kCacheHeaderLen * 2 + 5 + 100)) == 0);
    close(w);
    CHECK(open_entry(path, kCacheHeaderLen + 5, key2, big.size(), why, boot) < 0);
    fd = open_entry(path, 0, kKey, 5, why, boot);   // the first entry is untouched
    CHECK(fd >= 0);
    close(fd);
}

TEST_CASE("a message naming X-Media-Handle goes to its raw file, even split across writes; the pack is left as it was")
{
    TempCache c;
    const std::string path = c.dir + "/msg/p.pack", raw = c.dir + "/msg/h.raw";
    PackWriter pack(path, "0000abcd", std::string(32, 'd'));
    PackSink plain(pack, kKey, c.dir + "/msg/x.raw");
    REQUIRE(plain.write("a: b\r\n\r\nx-media-handl\r\n", 23));   // one letter short
    REQUIRE(plain.finish());
    CHECK_FALSE(plain.handle_name());
    const uint64_t end = pack.end;

    const std::string first = "Subject: v\r\nX-Med", second = "IA-Handle: v=1\r\n\r\nbody\r\n";
    std::string tail(70000, 'y');   // big enough to have been written to the pack already
    PackSink h(pack, std::string(64, 'e'), raw);
    REQUIRE(h.write(first.data(), first.size()));
    REQUIRE(h.write(second.data(), second.size()));
    REQUIRE(h.write(tail.data(), tail.size()));
    REQUIRE(h.finish());
    CHECK(h.handle_name());
    CHECK(read_all(raw) == first + second + tail);
    CHECK(pack.end == end);

    PackSink small(pack, std::string(64, '1'), c.dir + "/msg/s.raw");
    REQUIRE(small.write("xx-MEDIA-HANDLE:", 16));
    REQUIRE(small.finish());
    CHECK(small.handle_name());
    CHECK(read_all(c.dir + "/msg/s.raw") == "xx-MEDIA-HANDLE:");
    CHECK(pack.end == end);
}

TEST_CASE("cache index: round trip; lines a crash damaged are skipped")
{
    TempCache c;
    const std::string path = c.dir + "/msg/u.idx";
    CacheIndex idx;
    idx[kKey] = {"0000abcd", 0, 5};
    idx[std::string(64, 'e')] = {"0000abce", 195, 123456};
    REQUIRE(write_index(path, idx));
    CacheIndex back = read_index(path);
    REQUIRE(back.size() == 2);
    CHECK(back[std::string(64, 'e')].pack == "0000abce");
    CHECK(back[std::string(64, 'e')].offset == 195);
    CHECK(back[std::string(64, 'e')].size == 123456);
    CHECK(read_index(c.dir + "/msg/none.idx").empty());

    const std::string good = read_all(path);
    auto index_of = [&](const std::string& text) {
        std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
        return read_index(path);
    };
    CHECK(index_of("").empty());
    CHECK(index_of(std::string(4096, '\0')).empty());
    CHECK(index_of(good.substr(0, good.size() - 1)).size() == 1);       // last line cut: not trusted
    CHECK(index_of("MMINDEX2\n" + good.substr(9)).empty());              // another format
    std::string bad = good;
    bad[9 + 3] = '\0';                                                   // a hole in the first line
    CHECK(index_of(bad).size() == 1);
    CHECK(index_of(good + kKey + " 0000abcd 12x 5\n").size() == 2);     // bad number: skipped
    CHECK(index_of(good + kKey + " 0000ABCD 1 5\n").size() == 2);
    CHECK(index_of(good + kKey + " 0000abcd 1\n").size() == 2);
}

TEST_CASE("synchronise: plain mail into one pack, then from the index; a message over fetcher.max_size shown as it is")
{
    TempCache c;
    const SyncOptions opt = options(c, 1000);
    const std::string list = "+OK\r\n1 30\r\n2 5000\r\n3 20\r\n4 25\r\n.\r\n";
    {
        // 2 is over max_size by LIST and never RETR'd; 4 says 25 in LIST but is
        // bigger: cut off at max_size, shown as it is too.
        ScriptedPop3 up({"+OK\r\n1 u1\r\n2 u2\r\n3 u3\r\n4 u4\r\n.\r\n", list, "+OK\r\nPIPELINING\r\n.\r\n",
                         "+OK\r\nSubject: one\r\n\r\n..dot\r\n.\r\n", "+OK\r\nSubject: three\r\n\r\nhi\r\n.\r\n",
                         "+OK\r\n" + std::string(3000, 'z') + "\r\n.\r\n", "+OK bye\r\n"});
        Upstream u;
        std::string err, text;
        REQUIRE(u.connect(up.config(), err));
        std::vector<ShownMessage> shown;
        SyncStats stats;
        REQUIRE(synchronise(u, "bob", opt, shown, stats, err));
        REQUIRE(shown.size() == 4);
        CHECK(stats.held == 0);
        CHECK(shown[0].source == ShownMessage::Source::copy);
        CHECK(shown[0].size == 22);
        CHECK(shown[1].source == ShownMessage::Source::as_is);
        CHECK(shown[1].size == 5000);
        CHECK(shown[2].source == ShownMessage::Source::copy);
        CHECK(shown[2].path == shown[0].path);   // one pack for the login
        CHECK(shown[3].source == ShownMessage::Source::as_is);
        CHECK(shown[3].size == 25);
        std::string why;
        int fd = open_copy(u, shown[0], "bob", opt, why);
        REQUIRE(fd >= 0);
        CHECK(read_fd(fd).substr(0, 22) == "Subject: one\r\n\r\n.dot\r\n");
        close(fd);
        CHECK(u.command("QUIT", text) == Reply::ok);
        u.close();   // the script ends when we hang up
        up.wait();
        CHECK_FALSE(has(up.commands, "RETR 2"));
        CHECK(has(up.commands, "RETR 4"));
    }
    {
        // The next login: the index answers for the plain ones; 2 is still shown
        // as it is unread, 4 (whose LIST understates it) is read and cut off again.
        ScriptedPop3 up({"+OK\r\n1 u1\r\n2 u2\r\n3 u3\r\n4 u4\r\n.\r\n", list,
                         "+OK\r\n" + std::string(3000, 'z') + "\r\n.\r\n", "+OK bye\r\n"});
        Upstream u;
        std::string err, text;
        REQUIRE(u.connect(up.config(), err));
        std::vector<ShownMessage> shown;
        SyncStats stats;
        REQUIRE(synchronise(u, "bob", opt, shown, stats, err));
        REQUIRE(shown.size() == 4);
        CHECK(shown[1].source == ShownMessage::Source::as_is);
        CHECK(shown[2].source == ShownMessage::Source::copy);
        CHECK(shown[2].size == 22);
        CHECK(shown[3].source == ShownMessage::Source::as_is);
        CHECK(u.command("QUIT", text) == Reply::ok);
        u.close();   // the script ends when we hang up
        up.wait();
        CHECK(up.commands == std::vector<std::string>{"UIDL", "LIST", "RETR 4", "QUIT"});
    }
}

TEST_CASE("a cache copy found damaged at RETR is fetched again; a message gone upstream takes its pack along")
{
    TempCache c;
    const SyncOptions opt = options(c, 100000);
    std::vector<ShownMessage> shown;
    {
        ScriptedPop3 up({"+OK\r\n1 u1\r\n.\r\n", "+OK\r\n1 20\r\n.\r\n", "+OK\r\nSubject: one\r\n\r\nbody\r\n.\r\n"});
        Upstream u;
        std::string err;
        REQUIRE(u.connect(up.config(), err));
        SyncStats stats;
        REQUIRE(synchronise(u, "bob", opt, shown, stats, err));
        REQUIRE(shown.size() == 1);
    }
    const std::string first_pack = shown[0].path;
    REQUIRE(truncate(first_pack.c_str(), 100) == 0);   // what a crash can leave
    std::vector<ShownMessage> again;
    {
        ScriptedPop3 up({"+OK\r\n1 u1\r\n.\r\n", "+OK\r\n1 20\r\n.\r\n",
                         "+OK\r\nSubject: one\r\n\r\nbody\r\n.\r\n", "+OK\r\n"});
        Upstream u;
        std::string err, text;
        REQUIRE(u.connect(up.config(), err));
        SyncStats stats;
        REQUIRE(synchronise(u, "bob", opt, again, stats, err));
        REQUIRE(again.size() == 1);
        CHECK(again[0].size == 22);   // from the index, before any check
        std::string why;
        int fd = open_copy(u, again[0], "bob", opt, why);
        REQUIRE(fd >= 0);
        CHECK(read_fd(fd).substr(0, 22) == "Subject: one\r\n\r\nbody\r\n");
        close(fd);
        CHECK(u.command("NOOP", text) == Reply::ok);   // in step with upstream
        u.close();   // the script ends when we hang up
        up.wait();
        CHECK(up.commands.at(2) == "RETR 1");
    }
    struct stat st;
    CHECK(stat(first_pack.c_str(), &st) != 0);   // no entry left in it: removed
    {
        // Message 1 deleted upstream: its entry and the pack it was in go.
        ScriptedPop3 up({"+OK\r\n.\r\n", "+OK\r\n.\r\n"});
        Upstream u;
        std::string err;
        REQUIRE(u.connect(up.config(), err));
        SyncStats stats;
        std::vector<ShownMessage> none;
        REQUIRE(synchronise(u, "bob", opt, none, stats, err));
        CHECK(none.empty());
    }
    std::string why;
    CHECK(open_copy(*std::make_unique<Upstream>(), again[0], "bob", opt, why) < 0);   // pack gone, no upstream
}

TEST_CASE("relaying a message as it is: dot-stuffing kept, bare LF made CRLF, refusal sends nothing")
{
    ScriptedPop3 up({"+OK\r\n..dot\r\nbare\nend\r\n.\r\n", "-ERR no such message\r\n"});
    Upstream u;
    std::string err;
    REQUIRE(u.connect(up.config(), err));
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    uint64_t sent = 0;
    {
        Stream out(sv[0]);
        CHECK(u.relay("RETR 2", "+OK 16 octets\r\n", out, sent) == Reply::ok);
        CHECK(u.relay("RETR 9", "+OK 1 octets\r\n", out, sent) == Reply::err);
    }
    CHECK(read_fd(sv[1]) == "+OK 16 octets\r\n..dot\r\nbare\r\nend\r\n.\r\n");
    CHECK(sent == 18);   // octets on the wire, stuffing included, terminator not
    close(sv[1]);
}

TEST_CASE("upstream RETR over many buffer fills: line ends and dot-stuffing undone wherever the buffer splits them")
{
    // Lines of every length 0..300 with CRLF, bare LF and lone CR, dot-stuffed
    // ones among them: 16 KiB stream buffers end at every kind of position.
    std::string wire, want;
    for (int i = 0; i < 3000; ++i) {
        std::string line(static_cast<size_t>(i % 301), static_cast<char>('a' + i % 26));
        if (i % 7 == 0 && !line.empty())
            line[line.size() / 2] = '\r';   // a lone CR inside a line stays
        bool dot = i % 5 == 0;
        wire += (dot ? ".." : "") + line + (i % 3 == 0 ? "\n" : "\r\n");
        want += (dot ? "." : "") + line + "\r\n";
    }
    wire += ".\r\n";
    ScriptedPop3 up({"+OK\r\n" + wire, "+OK\r\n"});
    Upstream u;
    std::string err, text;
    REQUIRE(u.connect(up.config(), err));
    TempCache c;
    const std::string path = c.dir + "/msg/big";
    uint64_t written = 0;
    REQUIRE(u.retr_to_file(1, path, want.size(), written, err) == Upstream::Fetch::ok);
    CHECK(written == want.size());
    CHECK(read_all(path) == want);
    CHECK(u.command("NOOP", text) == Reply::ok);
}

TEST_CASE("X-Media-Handle is found in any letter case wherever the writes split it, and near misses are not")
{
    TempCache c;
    PackWriter pack(c.dir + "/msg/p.pack", "0000abcd", std::string(32, 'd'));
    const std::string yes = "a-b\r\nx-x-MEDIA-handle: v=1\r\n", no = "a-b\r\nx-media_handle x media-handle X-Media-Handl";
    for (const std::string* text : {&yes, &no}) {
        for (size_t i = 0; i <= text->size(); ++i) {
            for (size_t j = i; j <= text->size(); j += 3) {
                CAPTURE(*text);
                CAPTURE(i);
                CAPTURE(j);
                PackSink s(pack, kKey, c.dir + "/msg/r.raw");
                REQUIRE(s.write(text->data(), i));
                REQUIRE(s.write(text->data() + i, j - i));
                REQUIRE(s.write(text->data() + j, text->size() - j));
                CHECK(s.handle_name() == (text == &yes));
            }
        }
    }
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
