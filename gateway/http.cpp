// http.cpp - request-target parsing and response header values for mm-gateway:
// capability paths checked lexically (32 hex digits each), RFC 6266 file names.
#include "http.h"

namespace mm {

namespace {

constexpr size_t kMaxNameSegment = 255;   // the ignored trailing file name

bool is_hex32(std::string_view s)
{
    if (s.size() != 32)
        return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    return true;
}

bool is_token_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$&^_.+-").find(c) != std::string_view::npos;
}

} // namespace

bool parse_media_target(std::string_view target, std::string& id, std::string& token)
{
    size_t q = target.find('?');
    if (q != std::string_view::npos)
        target = target.substr(0, q);
    constexpr std::string_view prefix = "/m/";
    if (target.substr(0, prefix.size()) != prefix)
        return false;
    target.remove_prefix(prefix.size());
    // Exactly 32 hex digits each: '.', '%' and '/' can never slip through.
    if (target.size() < 65 || target[32] != '/')
        return false;
    std::string_view i = target.substr(0, 32), t = target.substr(33, 32);
    if (!is_hex32(i) || !is_hex32(t))
        return false;
    std::string_view rest = target.substr(65);
    if (!rest.empty()) {
        // An optional "/<name>" so that download tools pick a sensible file name;
        // it is ignored, only bounded and kept to one segment.
        if (rest[0] != '/' || rest.size() > kMaxNameSegment + 1 || rest.find('/', 1) != std::string_view::npos)
            return false;
    }
    id = std::string(i);
    token = std::string(t);
    return true;
}

std::string content_disposition(std::string_view name)
{
    if (name.size() > 1000)
        name = name.substr(0, 1000);
    std::string ascii;
    for (char ch : name) {
        unsigned char c = static_cast<unsigned char>(ch);
        // Quotes, backslashes and path separators are replaced so that the
        // quoted-string stays simple and no client is tempted to make a path.
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '/')
            ascii += '_';
        else
            ascii += static_cast<char>(c);
        if (ascii.size() >= 200)
            break;
    }
    if (ascii.empty())
        ascii = "media";
    std::string out = "attachment; filename=\"" + ascii + "\"";
    if (!name.empty()) {
        out += "; filename*=UTF-8''";
        static const char hex[] = "0123456789ABCDEF";
        for (char ch : name) {
            unsigned char c = static_cast<unsigned char>(ch);
            // attr-char of RFC 8187; everything else percent-encoded.
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                std::string_view("!#$&+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos) {
                out += static_cast<char>(c);
            } else {
                out += '%';
                out += hex[c >> 4];
                out += hex[c & 15];
            }
        }
    }
    return out;
}

std::string safe_media_type(std::string_view type)
{
    size_t slash = type.find('/');
    bool ok = type.size() <= 127 && slash != std::string_view::npos && slash > 0 && slash + 1 < type.size();
    for (size_t i = 0; ok && i < type.size(); ++i)
        ok = i == slash || is_token_char(type[i]);
    return ok ? std::string(type) : "application/octet-stream";
}

} // namespace mm
