// quota.cpp - the store's quota arithmetic (see quota.h).
#include "store/quota.h"

#include <sys/statvfs.h>

namespace mm {

namespace {

uint64_t add_sat(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

} // namespace

QuotaLimits QuotaLimits::from(const Config& cfg)
{
    QuotaLimits q;
    q.max_bytes = cfg.size("store.max_bytes");
    q.min_free = cfg.size("store.min_free");
    q.sender_quota = cfg.size("milter.sender_quota");
    q.window = static_cast<int64_t>(cfg.duration("milter.sender_quota_window").count());
    return q;
}

std::string quota_refusal(const QuotaLimits& limits, const QuotaUsage& usage, const std::string& sender,
                          uint64_t total, uint64_t written)
{
    if (limits.max_bytes > 0 && add_sat(usage.store_bytes, total) > limits.max_bytes)
        return "store.max_bytes reached (" + std::to_string(usage.store_bytes) + " bytes in use, " +
               std::to_string(total) + " more wanted, limit " + std::to_string(limits.max_bytes) + ")";
    if (limits.sender_quota > 0 && !sender.empty() && add_sat(usage.sender_bytes, total) > limits.sender_quota)
        return "milter.sender_quota reached for " + sender + " (" + std::to_string(usage.sender_bytes) +
               " bytes in the window, " + std::to_string(total) + " more wanted, quota " +
               std::to_string(limits.sender_quota) + ")";
    if (limits.min_free > 0) {
        // Bytes still to land on the disk: ours beyond what is written, and
        // what other writers have reserved but not written yet.
        uint64_t to_come = add_sat(usage.pending, total > written ? total - written : 0);
        if (add_sat(limits.min_free, to_come) > usage.fs_free)
            return "store.min_free reached (" + std::to_string(usage.fs_free) + " bytes free, " +
                   std::to_string(to_come) + " still to be written, " + std::to_string(limits.min_free) +
                   " to keep)";
    }
    return {};
}

std::optional<uint64_t> statvfs_free(const std::string& dir)
{
    struct statvfs st;
    if (statvfs(dir.c_str(), &st) != 0)
        return std::nullopt;
    uint64_t frsize = st.f_frsize ? st.f_frsize : st.f_bsize;
    uint64_t blocks = st.f_bavail;
    return frsize != 0 && blocks > UINT64_MAX / frsize ? UINT64_MAX : blocks * frsize;
}

} // namespace mm
