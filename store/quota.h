// quota.h - how much media the store may take: store.max_bytes (all media),
// store.min_free (free space kept on store.dir's file system, statvfs) and
// milter.sender_quota over milter.sender_quota_window (per sender). Pure
// arithmetic here; the usage comes from the index (Index::quota_usage), where
// every Writer's reservation is counted too, so that two messages written at
// once cannot both squeeze under a limit. Reads those four keys.
#pragma once

#include "core/config.h"
#include "store/store.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace mm {

/// Media refused because a quota is reached: the caller answers 452 4.3.1
/// (mmsend: exit 75), never a permanent error; the client may retry later.
struct QuotaError : StoreError {
    using StoreError::StoreError;
};

struct QuotaLimits {
    uint64_t max_bytes = 0;      // store.max_bytes; 0: no limit
    uint64_t min_free = 0;       // store.min_free; 0: not checked
    uint64_t sender_quota = 0;   // milter.sender_quota; 0: no limit
    int64_t window = 0;          // milter.sender_quota_window, seconds
    static QuotaLimits from(const Config& cfg);
};

/// What is in use, other than by the writer asking.
struct QuotaUsage {
    uint64_t store_bytes = 0;    // active objects (each digest once) + other writers' reservations
    uint64_t sender_bytes = 0;   // the sender's items created in the window + its other reservations
    uint64_t pending = 0;        // other writers' reserved bytes not yet on disk
    uint64_t fs_free = UINT64_MAX;   // bytes free on the file system now
};

/// Why a writer with `written` bytes on disk may not hold `total` bytes in
/// all; empty when it may. `sender` empty: no per-sender limit applies.
/// Saturating arithmetic: no sum wraps around.
std::string quota_refusal(const QuotaLimits& limits, const QuotaUsage& usage, const std::string& sender,
                          uint64_t total, uint64_t written);

/// Free bytes on the file system holding `dir` for an unprivileged process
/// (statvfs f_bavail * f_frsize); nullopt if statvfs fails. Tests inject their own.
using FreeSpaceFn = std::function<std::optional<uint64_t>(const std::string& dir)>;
std::optional<uint64_t> statvfs_free(const std::string& dir);

} // namespace mm
