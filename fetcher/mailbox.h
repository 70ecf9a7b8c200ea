// mailbox.h - synchronising the upstream mailbox into the local cache and deciding
// what the client sees: each message's presented file (media re-inserted) or held back.
// Config keys (via SyncOptions): fetcher.cache_dir, fetcher.max_size, and the download keys.
#pragma once

#include "download.h"
#include "upstream.h"

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace mm {

/// One message the client sees. The client's message number is its index + 1;
/// upstream_num is the number the upstream server knows it by.
struct ShownMessage {
    uint64_t upstream_num = 0;
    std::string uidl;
    std::string path;    // the presented file, CRLF line endings
    uint64_t size = 0;   // exact octets of that file
    bool deleted = false;
};

struct SyncOptions {
    std::string cache_dir;       // fetcher.cache_dir; msg/ and media/ below it
    std::string upstream_id;     // "host:port", part of every cache key
    uint64_t max_size = 0;       // fetcher.max_size
    DownloadOptions download;
    const std::atomic<bool>* stop = nullptr;
};

struct SyncStats {
    unsigned shown = 0, held = 0;
    uint64_t fetched_bytes = 0;   // RETR'd from upstream in this session
};

/// Cache key of one upstream message: hex SHA-256 of (upstream, user, uidl).
std::string cache_key(const std::string& upstream_id, const std::string& user, const std::string& uidl);

/// Whether a UIDL from upstream is acceptable (RFC 1939 7: 1..70 chars 0x21..0x7E).
bool valid_uidl(const std::string& s);

/// After login: UIDL and LIST upstream, then for each message make sure its
/// presented file exists in the cache (RETR, resolve handles, re-insert). Messages
/// whose media cannot be fetched and verified are held back: not in `shown`.
/// Returns false (err set) only if the upstream dialogue itself failed.
bool synchronise(Upstream& up, const std::string& user, const SyncOptions& opt,
                 std::vector<ShownMessage>& shown, SyncStats& stats, std::string& err);

/// Creates cache_dir, cache_dir/msg and cache_dir/media (mode 0700).
bool prepare_cache(const std::string& cache_dir, std::string& err);

} // namespace mm
