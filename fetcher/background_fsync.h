// background_fsync.h - presented files that are in place but not yet durable. One
// background thread per process fsyncs each and only then removes its raw copy,
// so that a client's login does not wait for 300 MB to reach the disk; until
// then the raw copy stays, and after a crash synchronise() finds both and builds
// the presented file again. Reads no config keys.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>

namespace mm {

class BackgroundFsync {
public:
    /// Settles what is queued, then stops the thread.
    ~BackgroundFsync();
    /// Queues `presented`: once it and its directory are synced, `raw` is removed.
    void add(const std::string& presented, const std::string& raw);
    /// Whether presented is queued here: its raw copy is then no sign of a crash.
    bool queued(const std::string& presented);

private:
    void run();
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::pair<std::string, std::string>> queue_;   // (presented, raw)
    std::set<std::string> unsettled_;                          // presented files in queue_ or being synced
    std::thread thread_;
    bool stop_ = false;
};

/// The process's one BackgroundFsync.
BackgroundFsync& background_fsync();

} // namespace mm
