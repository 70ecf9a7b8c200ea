// address_policy.cpp - which download URLs and which peer addresses mm-fetcher
// may fetch media from (address_policy.h). Config keys: fetcher.allow_private,
// fetcher.allow_insecure (passed in).
#include "fetcher/address_policy.h"

#include <arpa/inet.h>
#include <cstring>
#include <netinet/in.h>
#include <sys/socket.h>

namespace mm {

namespace {

bool v4_allowed(uint32_t a /* host order */)
{
    auto in = [a](uint32_t net, int bits) {
        uint32_t mask = bits == 0 ? 0 : ~uint32_t(0) << (32 - bits);
        return (a & mask) == (net & mask);
    };
    return !(in(0x00000000, 8)        // 0/8 "this network", includes 0.0.0.0
             || in(0x7f000000, 8)     // loopback
             || in(0x0a000000, 8)     // RFC 1918
             || in(0xac100000, 12)    // RFC 1918
             || in(0xc0a80000, 16)    // RFC 1918
             || in(0x64400000, 10)    // RFC 6598 shared (CGNAT)
             || in(0xa9fe0000, 16)    // link-local
             || in(0xe0000000, 4)     // multicast
             || in(0xf0000000, 4));   // reserved and broadcast
}

} // namespace

bool address_allowed(const sockaddr* sa, bool allow_private)
{
    if (!sa)
        return false;
    if (sa->sa_family == AF_INET) {
        if (allow_private)
            return true;
        const auto* s4 = reinterpret_cast<const sockaddr_in*>(sa);
        return v4_allowed(ntohl(s4->sin_addr.s_addr));
    }
    if (sa->sa_family == AF_INET6) {
        if (allow_private)
            return true;
        const auto* s6 = reinterpret_cast<const sockaddr_in6*>(sa);
        const uint8_t* b = s6->sin6_addr.s6_addr;
        bool zero10 = true;
        for (int i = 0; i < 10; ++i)
            zero10 = zero10 && b[i] == 0;
        uint32_t tail = (uint32_t(b[12]) << 24) | (uint32_t(b[13]) << 16) | (uint32_t(b[14]) << 8) | b[15];
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, also :: and ::1) carry
        // an IPv4 address the kernel may route to; judge that address.
        if (zero10 && b[10] == 0xff && b[11] == 0xff)
            return v4_allowed(tail);
        if (zero10 && b[10] == 0 && b[11] == 0)
            return tail > 1 && v4_allowed(tail);
        if ((b[0] & 0xfe) == 0xfc)                 // fc00::/7 unique local
            return false;
        if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) // fe80::/10 link-local
            return false;
        if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) // fec0::/10 old site-local
            return false;
        if (b[0] == 0xff)                          // multicast
            return false;
        // 64:ff9b::/96 NAT64 embeds an IPv4 address as well.
        static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
        if (std::memcmp(b, nat64, 12) == 0)
            return v4_allowed(tail);
        return true;
    }
    return false;   // AF_UNIX and anything else
}


bool url_scheme_allowed(const std::string& url, bool allow_insecure)
{
    if (url.rfind("https://", 0) == 0)
        return true;
    return allow_insecure && url.rfind("http://", 0) == 0;
}

} // namespace mm
