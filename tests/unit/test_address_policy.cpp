// test_address_policy.cpp - which addresses the media downloader may fetch from
// (fetcher/address_policy.h): peer addresses after DNS, and URL schemes.
#include "fetcher/address_policy.h"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <string>
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

struct Row {
    const char* block;   // the registry entry, for the failure message
    const char* addr;
    bool allowed;
};

void check_rows(const Row* begin, const Row* end)
{
    for (const Row* r = begin; r != end; ++r) {
        std::string block = r->block, addr = r->addr;
        CAPTURE(block);
        CAPTURE(addr);
        CHECK(allowed_str(r->addr, false) == r->allowed);
        CHECK(allowed_str(r->addr, true));   // fetcher.allow_private lets everything through
    }
}
} // namespace

// One address inside every row of the IANA IPv4 Special-Purpose Address Registry
// (2025-01-28), allowed as its "Globally Reachable" column says, and the addresses
// just outside each block.
TEST_CASE("downloader addresses: IPv4 special-purpose registry, row by row")
{
    const Row rows[] = {
        {"0.0.0.0/8 False", "0.1.2.3", false},
        {"0.0.0.0/8 edge", "1.0.0.0", true},
        {"0.0.0.0/32 False", "0.0.0.0", false},
        {"10.0.0.0/8 False", "10.1.2.3", false},
        {"10.0.0.0/8 edge", "9.255.255.255", true},
        {"10.0.0.0/8 edge", "11.0.0.0", true},
        {"100.64.0.0/10 False", "100.64.0.1", false},
        {"100.64.0.0/10 False", "100.127.255.255", false},
        {"100.64.0.0/10 edge", "100.63.255.255", true},
        {"100.64.0.0/10 edge", "100.128.0.0", true},
        {"127.0.0.0/8 False", "127.0.0.1", false},
        {"127.0.0.0/8 False", "127.255.255.254", false},
        {"127.0.0.0/8 edge", "126.255.255.255", true},
        {"127.0.0.0/8 edge", "128.0.0.0", true},
        {"169.254.0.0/16 False", "169.254.169.254", false},
        {"169.254.0.0/16 edge", "169.253.255.255", true},
        {"169.254.0.0/16 edge", "169.255.0.0", true},
        {"172.16.0.0/12 False", "172.31.255.255", false},
        {"172.16.0.0/12 edge", "172.15.255.255", true},
        {"172.16.0.0/12 edge", "172.32.0.0", true},
        {"192.0.0.0/24 False", "192.0.0.100", false},
        {"192.0.0.0/24 edge", "191.255.255.255", true},
        {"192.0.0.0/24 edge", "192.0.1.0", true},
        {"192.0.0.0/29 False", "192.0.0.1", false},
        {"192.0.0.8/32 False", "192.0.0.8", false},
        {"192.0.0.9/32 True", "192.0.0.9", true},
        {"192.0.0.10/32 True", "192.0.0.10", true},
        {"192.0.0.10/32 edge (in 192.0.0.0/24)", "192.0.0.11", false},
        {"192.0.0.170/32 False", "192.0.0.170", false},
        {"192.0.0.171/32 False", "192.0.0.171", false},
        {"192.0.2.0/24 False", "192.0.2.1", false},
        {"192.0.2.0/24 edge", "192.0.3.0", true},
        {"192.31.196.0/24 True", "192.31.196.1", true},
        {"192.52.193.0/24 True", "192.52.193.1", true},
        {"192.88.99.0/24 N/A", "192.88.99.1", false},
        {"192.88.99.0/24 edge", "192.88.98.255", true},
        {"192.88.99.0/24 edge", "192.88.100.0", true},
        {"192.168.0.0/16 False", "192.168.1.1", false},
        {"192.168.0.0/16 edge", "192.167.255.255", true},
        {"192.168.0.0/16 edge", "192.169.0.0", true},
        {"192.175.48.0/24 True", "192.175.48.1", true},
        {"198.18.0.0/15 False", "198.18.0.1", false},
        {"198.18.0.0/15 False", "198.19.255.255", false},
        {"198.18.0.0/15 edge", "198.17.255.255", true},
        {"198.18.0.0/15 edge", "198.20.0.0", true},
        {"198.51.100.0/24 False", "198.51.100.7", false},
        {"198.51.100.0/24 edge", "198.51.99.255", true},
        {"198.51.100.0/24 edge", "198.51.101.0", true},
        {"203.0.113.0/24 False", "203.0.113.7", false},
        {"203.0.113.0/24 edge", "203.0.112.255", true},
        {"203.0.113.0/24 edge", "203.0.114.0", true},
        {"240.0.0.0/4 False", "240.0.0.1", false},
        {"255.255.255.255/32 False", "255.255.255.255", false},
        {"224.0.0.0/4 multicast", "224.0.0.1", false},
        {"224.0.0.0/4 multicast", "239.255.255.255", false},
        {"224.0.0.0/4 edge", "223.255.255.255", true},
        {"global", "1.1.1.1", true},
        {"global", "8.8.8.8", true},
    };
    check_rows(std::begin(rows), std::end(rows));
}

// The same for the IANA IPv6 Special-Purpose Address Registry (2025-06-12), and
// the IPv4 addresses embedded in 6to4, Teredo, NAT64 and mapped addresses.
TEST_CASE("downloader addresses: IPv6 special-purpose registry, row by row")
{
    const Row rows[] = {
        {"::1/128 False", "::1", false},
        {"::/128 False", "::", false},
        {"::ffff:0:0/96 (the IPv4 address is judged)", "::ffff:10.1.2.3", false},
        {"::ffff:0:0/96", "::ffff:127.0.0.1", false},
        {"::ffff:0:0/96", "::ffff:169.254.169.254", false},
        {"::ffff:0:0/96", "::ffff:198.18.0.1", false},
        {"::ffff:0:0/96", "::ffff:8.8.8.8", true},
        {"::ffff:0:0/96 edge", "::fffe:808:808", false},
        {"::ffff:0:0:0/96 SIIT", "::ffff:0:808:808", false},
        {"::ffff:0:0:0/96 SIIT", "::ffff:0:7f00:1", false},
        {"::/96 IPv4-compatible", "::808:808", false},
        {"::/96 IPv4-compatible", "::127.0.0.1", false},
        {"64:ff9b::/96 True, embedded global", "64:ff9b::808:808", true},
        {"64:ff9b::/96 embedded private", "64:ff9b::10.0.0.1", false},
        {"64:ff9b::/96 embedded loopback", "64:ff9b::7f00:1", false},
        {"64:ff9b::/96 embedded 192.0.0.0/24", "64:ff9b::c000:1", false},
        {"64:ff9b::/96 edge", "64:ff9b::1:808:808", false},
        {"64:ff9b:1::/48 False", "64:ff9b:1::808:808", false},
        {"64:ff9b:1::/48 False", "64:ff9b:1::7f00:1", false},
        {"100::/64 False", "100::1", false},
        {"100:0:0:1::/64 False", "100:0:0:1::1", false},
        {"2001::/23 False", "2001:100::1", false},
        {"2001::/23 edge", "2001:200::1", true},
        {"2001::/23 edge", "2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true},
        // Teredo: server 8.8.8.8 in bits 32-63, client inverted in the last 32 bits.
        {"2001::/32 N/A, both global", "2001:0:808:808:0:0:fefe:fefe", true},
        {"2001::/32 client 10.0.0.1", "2001:0:808:808::f5ff:fffe", false},
        {"2001::/32 client 127.0.0.1", "2001:0:808:808::80ff:fffe", false},
        {"2001::/32 server 10.0.0.1", "2001:0:a00:1::fefe:fefe", false},
        {"2001::/32 server 169.254.169.254", "2001:0:a9fe:a9fe::fefe:fefe", false},
        {"2001:1::1/128 True", "2001:1::1", true},
        {"2001:1::2/128 True", "2001:1::2", true},
        {"2001:1::3/128 True", "2001:1::3", true},
        {"2001:1::3/128 edge", "2001:1::4", false},
        {"2001:2::/48 False", "2001:2::1", false},
        {"2001:3::/32 True", "2001:3::1", true},
        {"2001:4:112::/48 True", "2001:4:112::1", true},
        {"2001:4:112::/48 edge", "2001:4:113::1", false},
        {"2001:10::/28 False", "2001:10::1", false},
        {"2001:20::/28 True, identifiers only", "2001:20::1", false},
        {"2001:30::/28 True, identifiers only", "2001:30::1", false},
        {"2001:db8::/32 False", "2001:db8::1", false},
        {"2001:db8::/32 edge", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", true},
        {"2001:db8::/32 edge", "2001:db9::", true},
        {"2002::/16 N/A, embedded global", "2002:808:808::1", true},
        {"2002::/16 embedded loopback", "2002:7f00:1::1", false},
        {"2002::/16 embedded metadata", "2002:a9fe:a9fe::1", false},
        {"2002::/16 embedded private", "2002:c0a8:101::1", false},
        {"2002::/16 edge", "2003::1", true},
        {"2620:4f:8000::/48 True", "2620:4f:8000::1", true},
        {"3fff::/20 False", "3fff::1", false},
        {"3fff::/20 False", "3fff:fff:ffff::1", false},
        {"3fff::/20 edge", "3fff:1000::1", true},
        {"3fff::/20 edge", "3ffe:ffff::1", true},
        {"5f00::/16 False", "5f00::1", false},
        {"fc00::/7 False", "fc00::1", false},
        {"fc00::/7 False", "fd12:3456::1", false},
        {"fe80::/10 False", "fe80::1", false},
        {"fe80::/10 False", "febf::1", false},
        {"fec0::/10 site-local", "fec0::1", false},
        {"ff00::/8 multicast", "ff02::1", false},
        {"ff00::/8 multicast", "ff0e::1", false},
        {"outside 2000::/3", "4000::1", false},
        {"outside 2000::/3", "1fff:ffff::1", false},
        {"global", "2a00:1450::1", true},
        {"global", "2606:4700::1111", true},
    };
    check_rows(std::begin(rows), std::end(rows));
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
