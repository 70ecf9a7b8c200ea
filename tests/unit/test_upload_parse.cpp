// test_upload_parse.cpp - the upload API's parsers (gateway/upload_parse.h):
// tus Upload-Metadata, Content-Range on PUT/PATCH, byte counts, the Bearer
// token and the /upload target; mostly hostile input. And mmsend's side
// (mmsend/upload.h): the gateway's complete answer and its Location.
#include <doctest/doctest.h>

#include "gateway/upload_parse.h"
#include "mmsend/upload.h"
#include "core/util.h"

#include <cstdint>
#include <string>

using namespace mm;

namespace {

std::string b64(const std::string& s) { return base64_encode(s); }

} // namespace

TEST_CASE("parse_byte_count: digits only, no leading zeros, bounded")
{
    struct Case {
        const char* text;
        uint64_t max;
        bool ok;
        uint64_t want;
    };
    const Case cases[] = {
        {"0", 100, true, 0},
        {"100", 100, true, 100},
        {"101", 100, false, 0},
        {"", 100, false, 0},
        {"007", 100, false, 0},
        {"+1", 100, false, 0},
        {"-1", 100, false, 0},
        {" 1", 100, false, 0},
        {"1 ", 100, false, 0},
        {"1e3", 10000, false, 0},
        {"0x10", 100, false, 0},
        {"18446744073709551615", UINT64_MAX, true, UINT64_MAX},
        {"18446744073709551616", UINT64_MAX, false, 0},   // overflow
        {"99999999999999999999999", UINT64_MAX, false, 0},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        uint64_t v = 42;
        CHECK(parse_byte_count(c.text, c.max, v) == c.ok);
        if (c.ok)
            CHECK(v == c.want);
    }
}

TEST_CASE("parse_content_range: bytes FIRST-LAST/TOTAL, strictly")
{
    struct Case {
        const char* text;
        bool ok;
        uint64_t first, last, total;
    };
    const Case cases[] = {
        {"bytes 0-99/1000", true, 0, 99, 1000},
        {"bytes 999-999/1000", true, 999, 999, 1000},
        {"bytes 0-0/*", true, 0, 0, UINT64_MAX},
        {"bytes 0-999/1000", true, 0, 999, 1000},
        {"bytes 0-1000/1000", false, 0, 0, 0},   // LAST beyond TOTAL
        {"bytes 10-9/1000", false, 0, 0, 0},     // backwards
        {"bytes */1000", false, 0, 0, 0},        // unsatisfied-range form: not for uploads
        {"bytes 0-99", false, 0, 0, 0},
        {"bytes=0-99/1000", false, 0, 0, 0},
        {"Bytes 0-99/1000", false, 0, 0, 0},
        {"bytes  0-99/1000", false, 0, 0, 0},
        {"bytes 0-99/1000 ", false, 0, 0, 0},
        {"bytes -5-99/1000", false, 0, 0, 0},
        {"bytes 0--99/1000", false, 0, 0, 0},
        {"bytes 00-99/1000", false, 0, 0, 0},
        {"bytes 0-99/", false, 0, 0, 0},
        {"bytes 0-18446744073709551615/*", false, 0, 0, 0},   // LAST must stay below the "unknown" total
        {"bytes 0-99/1000,100-199/1000", false, 0, 0, 0},
        {"", false, 0, 0, 0},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        ContentRange r;
        CHECK(parse_content_range(c.text, r) == c.ok);
        if (c.ok) {
            CHECK(r.first == c.first);
            CHECK(r.last == c.last);
            CHECK(r.total == c.total);
        }
    }
}

TEST_CASE("parse_upload_metadata: the known keys, decoded and checked")
{
    std::string field = "filename " + b64("clip.mp4") + ",filetype " + b64("video/mp4") + ",title " +
                        b64("Été") + ",note " + b64("a note") + ",copyright " + b64("CC-BY") + ",date " +
                        b64("2026-12-02") + ",recipients " + b64("bob@example.org, Carol@Example.org") +
                        ",sha256 " + b64(std::string(64, 'a')) + ",unknown " + b64("kept out") + ",flag";
    UploadMetadata md;
    std::string why;
    REQUIRE(parse_upload_metadata(field, md, why));
    CHECK(md.meta.name == "clip.mp4");
    CHECK(md.meta.type == "video/mp4");
    CHECK(md.meta.title == "Été");
    CHECK(md.meta.note == "a note");
    CHECK(md.meta.copyright == "CC-BY");
    CHECK(md.meta.date == "2026-12-02");
    CHECK(md.meta.recipients == std::vector<std::string>{"bob@example.org", "Carol@Example.org"});
    CHECK(md.sha256 == std::string(64, 'a'));
    CHECK(parse_upload_metadata("", md, why));   // no metadata at all is fine
    CHECK(md.meta.name.empty());
}

TEST_CASE("parse_upload_metadata: hostile fields are refused")
{
    std::string many;
    for (int i = 0; i < 101; ++i)
        many += (i ? "," : "") + std::string("u") + std::to_string(i) + "@example.org";
    const std::string cases[] = {
        "filename " + b64("a") + ",filename " + b64("b"),              // twice
        "filename " + b64(std::string(256, 'x')),                        // over 255
        "title " + b64(std::string(1025, 'x')),
        "filetype " + b64(std::string(128, 'x')),
        "date " + b64(std::string(65, '1')),
        "filename " + b64("../../etc/passwd"),                           // a path
        "filename " + b64("a\\b"),
        "filename " + b64("a\r\nX-Injected: 1"),                         // control characters
        "title " + b64(std::string("a\0b", 3)),
        "title " + b64("\xC3\x28"),                                      // broken UTF-8
        "title " + b64("\xC0\xAF"),                                      // overlong
        "title " + b64("\xED\xA0\x80"),                                  // a surrogate
        "title " + b64("\xC2\x85"),                                      // a C1 control
        "title " + b64("\xE2\x82"),                                      // cut short
        "filename not*base64",
        "filename " + b64("a") + "=",                                    // bad padding
        "filename " + b64("ab") + " " + b64("cd"),                      // two values
        " ,filename " + b64("a"),                                       // an empty key
        std::string("fil\x01name ") + b64("a"),
        std::string(65, 'k') + " " + b64("a"),                           // overlong key
        "sha256 " + b64("ABCDEF"),                                       // not a digest
        "sha256 " + b64(std::string(64, 'A')),                           // upper case
        "recipients " + b64("not an address"),
        "recipients " + b64("a@example.org,,b@example.org"),
        "recipients " + b64(many),                                       // over 100
        "recipients " + b64(std::string(321, 'a') + "@x.org"),
        std::string(8193, 'a'),                                          // the whole field too long
    };
    for (const auto& c : cases) {
        CAPTURE(c);
        UploadMetadata md;
        std::string why;
        CHECK_FALSE(parse_upload_metadata(c, md, why));
        CHECK_FALSE(why.empty());
    }
}

TEST_CASE("parse_bearer and parse_upload_target")
{
    std::string tok;
    const std::string good(64, 'f');
    CHECK(parse_bearer("Bearer " + good, tok));
    CHECK(tok == good);
    for (const std::string& bad : {std::string("bearer ") + good, "Bearer  " + good, "Bearer " + good + " ",
                                   "Bearer " + std::string(63, 'f'), "Bearer " + std::string(64, 'F'),
                                   "Basic " + good, std::string("Bearer"), std::string()}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_bearer(bad, tok));
    }
    std::string id;
    CHECK(parse_upload_target("/upload", id));
    CHECK(id.empty());
    CHECK(parse_upload_target("/upload/0123456789abcdef0123456789abcdef", id));
    CHECK(id == "0123456789abcdef0123456789abcdef");
    for (const char* bad : {"/upload/", "/upload?x=1", "/upload/0123456789abcdef0123456789abcdeF",
                            "/upload/0123456789abcdef0123456789abcdef/", "/upload/../m/x",
                            "/upload/0123456789abcdef0123456789abcde", "/uploads", "//upload",
                            "/upload/0123456789abcdef0123456789abcdef?x", "/upload%2F0123"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_upload_target(bad, id));
    }
    CHECK(parse_upload_item_target("/upload/item/0123456789abcdef0123456789abcdef", id));
    CHECK(id == "0123456789abcdef0123456789abcdef");
    CHECK_FALSE(parse_upload_target("/upload/item/0123456789abcdef0123456789abcdef", id));
    for (const char* bad : {"/upload/item", "/upload/item/", "/upload/item/0123456789abcdef0123456789abcdeF",
                            "/upload/item/0123456789abcdef0123456789abcdef/", "/upload/item/../../m/x",
                            "/upload/item/0123456789abcdef0123456789abcde", "/upload/items/0123456789abcdef0123456789abcdef",
                            "/upload/item/0123456789abcdef0123456789abcdef?x", "/upload/0123456789abcdef0123456789abcdef",
                            "//upload/item/0123456789abcdef0123456789abcdef"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_upload_item_target(bad, id));
    }
}

TEST_CASE("mmsend: the gateway's complete answer is parsed strictly")
{
    const std::string id(32, 'a'), tok(32, 'b'), rtok(32, 'c');
    const std::string good = "url https://gw.example.org:8443/m/" + id + "/" + tok + "\n" +
                             "pin sha256//bmF7agSSuuTuAVvN4zavaMaBv4dkhs5OogGkQPAvawc=\n" + "sha256 " +
                             std::string(64, 'd') + "\n" + "size 3000000\n" + "expires 2027-01-01T18:55:54Z\n" +
                             "segsize 16777216\n" + "segsha256 " + std::string(64, 'e') + "\n" + "recipient " +
                             rtok + " bob@example.org\n" + "future something\n";
    NewItem item;
    std::string why;
    REQUIRE(send::parse_upload_result(good, item, why));
    CHECK(item.id == id);
    CHECK(item.token == tok);
    CHECK(item.size == 3000000);
    CHECK(item.seg_size == 16777216);
    REQUIRE(item.recipient_tokens.size() == 1);
    CHECK(item.recipient_tokens[0] == std::pair<std::string, std::string>{"bob@example.org", rtok});

    auto without = [&](const std::string& key) {
        std::string out, line;
        for (size_t pos = 0; pos < good.size();) {
            size_t nl = good.find('\n', pos);
            line = good.substr(pos, nl + 1 - pos);
            pos = nl + 1;
            if (line.rfind(key + " ", 0) != 0)
                out += line;
        }
        return out;
    };
    const std::string bad[] = {
        without("url"), without("pin"), without("sha256"), without("size"), without("expires"),
        without("segsha256"),                                         // segsize alone
        good + "size 1\n",                                            // twice
        good.substr(0, good.size() - 1),                              // no final newline
        "url http://gw/m/" + id + "/" + tok + "\n" + without("url"),  // not https
        "url https://gw/x/" + id + "\n" + without("url"),             // not an item URL
        good + "recipient " + rtok + " Not An Address\n",
        good + "recipient short bob@example.org\n",
        "size 12x\n" + without("size"),
        "expires tomorrow\n" + without("expires"),
        "sha256 " + std::string(64, 'D') + "\n" + without("sha256"),
        "segsha256 " + std::string(63, 'e') + "\n" + without("segsha256"),
        "url\t https://x\n" + without("url"),
        std::string("\n"),
    };
    for (const auto& b : bad) {
        CAPTURE(b);
        CHECK_FALSE(send::parse_upload_result(b, item, why));
    }
    std::string path;
    CHECK(send::parse_upload_location("/upload/" + id, path));
    CHECK(send::parse_upload_location(" /upload/" + id + "\r\n", path));
    for (const std::string& l : {"https://elsewhere.example/upload/" + id, "/upload/" + id + "/x",
                                 std::string("/upload/"), "/m/" + id}) {
        CAPTURE(l);
        CHECK_FALSE(send::parse_upload_location(l, path));
    }
}
