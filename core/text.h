// text.h - text for other formats, one function each: HTML element content and
// attribute values, JSON string literals (always valid UTF-8), and a byte count
// as people read it. Used by the gateway's page and admin output, mmsend --json
// and the fetcher's status output, so all of them escape the same way.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mm {

/// Text made safe for HTML element content and quoted attribute values.
std::string html_escape(std::string_view s);
/// A JSON string literal, quotes included; bytes that are not valid UTF-8 become U+FFFD.
std::string json_quote(std::string_view s);
/// "1.5 MiB", "293 KiB", "980 bytes" (1024-based; one decimal below 10, or always
/// with one_decimal).
std::string human_size(uint64_t bytes, bool one_decimal = false);

} // namespace mm
