// test_http_receipt.cpp - mm-gateway's pure request helpers added for receipts
// and the browser page: the receipt form body (docs/gateway-api.md), target
// tails and ?download=1, HTML/JSON escaping, the item page, address normalizing.
#include <doctest/doctest.h>

#include "gateway/http.h"
#include "store/lifecycle.h"
#include "gateway/page.h"

#include <string>
#include <vector>

using namespace mm;

namespace {
const std::string kSha = "25881b81300539938c6662e1fddb46aa46623244f6674f31fe23cb577542a7d8";
}

TEST_CASE("parse_receipt_body: good bodies")
{
    struct Case {
        std::string body, recipient;
    } cases[] = {
        {"recipient=bob%40example.org&sha256=" + kSha, "bob@example.org"},
        {"sha256=" + kSha + "&recipient=bob@example.org", "bob@example.org"},
        {"recipient=Bob+Smith%40x&sha256=" + kSha, "Bob Smith@x"},
        {"recipient=a%40b&sha256=" + kSha + "&future=1", "a@b"},          // unknown parameters ignored
        {"recipient=a%40b&sha256=" + kSha + "\r\n", "a@b"},               // a trailing CRLF tolerated
        {"recipient=a%40b&sha256=25881B81300539938C6662E1FDDB46AA46623244F6674F31FE23CB577542A7D8", "a@b"},
        {"recipient=a%40b&sha256=%32" + kSha.substr(1), "a@b"},          // escapes decode before the hex check
    };
    for (const auto& c : cases) {
        CAPTURE(c.body);
        std::string r, s;
        REQUIRE(parse_receipt_body(c.body, r, s));
        CHECK(r == c.recipient);
        CHECK(s == kSha);
    }
}

TEST_CASE("parse_receipt_body: malformed bodies are refused")
{
    std::vector<std::string> bad = {
        "",
        "recipient=a%40b",                                        // no sha256
        "sha256=" + kSha,                                         // no recipient
        "recipient=&sha256=" + kSha,                              // empty recipient
        "recipient=a%40b&sha256=" + kSha.substr(1),               // 63 digits
        "recipient=a%40b&sha256=" + kSha + "0",                   // 65 digits
        "recipient=a%40b&sha256=" + kSha.substr(1) + "g",         // not hex
        "recipient=a%40b&recipient=c%40d&sha256=" + kSha,         // repeated
        "recipient=a%40b&sha256=" + kSha + "&sha256=" + kSha,     // repeated
        "recipient=a%4&sha256=" + kSha,                           // broken escape
        "recipient=a%&sha256=" + kSha,
        "recipient=a%zz&sha256=" + kSha,
        "recipient=a%0ab&sha256=" + kSha,                         // control character
        "recipient=a%00b&sha256=" + kSha,
        "recipient&sha256=" + kSha,                               // no '='
        "recipient=a%40b&&sha256=" + kSha,                        // empty pair
        "recipient=a%40b&sha256=" + kSha + "&",
        std::string(kMaxReceiptBody + 1, 'a'),
        "x=1&x=1&x=1&x=1&x=1&x=1&x=1&x=1&x=1&x=1&x=1&x=1&x=1&x=1&x=1&recipient=a%40b&sha256=" + kSha,   // 17 params
    };
    for (const auto& b : bad) {
        CAPTURE(b);
        std::string r, s;
        CHECK_FALSE(parse_receipt_body(b, r, s));
    }
}

TEST_CASE("parse_media_target: tail and query")
{
    const std::string id(32, 'a'), tok(32, 'b');
    struct Case {
        std::string target;
        bool ok;
        std::string tail, query;
    } cases[] = {
        {"/m/" + id + "/" + tok, true, "", ""},
        {"/m/" + id + "/" + tok + "/receipt", true, "/receipt", ""},
        {"/m/" + id + "/" + tok + "?download=1", true, "", "download=1"},
        {"/m/" + id + "/" + tok + "/clip.mp4?a=b&download=1", true, "/clip.mp4", "a=b&download=1"},
        {"/m/" + id + "/" + tok + "/receipt/x", false, "", ""},
        {"/m/" + id + "/" + tok + "?" + std::string(300, 'q'), false, "", ""},
        {"/m/" + id + "/" + tok + "/../x", false, "", ""},
    };
    for (const auto& c : cases) {
        CAPTURE(c.target);
        std::string i, t, tail, q;
        REQUIRE(parse_media_target(c.target, i, t, tail, q) == c.ok);
        if (c.ok) {
            CHECK(i == id);
            CHECK(t == tok);
            CHECK(tail == c.tail);
            CHECK(q == c.query);
        }
    }
    CHECK(query_wants_download("download=1"));
    CHECK(query_wants_download("a=b&download=1"));
    CHECK_FALSE(query_wants_download("download=0"));
    CHECK_FALSE(query_wants_download("xdownload=1"));
    CHECK_FALSE(query_wants_download("download=10"));
    CHECK_FALSE(query_wants_download(""));
}


TEST_CASE("render_item_page: everything escaped, player by type")
{
    PageInfo p;
    p.name = "<img src=x onerror=alert(1)>.mp4";
    p.title = "\"><script>alert(2)</script>";
    p.note = "</p><script>alert(3)</script>";
    p.copyright = "&copy; me";
    p.date = "<date>";
    p.expires = "2030-01-01T00:00:00Z";
    p.type = "video/mp4";
    p.size = 5 * 1024 * 1024;
    p.self = "/m/" + std::string(32, 'a') + "/" + std::string(32, 'b');
    p.nonce = "0123456789abcdef";
    std::string h = render_item_page(p);
    CHECK(h.find("<script>alert") == std::string::npos);
    CHECK(h.find("<img") == std::string::npos);
    CHECK(h.find("&lt;img src=x onerror=alert(1)&gt;.mp4") != std::string::npos);
    CHECK(h.find("&amp;copy; me") != std::string::npos);
    CHECK(h.find("<video id=\"player\" controls preload=\"metadata\" playsinline src=\"" + p.self + "\">") !=
          std::string::npos);
    CHECK(h.find("href=\"" + p.self + "?download=1\"") != std::string::npos);
    CHECK(h.find("<script nonce=\"0123456789abcdef\">") != std::string::npos);
    CHECK(h.find("5.0 MiB") != std::string::npos);
    CHECK(item_page_csp(p.nonce).find("'nonce-0123456789abcdef'") != std::string::npos);

    p.type = "audio/ogg";
    h = render_item_page(p);
    CHECK(h.find("<audio id=\"player\"") != std::string::npos);
    CHECK(h.find("<video") == std::string::npos);
    p.type = "application/pdf";
    h = render_item_page(p);
    CHECK(h.find("<audio") == std::string::npos);
    CHECK(h.find("<video") == std::string::npos);
    p.title.clear();
    h = render_item_page(p);
    CHECK(h.find("<h1>&lt;img") != std::string::npos);   // no title: the file name is the heading
}


