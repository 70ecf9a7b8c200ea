// range.h - the HTTP Range request header (RFC 9110 section 14.2) as the gateway
// honours it: one byte range, or nothing. A pure function, so tests feed it bytes.
#pragma once

#include <cstdint>
#include <string_view>

namespace mm {

struct ByteRange {
    enum class Kind {
        whole,           // no usable Range: answer 200 with the whole file
        partial,         // answer 206 with bytes first..last (inclusive)
        unsatisfiable,   // answer 416 with "Content-Range: bytes */size"
    };
    Kind kind = Kind::whole;
    uint64_t first = 0, last = 0;
};

/// Interprets a Range header for a representation of `size` bytes. Malformed
/// headers, other units and multiple ranges yield whole (RFC 9110 lets a server
/// ignore Range); a well-formed single range past the end yields unsatisfiable.
ByteRange parse_range(std::string_view header, uint64_t size);

} // namespace mm
