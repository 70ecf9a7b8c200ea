// sniff.h - which attachments count as media: a part's declared type against the
// policy's patterns (milter.types), and its first decoded bytes against the
// audio and video containers' magic numbers, so that media sent as
// application/octet-stream (or mislabelled) is still detached.
//
// Errors: none; both functions answer for any input.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace mm {

/// Whether a lowercased MIME type matches one of the patterns ("video/*", "*/*", exact).
bool type_matches(const std::string& type, const std::vector<std::string>& patterns);

/// Sniffs the first bytes of decoded content: returns a media type such as
/// "video/mp4" for MP4/MOV, Matroska/WebM, AVI, MPEG-PS/TS, MP3, Ogg, FLAC, WAV,
/// or "" when it is none of them.
std::string sniff_media(const unsigned char* p, size_t n);

/// Bytes sniff_media needs to answer.
constexpr size_t kSniffMediaBytes = 8 * 1024;

/// Whether content sniffed as `sniffed` (sniff_media) is the kind of media a
/// part declared as `type` (lowercase) says: "" never is; a video/* type needs
/// a video container; an audio/* type an audio container or one that carries
/// audio as well (MP4, QuickTime, Matroska/WebM, Ogg, MPEG); any other
/// declared type (allowed by the fetcher's own policy) any media.
bool sniffed_kind_fits(const std::string& type, const std::string& sniffed);

} // namespace mm
