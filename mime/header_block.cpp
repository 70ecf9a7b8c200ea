// header_block.cpp - the bounded header block parser (header_block.h), RFC 5322 2.2.
#include "mime/header_block.h"

#include <cstdint>
#include <strings.h>

namespace mm {

namespace {

void note(HeaderBlock& hb, HeaderError e, size_t line)
{
    if (hb.error != HeaderError::none)
        return;   // the first problem is the one worth telling
    hb.error = e;
    hb.error_line = line;
}

bool name_ok(std::string_view name)
{
    for (unsigned char c : name)
        if (c < 33 || c > 126)
            return false;
    return true;
}

} // namespace

HeaderBlock parse_header_block(std::string_view data, bool at_eof, size_t cap)
{
    HeaderBlock hb;
    size_t pos = 0, line_no = 0;
    bool skipping = false;   // inside a malformed line's continuations
    for (;;) {
        if (pos >= cap) {
            note(hb, HeaderError::too_long, line_no + 1);
            hb.size = pos;
            return hb;
        }
        size_t nl = data.find('\n', pos);
        size_t next = nl == std::string_view::npos ? data.size() : nl + 1;
        if (nl == std::string_view::npos) {
            if (!at_eof) {
                note(hb, HeaderError::too_long, line_no + 1);
                hb.size = pos;
                return hb;
            }
            if (pos == data.size()) {
                hb.size = pos;   // headers only, no body
                return hb;
            }
            note(hb, HeaderError::no_line_break, line_no + 1);
        }
        ++line_no;
        std::string_view line = data.substr(pos, (nl == std::string_view::npos ? data.size() : nl) - pos);
        if (!line.empty() && line.back() == '\r')
            line.remove_suffix(1);
        if (line.empty()) {
            hb.size = next;
            return hb;
        }
        if (line[0] == ' ' || line[0] == '\t') {
            if (hb.fields.empty() && !skipping)
                note(hb, HeaderError::continuation_first, line_no);
            if (!hb.fields.empty() && !skipping) {
                hb.fields.back().value.append(line.begin(), line.end());
                hb.fields.back().end = next;
            }
            skipping = skipping || hb.fields.empty();
            pos = next;
            continue;
        }
        size_t colon = line.find(':');
        skipping = true;
        if (colon == std::string_view::npos || colon == 0) {
            note(hb, HeaderError::not_a_field, line_no);
        } else if (!name_ok(line.substr(0, colon))) {
            note(hb, HeaderError::bad_name, line_no);
        } else {
            skipping = false;
            HeaderField f;
            f.name = std::string(line.substr(0, colon));
            std::string_view v = line.substr(colon + 1);
            while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
                v.remove_prefix(1);
            f.value = std::string(v);
            f.begin = pos;
            f.end = next;
            hb.fields.push_back(std::move(f));
        }
        pos = next;
    }
}

std::string header_value(const HeaderBlock& block, std::string_view name)
{
    for (const HeaderField& f : block.fields) {
        if (f.name.size() != name.size() || strncasecmp(f.name.data(), name.data(), name.size()) != 0)
            continue;
        size_t b = f.value.find_first_not_of(" \t"), e = f.value.find_last_not_of(" \t");
        return b == std::string::npos ? "" : f.value.substr(b, e - b + 1);
    }
    return "";
}

std::string header_value(std::string_view headers, std::string_view name)
{
    return header_value(parse_header_block(headers, true, SIZE_MAX), name);
}

} // namespace mm
