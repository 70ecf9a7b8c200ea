// test_sniff.cpp - which attachments count as media (mime/sniff.h): containers
// recognised from their first bytes, near misses that are not, and the type
// patterns of milter.types.
#include <doctest/doctest.h>

#include "mime/sniff.h"

#include <string>
#include <vector>

using namespace mm;

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

TEST_CASE("type patterns: exact, type/*, */* and *, letter case of the pattern ignored")
{
    using V = std::vector<std::string>;
    CHECK(type_matches("video/mp4", V{"video/*"}));
    CHECK(type_matches("video/mp4", V{"VIDEO/*"}));
    CHECK(type_matches("video/mp4", V{"audio/*", "video/mp4"}));
    CHECK(type_matches("video/mp4", V{"Video/MP4"}));
    CHECK(type_matches("application/pdf", V{"*/*"}));
    CHECK(type_matches("application/pdf", V{"*"}));
    CHECK_FALSE(type_matches("video/mp4", V{}));
    CHECK_FALSE(type_matches("video/mp4", V{"audio/*"}));
    CHECK_FALSE(type_matches("video/mp4", V{"video/mp"}));
    CHECK_FALSE(type_matches("video/mp4", V{"video"}));
    CHECK_FALSE(type_matches("videos/mp4", V{"video/*"}));   // the slash is part of the prefix
    CHECK_FALSE(type_matches("video", V{"video/*"}));
    CHECK_FALSE(type_matches("video/mp4", V{"/*"}));
}
