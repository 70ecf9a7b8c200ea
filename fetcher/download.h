// download.h - fetch one media file named by a handle over HTTPS into the cache,
// resumable, pinned, size- and SHA-256-verified (libcurl easy interface).
// Reads fetcher.allow_private, fetcher.allow_insecure, fetcher.timeout (via DownloadOptions).
#pragma once

#include "handle.h"

#include <chrono>
#include <string>

struct sockaddr;

namespace mm {

struct DownloadOptions {
    std::string media_dir;          // cache_dir/media; files are named by their SHA-256 only
    bool allow_private = false;     // fetcher.allow_private
    bool allow_insecure = false;    // fetcher.allow_insecure: http:// URLs
    std::chrono::seconds timeout{60};
};

/// Whether the downloader may connect to this address. Loopback, private,
/// shared (CGNAT), link-local, unspecified, multicast and broadcast addresses,
/// also in IPv4-mapped/compatible IPv6 form, are refused unless allow_private:
/// a hostile mail must not make the receiver probe its own network.
bool address_allowed(const sockaddr* sa, bool allow_private);

/// Ensures media_dir/<h.sha256> holds the verified bytes of the handle; returns
/// that path, or "" with `err` set. A partial download is kept as <sha256>.part
/// and resumed with a Range request next time.
std::string download_media(const Handle& h, const DownloadOptions& opt, std::string& err);

/// Process-wide libcurl set-up; call once from main before threads start.
void download_global_init();

} // namespace mm
