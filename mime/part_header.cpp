// part_header.cpp - the strict check of a re-inserted part's header block
// (part_header.h). Lines are split by hand, not by GMime: what matters is what
// any mail program could make of the bytes, so anything unusual is refused.
#include "mime/part_header.h"

#include <cstdint>
#include <vector>

namespace mm {

namespace {

char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b)
{
    if (a.size() != b.size())
        return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (lower(a[i]) != lower(b[i]))
            return false;
    return true;
}

bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s)
{
    while (!s.empty() && is_wsp(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && is_wsp(s.back()))
        s.remove_suffix(1);
    return s;
}

/// RFC 2045 token character: VCHAR except tspecials.
bool token_char(char c)
{
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f)
        return false;
    return std::string_view("()<>@,;:\\\"/[]?=").find(c) == std::string_view::npos;
}

/// "type/subtype", both tokens, lowercased into out; false if `s` is not that.
bool media_type(std::string_view s, std::string& out)
{
    size_t slash = s.find('/');
    if (slash == std::string_view::npos || slash == 0 || slash + 1 == s.size())
        return false;
    out.clear();
    for (size_t i = 0; i < s.size(); ++i) {
        if (i != slash && !token_char(s[i]))
            return false;
        out.push_back(lower(s[i]));
    }
    return true;
}

/// The parameters after a Content-Type's type: *( ";" attribute "=" value ),
/// value a token or a quoted string; no comments. A final ";" is tolerated.
bool params_ok(std::string_view s)
{
    size_t i = 0;
    auto skip = [&] {
        while (i < s.size() && is_wsp(s[i]))
            ++i;
    };
    for (;;) {
        skip();
        if (i == s.size())
            return true;
        if (s[i] != ';')
            return false;
        ++i;
        skip();
        if (i == s.size())
            return true;
        size_t a = i;
        while (i < s.size() && token_char(s[i]))
            ++i;
        if (i == a)
            return false;
        skip();
        if (i == s.size() || s[i] != '=')
            return false;
        ++i;
        skip();
        if (i < s.size() && s[i] == '"') {
            ++i;
            for (;;) {
                if (i == s.size())
                    return false;
                if (s[i] == '\\') {
                    if (++i == s.size())
                        return false;
                } else if (s[i] == '"') {
                    break;
                }
                ++i;
            }
            ++i;
        } else {
            size_t v = i;
            while (i < s.size() && token_char(s[i]))
                ++i;
            if (i == v)
                return false;
        }
    }
}

int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/// Whether a decoded byte may appear in a header: a mail program that decodes
/// an encoded word must not find a line end, a NUL or another control in it.
bool decoded_ok(unsigned char u)
{
    return u >= 0x20 && u != 0x7f;
}

/// Every "=?" in a field value must open a well-formed RFC 2047 encoded word
/// (=?charset?B|Q?text?=, at most 75 octets) that decodes to no control.
bool encoded_words_ok(std::string_view v)
{
    for (size_t at = v.find("=?"); at != std::string_view::npos; at = v.find("=?", at)) {
        size_t q1 = v.find('?', at + 2);
        if (q1 == std::string_view::npos || q1 == at + 2 || q1 + 2 >= v.size() || v[q1 + 2] != '?')
            return false;
        for (size_t i = at + 2; i < q1; ++i)
            if (!token_char(v[i]) && v[i] != '*')
                return false;
        char enc = lower(v[q1 + 1]);
        size_t text = q1 + 3;
        size_t end = v.find("?=", text);
        if (end == std::string_view::npos || end + 2 - at > 75)
            return false;
        std::string_view t = v.substr(text, end - text);
        if (enc == 'q') {
            for (size_t i = 0; i < t.size(); ++i) {
                unsigned char u = static_cast<unsigned char>(t[i]);
                if (u <= 0x20 || u >= 0x7f || u == '?')
                    return false;
                if (t[i] == '=') {
                    if (i + 2 >= t.size())
                        return false;
                    int h = hex_value(t[i + 1]), l = hex_value(t[i + 2]);
                    if (h < 0 || l < 0 || !decoded_ok(static_cast<unsigned char>(h * 16 + l)))
                        return false;
                    i += 2;
                }
            }
        } else if (enc == 'b') {
            if (t.empty() || t.size() % 4 != 0)
                return false;
            uint32_t acc = 0;
            int bits = 0;
            size_t pad = 0;
            for (char c : t) {
                if (c == '=') {
                    ++pad;
                    continue;
                }
                int x = b64_value(c);
                if (x < 0 || pad > 0)
                    return false;
                acc = (acc << 6) | static_cast<uint32_t>(x);
                bits += 6;
                if (bits >= 8) {
                    bits -= 8;
                    if (!decoded_ok(static_cast<unsigned char>((acc >> bits) & 0xff)))
                        return false;
                }
            }
            if (pad > 2)
                return false;
        } else {
            return false;
        }
        at = end + 2;
    }
    return true;
}

struct Field {
    std::string_view name;
    std::string value;   // unfolded
};

} // namespace

PartHeaderError check_part_header(std::string_view block, std::string_view type, std::string& detail)
{
    detail.clear();
    if (block.size() > kPartHeaderMax) {
        detail = "header block";
        return PartHeaderError::too_long;
    }
    // The handle's own type: one bare media type, never a container of parts.
    std::string want;
    if (!media_type(type, want)) {
        detail = "handle type";
        return PartHeaderError::bad_content_type;
    }
    if (want.rfind("multipart/", 0) == 0 || want.rfind("message/", 0) == 0) {
        detail = "handle type";
        return PartHeaderError::composite_type;
    }
    // Bytes: printable US-ASCII, HTAB, and line ends of one kind.
    bool crlf = false, lf = false;
    for (size_t i = 0; i < block.size(); ++i) {
        unsigned char u = static_cast<unsigned char>(block[i]);
        if (u == '\n') {
            (i > 0 && block[i - 1] == '\r' ? crlf : lf) = true;
        } else if (u == '\r') {
            if (i + 1 >= block.size() || block[i + 1] != '\n') {
                detail = "byte " + std::to_string(i);
                return PartHeaderError::bad_byte;
            }
        } else if ((u < 0x20 && u != '\t') || u >= 0x7f) {
            detail = "byte " + std::to_string(i);
            return PartHeaderError::bad_byte;
        }
    }
    if (crlf && lf) {
        detail = "line ends";
        return PartHeaderError::mixed_line_ends;
    }
    const std::string_view eol = crlf ? "\r\n" : "\n";
    if (block.empty() || block.back() != '\n') {
        detail = "end";
        return PartHeaderError::no_blank_line;
    }
    // Lines, without their line ends; the last must be the only empty one.
    std::vector<std::string_view> lines;
    for (size_t pos = 0; pos < block.size();) {
        size_t nl = block.find(eol, pos);   // always found: the block ends with eol
        lines.push_back(block.substr(pos, nl - pos));
        pos = nl + eol.size();
    }
    if (lines.back().size() != 0 || lines.size() < 2) {
        detail = "end";
        return PartHeaderError::no_blank_line;
    }
    lines.pop_back();
    std::vector<Field> fields;
    for (size_t n = 0; n < lines.size(); ++n) {
        std::string_view l = lines[n];
        const std::string where = "line " + std::to_string(n + 1);
        if (l.size() > kPartHeaderMaxLine) {
            detail = where;
            return PartHeaderError::too_long;
        }
        if (trim(l).empty()) {
            detail = where;
            return PartHeaderError::blank_line_inside;
        }
        if (l.substr(0, 2) == "--") {
            detail = where;
            return PartHeaderError::boundary_line;
        }
        if (is_wsp(l[0])) {
            // A folded line: it adds to the field before it, which must exist.
            if (fields.empty()) {
                detail = where;
                return PartHeaderError::continuation_first;
            }
            fields.back().value += l;
            continue;
        }
        size_t colon = l.find(':');
        if (colon == std::string_view::npos || colon == 0) {
            detail = where;
            return PartHeaderError::bad_name;
        }
        for (size_t i = 0; i < colon; ++i) {
            unsigned char u = static_cast<unsigned char>(l[i]);
            if (u <= 0x20 || u >= 0x7f) {
                detail = where;
                return PartHeaderError::bad_name;
            }
        }
        if (fields.size() == kPartHeaderMaxFields) {
            detail = "fields";
            return PartHeaderError::too_long;
        }
        fields.push_back(Field{l.substr(0, colon), std::string(l.substr(colon + 1))});
    }
    const Field* ctype = nullptr;
    const Field* cte = nullptr;
    for (size_t i = 0; i < fields.size(); ++i) {
        const Field& f = fields[i];
        const bool content = f.name.size() >= 8 && iequals(f.name.substr(0, 8), "content-");
        if (content || iequals(f.name, "mime-version")) {
            for (size_t j = 0; j < i; ++j)
                if (iequals(fields[j].name, f.name)) {
                    detail = "field " + std::to_string(i + 1);
                    return PartHeaderError::duplicate_field;
                }
        }
        if (!encoded_words_ok(f.value)) {
            detail = "field " + std::to_string(i + 1);
            return PartHeaderError::bad_encoded_word;
        }
        if (iequals(f.name, "content-type"))
            ctype = &f;
        else if (iequals(f.name, "content-transfer-encoding"))
            cte = &f;
    }
    if (!ctype) {
        detail = "Content-Type";
        return PartHeaderError::no_content_type;
    }
    std::string_view v = trim(ctype->value);
    if (v.find("=?") != std::string_view::npos || v.find('(') != std::string_view::npos) {
        detail = "Content-Type";
        return PartHeaderError::bad_content_type;
    }
    size_t semi = v.find(';');
    std::string got;
    if (!media_type(trim(v.substr(0, semi)), got) ||
        (semi != std::string_view::npos && !params_ok(v.substr(semi)))) {
        detail = "Content-Type";
        return PartHeaderError::bad_content_type;
    }
    if (got.rfind("multipart/", 0) == 0 || got.rfind("message/", 0) == 0) {
        detail = "Content-Type";
        return PartHeaderError::composite_type;
    }
    if (got != want) {
        detail = "Content-Type";
        return PartHeaderError::type_mismatch;
    }
    if (!cte) {
        detail = "Content-Transfer-Encoding";
        return PartHeaderError::no_encoding;
    }
    if (!iequals(trim(cte->value), "base64")) {
        detail = "Content-Transfer-Encoding";
        return PartHeaderError::not_base64;
    }
    return PartHeaderError::none;
}

const char* part_header_error_name(PartHeaderError e)
{
    switch (e) {
    case PartHeaderError::none: return "none";
    case PartHeaderError::too_long: return "too_long";
    case PartHeaderError::bad_byte: return "bad_byte";
    case PartHeaderError::mixed_line_ends: return "mixed_line_ends";
    case PartHeaderError::no_blank_line: return "no_blank_line";
    case PartHeaderError::blank_line_inside: return "blank_line_inside";
    case PartHeaderError::continuation_first: return "continuation_first";
    case PartHeaderError::bad_name: return "bad_name";
    case PartHeaderError::boundary_line: return "boundary_line";
    case PartHeaderError::duplicate_field: return "duplicate_field";
    case PartHeaderError::no_content_type: return "no_content_type";
    case PartHeaderError::bad_content_type: return "bad_content_type";
    case PartHeaderError::type_mismatch: return "type_mismatch";
    case PartHeaderError::composite_type: return "composite_type";
    case PartHeaderError::no_encoding: return "no_encoding";
    case PartHeaderError::not_base64: return "not_base64";
    case PartHeaderError::bad_encoded_word: return "bad_encoded_word";
    }
    return "unknown";
}

} // namespace mm
