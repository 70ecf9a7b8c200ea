// background_fsync.cpp - BackgroundFsync: presented files made durable after they
// are shown (background_fsync.h).
#include "fetcher/background_fsync.h"

#include "core/fileio.h"
#include "core/log.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace mm {

BackgroundFsync::~BackgroundFsync()
{
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable())
        thread_.join();   // what is queued is settled first
}

void BackgroundFsync::add(const std::string& presented, const std::string& raw)
{
    std::lock_guard<std::mutex> lock(mu_);
    queue_.emplace_back(presented, raw);
    unsettled_.insert(presented);
    if (!thread_.joinable())
        thread_ = std::thread([this] { run(); });
    cv_.notify_all();
}

bool BackgroundFsync::queued(const std::string& presented)
{
    std::lock_guard<std::mutex> lock(mu_);
    return unsettled_.count(presented) > 0;
}

void BackgroundFsync::run()
{
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
        cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (queue_.empty())
            return;
        auto [presented, raw] = queue_.front();
        queue_.pop_front();
        lock.unlock();
        int fd = open(presented.c_str(), O_RDONLY | O_CLOEXEC);
        bool ok = fd >= 0 && fsync(fd) == 0 && fsync_dir_of(presented);
        if (fd >= 0)
            ::close(fd);
        if (ok || (fd < 0 && errno == ENOENT))
            unlink(raw.c_str());   // durable, or its message gone
        else
            log_warning("cannot sync " + presented + ": " + std::strerror(errno) + "; rebuilt at the next login");
        lock.lock();
        unsettled_.erase(presented);
    }
}

BackgroundFsync& background_fsync()
{
    static BackgroundFsync s;
    return s;
}

} // namespace mm
