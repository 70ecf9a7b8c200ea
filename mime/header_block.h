// header_block.h - the header block at the top of a message (RFC 5322 2.2) split
// into fields: bytes in, fields out, bounded by a cap the caller names. Pure: no
// files, no GMime. Used by mmsend -t (strict: any problem refuses the message)
// and mm-fetcher (lenient: it only looks up From, Delivered-To and X-Original-To).
// The milter's streaming smtp::HeaderSplitter is a different job: see milter/smtp.h.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace mm {

struct HeaderField {
    std::string name;            // as written
    std::string value;           // unfolded, without the leading space
    size_t begin = 0, end = 0;   // raw bytes in the block, continuation lines included
};

/// The first problem in a header block. The parser goes on past it where it can
/// (a lenient reader uses what it got); a strict one refuses the block.
enum class HeaderError {
    none,
    too_long,             // a line starts at or after the cap, or the block does not end within the data
    no_line_break,        // the last line (at the end of the data) has no line break
    continuation_first,   // a continuation line with no field before it
    not_a_field,          // no colon, or nothing before it
    bad_name,             // a field name byte outside 33..126
};

struct HeaderBlock {
    std::vector<HeaderField> fields;   // in order; malformed lines and their continuations left out
    size_t size = 0;                   // bytes of the block, including the empty line ending it (if any)
    HeaderError error = HeaderError::none;
    size_t error_line = 0;             // 1-based line of `error`
};

/// Splits the header block at the start of `data`. The block ends at the first
/// empty line (CRLF or bare LF). `at_eof`: `data` is the whole message, so one
/// with no empty line is all header (a line without a line break at its end
/// still counts, with no_line_break noted); otherwise running out of data is
/// too_long. No line may start at or after `cap` bytes (too_long; parsing stops).
/// A malformed line is left out together with its continuation lines.
HeaderBlock parse_header_block(std::string_view data, bool at_eof, size_t cap);

/// The first field called `name` (any letter case), unfolded, with spaces and
/// tabs trimmed from both ends; "" if there is none.
std::string header_value(const HeaderBlock& block, std::string_view name);

/// The same from bytes that the caller already bounded (at most one read of a
/// capped header block): the block at the start of `headers`, parsed leniently.
std::string header_value(std::string_view headers, std::string_view name);

} // namespace mm
