// prescan_thread.h - runs a Prescanner (mime/prescan.h) beside the milter
// callbacks: each body chunk Postfix sends is copied into a bounded queue and
// the callback answers at once, while this thread decodes, hashes and stores
// media. Postfix's sending and our decoding then overlap, and at end of
// message the engine finds the media already in the store's temp files.
#pragma once

#include "mime/growing.h"
#include "mime/prescan.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

namespace mm {

class PrescanThread {
public:
    PrescanThread(const DetachPolicy& policy, MediaSink& sink);
    /// Stops the thread; bodies not taken by finish() are dropped (their temp files go).
    ~PrescanThread();
    PrescanThread(const PrescanThread&) = delete;
    PrescanThread& operator=(const PrescanThread&) = delete;

    /// Queues a copy of the next bytes; waits while kMaxQueued bytes are queued.
    void feed(const char* p, size_t n);
    /// Waits until everything queued is scanned. Returns the decoded bodies, or
    /// none when the scan failed (`error` says why; the engine then decodes
    /// from the spooled file as if there had been no prescan).
    std::vector<Predecoded> finish(std::string& error);

private:
    static constexpr size_t kMaxQueued = 4 << 20;
    void run();

    Prescanner scan_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::string> queue_;
    size_t queued_ = 0;
    bool closed_ = false;
    std::string error_;
    std::thread thread_;
};

/// Runs GMime's parse of the spool file (parse_growing) while the body is
/// still being spooled: at end of message the parse is done but for the tail.
class ParseThread {
public:
    /// Starts parsing `path`, of which `size` bytes are written.
    ParseThread(const std::string& path, uint64_t size);
    /// Ends the file where it is, waits for the thread and drops the parse.
    ~ParseThread();
    ParseThread(const ParseThread&) = delete;
    ParseThread& operator=(const ParseThread&) = delete;

    /// `size` bytes of the spool file are written.
    void grew(uint64_t size) { file_->grew(size); }
    /// The file is complete: waits for the parse. Null with `error` set if it failed.
    ParsedMessagePtr finish(std::string& error);

private:
    std::shared_ptr<GrowingFile> file_ = std::make_shared<GrowingFile>();
    ParsedMessagePtr parsed_;
    std::string error_;
    std::thread thread_;
};

} // namespace mm
