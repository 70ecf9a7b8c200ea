// sync.h - synchronising the upstream mailbox into the local cache at each login
// (and each background poll), and deciding what the client sees: for each message
// its cache copy (cache.h), its presented file (media re-inserted, present.h), the
// message as upstream has it, or nothing yet (held back). RFC 1939 UIDL/LIST/RETR.
// Config keys (via SyncOptions): fetcher.cache_dir, fetcher.max_size, fetcher.hold_max,
// fetcher.mode, fetcher.address, fetcher.priority_senders, fetcher.ignore_senders.
#pragma once

#include "fetcher/growing_message.h"
#include "fetcher/download.h"
#include "fetcher/upstream.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mm {

/// One message the client sees. The client's message number is its index + 1;
/// upstream_num is the number the upstream server knows it by.
struct ShownMessage {
    uint64_t upstream_num = 0;
    std::string uidl;
    std::string key;     // cache_key() of the message
    std::string path;    // the presented file (CRLF line endings) or pack; "" when as_is
    uint64_t offset = 0; // of the copy's entry header in the pack
    uint64_t size = 0;   // exact octets RETR sends (for as_is: upstream's LIST size)
    /// How RETR finds the octets: a durable presented file (media re-inserted),
    /// a cache copy checked before each use (cache.h), or none at all: a message
    /// over fetcher.max_size is relayed from upstream as it is.
    enum class Source { presented, copy, as_is } source = Source::presented;
    bool deleted = false;
    /// Set while the presented file is still being built (fetcher.stream):
    /// RETR reads it through this as it grows. Shared with the build's thread.
    std::shared_ptr<GrowingMessage> growing;
};

struct SyncOptions {
    std::string cache_dir;       // fetcher.cache_dir; msg/ and media/ below it
    std::string upstream_id;     // "host:port", part of every cache key
    uint64_t max_size = 0;       // fetcher.max_size: messages and media above it are shown as they are
    Downloader* downloader = nullptr;   // the process's background downloader
    std::chrono::seconds hold_max{24 * 3600};   // fetcher.hold_max
    std::chrono::seconds login_wait{10};        // fetcher.login_wait
    bool ask = false;            // fetcher.mode = ask
    bool stream = false;         // fetcher.stream
    std::string address;         // fetcher.address
    std::vector<std::string> priority_senders, ignore_senders;
    std::vector<std::string> types{"video/*", "audio/*"};   // fetcher.types
    uint64_t max_message_size = 0;   // fetcher.max_message_size (0: max_size + 64M)
    std::string clamd;               // fetcher.clamd; "" off
    std::chrono::seconds clamd_timeout{120};   // fetcher.clamd_timeout
    std::string authserv_id;         // fetcher.authserv_id; "" sender lists never match
    const std::atomic<bool>* stop = nullptr;
    /// A login sets this to the end of its fetcher.login_wait: a message whose
    /// media are downloading is then re-inserted while they arrive (growing_media.h),
    /// and shown as soon as they are verified. Default: never (the poller).
    std::chrono::steady_clock::time_point follow_until{};
};


struct SyncStats {
    unsigned shown = 0, held = 0;
    unsigned pending = 0;         // of held: waiting for media being downloaded
    uint64_t fetched_bytes = 0;   // RETR'd from upstream in this session
};

/// Cache key of one upstream message: hex SHA-256 of (upstream, user, uidl).
std::string cache_key(const std::string& upstream_id, const std::string& user, const std::string& uidl);

/// Whether a UIDL from upstream is acceptable (RFC 1939 7: 1..70 chars 0x21..0x7E).
bool valid_uidl(const std::string& s);

/// The index of one user's cache copies and the common start of their packs' names
/// (cache.h): cache_dir/msg/<user key>.idx and cache_dir/msg/<user key>-<tag>.pack.
struct UserCache {
    std::string index_path, pack_prefix;
    UserCache(const SyncOptions& opt, const std::string& user);
};

/// After login: UIDL and LIST upstream, then for each message make sure its
/// presented file or cache copy exists (RETR, resolve handles, re-insert). Messages
/// whose media cannot be fetched and verified are held back: not in `shown`.
/// Messages over fetcher.max_size are shown as they are (Source::as_is).
/// Returns false (err set) only if the upstream dialogue itself failed.
/// In phases (sync.cpp): list_upstream, classify, fetch_missing, update_index,
/// build_shown_list.
bool synchronise(Upstream& up, const std::string& user, const SyncOptions& opt,
                 std::vector<ShownMessage>& shown, SyncStats& stats, std::string& err);

/// One background poll (fetcher.prefetch_interval): log in, synchronise so that
/// media downloads start, QUIT without deleting. Returns false with err set.
bool poll_mailbox(const UpstreamConfig& cfg, const SyncOptions& opt, const std::string& user,
                  const std::string& pass, unsigned& shown, unsigned& held, std::string& err);

/// Creates cache_dir, cache_dir/msg, cache_dir/media and cache_dir/jobs (mode 0700).
bool prepare_cache(const std::string& cache_dir, std::string& err);

} // namespace mm
