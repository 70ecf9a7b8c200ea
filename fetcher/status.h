// status.h - what mm-fetcher tells about itself on fetcher.status_listen: the
// mails it holds back while their media download (sender, subject, media name,
// size, progress), /healthz, /metrics (Prometheus text 0.0.4) and the page and
// text behind "mm-fetcher status" (docs/fetcher-status.md). The downloader and
// the presenter report here (counters are atomics); pages are rendered at each
// request. Reads no config keys itself: main.cpp passes fetcher.status_listen's socket.
#pragma once

#include "core/status_http.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace mm {

struct HeldMedia {
    std::string name, type, sha256, item_id;   // item_id from the handle's URL ("" if none there)
    uint64_t size = 0;
};

/// One mail held back, as the presenter last saw it. The text comes from the
/// mail (hostile): it is kept cut and cleaned, and escaped again by each renderer.
struct HeldMail {
    std::string key;          // the cache key (sync.h): one entry per mail
    std::string raw_path;     // its raw copy; the entry ends with it (shown, or gone upstream)
    std::string sender, subject, message_id;
    std::vector<HeldMedia> media;
    int64_t since_unix = 0;   // first seen held
};

/// How far one media file has come, read from the cache at render time.
struct MediaProgress {
    uint64_t have = 0, size = 0;
    bool done = false;
};

/// A held mail with its media's progress, as the renderers take it.
struct HeldView {
    HeldMail mail;
    std::vector<MediaProgress> progress;   // one per media
};

class FetcherStatus {
public:
    // ---- counters (download.cpp, present.cpp) ----
    std::atomic<uint64_t> bytes_downloaded{0}, downloads_verified{0}, verify_failures{0}, download_failures{0},
        receipts_sent{0}, mails_put_back{0};
    std::atomic<int64_t> downloads_active{0};
    std::atomic<bool> listening{false};   // the POP3 listener runs

    /// Records (or refreshes) a mail held back; keeps its first since_unix.
    void held(HeldMail m);
    /// The mail is shown now (or gone): its entry ends.
    void released(const std::string& key);
    /// The held mails whose raw copy still exists, oldest first (entries of
    /// mails gone upstream are dropped on the way).
    std::vector<HeldMail> held_mails();
    /// The Message-ID of a held mail naming this media, "" if none: for the
    /// downloader's log lines, which know only the media.
    std::string message_id_of(const std::string& sha256);

private:
    std::mutex mu_;
    std::map<std::string, HeldMail> held_;
};

/// The process's status (one fetcher per process).
FetcherStatus& fetcher_status();

/// The item id in a handle URL's path ".../m/<32 hex>/<token>", "" if none.
std::string item_id_of_url(const std::string& url);

/// The trace fields of one media file for a log line: hash= (12 hex digits),
/// item= when the URL names one, message_id= when a held mail names the media
/// (else `known_message_id`, when not empty).
std::string media_trace(const std::string& sha256, const std::string& url, const std::string& known_message_id = "");

/// Progress of `media` in media_dir: the verified file, or its .part.
MediaProgress media_progress(const std::string& media_dir, const HeldMedia& media);

/// The status page: every held mail with a progress bar per media; refreshes
/// itself every `refresh_s` seconds (meta refresh: no script).
std::string render_status_html(const std::vector<HeldView>& held, int refresh_s);
/// The same for a terminal (mm-fetcher status), control bytes escaped.
std::string render_status_text(const std::vector<HeldView>& held);
std::string render_fetcher_metrics(const FetcherStatus& s, size_t held);

/// fetcher.status_listen's answer to `path`: / (HTML), /status.txt, /healthz, /metrics.
StatusReply fetcher_status_reply(const std::string& path, FetcherStatus& s, const std::string& media_dir);

} // namespace mm
