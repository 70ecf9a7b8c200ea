// address_policy.cpp - which download URLs and which peer addresses mm-fetcher
// may fetch media from (address_policy.h). Config keys: fetcher.allow_private,
// fetcher.allow_insecure (passed in).
//
// Only globally reachable unicast addresses are allowed. The tables below are the
// IANA special-purpose address registries, every entry with its "Globally
// Reachable" value, as published on the registry pages
//   https://www.iana.org/assignments/iana-ipv4-special-registry/ (last updated 2025-01-28)
//   https://www.iana.org/assignments/iana-ipv6-special-registry/ (last updated 2025-06-12)
// An address takes the value of the most specific entry that holds it (192.0.0.9
// is in 192.0.0.0/24, False, and in 192.0.0.9/32, True: True). Beyond the tables:
//   IPv4: 224.0.0.0/4 multicast (IANA multicast registry) is refused.
//   IPv6: only 2000::/3 (global unicast in the IANA IPv6 address space) is
//     allowed outside the table; that refuses ff00::/8 multicast, fec0::/10
//     site-local, ::/96 IPv4-compatible and ::ffff:0:0:0/96 (SIIT) with the rest.
//   "N/A" entries whose addresses embed IPv4 ones (6to4, Teredo) are allowed only
//     when every embedded IPv4 address is allowed; so are 64:ff9b::/96 (True) and
//     ::ffff:0:0/96 (False on the wire, but on a socket the kernel connects to the
//     IPv4 address itself, which is what is judged).
//   ORCHIDv2 and DETs are True in the registry but are identifiers, never routed
//     (RFC 7343 2, RFC 9374 3): refused.
#include "fetcher/address_policy.h"

#include <arpa/inet.h>
#include <array>
#include <cstring>
#include <netinet/in.h>
#include <stdexcept>
#include <sys/socket.h>
#include <vector>

namespace mm {

namespace {

/// The registries' "Globally Reachable" column.
enum class Reach { yes, no, na };
/// What this policy does beyond that column for an entry.
enum class Extra { none, embedded_6to4, embedded_teredo, embedded_nat64, identifier };

struct Entry {
    const char* prefix;
    int bits;
    const char* name;
    Reach reach;
    Extra extra = Extra::none;
};

// IANA IPv4 Special-Purpose Address Registry (2025-01-28), in registry order.
const Entry kIpv4Special[] = {
    {"0.0.0.0", 8, "\"This network\" (RFC 791)", Reach::no},
    {"0.0.0.0", 32, "\"This host on this network\" (RFC 1122)", Reach::no},
    {"10.0.0.0", 8, "Private-Use (RFC 1918)", Reach::no},
    {"100.64.0.0", 10, "Shared Address Space (RFC 6598)", Reach::no},
    {"127.0.0.0", 8, "Loopback (RFC 1122)", Reach::no},
    {"169.254.0.0", 16, "Link Local (RFC 3927)", Reach::no},
    {"172.16.0.0", 12, "Private-Use (RFC 1918)", Reach::no},
    {"192.0.0.0", 24, "IETF Protocol Assignments (RFC 6890)", Reach::no},
    {"192.0.0.0", 29, "IPv4 Service Continuity Prefix (RFC 7335)", Reach::no},
    {"192.0.0.8", 32, "IPv4 dummy address (RFC 7600)", Reach::no},
    {"192.0.0.9", 32, "Port Control Protocol Anycast (RFC 7723)", Reach::yes},
    {"192.0.0.10", 32, "Traversal Using Relays around NAT Anycast (RFC 8155)", Reach::yes},
    {"192.0.0.170", 32, "NAT64/DNS64 Discovery (RFC 8880, RFC 7050)", Reach::no},
    {"192.0.0.171", 32, "NAT64/DNS64 Discovery (RFC 8880, RFC 7050)", Reach::no},
    {"192.0.2.0", 24, "Documentation (TEST-NET-1) (RFC 5737)", Reach::no},
    {"192.31.196.0", 24, "AS112-v4 (RFC 7535)", Reach::yes},
    {"192.52.193.0", 24, "AMT (RFC 7450)", Reach::yes},
    {"192.88.99.0", 24, "Deprecated (6to4 Relay Anycast) (RFC 7526)", Reach::na},
    {"192.168.0.0", 16, "Private-Use (RFC 1918)", Reach::no},
    {"192.175.48.0", 24, "Direct Delegation AS112 Service (RFC 7534)", Reach::yes},
    {"198.18.0.0", 15, "Benchmarking (RFC 2544)", Reach::no},
    {"198.51.100.0", 24, "Documentation (TEST-NET-2) (RFC 5737)", Reach::no},
    {"203.0.113.0", 24, "Documentation (TEST-NET-3) (RFC 5737)", Reach::no},
    {"240.0.0.0", 4, "Reserved (RFC 1112)", Reach::no},
    {"255.255.255.255", 32, "Limited Broadcast (RFC 919, RFC 8190)", Reach::no},
    // Not in the special-purpose registry: the multicast registry's whole block.
    {"224.0.0.0", 4, "Multicast (RFC 5771)", Reach::no},
};

// IANA IPv6 Special-Purpose Address Registry (2025-06-12), in registry order.
const Entry kIpv6Special[] = {
    {"::1", 128, "Loopback Address (RFC 4291)", Reach::no},
    {"::", 128, "Unspecified Address (RFC 4291)", Reach::no},
    {"::ffff:0:0", 96, "IPv4-mapped Address (RFC 4291)", Reach::no},
    {"64:ff9b::", 96, "IPv4-IPv6 Translat. (RFC 6052)", Reach::yes, Extra::embedded_nat64},
    {"64:ff9b:1::", 48, "IPv4-IPv6 Translat. (RFC 8215)", Reach::no},
    {"100::", 64, "Discard-Only Address Block (RFC 6666)", Reach::no},
    {"100:0:0:1::", 64, "Dummy IPv6 Prefix (RFC 9780)", Reach::no},
    {"2001::", 23, "IETF Protocol Assignments (RFC 2928)", Reach::no},
    {"2001::", 32, "TEREDO (RFC 4380, RFC 8190)", Reach::na, Extra::embedded_teredo},
    {"2001:1::1", 128, "Port Control Protocol Anycast (RFC 7723)", Reach::yes},
    {"2001:1::2", 128, "Traversal Using Relays around NAT Anycast (RFC 8155)", Reach::yes},
    {"2001:1::3", 128, "DNS-SD Service Registration Protocol Anycast (RFC 9665)", Reach::yes},
    {"2001:2::", 48, "Benchmarking (RFC 5180, RFC Errata 1752)", Reach::no},
    {"2001:3::", 32, "AMT (RFC 7450)", Reach::yes},
    {"2001:4:112::", 48, "AS112-v6 (RFC 7535)", Reach::yes},
    {"2001:10::", 28, "Deprecated (previously ORCHID) (RFC 4843)", Reach::no},
    {"2001:20::", 28, "ORCHIDv2 (RFC 7343)", Reach::yes, Extra::identifier},
    {"2001:30::", 28, "Drone Remote ID Protocol Entity Tags (DETs) Prefix (RFC 9374)", Reach::yes,
     Extra::identifier},
    {"2001:db8::", 32, "Documentation (RFC 3849)", Reach::no},
    {"2002::", 16, "6to4 (RFC 3056)", Reach::na, Extra::embedded_6to4},
    {"2620:4f:8000::", 48, "Direct Delegation AS112 Service (RFC 7534)", Reach::yes},
    {"3fff::", 20, "Documentation (RFC 9637)", Reach::no},
    {"5f00::", 16, "Segment Routing (SRv6) SIDs (RFC 9602)", Reach::no},
    {"fc00::", 7, "Unique-Local (RFC 4193, RFC 8190)", Reach::no},
    {"fe80::", 10, "Link-Local Unicast (RFC 4291)", Reach::no},
};

struct Block {
    std::array<uint8_t, 16> net{};   // IPv4 in the first 4 octets
    int bits = 0;
    const Entry* entry = nullptr;
};

std::vector<Block> compile(const Entry* begin, const Entry* end, int family)
{
    std::vector<Block> out;
    for (const Entry* e = begin; e != end; ++e) {
        Block b;
        if (inet_pton(family, e->prefix, b.net.data()) != 1)
            throw std::logic_error(std::string("address_policy: bad table prefix ") + e->prefix);
        b.bits = e->bits;
        b.entry = e;
        out.push_back(b);
    }
    return out;
}

bool prefix_match(const uint8_t* a, const Block& b)
{
    int full = b.bits / 8, rest = b.bits % 8;
    if (std::memcmp(a, b.net.data(), static_cast<size_t>(full)) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
    return (a[full] & mask) == (b.net[static_cast<size_t>(full)] & mask);
}

/// The most specific table entry holding `a` (4 or 16 octets), or null.
const Entry* lookup(const uint8_t* a, const std::vector<Block>& table)
{
    const Block* best = nullptr;
    for (const Block& b : table)
        if (prefix_match(a, b) && (!best || b.bits > best->bits))
            best = &b;
    return best ? best->entry : nullptr;
}

const std::vector<Block>& v4_table()
{
    static const std::vector<Block> t = compile(std::begin(kIpv4Special), std::end(kIpv4Special), AF_INET);
    return t;
}

const std::vector<Block>& v6_table()
{
    static const std::vector<Block> t = compile(std::begin(kIpv6Special), std::end(kIpv6Special), AF_INET6);
    return t;
}

bool v4_global(uint32_t a /* host order */)
{
    uint8_t o[4] = {uint8_t(a >> 24), uint8_t(a >> 16), uint8_t(a >> 8), uint8_t(a)};
    const Entry* e = lookup(o, v4_table());
    return !e || e->reach == Reach::yes;
}

uint32_t v4_at(const uint8_t* b, int octet)
{
    return (uint32_t(b[octet]) << 24) | (uint32_t(b[octet + 1]) << 16) | (uint32_t(b[octet + 2]) << 8) |
           b[octet + 3];
}

bool v6_global(const uint8_t* b)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(b, mapped, 12) == 0)
        return v4_global(v4_at(b, 12));   // the kernel connects to the IPv4 address itself
    const Entry* e = lookup(b, v6_table());
    if (!e)
        return (b[0] & 0xe0) == 0x20;     // 2000::/3 global unicast; nothing else is routed
    switch (e->extra) {
    case Extra::embedded_nat64:
        return v4_global(v4_at(b, 12));
    case Extra::embedded_6to4:
        return v4_global(v4_at(b, 2));
    case Extra::embedded_teredo:
        // RFC 4380 4: server IPv4 in bits 32-63, client IPv4 inverted in the last 32.
        return v4_global(v4_at(b, 4)) && v4_global(~v4_at(b, 12));
    case Extra::identifier:
        return false;
    case Extra::none:
        break;
    }
    return e->reach == Reach::yes;
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
        return v4_global(ntohl(s4->sin_addr.s_addr));
    }
    if (sa->sa_family == AF_INET6) {
        if (allow_private)
            return true;
        const auto* s6 = reinterpret_cast<const sockaddr_in6*>(sa);
        return v6_global(s6->sin6_addr.s6_addr);
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
