// mailbox.h - synchronising the upstream mailbox into the local cache and deciding
// what the client sees: each message's presented file (media re-inserted) or held back.
// Config keys (via SyncOptions): fetcher.cache_dir, fetcher.max_size, fetcher.hold_max,
// fetcher.mode, fetcher.address, fetcher.priority_senders, fetcher.ignore_senders.
#pragma once

#include "fetcher/building.h"
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
    std::shared_ptr<Building> building;
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
    const std::atomic<bool>* stop = nullptr;
    /// A login sets this to the end of its fetcher.login_wait: a message whose
    /// media are downloading is then re-inserted while they arrive (follow.h),
    /// and shown as soon as they are verified. Default: never (the poller).
    std::chrono::steady_clock::time_point follow_until{};
};

/// The first field `name` (case-insensitive) in a raw header block, unfolded,
/// trimmed; "" if absent. The block ends at the first empty line.
std::string header_value(std::string_view headers, std::string_view name);


/// Whether `address` matches a fetcher.priority_senders / ignore_senders entry:
/// "a@b.org" the address, "@b.org" or "b.org" the domain (case-insensitive).
bool sender_matches(const std::string& address, const std::vector<std::string>& list);

/// Whose receipt this is: fetcher.address, else Delivered-To / X-Original-To as
/// Postfix writes them, else the POP3 user if it has an '@'; "" if none.
std::string receipt_recipient(const std::string& configured, std::string_view headers, const std::string& user);

struct SyncStats {
    unsigned shown = 0, held = 0;
    unsigned pending = 0;         // of held: waiting for media being downloaded
    uint64_t fetched_bytes = 0;   // RETR'd from upstream in this session
};

/// Cache key of one upstream message: hex SHA-256 of (upstream, user, uidl).
std::string cache_key(const std::string& upstream_id, const std::string& user, const std::string& uidl);

/// Whether a UIDL from upstream is acceptable (RFC 1939 7: 1..70 chars 0x21..0x7E).
bool valid_uidl(const std::string& s);

/// After login: UIDL and LIST upstream, then for each message make sure its
/// presented file or cache copy exists (RETR, resolve handles, re-insert). Messages
/// whose media cannot be fetched and verified are held back: not in `shown`.
/// Messages over fetcher.max_size are shown as they are (Source::as_is).
/// Returns false (err set) only if the upstream dialogue itself failed.
bool synchronise(Upstream& up, const std::string& user, const SyncOptions& opt,
                 std::vector<ShownMessage>& shown, SyncStats& stats, std::string& err);

/// Opens the octets of a `copy` message for RETR: its cache copy if that passes
/// open_entry(), else (a crash left it damaged, or it is gone) the message
/// RETR'd again from upstream into a new copy, used only if it is as long as the
/// size the client was told. Returns the descriptor positioned at the first
/// octet, or -1 with `why` set.
int open_copy(Upstream& up, const ShownMessage& m, const std::string& user, const SyncOptions& opt,
              std::string& why);

/// One background poll (fetcher.prefetch_interval): log in, synchronise so that
/// media downloads start, QUIT without deleting. Returns false with err set.
bool poll_mailbox(const UpstreamConfig& cfg, const SyncOptions& opt, const std::string& user,
                  const std::string& pass, unsigned& shown, unsigned& held, std::string& err);

/// Creates cache_dir, cache_dir/msg, cache_dir/media and cache_dir/jobs (mode 0700).
bool prepare_cache(const std::string& cache_dir, std::string& err);

} // namespace mm
