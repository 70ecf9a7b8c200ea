// test_fetch.cpp - unit tests of mm-fetcher's background download pieces without
// sockets: the on-disk job format (strict parsing of bad files), backoff bounds,
// receipt requests, URL schemes, and the header/address rules for senders and receipts.
#include "fetcher/download.h"
#include "fetcher/mailbox.h"
#include "fetcher/pop3_parse.h"
#include "fetcher/upstream.h"

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

TEST_CASE("addresses from header values are strict")
{
    struct Case {
        const char* in;
        const char* want;
    };
    const Case cases[] = {
        {"Alice <Alice@Example.TEST>", "alice@example.test"},
        {"bob@example.test", "bob@example.test"},
        {"  bob@example.test  ", "bob@example.test"},
        {"\"Doe, J\" <j@x.org>", "j@x.org"},
        {"", ""},
        {"no address", ""},
        {"<>", ""},
        {"@example.test", ""},
        {"bob@", ""},
        {"Bob <bob@example.test", ""},
        {"two words@x", ""},
        {"a@b, c@d", ""},
        {"bob\x01@example.test", ""},
        {"b\xc3\xa9@example.test", ""},
        {"bob@exa\"mple", ""},
    };
    for (const auto& c : cases) {
        CAPTURE(c.in);
        CHECK(address_of(c.in) == c.want);
    }
    CHECK(address_of(std::string(250, 'a') + "@b.cd") == "");   // over 254
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
