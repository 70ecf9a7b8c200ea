// handle.cpp - format v1 of the location part: writing and parsing the
// X-Media-Handle header value (RFC 2045 parameters, RFC 2231 continuations and
// charset encoding) and building the text/plain part that carries it.
// docs/handle-format.md is the specification; this file follows it.
#include "mime/handle.h"

#include "core/text.h"
#include "mime/segments.h"

#include "core/config.h"
#include "core/util.h"

#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <vector>

namespace mm {

namespace {

// Header lines we write stay at 76 octets before the line ending, so that even
// with CRLF they fit the 78 of RFC 5322 2.1.1. Each parameter piece ("atom")
// is short enough to sit on a continuation line of its own: " " atom ";".
constexpr size_t kMaxLine = 76;
constexpr size_t kMaxAtom = kMaxLine - 2;
// RFC 2231 sections are numbered 0..99 at most.
constexpr unsigned kMaxSections = 100;

bool is_wsp(char c) { return c == ' ' || c == '\t'; }

bool is_tspecial(char c)
{
    switch (c) {
    case '(': case ')': case '<': case '>': case '@': case ',': case ';': case ':':
    case '\\': case '"': case '/': case '[': case ']': case '?': case '=':
        return true;
    default:
        return false;
    }
}

// RFC 2045 token character.
bool is_token_char(char ch)
{
    auto c = static_cast<unsigned char>(ch);
    return c > 0x20 && c < 0x7f && !is_tspecial(ch);
}

// RFC 2231 attribute-char: a token character other than "*", "'" and "%".
bool is_attr_char(char c) { return is_token_char(c) && c != '*' && c != '\'' && c != '%'; }

bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string lower(std::string_view s)
{
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
    return out;
}

// Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing past U+10FFFF.
bool valid_utf8(std::string_view s)
{
    size_t i = 0, n = s.size();
    while (i < n) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            ++i;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; ++k) {
            auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

// Text fields are shown to people: valid UTF-8 and no control characters, so
// that nothing can break a line of the human note or a log.
bool valid_text(std::string_view s)
{
    for (char ch : s) {
        auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return valid_utf8(s);
}

bool valid_url(std::string_view s)
{
    std::string_view rest;
    if (s.substr(0, 8) == "https://")
        rest = s.substr(8);
    else if (s.substr(0, 7) == "http://")
        rest = s.substr(7);
    else
        return false;
    if (rest.empty())
        return false;
    for (char ch : s) {
        auto c = static_cast<unsigned char>(ch);
        if (c <= 0x20 || c >= 0x7f)
            return false;
    }
    return true;
}

bool valid_token(std::string_view s)
{
    if (s.empty())
        return false;
    for (char c : s)
        if (!is_token_char(c))
            return false;
    return true;
}

bool valid_media_type(std::string_view s)
{
    size_t slash = s.find('/');
    return slash != std::string_view::npos && valid_token(s.substr(0, slash)) && valid_token(s.substr(slash + 1));
}

// Canonical base64: decodes, and encodes back to the same text, so that one
// handle has exactly one spelling.
bool canonical_base64(std::string_view s, std::string& out)
{
    return base64_decode(s, out) && base64_encode(out) == s;
}

bool valid_pin(std::string_view s)
{
    constexpr std::string_view prefix = "sha256//";
    std::string raw;
    return s.substr(0, prefix.size()) == prefix && canonical_base64(s.substr(prefix.size()), raw) &&
           raw.size() == 32;
}

// ---------------------------------------------------------------- writing

enum class Form { token, quoted, extended };

Form form_of(std::string_view v)
{
    if (valid_token(v))
        return Form::token;
    for (char ch : v) {
        auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c >= 0x7f)
            return Form::extended;
    }
    return Form::quoted;
}

std::string quote(std::string_view v)
{
    std::string out = "\"";
    for (char c : v) {
        if (c == '"' || c == '\\')
            out += '\\';
        out += c;
    }
    out += '"';
    return out;
}

// The %-encoded units of a value, one per character: a UTF-8 sequence stays in
// one unit so that a continuation never splits a character (some readers decode
// each section on its own).
std::vector<std::string> percent_units(std::string_view v)
{
    static const char hex[] = "0123456789ABCDEF";
    std::vector<std::string> units;
    for (size_t i = 0; i < v.size();) {
        std::string unit;
        size_t len = 1;
        auto c = static_cast<unsigned char>(v[i]);
        if (c >= 0xc0) {
            while (len < 4 && i + len < v.size() && (static_cast<unsigned char>(v[i + len]) & 0xc0) == 0x80)
                ++len;
        }
        for (size_t k = 0; k < len; ++k) {
            char ch = v[i + k];
            if (is_attr_char(ch)) {
                unit += ch;
            } else {
                auto b = static_cast<unsigned char>(ch);
                unit += '%';
                unit += hex[b >> 4];
                unit += hex[b & 15];
            }
        }
        units.push_back(std::move(unit));
        i += len;
    }
    return units;
}

// One parameter as the pieces that go between "; " separators: a single
// "attr=value" when it fits, else RFC 2231 sections "attr*N=...", each of at
// most kMaxAtom octets.
std::vector<std::string> encode_param(std::string_view attr, std::string_view value)
{
    std::string a(attr);
    Form form = form_of(value);
    std::string single;
    switch (form) {
    case Form::token:
        single = a + "=" + std::string(value);
        break;
    case Form::quoted:
        single = a + "=" + quote(value);
        break;
    case Form::extended: {
        single = a + "*=utf-8''";
        for (auto& u : percent_units(value))
            single += u;
        break;
    }
    }
    if (single.size() <= kMaxAtom)
        return {single};

    std::vector<std::string> atoms;
    size_t pos = 0;
    unsigned k = 0;
    switch (form) {
    case Form::token:
        while (pos < value.size()) {
            std::string prefix = a + "*" + std::to_string(k++) + "=";
            size_t room = kMaxAtom - prefix.size();
            std::string_view chunk = value.substr(pos, room);
            atoms.push_back(prefix + std::string(chunk));
            pos += chunk.size();
        }
        break;
    case Form::quoted:
        while (pos < value.size()) {
            std::string atom = a + "*" + std::to_string(k++) + "=\"";
            while (pos < value.size()) {
                char c = value[pos];
                size_t need = (c == '"' || c == '\\') ? 2 : 1;
                if (atom.size() + need + 1 > kMaxAtom)
                    break;
                if (need == 2)
                    atom += '\\';
                atom += c;
                ++pos;
            }
            atom += '"';
            atoms.push_back(std::move(atom));
        }
        break;
    case Form::extended: {
        auto units = percent_units(value);
        size_t u = 0;
        while (u < units.size()) {
            std::string atom = a + "*" + std::to_string(k) + "*=" + (k == 0 ? "utf-8''" : "");
            ++k;
            // A unit is at most 12 octets, so every atom takes at least one.
            do {
                atom += units[u++];
            } while (u < units.size() && atom.size() + units[u].size() <= kMaxAtom);
            atoms.push_back(std::move(atom));
        }
        break;
    }
    }
    return atoms;
}

// "Name: atom; atom; ..." folded before the space after a ";" so that every
// line is at most kMaxLine octets; each line, the last one too, ends with eol.
std::string fold_field(std::string_view name, const std::vector<std::string>& atoms, std::string_view eol)
{
    std::string out(name);
    out += ':';
    size_t line = out.size();
    bool first = true;
    for (const auto& atom : atoms) {
        size_t sep = first ? 1 : 2; // " " or "; "
        if (line + sep + atom.size() + 1 <= kMaxLine) {
            out += first ? " " : "; ";
            line += sep + atom.size();
        } else {
            if (!first)
                out += ';';
            out += eol;
            out += ' ';
            line = 1 + atom.size();
        }
        out += atom;
        first = false;
    }
    out += eol;
    return out;
}

std::vector<std::string> handle_atoms(const Handle& h)
{
    std::vector<std::string> atoms;
    auto add = [&](std::string_view attr, std::string_view value) {
        for (auto& a : encode_param(attr, value))
            atoms.push_back(std::move(a));
    };
    add("v", std::to_string(h.v));
    add("url", h.url);
    add("sha256", h.sha256);
    add("size", std::to_string(h.size));
    add("type", h.type);
    add("name", h.name);
    add("pin", h.pin);
    add("expires", h.expires);
    if (!h.title.empty())
        add("title", h.title);
    if (!h.date.empty())
        add("date", h.date);
    if (!h.note.empty())
        add("note", h.note);
    if (!h.copyright.empty())
        add("copyright", h.copyright);
    add("hdr", base64_encode(h.headers));
    add("enc", h.encoding);
    add("linelen", std::to_string(h.line_len));
    // Anything but the two line endings is written so that it fails to parse.
    add("eol", h.eol == "\r\n" ? "crlf" : h.eol == "\n" ? "lf" : "invalid");
    add("final", h.final_eol ? "1" : "0");
    add("psize", std::to_string(h.part_size));
    if (h.seg_size > 0 || !h.seg_sha256.empty()) {
        add("segsize", std::to_string(h.seg_size));
        add("segsha256", h.seg_sha256);
    }
    return atoms;
}

// ---------------------------------------------------------------- parsing

struct Piece {
    std::string text;   // unquoted text; still %-encoded when ext
    bool ext = false;
};

struct RawParam {
    bool whole = false;               // seen without a section number
    Piece value;                      // when whole
    std::map<unsigned, Piece> sections;
};

// The parameters format v1 knows, in the order they are checked.
const char* const kKnown[] = {"v",     "url",   "sha256", "size",  "type",    "name",
                              "pin",   "expires", "title", "date", "note",    "copyright",
                              "hdr",   "enc",   "linelen", "eol",  "final",   "psize",
                              "segsize", "segsha256"};

bool is_known(std::string_view name)
{
    for (const char* k : kKnown)
        if (name == k)
            return true;
    return false;
}

// For details: a known name is safe to log; anything else came from the input.
std::string safe_name(std::string_view name)
{
    return is_known(name) ? std::string(name) : std::string("(unknown)");
}

struct Failure {
    HandleError error = HandleError::none;
    std::string detail;
    bool failed() const { return error != HandleError::none; }
};

Failure fail(HandleError e, std::string detail) { return Failure{e, std::move(detail)}; }

// Removes folding (CRLF or LF before a space or tab); one trailing line ending
// is tolerated; any other CR or LF is an error.
Failure unfold(std::string_view in, std::string& out)
{
    out.clear();
    out.reserve(in.size());
    size_t n = in.size();
    if (n >= 2 && in[n - 2] == '\r' && in[n - 1] == '\n')
        n -= 2;
    else if (n >= 1 && in[n - 1] == '\n')
        n -= 1;
    for (size_t i = 0; i < n; ++i) {
        char c = in[i];
        if (c == '\r' && i + 2 < n && in[i + 1] == '\n' && is_wsp(in[i + 2])) {
            ++i;
            continue;
        }
        if (c == '\n' && i + 1 < n && is_wsp(in[i + 1]))
            continue;
        if (c == '\r' || c == '\n')
            return fail(HandleError::syntax, "line break that is not folding at offset " + std::to_string(i));
        out += c;
    }
    if (out.size() > kHandleMaxLength)
        return fail(HandleError::too_long, "header value longer than " + std::to_string(kHandleMaxLength));
    return {};
}

// Splits "attr=value; ..." into raw parameters by lowercased name.
Failure split_params(std::string_view s, std::map<std::string, RawParam>& params)
{
    size_t i = 0, n = s.size();
    auto skip_wsp = [&] {
        while (i < n && is_wsp(s[i]))
            ++i;
    };
    auto at = [&](const char* what) {
        return fail(HandleError::syntax, std::string(what) + " at offset " + std::to_string(i));
    };
    skip_wsp();
    while (i < n) {
        size_t start = i;
        while (i < n && is_attr_char(s[i]))
            ++i;
        if (i == start)
            return at("expected a parameter name");
        std::string name = lower(s.substr(start, i - start));
        bool sectioned = false, ext = false;
        unsigned section = 0;
        if (i < n && s[i] == '*') {
            ++i;
            if (i < n && is_digit(s[i])) {
                size_t ds = i;
                while (i < n && is_digit(s[i]) && i - ds < 4)
                    ++i;
                if (s[ds] == '0' && i - ds > 1)
                    return at("section number with a leading zero");
                if (i < n && is_digit(s[i]))
                    return fail(HandleError::too_long, "too many sections in " + safe_name(name));
                uint64_t num = 0;
                parse_u64(s.substr(ds, i - ds), num);
                if (num >= kMaxSections)
                    return fail(HandleError::too_long, "too many sections in " + safe_name(name));
                section = static_cast<unsigned>(num);
                sectioned = true;
                if (i < n && s[i] == '*') {
                    ext = true;
                    ++i;
                }
            } else {
                ext = true;
            }
        }
        skip_wsp();
        if (i >= n || s[i] != '=')
            return at("expected '='");
        ++i;
        skip_wsp();

        Piece piece;
        piece.ext = ext;
        if (ext) {
            // Checked for "'" placement and %-escapes when the value is decoded.
            while (i < n && (is_attr_char(s[i]) || s[i] == '%' || s[i] == '\''))
                piece.text += s[i++];
        } else if (i < n && s[i] == '"') {
            ++i;
            bool closed = false;
            while (i < n) {
                char c = s[i];
                auto uc = static_cast<unsigned char>(c);
                if (c == '"') {
                    closed = true;
                    ++i;
                    break;
                }
                if (c == '\\') {
                    if (i + 1 >= n)
                        break;
                    c = s[i + 1];
                    uc = static_cast<unsigned char>(c);
                    i += 2;
                } else {
                    ++i;
                }
                // Raw 8-bit text goes in the RFC 2231 form, never in quotes.
                if ((uc < 0x20 && c != '\t') || uc >= 0x7f)
                    return fail(HandleError::syntax, "control or 8-bit character in quoted value of " +
                                                         safe_name(name));
                piece.text += c;
            }
            if (!closed)
                return fail(HandleError::syntax, "unterminated quoted value of " + safe_name(name));
        } else {
            size_t vs = i;
            while (i < n && is_token_char(s[i]))
                ++i;
            if (i == vs)
                return at("expected a value");
            piece.text.assign(s.substr(vs, i - vs));
        }

        auto it = params.find(name);
        if (it == params.end()) {
            if (params.size() >= kHandleMaxParams)
                return fail(HandleError::too_long, "more than " + std::to_string(kHandleMaxParams) + " parameters");
            it = params.emplace(name, RawParam{}).first;
        }
        RawParam& p = it->second;
        if (p.whole || (!sectioned && !p.sections.empty()) || (sectioned && p.sections.count(section)))
            return fail(HandleError::syntax, "duplicate parameter " + safe_name(name));
        if (sectioned) {
            p.sections.emplace(section, std::move(piece));
        } else {
            p.whole = true;
            p.value = std::move(piece);
        }

        skip_wsp();
        if (i >= n)
            break;
        if (s[i] != ';')
            return at("expected ';'");
        ++i;
        skip_wsp();
    }
    return {};
}

// Appends the %-decoded `text` to out.
Failure percent_decode(std::string_view text, const std::string& name, std::string& out)
{
    for (size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == '\'')
            return fail(HandleError::syntax, "misplaced \"'\" in " + name);
        if (c != '%') {
            out += c;
            continue;
        }
        int hi = i + 1 < text.size() ? hex_value(text[i + 1]) : -1;
        int lo = i + 2 < text.size() ? hex_value(text[i + 2]) : -1;
        if (hi < 0 || lo < 0)
            return fail(HandleError::bad_value, "bad %-escape in " + name);
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
    }
    return {};
}

// charset'language'rest of an initial extended value; the charset must be one
// we can check (UTF-8, or US-ASCII which is a subset of it).
Failure initial_extended(std::string_view text, const std::string& name, std::string& charset, std::string& out)
{
    size_t q1 = text.find('\'');
    size_t q2 = q1 == std::string_view::npos ? q1 : text.find('\'', q1 + 1);
    if (q2 == std::string_view::npos)
        return fail(HandleError::syntax, "missing charset'language' in " + name);
    charset = lower(text.substr(0, q1));
    if (charset != "utf-8" && charset != "us-ascii")
        return fail(HandleError::bad_value, "unsupported charset in " + name);
    return percent_decode(text.substr(q2 + 1), name, out);
}

// Reassembles one known parameter: the whole value, or its sections 0..n-1.
Failure assemble(const std::string& name, const RawParam& p, std::string& out)
{
    out.clear();
    std::string charset = "us-ascii";
    if (p.whole) {
        if (p.value.ext) {
            if (auto f = initial_extended(p.value.text, name, charset, out); f.failed())
                return f;
        } else {
            out = p.value.text;
        }
    } else {
        if (p.sections.rbegin()->first + 1 != p.sections.size())
            return fail(HandleError::syntax, "sections of " + name + " not numbered 0..n-1");
        for (const auto& [num, piece] : p.sections) {
            if (!piece.ext) {
                out += piece.text;
            } else if (num == 0) {
                if (auto f = initial_extended(piece.text, name, charset, out); f.failed())
                    return f;
            } else {
                if (auto f = percent_decode(piece.text, name, out); f.failed())
                    return f;
            }
            if (out.size() > kHandleMaxValue)
                break;
        }
    }
    if (out.size() > kHandleMaxValue)
        return fail(HandleError::too_long, "value of " + name + " longer than " + std::to_string(kHandleMaxValue));
    if (charset == "us-ascii") {
        for (char c : out)
            if (static_cast<unsigned char>(c) >= 0x80)
                return fail(HandleError::bad_value, "8-bit octet in us-ascii value of " + name);
    } else if (!valid_utf8(out)) {
        return fail(HandleError::bad_value, "invalid UTF-8 in " + name);
    }
    return {};
}

Failure parse_into(std::string_view value, Handle& h)
{
    // Bound the work before looking closer: folding cannot double the length.
    if (value.size() > 2 * kHandleMaxLength)
        return fail(HandleError::too_long, "header value longer than " + std::to_string(kHandleMaxLength));
    std::string flat;
    if (auto f = unfold(value, flat); f.failed())
        return f;
    std::map<std::string, RawParam> params;
    if (auto f = split_params(flat, params); f.failed())
        return f;

    std::map<std::string, std::string> vals;
    for (const char* k : kKnown) {
        auto it = params.find(k);
        if (it == params.end())
            continue;
        std::string v;
        if (auto f = assemble(k, it->second, v); f.failed())
            return f;
        vals.emplace(k, std::move(v));
        // The version decides how to read everything else, so it comes first.
        if (std::string_view(k) == "v") {
            uint64_t ver = 0;
            if (!parse_u64(vals["v"], ver))
                return fail(HandleError::bad_value, "v");
            if (ver != 1)
                return fail(HandleError::unknown_version, "v");
        }
    }
    auto bad = [](const char* k) { return fail(HandleError::bad_value, k); };
    for (const char* k : {"v", "url", "sha256", "size", "type", "name", "pin", "expires", "hdr", "enc", "linelen",
                          "eol", "final", "psize"})
        if (!vals.count(k))
            return fail(HandleError::missing, k);

    h = Handle{};
    h.v = 1;
    h.url = vals["url"];
    if (!valid_url(h.url))
        return bad("url");
    h.sha256 = vals["sha256"];
    if (!is_hex_digest(h.sha256))
        return bad("sha256");
    if (!parse_u64(vals["size"], h.size))
        return bad("size");
    h.type = vals["type"];
    if (!valid_media_type(h.type))
        return bad("type");
    h.name = vals["name"];
    if (!valid_text(h.name))
        return bad("name");
    h.pin = vals["pin"];
    if (!valid_pin(h.pin))
        return bad("pin");
    h.expires = vals["expires"];
    time_t t;
    if (!parse_rfc3339(h.expires, t))
        return bad("expires");
    for (auto [k, field] : {std::pair{"title", &h.title}, std::pair{"date", &h.date}, std::pair{"note", &h.note},
                            std::pair{"copyright", &h.copyright}}) {
        auto it = vals.find(k);
        if (it == vals.end())
            continue;
        if (!valid_text(it->second))
            return bad(k);
        *field = it->second;
    }
    // The header block ends with its empty line, so it is never empty.
    if (!canonical_base64(vals["hdr"], h.headers) || h.headers.empty() || h.headers.back() != '\n')
        return bad("hdr");
    if (lower(vals["enc"]) != "base64")
        return bad("enc");
    h.encoding = "base64";
    uint64_t ll = 0;
    if (!parse_u64(vals["linelen"], ll) || ll < 4 || ll > 998 || ll % 4 != 0)
        return bad("linelen");
    h.line_len = static_cast<unsigned>(ll);
    std::string eol = lower(vals["eol"]);
    if (eol == "crlf")
        h.eol = "\r\n";
    else if (eol == "lf")
        h.eol = "\n";
    else
        return bad("eol");
    if (vals["final"] == "1")
        h.final_eol = true;
    else if (vals["final"] == "0")
        h.final_eol = false;
    else
        return bad("final");
    if (!parse_u64(vals["psize"], h.part_size))
        return bad("psize");
    // Segments come as a pair or not at all; a receiver that does not know
    // them checks the whole file, so they are never needed.
    if (vals.count("segsize") != vals.count("segsha256"))
        return fail(HandleError::missing, vals.count("segsize") ? "segsha256" : "segsize");
    if (vals.count("segsize")) {
        if (!parse_u64(vals["segsize"], h.seg_size))
            return bad("segsize");
        h.seg_sha256 = vals["segsha256"];
        if (!valid_segments(h.size, h.seg_size, h.seg_sha256))
            return bad("segsha256");
    }
    return {};
}

bool same(const Handle& a, const Handle& b)
{
    return a.v == b.v && a.url == b.url && a.sha256 == b.sha256 && a.size == b.size && a.type == b.type &&
           a.name == b.name && a.pin == b.pin && a.expires == b.expires && a.title == b.title &&
           a.date == b.date && a.note == b.note && a.copyright == b.copyright && a.headers == b.headers &&
           a.encoding == b.encoding && a.line_len == b.line_len && a.eol == b.eol &&
           a.final_eol == b.final_eol && a.part_size == b.part_size && a.seg_size == b.seg_size &&
           a.seg_sha256 == b.seg_sha256;
}

// ---------------------------------------------------------------- the note

// The size as the note shows it: readable, and exact where the units round.
std::string note_size(uint64_t n)
{
    std::string readable = human_size(n, true);
    return n < 1024 ? readable : readable + " (" + std::to_string(n) + (n == 1 ? " byte)" : " bytes)");
}

// Quoted-printable (RFC 2045 6.7) of text lines: hard breaks become eol, soft
// breaks keep every encoded line at 76 octets or fewer.
std::string quoted_printable(const std::vector<std::string>& lines, std::string_view eol)
{
    static const char hex[] = "0123456789ABCDEF";
    std::string out;
    for (size_t li = 0; li < lines.size(); ++li) {
        const std::string& line = lines[li];
        size_t col = 0;
        for (size_t i = 0; i < line.size(); ++i) {
            auto c = static_cast<unsigned char>(line[i]);
            bool last = i + 1 == line.size();
            std::string enc;
            if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !last)) {
                enc = static_cast<char>(c);
            } else {
                enc = {'=', hex[c >> 4], hex[c & 15]};
            }
            // Room for a soft break "=" unless this is the line's last piece.
            size_t limit = last ? 76 : 75;
            if (col + enc.size() > limit) {
                out += '=';
                out += eol;
                col = 0;
            }
            out += enc;
            col += enc.size();
        }
        if (li + 1 < lines.size())
            out += eol;
    }
    return out;
}

bool plain_7bit(const std::vector<std::string>& lines)
{
    for (const auto& line : lines) {
        if (line.size() > 76)
            return false;
        for (char ch : line) {
            auto c = static_cast<unsigned char>(ch);
            if (c < 0x20 || c >= 0x7f)
                return false;
        }
        if (!line.empty() && is_wsp(line.back()))
            return false;
    }
    return true;
}

} // namespace

const char* handle_error_name(HandleError e)
{
    switch (e) {
    case HandleError::none: return "none";
    case HandleError::too_long: return "too_long";
    case HandleError::syntax: return "syntax";
    case HandleError::missing: return "missing";
    case HandleError::bad_value: return "bad_value";
    case HandleError::unknown_version: return "unknown_version";
    }
    return "unknown";
}

std::string format_handle_field(const Handle& h, std::string_view eol)
{
    return fold_field("X-Media-Handle", handle_atoms(h), eol);
}

HandleParse parse_handle(std::string_view value)
{
    HandleParse r;
    Failure f = parse_into(value, r.handle);
    if (f.failed()) {
        r.error = f.error;
        r.detail = std::move(f.detail);
        r.handle = Handle{};
    }
    return r;
}

HandleError validate_handle(const Handle& h, std::string& detail)
{
    std::string field = format_handle_field(h, "\r\n");
    std::string_view value(field);
    value.remove_prefix(std::strlen("X-Media-Handle:"));
    HandleParse r = parse_handle(value);
    if (r.error != HandleError::none) {
        detail = r.detail;
        return r.error;
    }
    if (!same(r.handle, h)) {
        // E.g. enc spelled "BASE64": it parses, but not to the same handle.
        detail = "handle does not survive a round trip";
        return HandleError::bad_value;
    }
    detail.clear();
    return HandleError::none;
}

std::string build_location_part(const Handle& h, std::string_view eol)
{
    std::vector<std::string> cloud = {"cloudFile"};
    for (auto& a : encode_param("url", h.url))
        cloud.push_back(std::move(a));
    for (auto& a : encode_param("name", h.name))
        cloud.push_back(std::move(a));

    std::vector<std::string> lines;
    lines.push_back("This file was sent with MediaMail and travels separately from this mail.");
    lines.push_back("");
    lines.push_back("File:    " + (h.name.empty() ? std::string("(no name)") : h.name));
    lines.push_back("Type:    " + h.type);
    lines.push_back("Size:    " + note_size(h.size));
    if (!h.title.empty())
        lines.push_back("Title:   " + h.title);
    if (!h.date.empty())
        lines.push_back("Date:    " + h.date);
    if (!h.note.empty())
        lines.push_back("Note:    " + h.note);
    if (!h.copyright.empty())
        lines.push_back("(c):     " + h.copyright);
    lines.push_back("Link:    " + h.url);
    lines.push_back("Expires: " + h.expires);
    lines.push_back("");
    lines.push_back("If your mail program gets its mail through the MediaMail fetcher, the file");
    lines.push_back("is fetched automatically and put back into this message; otherwise the");
    lines.push_back("link above works in a web browser until it expires.");

    bool seven = plain_7bit(lines);
    std::string out;
    out += "Content-Type: text/plain; charset=utf-8";
    out += eol;
    out += "Content-Disposition: inline";
    out += eol;
    out += seven ? "Content-Transfer-Encoding: 7bit" : "Content-Transfer-Encoding: quoted-printable";
    out += eol;
    out += format_handle_field(h, eol);
    out += fold_field("X-Mozilla-Cloud-Part", cloud, eol);
    out += eol;
    if (seven) {
        for (size_t i = 0; i < lines.size(); ++i) {
            out += lines[i];
            if (i + 1 < lines.size())
                out += eol;
        }
    } else {
        out += quoted_printable(lines, eol);
    }
    return out;
}

uint64_t base64_encoded_size(uint64_t size, unsigned line_len, size_t eol_len, bool final_eol)
{
    uint64_t chars = 4 * ((size + 2) / 3);
    if (chars == 0)
        return 0;
    uint64_t lines = (chars + line_len - 1) / line_len;
    return chars + eol_len * (final_eol ? lines : lines - 1);
}

} // namespace mm
