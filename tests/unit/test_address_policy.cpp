// test_address_policy.cpp - which addresses the media downloader may fetch from
// (fetcher/address_policy.h): peer addresses after DNS, and URL schemes.
#include "fetcher/address_policy.h"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

using namespace mm;

namespace {
bool allowed_str(const char* text, bool allow_private)
{
    sockaddr_in6 s6{};
    sockaddr_in s4{};
    if (inet_pton(AF_INET, text, &s4.sin_addr) == 1) {
        s4.sin_family = AF_INET;
        return address_allowed(reinterpret_cast<sockaddr*>(&s4), allow_private);
    }
    REQUIRE(inet_pton(AF_INET6, text, &s6.sin6_addr) == 1);
    s6.sin6_family = AF_INET6;
    return address_allowed(reinterpret_cast<sockaddr*>(&s6), allow_private);
}
} // namespace

TEST_CASE("downloader refuses local and private addresses")
{
    const char* refused[] = {
        "127.0.0.1", "127.255.255.254", "10.0.0.1", "10.255.255.255", "172.16.0.1",
        "172.31.255.255", "192.168.1.1", "169.254.169.254", "0.0.0.0", "0.1.2.3",
        "100.64.0.1", "224.0.0.1", "255.255.255.255", "::", "::1", "fc00::1", "fd12:3456::1",
        "fe80::1", "febf::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.1.2.3",
        "::ffff:192.168.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0", "::127.0.0.1",
        "64:ff9b::10.0.0.1", "64:ff9b::7f00:1",
    };
    const char* allowed[] = {
        "1.1.1.1", "8.8.8.8", "172.15.255.255", "172.32.0.1", "192.167.1.1", "11.0.0.1",
        "100.63.255.255", "100.128.0.1", "169.253.1.1", "2001:db8::1", "2a00:1450::1",
        "::ffff:8.8.8.8", "64:ff9b::808:808",
    };
    for (const char* a : refused) {
        CAPTURE(a);
        CHECK_FALSE(allowed_str(a, false));
        CHECK(allowed_str(a, true));
    }
    for (const char* a : allowed) {
        CAPTURE(a);
        CHECK(allowed_str(a, false));
    }
    CHECK_FALSE(address_allowed(nullptr, true));
    sockaddr un{};
    un.sa_family = AF_UNIX;
    CHECK_FALSE(address_allowed(&un, true));
}

TEST_CASE("only https media URLs, http only when allowed")
{
    struct Case {
        const char* url;
        bool insecure;
        bool want;
    };
    const Case cases[] = {
        {"https://gw.example/m/a/b", false, true},
        {"http://gw.example/m/a/b", false, false},
        {"http://gw.example/m/a/b", true, true},
        {"file:///etc/passwd", true, false},
        {"ftp://gw.example/x", true, false},
        {"gopher://127.0.0.1:25/", true, false},
        {"HTTPS://gw.example/", false, false},   // the handle parser lowercases; anything else is suspect
        {"https:/gw.example", false, false},
        {"", true, false},
        {" https://gw.example/", false, false},
    };
    for (const auto& c : cases) {
        CAPTURE(c.url);
        CHECK(url_scheme_allowed(c.url, c.insecure) == c.want);
    }
}
