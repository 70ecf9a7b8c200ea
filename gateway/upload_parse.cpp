// upload_parse.cpp - strict parsers for the upload API (see upload_parse.h).
#include "gateway/upload_parse.h"

#include "core/address.h"
#include "core/log.h"
#include "core/util.h"

#include <algorithm>
#include <charconv>

namespace mm {

namespace {

// UTF-8 well formed (no overlongs or surrogates) and no C0/C1 controls or DEL:
// these values end up in handles, pages and log lines.
bool clean_utf8(std::string_view s)
{
    size_t i = 0;
    while (i < s.size()) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return false;
            ++i;
            continue;
        }
        size_t n;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + n >= s.size())   // a sequence cut short by the end
            return false;
        for (size_t k = 1; k <= n; ++k) {
            unsigned char d = static_cast<unsigned char>(s[i + k]);
            if ((d & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (d & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF) ||
            (cp >= 0x80 && cp < 0xA0))
            return false;
        i += n + 1;
    }
    return true;
}

bool parse_recipients(std::string_view text, std::vector<std::string>& out, std::string& why)
{
    size_t pos = 0;
    while (pos <= text.size()) {
        size_t comma = text.find(',', pos);
        if (comma == std::string_view::npos)
            comma = text.size();
        std::string_view a = text.substr(pos, comma - pos);
        while (!a.empty() && a.front() == ' ')
            a.remove_prefix(1);
        while (!a.empty() && a.back() == ' ')
            a.remove_suffix(1);
        if (a.empty() || a.size() > kUploadMaxAddress || normalize_address(std::string(a)).empty()) {
            why = "recipients: not a list of plain addresses";
            return false;
        }
        if (out.size() >= kUploadMaxRecipients) {
            why = "recipients: more than " + std::to_string(kUploadMaxRecipients);
            return false;
        }
        out.emplace_back(a);
        pos = comma + 1;
    }
    return true;
}

} // namespace

bool parse_upload_metadata(std::string_view field, UploadMetadata& out, std::string& why)
{
    out = UploadMetadata{};
    if (field.size() > kUploadMaxMetadata) {
        why = "Upload-Metadata longer than " + std::to_string(kUploadMaxMetadata) + " bytes";
        return false;
    }
    const struct {
        const char* key;
        size_t max;
    } known[] = {{"filename", kUploadMaxName}, {"filetype", kUploadMaxType}, {"title", kUploadMaxText},
                 {"note", kUploadMaxText},     {"copyright", kUploadMaxText}, {"date", kUploadMaxDate},
                 {"recipients", kUploadMaxMetadata}, {"sha256", 64}};
    std::vector<std::string> seen;
    size_t pos = 0;
    while (!field.empty() && pos <= field.size()) {
        size_t comma = field.find(',', pos);
        if (comma == std::string_view::npos)
            comma = field.size();
        std::string_view pair = field.substr(pos, comma - pos);
        pos = comma + 1;
        while (!pair.empty() && pair.front() == ' ')
            pair.remove_prefix(1);
        size_t sp = pair.find(' ');
        std::string_view key = pair.substr(0, sp);
        std::string_view value = sp == std::string_view::npos ? std::string_view() : pair.substr(sp + 1);
        if (key.empty() || key.size() > 64) {
            why = "Upload-Metadata: an empty or overlong key";
            return false;
        }
        for (char c : key)
            if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
                why = "Upload-Metadata: a key with a control or non-ASCII byte";
                return false;
            }
        std::string k(key);
        for (const auto& s : seen)
            if (s == k) {
                why = "Upload-Metadata: " + printable(k, 64) + " given twice";
                return false;
            }
        seen.push_back(k);
        std::string decoded;
        if (value.find(' ') != std::string_view::npos || !base64_decode(value, decoded)) {
            why = "Upload-Metadata: " + printable(k, 64) + " is not strict base64";
            return false;
        }
        const auto* def = std::find_if(std::begin(known), std::end(known), [&](const auto& d) { return k == d.key; });
        if (def == std::end(known))
            continue;   // tus lets clients send keys we do not know
        if (decoded.size() > def->max) {
            why = "Upload-Metadata: " + k + " longer than " + std::to_string(def->max) + " bytes";
            return false;
        }
        if (!clean_utf8(decoded)) {
            why = "Upload-Metadata: " + k + " is not UTF-8 text without control characters";
            return false;
        }
        if (k == "filename") {
            if (decoded.find('/') != std::string::npos || decoded.find('\\') != std::string::npos) {
                why = "Upload-Metadata: filename with a path";
                return false;
            }
            out.meta.name = decoded;
        } else if (k == "filetype") {
            out.meta.type = decoded;
        } else if (k == "title") {
            out.meta.title = decoded;
        } else if (k == "note") {
            out.meta.note = decoded;
        } else if (k == "copyright") {
            out.meta.copyright = decoded;
        } else if (k == "date") {
            out.meta.date = decoded;
        } else if (k == "recipients") {
            if (!decoded.empty() && !parse_recipients(decoded, out.meta.recipients, why))
                return false;
        } else if (k == "sha256") {
            if (!is_hex_digest(decoded)) {
                why = "Upload-Metadata: sha256 is not 64 lowercase hex digits";
                return false;
            }
            out.sha256 = decoded;
        }
    }
    return true;
}

bool parse_byte_count(std::string_view text, uint64_t max, uint64_t& out)
{
    if (text.empty() || text.size() > 20 || (text.size() > 1 && text[0] == '0'))
        return false;
    for (char c : text)
        if (c < '0' || c > '9')
            return false;
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size() || v > max)
        return false;
    out = v;
    return true;
}

bool parse_content_range(std::string_view text, ContentRange& out)
{
    constexpr std::string_view kUnit = "bytes ";
    if (text.substr(0, kUnit.size()) != kUnit)
        return false;
    text.remove_prefix(kUnit.size());
    size_t dash = text.find('-'), slash = text.find('/');
    if (dash == std::string_view::npos || slash == std::string_view::npos || dash > slash)
        return false;
    ContentRange r;
    if (!parse_byte_count(text.substr(0, dash), UINT64_MAX - 1, r.first) ||
        !parse_byte_count(text.substr(dash + 1, slash - dash - 1), UINT64_MAX - 1, r.last))
        return false;
    std::string_view total = text.substr(slash + 1);
    if (total == "*")
        r.total = UINT64_MAX;
    else if (!parse_byte_count(total, UINT64_MAX - 1, r.total))
        return false;
    if (r.last < r.first || r.last >= r.total)
        return false;
    out = r;
    return true;
}

namespace {

// `text` is `prefix` followed by exactly `len` lowercase hex digits, which go to `out`.
bool prefixed_hex(std::string_view text, std::string_view prefix, size_t len, std::string& out)
{
    if (text.size() != prefix.size() + len || text.substr(0, prefix.size()) != prefix)
        return false;
    std::string_view hex = text.substr(prefix.size());
    if (!is_lower_hex(hex, len))
        return false;
    out = std::string(hex);
    return true;
}

} // namespace

bool parse_bearer(std::string_view field, std::string& token) { return prefixed_hex(field, "Bearer ", 64, token); }

bool parse_upload_target(std::string_view target, std::string& id)
{
    if (target == "/upload") {
        id.clear();
        return true;
    }
    return prefixed_hex(target, "/upload/", 32, id);
}

bool parse_upload_item_target(std::string_view target, std::string& item_id)
{
    return prefixed_hex(target, "/upload/item/", 32, item_id);
}

} // namespace mm
