// part_header.h - the strict check of a handle's `hdr` (handle.h): the header
// block of the one MIME part mm-fetcher puts back in place of a location part.
// The block comes from a stranger's mail, so it must be exactly one plain media
// part (RFC 2045/5322): no second part, no boundary, no nested multipart.
// Pure: bytes in, verdict out (fuzz/fuzz_part_header.cpp). docs/handle-format.md,
// "Re-insertion rules", says what passes.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mm {

enum class PartHeaderError {
    none,
    too_long,            // block over kPartHeaderMax, a line over kPartHeaderMaxLine, too many fields
    bad_byte,            // NUL, a control other than HTAB, 8-bit, CR not before LF
    mixed_line_ends,     // CRLF and bare LF in one block
    no_blank_line,       // the block does not end with one empty line
    blank_line_inside,   // an empty (or white-space only) line before the end
    continuation_first,  // the block starts with a folded line
    bad_name,            // a field name that is not 1*(%x21-39 / %x3B-7E) followed by ":"
    boundary_line,       // a line starting with "--"
    duplicate_field,     // a Content-* or MIME-Version field twice
    no_content_type,
    bad_content_type,    // not "type/subtype *(; param)", comments, encoded words
    type_mismatch,       // Content-Type differs from the handle's type (case aside)
    composite_type,      // multipart/* or message/* (declared or in the handle)
    no_encoding,         // no Content-Transfer-Encoding
    not_base64,          // Content-Transfer-Encoding other than base64
    bad_encoded_word,    // an RFC 2047 encoded word that is malformed or hides controls
};

constexpr size_t kPartHeaderMax = 8 * 1024;     // the whole block
constexpr size_t kPartHeaderMaxLine = 998;      // RFC 5322 2.1.1, without the line end
constexpr size_t kPartHeaderMaxFields = 32;

/// Checks `block` (a part's header block, ending with its empty line) against
/// `type`, the handle's media type. `detail` names the field or line on error
/// (safe for logs: never input bytes).
PartHeaderError check_part_header(std::string_view block, std::string_view type, std::string& detail);

const char* part_header_error_name(PartHeaderError e);

} // namespace mm
