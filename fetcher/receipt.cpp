// receipt.cpp - download receipts (receipt.h): whose they are, and the request
// that tells the sender's gateway. Config key: fetcher.address (passed in).
#include "fetcher/receipt.h"

#include "core/address.h"
#include "mime/header_block.h"

namespace mm {

std::string receipt_recipient(const std::string& configured, std::string_view headers, const std::string& user)
{
    if (!configured.empty())
        return configured;
    for (const char* name : {"Delivered-To", "X-Original-To"}) {
        std::string a = normalize_address(header_value(headers, name));
        if (!a.empty())
            return a;
    }
    return normalize_address(user);
}

std::string receipt_url(const std::string& handle_url)
{
    std::string u = handle_url;
    while (!u.empty() && u.back() == '/')
        u.pop_back();
    return u + "/receipt";
}

std::string receipt_body(const std::string& recipient, const std::string& sha256)
{
    // application/x-www-form-urlencoded: unreserved bytes as they are, all else %XX.
    static const char hex[] = "0123456789ABCDEF";
    std::string out = "recipient=";
    for (unsigned char c : recipient) {
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
            c == '.' || c == '_' || c == '~') {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back('%');
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 15]);
        }
    }
    return out + "&sha256=" + sha256;
}

} // namespace mm
