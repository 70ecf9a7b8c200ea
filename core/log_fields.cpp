// log_fields.cpp - key=value log fields (see log_fields.h).
#include "core/log_fields.h"

#include "core/log.h"

namespace mm {

namespace {
constexpr size_t kMaxValue = 160;   // as printable(): one field never floods a line
}

std::string kv(std::string_view key, std::string_view value)
{
    // printable() escapes control bytes, non-ASCII and the backslash itself, so
    // what is left to handle is what would split or fake a field: spaces, quotes, '='.
    std::string v = printable(value, kMaxValue);
    bool quote = v.empty() || v.find_first_of(" \"=") != std::string::npos;
    std::string out;
    out.reserve(key.size() + v.size() + 4);
    out += ' ';
    out += key;
    out += '=';
    if (!quote)
        return out + v;
    out += '"';
    for (char c : v) {
        if (c == '"')
            out += '\\';
        out += c;
    }
    out += '"';
    return out;
}

std::string kv(std::string_view key, unsigned long long value) { return kv(key, std::to_string(value)); }

} // namespace mm
