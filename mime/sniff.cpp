// sniff.cpp - which attachments count as media (sniff.h): type patterns, and audio
// and video containers recognised from their first bytes.
//
// Signatures are the containers' own magic numbers (ISO BMFF "ftyp", EBML, RIFF,
// MPEG pack and transport-stream sync, ID3 and MPEG audio frame sync, OggS, fLaC).
#include "mime/sniff.h"

#include <cstring>

namespace mm {

namespace {
bool at(const unsigned char* p, size_t n, size_t off, const char* magic)
{
    size_t len = strlen(magic);
    return n >= off + len && memcmp(p + off, magic, len) == 0;
}

bool contains(const unsigned char* p, size_t n, const char* needle)
{
    size_t len = strlen(needle);
    for (size_t i = 0; i + len <= n; ++i)
        if (memcmp(p + i, needle, len) == 0)
            return true;
    return false;
}
} // namespace

bool type_matches(const std::string& type, const std::vector<std::string>& patterns)
{
    for (const auto& pat : patterns) {
        std::string p = pat;
        for (auto& c : p)
            c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
        if (p == "*/*" || p == "*")
            return true;
        if (p.size() >= 2 && p.compare(p.size() - 2, 2, "/*") == 0) {
            if (type.compare(0, p.size() - 1, p, 0, p.size() - 1) == 0)
                return true;
        } else if (p == type) {
            return true;
        }
    }
    return false;
}

std::string sniff_media(const unsigned char* p, size_t n)
{
    // ISO base media (MP4, MOV, 3GP, M4A): a box size, then "ftyp"; old QuickTime
    // files may start with another top-level box.
    if (at(p, n, 4, "ftyp")) {
        if (at(p, n, 8, "M4A ") || at(p, n, 8, "M4B "))
            return "audio/mp4";
        if (at(p, n, 8, "qt  "))
            return "video/quicktime";
        return "video/mp4";
    }
    if (at(p, n, 4, "moov") || at(p, n, 4, "mdat") || at(p, n, 4, "wide"))
        return "video/quicktime";
    // EBML header: Matroska, or WebM when the DocType says so.
    if (n >= 4 && p[0] == 0x1a && p[1] == 0x45 && p[2] == 0xdf && p[3] == 0xa3)
        return contains(p, n < 64 ? n : 64, "webm") ? "video/webm" : "video/x-matroska";
    if (at(p, n, 0, "RIFF") && at(p, n, 8, "AVI "))
        return "video/x-msvideo";
    if (at(p, n, 0, "RIFF") && at(p, n, 8, "WAVE"))
        return "audio/wav";
    // MPEG program stream pack header, and MPEG-1/2 video sequence header.
    if (n >= 4 && p[0] == 0 && p[1] == 0 && p[2] == 1 && (p[3] == 0xba || p[3] == 0xb3))
        return "video/mpeg";
    // MPEG transport stream: the sync byte every 188 bytes, checked three times so
    // that text starting with 'G' is not taken for video.
    if (n >= 377 && p[0] == 0x47 && p[188] == 0x47 && p[376] == 0x47)
        return "video/mp2t";
    if (at(p, n, 0, "OggS"))
        return contains(p, n < 128 ? n : 128, "theora") ? "video/ogg" : "audio/ogg";
    if (at(p, n, 0, "fLaC"))
        return "audio/flac";
    if (at(p, n, 0, "ID3") && n >= 10)
        return "audio/mpeg";
    // Bare MPEG audio frame: 11 sync bits, a valid version, layer III, a valid
    // bitrate and sample-rate index.
    if (n >= 4 && p[0] == 0xff && (p[1] & 0xe0) == 0xe0 && (p[1] & 0x18) != 0x08 && (p[1] & 0x06) == 0x02 &&
        (p[2] & 0xf0) != 0xf0 && (p[2] & 0xf0) != 0 && (p[2] & 0x0c) != 0x0c)
        return "audio/mpeg";
    return "";
}

bool sniffed_kind_fits(const std::string& type, const std::string& sniffed)
{
    if (sniffed.empty())
        return false;
    if (type.rfind("video/", 0) == 0)
        return sniffed.rfind("video/", 0) == 0;
    if (type.rfind("audio/", 0) == 0) {
        static const char* const both[] = {"video/mp4", "video/quicktime", "video/webm", "video/x-matroska",
                                           "video/ogg", "video/mpeg", "video/mp2t"};
        if (sniffed.rfind("audio/", 0) == 0)
            return true;
        for (const char* b : both)
            if (sniffed == b)
                return true;
        return false;
    }
    return true;
}

} // namespace mm
