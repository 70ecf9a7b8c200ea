// range.cpp - parse_range: the single-range subset of RFC 9110 section 14.1.2
// (bytes=a-b, bytes=a-, bytes=-n), with strict digits and no overflow.
#include "gateway/range.h"

#include "core/config.h"

namespace mm {

namespace {

std::string_view trim_ows(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

bool iequals(std::string_view a, std::string_view b)
{
    if (a.size() != b.size())
        return false;
    for (size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z')
            x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = static_cast<char>(y - 'A' + 'a');
        if (x != y)
            return false;
    }
    return true;
}

} // namespace

ByteRange parse_range(std::string_view header, uint64_t size)
{
    ByteRange whole;   // the answer to anything we do not understand
    // Bounded: a real single range is far shorter; anything long is not ours.
    if (header.size() > 200)
        return whole;
    header = trim_ows(header);
    size_t eq = header.find('=');
    if (eq == std::string_view::npos || !iequals(header.substr(0, eq), "bytes"))
        return whole;
    std::string_view spec = trim_ows(header.substr(eq + 1));
    // Several ranges would need multipart/byteranges; a 200 is allowed instead.
    if (spec.empty() || spec.find(',') != std::string_view::npos)
        return whole;
    size_t dash = spec.find('-');
    if (dash == std::string_view::npos)
        return whole;
    std::string_view a = spec.substr(0, dash), b = spec.substr(dash + 1);

    ByteRange r;
    if (a.empty()) {   // suffix: the last n bytes
        uint64_t n;
        if (!parse_u64(b, n))
            return whole;
        if (n == 0 || size == 0) {
            r.kind = ByteRange::Kind::unsatisfiable;
            return r;
        }
        r.kind = ByteRange::Kind::partial;
        r.first = n >= size ? 0 : size - n;
        r.last = size - 1;
        return r;
    }
    uint64_t first, last;
    if (!parse_u64(a, first))
        return whole;
    if (b.empty()) {
        last = UINT64_MAX;
    } else {
        if (!parse_u64(b, last))
            return whole;
        if (last < first)   // invalid range-spec: ignored, not refused
            return whole;
    }
    if (first >= size) {
        r.kind = ByteRange::Kind::unsatisfiable;
        return r;
    }
    r.kind = ByteRange::Kind::partial;
    r.first = first;
    r.last = last >= size ? size - 1 : last;
    return r;
}

} // namespace mm
