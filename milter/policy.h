// policy.h - whose mail mm-milter rewrites: the client network list of
// milter.trusted_networks (CIDR, RFC 4632 / RFC 4291 prefixes) and the
// outgoing test of milter.apply_to. Header-only so the unit tests use it as is.
#pragma once

#include "core/config.h"
#include "core/util.h"

#include <arpa/inet.h>
#include <cstdint>
#include <cstring>
#include <libmilter/mfapi.h>
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

/// True when the top-level header lines alone prove the message holds no
/// media: a single text part (RFC 2045 default text/plain when Content-Type is
/// absent) that is not base64. Anything else (multipart, message/*, any other
/// type, a repeated or unparsable header) needs the body. Lets mm-milter accept
/// plain mail at end of headers, so Postfix does not send it the body at all.
/// content_types / encodings: the values of every top-level header of that name.
inline bool headers_rule_out_media(const std::vector<std::string>& content_types,
                                   const std::vector<std::string>& encodings)
{
    if (content_types.size() > 1 || encodings.size() > 1)
        return false;
    if (!encodings.empty() && mime_token(encodings[0]) == "base64")
        return false;
    if (content_types.empty())
        return true;
    std::string type = mime_token(content_types[0]);
    size_t slash = type.find('/');
    return slash == 4 && type.compare(0, 5, "text/") == 0 && type.size() > 5 &&
           type.find('/', slash + 1) == std::string::npos;
}

/// Which milter events get no reply (SMFIP_NR_*) and which are not sent at all
/// (SMFIP_NO*). On a unix socket every reply saved is a round trip saved. Over
/// TCP it is the other way round: an event Postfix sends without waiting for a
/// reply stays unacknowledged, the milter's side delays its ACK (40 ms on
/// Linux), and Postfix's next small write waits for it under Nagle's algorithm
/// (Postfix sets no TCP_NODELAY) -- one 40 ms stall per message, measured with
/// strace. Replies carry the ACK, so over TCP every event that Postfix may send
/// on its own is answered; only headers and end of headers, which Postfix sends
/// in one write together with the first body chunk that does wait, go unanswered.
/// End of headers is always answered: that is where plain mail is accepted.
struct ProtocolFlags {
    unsigned long skip;       // events not sent
    unsigned long no_reply;   // events sent without a reply
};
inline ProtocolFlags protocol_flags(const std::string& socket_spec)
{
    bool tcp = socket_spec.compare(0, 5, "inet:") == 0 || socket_spec.compare(0, 6, "inet6:") == 0;
    if (tcp)
        return {SMFIP_NOHELO | SMFIP_NOUNKNOWN, SMFIP_NR_HDR};
    return {SMFIP_NOHELO | SMFIP_NOUNKNOWN | SMFIP_NODATA, SMFIP_NR_CONN | SMFIP_NR_RCPT | SMFIP_NR_HDR};
}

} // namespace mm
