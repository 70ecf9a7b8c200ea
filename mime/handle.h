// handle.h - the location part, format v1: the X-Media-Handle header value that
// replaces a detached attachment, and the human-readable part that carries it.
//
// Syntax: RFC 2045 parameters (attribute=value; ...) with RFC 2231 continuations
// and charset encoding for long and non-ASCII values. docs/handle-format.md has
// the ABNF. The parser is strict and bounded and never trusts the input.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mm {

struct Handle {
    // Required in v1.
    unsigned v = 1;
    std::string url;      // https URL of the bytes, capability token included
    std::string sha256;   // 64 lowercase hex digits of the decoded attachment
    uint64_t size = 0;    // decoded length in bytes
    std::string type;     // original media type, e.g. "video/mp4"
    std::string name;     // original file name (UTF-8)
    std::string pin;      // "sha256//BASE64" public-key pin of the gateway
    std::string expires;  // RFC 3339, e.g. "2026-12-25T10:00:00Z"
    // Optional descriptive fields (UTF-8).
    std::string title, date, note, copyright;
    // How to rebuild the original MIME part byte for byte.
    std::string headers;        // the original part's header block, raw, including the empty line
    std::string encoding = "base64"; // original Content-Transfer-Encoding (v1: base64 only)
    unsigned line_len = 76;     // encoded characters per line
    std::string eol = "\r\n";   // line ending of the encoded body: "\r\n" or "\n"
    bool final_eol = false;     // whether the encoded body ends with eol (before the boundary's own)
    uint64_t part_size = 0;     // exact octets of the rebuilt part: headers.size() +
                                // base64_encoded_size(size, line_len, eol.size(), final_eol)
    // Optional: per-segment digests (segments.h), so that a receiver can pass
    // on verified pieces while the rest downloads. 0 and "" when absent.
    uint64_t seg_size = 0;      // "segsize": bytes per segment
    std::string seg_sha256;     // "segsha256": 64 hex digits per segment, in order
};

enum class HandleError {
    none,
    too_long,        // header value or a parameter over its cap
    syntax,          // not parameter syntax
    missing,         // a required parameter is absent
    bad_value,       // a parameter's value fails its check
    unknown_version, // v is not 1
};

struct HandleParse {
    HandleError error = HandleError::none;
    std::string detail;   // which parameter, for logs (safe: no raw input)
    Handle handle;
};

/// Caps on what parse_handle() accepts.
constexpr size_t kHandleMaxLength = 32 * 1024;   // whole unfolded header value
constexpr size_t kHandleMaxParams = 64;
constexpr size_t kHandleMaxValue = 16 * 1024;    // one decoded parameter value

/// The complete "X-Media-Handle: ..." header field, folded to lines of at most
/// 78 octets, each line ended by `eol` (the last one too).
std::string format_handle_field(const Handle& h, std::string_view eol);

/// Parses a header value (the text after "X-Media-Handle:"), folded or not.
/// Unknown parameters are ignored; an unknown v is reported as such.
HandleParse parse_handle(std::string_view value);

/// The whole location part that replaces an attachment: its header block
/// (Content-Type text/plain; charset=utf-8, inline disposition, X-Media-Handle,
/// X-Mozilla-Cloud-Part), an empty line, and a short note for humans. Lines end
/// with `eol`; the text does not end with one (the boundary delimiter that
/// follows the part in the message supplies it).
std::string build_location_part(const Handle& h, std::string_view eol);

/// Checks before sending that `h` is one handle parse_handle() reads back
/// exactly (every field valid, every value short enough for 100 RFC 2231
/// sections). Returns none, or the error with the parameter named in `detail`.
HandleError validate_handle(const Handle& h, std::string& detail);

const char* handle_error_name(HandleError e);

/// Octets of `size` bytes encoded as base64 in lines of line_len characters
/// separated by an eol of eol_len octets (and ended by one when final_eol):
/// the encoded body a handle's layout fields describe.
uint64_t base64_encoded_size(uint64_t size, unsigned line_len, size_t eol_len, bool final_eol);

} // namespace mm
