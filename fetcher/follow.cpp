// follow.cpp - FollowedMedia: re-insertion's reader of a download in progress.
#include "follow.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace mm {

FollowedMedia::FollowedMedia(Downloader& dl, const Handle& h, std::chrono::steady_clock::time_point until,
                             const std::atomic<bool>* stop)
    : dl_(dl), sha_(h.sha256), size_(h.size), until_(until), stop_(stop)
{
}

FollowedMedia::~FollowedMedia()
{
    if (fd_ >= 0)
        ::close(fd_);
}

/// Opens the verified file if it is there, else the download's .part file.
/// False when neither exists yet (a download about to start).
bool FollowedMedia::open_file()
{
    for (const std::string& path : {dl_.final_path(sha_), dl_.part_path(sha_)}) {
        fd_ = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_ >= 0)
            return true;
        if (errno != ENOENT)
            throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
    }
    return false;
}

/// Whether path is the file fd_ reads (the .part renamed to its final name is).
bool FollowedMedia::same_file(const std::string& path) const
{
    struct stat a, b;
    return fstat(fd_, &a) == 0 && stat(path.c_str(), &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

size_t FollowedMedia::read(char* buf, size_t n)
{
    if (pos_ >= size_)
        throw std::runtime_error("media " + sha_.substr(0, 16) + ": more bytes wanted than the handle's size");
    n = static_cast<size_t>(std::min<uint64_t>(n, size_ - pos_));
    for (;;) {
        // The counters before looking: a write that lands after the look wakes the wait.
        Downloader::Progress seen = dl_.progress();
        if (fd_ >= 0 || open_file()) {
            ssize_t got = pread(fd_, buf, n, static_cast<off_t>(pos_));
            if (got < 0 && errno != EINTR)
                throw std::runtime_error("cannot read media " + sha_.substr(0, 16) + ": " + std::strerror(errno));
            if (got > 0) {
                hash_.update(buf, static_cast<size_t>(got));
                pos_ += static_cast<uint64_t>(got);
                return static_cast<size_t>(got);
            }
        }
        // At the end of what is written so far: go on waiting only while the
        // download this file belongs to is still going.
        MediaState st = dl_.peek(sha_, size_);
        if (st == MediaState::ready) {
            if (fd_ < 0)
                continue;   // finished before anything was opened: open the verified file
            if (!same_file(dl_.final_path(sha_)))
                throw std::runtime_error("media " + sha_.substr(0, 16) + ": finished in another file");
            continue;   // renamed into place since the read: the rest is there now
        }
        if (st != MediaState::pending)
            throw std::runtime_error("media " + sha_.substr(0, 16) + ": download stopped");
        if (fd_ >= 0 && !same_file(dl_.part_path(sha_)) && !same_file(dl_.final_path(sha_)))
            throw std::runtime_error("media " + sha_.substr(0, 16) + ": download started over");
        if (std::chrono::steady_clock::now() >= until_)
            throw std::runtime_error("media " + sha_.substr(0, 16) + ": download not done in time");
        if (stop_ && stop_->load())
            throw std::runtime_error("shutting down");
        dl_.wait_progress(seen, true, std::min(until_, std::chrono::steady_clock::now() + std::chrono::milliseconds(100)));
    }
}

void FollowedMedia::finish()
{
    if (pos_ != size_)
        throw std::runtime_error("media " + sha_.substr(0, 16) + ": fewer bytes than the handle's size");
    if (hash_.hex_digest() != sha_)
        throw std::runtime_error("media " + sha_.substr(0, 16) + ": SHA-256 differs from the handle's");
}

} // namespace mm
