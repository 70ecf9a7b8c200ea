// reinsert.h - the receiver's side of the MIME engine: rebuild the original
// message from one with location parts (handle.h) and the media files they name,
// byte for byte, or work out beforehand what that rebuild will be.
//
// Errors: bool + err. Nothing here throws: I/O failures, a bad handle and a
// MediaInput's exception (media_input.h) all give false with `err` set.
#pragma once

#include "mime/media_input.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mm {

/// Writes the message at in_path to out_path with location part i replaced by
/// the original part rebuilt from the media file media[i] (an empty string
/// leaves that location part in place). The caller has verified each file's size
/// and SHA-256. Returns false with `err` set on failure.
bool reinsert_media(const std::string& in_path, const std::vector<std::string>& media,
                    const std::string& out_path, std::string& err);

/// The same with each media read from media[i] (nullptr leaves that location
/// part in place). `crlf_clean`, if given, is set to whether out_path has no
/// bare LF and ends with a line end, which saves a caller that needs CRLF a
/// pass over the whole file.
bool reinsert_media(const std::string& in_path, const std::vector<MediaInput*>& media,
                    const std::string& out_path, std::string& err, bool* crlf_clean = nullptr);

/// The same, and notes[i] (when not empty) put at the top of the text of
/// location part i, which stays (media[i] must then be nullptr): how the fetcher
/// tells a reader why a file was not put back. The note is made safe here
/// (format_note); a location part sent as base64 gets none.
bool reinsert_media(const std::string& in_path, const std::vector<MediaInput*>& media,
                    const std::vector<std::string>& notes, const std::string& out_path, std::string& err,
                    bool* crlf_clean = nullptr);

/// `text` as the lines put at the top of a location part's text: printable
/// US-ASCII only (anything else becomes '?', and '=' '-', so that the lines are
/// valid 7bit and quoted-printable alike), words wrapped at 72 columns, at
/// most kNoteMax octets, each line ended by `eol`, then one empty line.
std::string format_note(std::string_view text, std::string_view eol);
constexpr size_t kNoteMax = 1024;

/// What reinsert_media would write, worked out without the media: its octets,
/// where the first media's encoded bytes start, and whether it is CRLF-clean
/// (as crlf_clean above).
struct ReinsertLayout {
    uint64_t size = 0;
    uint64_t first_media = UINT64_MAX;   // UINT64_MAX: nothing replaced
    bool crlf_clean = false;
};

/// The layout of reinsert_media(in_path, media, ...) where replace[i] says
/// whether media[i] is given. Returns false with `err` set when reinsert_media
/// would fail before reading any media (or a handle's psize does not add up).
bool reinsert_layout(const std::string& in_path, const std::vector<bool>& replace, ReinsertLayout& layout,
                     std::string& err);

/// The same with notes as reinsert_media's (empty: none).
bool reinsert_layout(const std::string& in_path, const std::vector<bool>& replace,
                     const std::vector<std::string>& notes, ReinsertLayout& layout, std::string& err);

} // namespace mm
