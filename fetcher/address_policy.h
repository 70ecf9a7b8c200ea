// address_policy.h - which addresses mm-fetcher may fetch media from: the URL's
// scheme before a transfer starts, and every peer address after DNS, at socket
// open (download.cpp), so that a hostile mail cannot make the receiver probe its
// own network. Config keys: fetcher.allow_private, fetcher.allow_insecure (passed in).
#pragma once

#include <string>

struct sockaddr;

namespace mm {

/// Whether the downloader may connect to this address. Unless allow_private,
/// only globally reachable unicast addresses are allowed, after the IANA
/// special-purpose registries (address_policy.cpp has the tables and the
/// registry dates); IPv4 addresses embedded in 6to4, Teredo, NAT64 and
/// IPv4-mapped addresses must be globally reachable too: a hostile mail must not
/// make the receiver probe its own network.
bool address_allowed(const sockaddr* sa, bool allow_private);

/// Whether a handle URL may be fetched at all: https://, or http:// with
/// allow_insecure. Nothing else (file:, ftp:, gopher:, ...) ever.
bool url_scheme_allowed(const std::string& url, bool allow_insecure);

} // namespace mm
