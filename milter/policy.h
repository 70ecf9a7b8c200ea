// policy.h - whose mail mm-milter rewrites: the client network list of
// milter.trusted_networks (CIDR, RFC 4632 / RFC 4291 prefixes) and the
// outgoing test of milter.apply_to. Header-only so the unit tests use it as is.
#pragma once

#include "mime/config.h"

#include <arpa/inet.h>
#include <cstdint>
#include <cstring>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <vector>

namespace mm {

/// One network: 16 address bytes (IPv4 kept as 4 bytes + family) and a prefix length.
struct Cidr {
    int family = AF_INET;
    unsigned char addr[16] = {};
    unsigned prefix = 0;
};

/// Parses "ADDR/LEN" or a bare address (a host). Returns false on anything
/// else: bad address, prefix out of range, signs, spaces, empty parts.
inline bool parse_cidr(const std::string& text, Cidr& out)
{
    std::string addr = text;
    uint64_t len = 0;
    bool has_len = false;
    if (size_t slash = text.find('/'); slash != std::string::npos) {
        addr = text.substr(0, slash);
        if (!parse_u64(std::string_view(text).substr(slash + 1), len))
            return false;
        has_len = true;
    }
    Cidr c;
    if (inet_pton(AF_INET, addr.c_str(), c.addr) == 1) {
        c.family = AF_INET;
        if (len > 32)
            return false;
        c.prefix = has_len ? static_cast<unsigned>(len) : 32;
    } else if (inet_pton(AF_INET6, addr.c_str(), c.addr) == 1) {
        c.family = AF_INET6;
        if (len > 128)
            return false;
        c.prefix = has_len ? static_cast<unsigned>(len) : 128;
    } else {
        return false;
    }
    out = c;
    return true;
}

/// Whether the first `prefix` bits of a and b agree.
inline bool prefix_equal(const unsigned char* a, const unsigned char* b, unsigned prefix)
{
    unsigned full = prefix / 8, rest = prefix % 8;
    if (memcmp(a, b, full) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = static_cast<unsigned char>(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

/// Whether the client address sa falls in one of the networks. An IPv4-mapped
/// IPv6 client (::ffff:a.b.c.d) is matched as the IPv4 address it is.
inline bool address_in(const sockaddr* sa, const std::vector<Cidr>& nets)
{
    if (!sa)
        return false;
    unsigned char a[16];
    int family;
    if (sa->sa_family == AF_INET) {
        family = AF_INET;
        memcpy(a, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const auto* a6 = &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            family = AF_INET;
            memcpy(a, a6->s6_addr + 12, 4);
        } else {
            family = AF_INET6;
            memcpy(a, a6->s6_addr, 16);
        }
    } else {
        return false;   // unix socket or unknown: never trusted by address
    }
    for (const Cidr& n : nets)
        if (n.family == family && prefix_equal(a, n.addr, n.prefix))
            return true;
    return false;
}

} // namespace mm
