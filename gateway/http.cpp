// http.cpp - request-target parsing and response header values for mm-gateway:
// capability paths checked lexically (32 hex digits each), RFC 6266 file names,
// the receipt form body (docs/gateway-api.md), HTML and JSON escaping.
#include "gateway/http.h"

#include "core/util.h"

namespace mm {

namespace {

constexpr size_t kMaxNameSegment = 255;   // the ignored trailing file name
constexpr size_t kMaxQuery = 256;         // only "download=1" is meaningful


bool is_token_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$&^_.+-").find(c) != std::string_view::npos;
}

} // namespace

bool parse_media_target(std::string_view target, std::string& id, std::string& token)
{
    std::string tail, query;
    return parse_media_target(target, id, token, tail, query);
}

bool parse_media_target(std::string_view target, std::string& id, std::string& token, std::string& tail,
                        std::string& query)
{
    size_t q = target.find('?');
    std::string_view qs;
    if (q != std::string_view::npos) {
        qs = target.substr(q + 1);
        target = target.substr(0, q);
    }
    if (qs.size() > kMaxQuery)
        return false;
    constexpr std::string_view prefix = "/m/";
    if (target.substr(0, prefix.size()) != prefix)
        return false;
    target.remove_prefix(prefix.size());
    // Exactly 32 hex digits each: '.', '%' and '/' can never slip through.
    if (target.size() < 65 || target[32] != '/')
        return false;
    std::string_view i = target.substr(0, 32), t = target.substr(33, 32);
    if (!is_lower_hex(i, 32) || !is_lower_hex(t, 32))
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
    tail = std::string(rest);
    query = std::string(qs);
    return true;
}

bool query_wants_download(std::string_view query)
{
    size_t pos = 0;
    while (pos <= query.size()) {
        size_t amp = query.find('&', pos);
        if (amp == std::string_view::npos)
            amp = query.size();
        if (query.substr(pos, amp - pos) == "download=1")
            return true;
        pos = amp + 1;
    }
    return false;
}

namespace {

// Form decoding (WHATWG application/x-www-form-urlencoded): '+' is a space,
// %XX a byte; a '%' without two hex digits is an error here, not passed on.
bool form_decode(std::string_view in, std::string& out)
{
    out.clear();
    for (size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        if (c == '+') {
            out += ' ';
        } else if (c == '%') {
            if (i + 2 >= in.size())
                return false;
            int h = hex_value(in[i + 1]), l = hex_value(in[i + 2]);
            if (h < 0 || l < 0)
                return false;
            out += static_cast<char>(h * 16 + l);
            i += 2;
        } else {
            out += c;
        }
    }
    return true;
}

} // namespace

bool parse_receipt_body(std::string_view body, std::string& recipient, std::string& sha256)
{
    if (body.empty() || body.size() > kMaxReceiptBody)
        return false;
    // A trailing CRLF from a hand-written client is tolerated; nothing else is.
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r'))
        body.remove_suffix(1);
    bool have_r = false, have_s = false;
    size_t pos = 0, params = 0;
    while (pos <= body.size()) {
        size_t amp = body.find('&', pos);
        if (amp == std::string_view::npos)
            amp = body.size();
        std::string_view pair = body.substr(pos, amp - pos);
        pos = amp + 1;
        if (++params > 16)
            return false;
        size_t eq = pair.find('=');
        if (eq == std::string_view::npos)
            return false;
        std::string name, value;
        if (!form_decode(pair.substr(0, eq), name) || !form_decode(pair.substr(eq + 1), value))
            return false;
        for (char c : value)
            if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
                return false;   // no control characters in an address or digest
        if (name == "recipient") {
            if (have_r || value.empty())
                return false;
            recipient = value;
            have_r = true;
        } else if (name == "sha256") {
            if (have_s || value.size() != 64)
                return false;
            for (char& c : value) {
                if (hex_value(c) < 0)
                    return false;
                if (c >= 'A' && c <= 'F')
                    c = static_cast<char>(c - 'A' + 'a');
            }
            sha256 = value;
            have_s = true;
        }
    }
    return have_r && have_s;
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
