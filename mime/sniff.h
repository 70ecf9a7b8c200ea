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

} // namespace mm
