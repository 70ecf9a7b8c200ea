// test_http.cpp - gateway/http.h, mm-gateway's pure request helpers: the receipt
// form body (docs/gateway-api.md), the /m/<id>/<token> target with its tail and
// ?download=1, Content-Disposition and safe media types.
#include <doctest/doctest.h>

#include "gateway/http.h"

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

TEST_CASE("parse_media_target: only /m/<32 hex>/<32 hex>[/name]")
{
    const std::string id(32, 'a'), tok = "0123456789abcdef0123456789abcdef";
    std::string i, t;
    CHECK(parse_media_target("/m/" + id + "/" + tok, i, t));
    CHECK(i == id);
    CHECK(t == tok);
    CHECK(parse_media_target("/m/" + id + "/" + tok + "/clip.mp4", i, t));
    CHECK(parse_media_target("/m/" + id + "/" + tok + "?x=1", i, t));
    CHECK(parse_media_target("/m/" + id + "/" + tok + "/", i, t));
    const std::string bad[] = {
        "", "/", "/m/", "/m/" + id, "/m/" + id + "/", "/m/" + id + "/" + tok.substr(1),
        "/m/" + id + "/" + tok + "0", "/m/" + id + "/" + tok + "/a/b", "/m/" + id + "/" + tok + "/" + std::string(300, 'x'),
        "/M/" + id + "/" + tok, "m/" + id + "/" + tok, "//m/" + id + "/" + tok, "/m//" + id + "/" + tok,
        "/m/../../etc/passwd", "/m/%2e%2e/%2e%2e/etc/passwd", "/m/" + id + "/../" + tok,
        "/m/" + std::string(32, 'A') + "/" + tok, "/m/" + id + "%2f" + tok, "/x/" + id + "/" + tok,
    };
    for (const auto& b : bad) {
        CAPTURE(b);
        CHECK_FALSE(parse_media_target(b, i, t));
    }
}

TEST_CASE("content_disposition and safe_media_type")
{
    CHECK(content_disposition("clip.mp4") == "attachment; filename=\"clip.mp4\"; filename*=UTF-8''clip.mp4");
    CHECK(content_disposition("") == "attachment; filename=\"media\"");
    CHECK(content_disposition("Fïlm \"x\".mp4") ==
          "attachment; filename=\"F__lm _x_.mp4\"; filename*=UTF-8''F%C3%AFlm%20%22x%22.mp4");
    std::string evil = content_disposition("a\r\nSet-Cookie: x=1/../b\\c");
    CHECK(evil.find('\r') == std::string::npos);
    CHECK(evil.find('\n') == std::string::npos);
    CHECK(evil.find("filename=\"a__Set-Cookie: x=1_.._b_c\"") != std::string::npos);
    CHECK(content_disposition(std::string(5000, 'x')).size() < 1300);

    CHECK(safe_media_type("video/mp4") == "video/mp4");
    CHECK(safe_media_type("application/vnd.ms-asf") == "application/vnd.ms-asf");
    for (const char* bad : {"", "video", "/mp4", "video/", "video/mp4\r\nX: y", "video/mp4; a=b", "a/b/c", "vi deo/mp4"})
        CHECK(safe_media_type(bad) == "application/octet-stream");
}
