// download.h - the media downloader: one per process, a background thread driving
// libcurl's multi interface (parallel HTTPS transfers, Range resume, pinned keys,
// SHA-256 and size verification, backoff with jitter, receipts to the sender's
// gateway), its queue kept on disk under cache_dir/jobs so that a restart resumes.
// A job is one source (SHA-256, URL, pin); the verified file is shared by SHA-256.
// Beside it: which addresses it may fetch from (address_policy.h), the job files
// (job_file.h), what a receipt says (receipt.h).
// Config keys (via DownloadOptions): fetcher.allow_private, fetcher.allow_insecure,
// fetcher.timeout, fetcher.parallel, fetcher.cache_quota, fetcher.retry_max,
// fetcher.min_rate, fetcher.min_rate_window, fetcher.max_per_host, fetcher.receipts.
#pragma once

#include "fetcher/job_file.h"
#include "mime/handle.h"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace mm {

struct DownloadOptions {
    std::string media_dir;          // cache_dir/media; files are named by their SHA-256 only
    std::string jobs_dir;           // cache_dir/jobs; one <job id>.job file per source
    std::string msg_dir;            // cache_dir/msg: counted in the quota, never evicted here ("" none)
    bool allow_private = false;     // fetcher.allow_private
    bool allow_insecure = false;    // fetcher.allow_insecure: http:// URLs
    std::chrono::seconds timeout{60};
    unsigned parallel = 4;          // fetcher.parallel
    unsigned max_per_host = 2;      // fetcher.max_per_host: transfers at once to one host
    uint64_t min_rate = 4096;       // fetcher.min_rate, bytes/s (0: no check)
    std::chrono::seconds min_rate_window{60};   // fetcher.min_rate_window
    bool receipts = true;           // fetcher.receipts
    /// fetcher.cache_quota: bytes in media_dir and msg_dir together, a running
    /// download counted at its full size from the moment it starts.
    uint64_t quota = UINT64_MAX;
    std::chrono::seconds retry_min{10};
    std::chrono::seconds retry_max{3600};   // fetcher.retry_max
};

/// Wait before attempt number `attempts` (1 = first retry): retry_min doubled
/// per attempt, capped at retry_max, then scaled by jitter in [0.5, 1.0) so
/// that many receivers do not hammer one gateway in step.
std::chrono::seconds backoff(unsigned attempts, std::chrono::seconds retry_min,
                             std::chrono::seconds retry_max, double jitter);

/// The order in which due jobs start: fetcher.priority_senders' media first, then
/// the job that has failed least often (fresh mail before mail that keeps failing).
bool runs_before(const Job& a, const Job& b);

/// The host a job's URL names, lower case, without user info or port ("" if
/// none): what fetcher.max_per_host counts.
std::string url_host(const std::string& url);

/// What the quota sees in the cache: `files` octets on disk that are not a
/// running download's .part, and the running downloads' full sizes (`reserved`).
/// fits() says whether `need` more octets stay within `quota`.
struct QuotaUse {
    uint64_t files = 0, reserved = 0;
    bool fits(uint64_t need, uint64_t quota) const
    {
        return files <= quota && reserved <= quota - files && need <= quota - files - reserved;
    }
};

/// What want() says about a media file right now.
enum class MediaState {
    ready,     // verified; path set
    pending,   // queued or downloading now
    waiting,   // failed before, waiting for its next attempt (or for fetcher.mode = ask)
    refused,   // never fetched under this config (scheme, address, too large for the quota)
};

class Downloader {
public:
    explicit Downloader(const DownloadOptions& opt);
    ~Downloader();
    Downloader(const Downloader&) = delete;
    Downloader& operator=(const Downloader&) = delete;

    /// Loads the queue from jobs_dir and starts the transfer thread.
    bool start(std::string& err);
    /// Stops the thread; partial files stay for the next start.
    void stop();

    /// Asks for the media of `h`. `schedule` false (fetcher.mode = ask) only
    /// records it so that "mm-fetcher fetch" can ask later. `recipient` ("" for
    /// none) gets a receipt once the download is verified.
    MediaState want(const Handle& h, bool priority, bool schedule, const std::string& recipient,
                    std::string& path);

    /// Where a media file stands, without asking for it: ready (the verified
    /// file exists), pending (downloading, or due to start), waiting or refused.
    MediaState peek(const std::string& sha256, uint64_t size);

    /// Media files verified, downloads preempted (for tests and logs).
    struct Counters {
        uint64_t verified = 0, preempted = 0;
    };
    Counters counters();

    /// Counters that move when transfers have written bytes (`written`) and when
    /// a download has ended, verified or not (`ended`). A login waiting for its
    /// media, and re-insertion following a download (growing_media.h), wait on them
    /// instead of polling.
    struct Progress {
        uint64_t written = 0, ended = 0;
    };
    Progress progress();
    /// Waits until `ended` (or with any_write also `written`) differs from
    /// `seen`, or until `until`. Returns the counters then.
    Progress wait_progress(const Progress& seen, bool any_write, std::chrono::steady_clock::time_point until);

    /// The file a download under way writes: media_dir/<sha256>.part.
    std::string part_path(const std::string& sha256) const;
    /// The verified file: media_dir/<sha256>.
    std::string final_path(const std::string& sha256) const;

    /// Marks recorded (asked) jobs as wanted: writes jobs/<job id>.want for each
    /// job of that SHA-256 or URL, which the running fetcher picks up within
    /// seconds. `key` is a SHA-256 or the handle URL. Returns the SHA-256, or ""
    /// with err set.
    static std::string request_fetch(const std::string& jobs_dir, const std::string& key, std::string& err);

    struct Transfer;   // one running transfer (download.cpp)

private:
    void run();
    void load_queue(unsigned& loaded, unsigned& bad, unsigned& migrated);
    void rescan_markers();
    void start_due(int64_t now);
    bool start_transfer(const std::string& id, Job& j, int64_t now);
    bool preempt_for(const std::string& host);
    void end_transfer(Transfer* t);
    void finish(Transfer* t, int result);
    void verified(const std::string& id, Job& j, int64_t now);
    void save(const Job& j);
    void drop(const std::string& id);
    void retry(Job& j, const std::string& why, int64_t now);
    QuotaUse quota_use(const std::string& starting_sha);
    bool make_room(uint64_t need, const std::string& keep);
    bool downloading(const std::string& sha) const;
    unsigned transfers_to(const std::string& host) const;

    DownloadOptions opt_;
    std::mutex mu_;
    std::map<std::string, Job> jobs_;        // by job id
    std::map<std::string, Transfer*> active_;   // running transfers by job id, owned
    // When each job last got a slot: among equals the one that waited longest goes
    // first, so that preempted jobs take turns (start_due).
    std::map<std::string, std::chrono::steady_clock::time_point> last_start_;
    // Which job wrote each <sha256>.part: another source never resumes from it.
    std::map<std::string, std::string> part_owner_;
    Counters counters_;
    void* multi_ = nullptr;                  // CURLM*
    std::thread thread_;
    bool stop_ = false;
    int64_t last_scan_ = 0;
    // Progress; its own lock, taken after mu_ when both are held.
    std::mutex progress_mu_;
    std::condition_variable progress_cv_;
    Progress progress_;
    void bump(bool ended);
};

/// Process-wide libcurl set-up; call once from main before threads start.
void download_global_init();

} // namespace mm
