// test_page.cpp - gateway/page.h: the item page a browser sees, everything escaped.
#include <doctest/doctest.h>

#include "gateway/page.h"

#include <string>

using namespace mm;

TEST_CASE("render_item_page: everything escaped, player by type")
{
    PageInfo p;
    p.name = "<img src=x onerror=alert(1)>.mp4";
    p.title = "\"><script>alert(2)</script>";
    p.note = "</p><script>alert(3)</script>";
    p.copyright = "&copy; me";
    p.date = "<date>";
    p.expires = "2030-01-01T00:00:00Z";
    p.type = "video/mp4";
    p.size = 5 * 1024 * 1024;
    p.self = "/m/" + std::string(32, 'a') + "/" + std::string(32, 'b');
    p.nonce = "0123456789abcdef";
    std::string h = render_item_page(p);
    CHECK(h.find("<script>alert") == std::string::npos);
    CHECK(h.find("<img") == std::string::npos);
    CHECK(h.find("&lt;img src=x onerror=alert(1)&gt;.mp4") != std::string::npos);
    CHECK(h.find("&amp;copy; me") != std::string::npos);
    CHECK(h.find("<video id=\"player\" controls preload=\"metadata\" playsinline src=\"" + p.self + "\">") !=
          std::string::npos);
    CHECK(h.find("href=\"" + p.self + "?download=1\"") != std::string::npos);
    CHECK(h.find("<script nonce=\"0123456789abcdef\">") != std::string::npos);
    CHECK(h.find("5.0 MiB") != std::string::npos);
    CHECK(item_page_csp(p.nonce).find("'nonce-0123456789abcdef'") != std::string::npos);

    p.type = "audio/ogg";
    h = render_item_page(p);
    CHECK(h.find("<audio id=\"player\"") != std::string::npos);
    CHECK(h.find("<video") == std::string::npos);
    p.type = "application/pdf";
    h = render_item_page(p);
    CHECK(h.find("<audio") == std::string::npos);
    CHECK(h.find("<video") == std::string::npos);
    p.title.clear();
    h = render_item_page(p);
    CHECK(h.find("<h1>&lt;img") != std::string::npos);   // no title: the file name is the heading
}
