// page.h - the small HTML page mm-gateway shows when a person opens an item's
// link in a browser (Accept: text/html): what the file is, a Download button,
// and an HTML5 player for audio and video that streams with Range requests.
#pragma once

#include <cstdint>
#include <string>

namespace mm {

struct PageInfo {
    std::string name, type, title, note, copyright, date, expires;
    uint64_t size = 0;
    std::string self;    // the item's URL path (/m/<id>/<token>), used for src and href
    std::string nonce;   // the Content-Security-Policy nonce of the one inline script
};

/// The whole page; every field from the index is HTML-escaped.
std::string render_item_page(const PageInfo& p);
/// The Content-Security-Policy header value that goes with it.
std::string item_page_csp(const std::string& nonce);

} // namespace mm
