// growing_media.cpp - GrowingMedia: re-insertion's reader of a download in progress.
#include "fetcher/growing_media.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace mm {

GrowingMedia::GrowingMedia(Downloader& dl, const Handle& h, std::chrono::steady_clock::time_point until,
                             const std::atomic<bool>* stop, bool by_segment, const std::atomic<bool>* cancel)
    : dl_(dl), sha_(h.sha256), size_(h.size), until_(until), stop_(stop), cancel_(cancel),
      seg_size_(by_segment ? h.seg_size : 0), seg_sha256_(by_segment ? h.seg_sha256 : std::string())
{
}

GrowingMedia::~GrowingMedia()
{
    if (fd_ >= 0)
        ::close(fd_);
}

/// Opens the verified file if it is there, else the download's .part file.
/// False when neither exists yet (a download about to start).
bool GrowingMedia::open_file()
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
bool GrowingMedia::same_file(const std::string& path) const
{
    struct stat a, b;
    return fstat(fd_, &a) == 0 && stat(path.c_str(), &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/// Waits until the file being followed holds `end` bytes. Throws once the
/// download this file belongs to stops, starts over or runs out of time.
void GrowingMedia::wait_for(uint64_t end)
{
    for (;;) {
        // The counters before looking: a write that lands after the look wakes the wait.
        Downloader::Progress seen = dl_.progress();
        struct stat st;
        if ((fd_ >= 0 || open_file()) && fstat(fd_, &st) == 0 && static_cast<uint64_t>(st.st_size) >= end)
            return;
        // Short of `end`: go on waiting only while the download this file
        // belongs to is still going.
        MediaState state = dl_.peek(sha_, size_);
        if (state == MediaState::ready) {
            if (fd_ < 0)
                continue;   // finished before anything was opened: open the verified file
            if (!same_file(dl_.final_path(sha_)))
                throw std::runtime_error("media " + sha_.substr(0, 16) + ": finished in another file");
            if (fstat(fd_, &st) == 0 && static_cast<uint64_t>(st.st_size) < end)
                throw std::runtime_error("media " + sha_.substr(0, 16) + ": verified file shorter than its handle says");
            continue;   // renamed into place since the look: the rest is there now
        }
        if (state != MediaState::pending)
            throw std::runtime_error("media " + sha_.substr(0, 16) + ": download stopped");
        if (fd_ >= 0 && !same_file(dl_.part_path(sha_)) && !same_file(dl_.final_path(sha_)))
            throw std::runtime_error("media " + sha_.substr(0, 16) + ": download started over");
        if (std::chrono::steady_clock::now() >= until_)
            throw std::runtime_error("media " + sha_.substr(0, 16) + ": download not done in time");
        if (stop_ && stop_->load())
            throw std::runtime_error("shutting down");
        if (cancel_ && cancel_->load())
            throw std::runtime_error("no reader left");
        dl_.wait_progress(seen, true, std::min(until_, std::chrono::steady_clock::now() + std::chrono::milliseconds(100)));
    }
}

/// Checks the segment starting at checked_ once all of it is written. The
/// downloader only ever appends to a file (a download that starts over does so
/// in a new one), so the bytes checked here are the ones read afterwards.
void GrowingMedia::check_segment()
{
    const uint64_t index = checked_ / seg_size_;
    const uint64_t end = std::min(size_, checked_ + seg_size_);
    wait_for(end);
    buf_.resize(kSegmentBlock);
    for (uint64_t at = checked_; at < end;) {
        ssize_t got = pread(fd_, buf_.data(), static_cast<size_t>(std::min<uint64_t>(buf_.size(), end - at)),
                            static_cast<off_t>(at));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            throw std::runtime_error("cannot read media " + sha_.substr(0, 16) + ": " +
                                     (got < 0 ? std::strerror(errno) : "file shrank"));
        check_.update(buf_.data(), static_cast<size_t>(got));
        at += static_cast<uint64_t>(got);
    }
    if (!check_.matches(std::string_view(seg_sha256_).substr(static_cast<size_t>(index) * 64, 64)))
        throw std::runtime_error("media " + sha_.substr(0, 16) + ": segment " + std::to_string(index + 1) +
                                 " differs from the handle's digest");
    checked_ = end;
}

size_t GrowingMedia::read(char* buf, size_t n)
{
    if (pos_ >= size_)
        throw std::runtime_error("media " + sha_.substr(0, 16) + ": more bytes wanted than the handle's size");
    if (seg_size_ > 0) {
        if (pos_ == checked_)
            check_segment();
        n = static_cast<size_t>(std::min<uint64_t>(n, checked_ - pos_));
    } else {
        n = static_cast<size_t>(std::min<uint64_t>(n, size_ - pos_));
        wait_for(pos_ + 1);
    }
    for (;;) {
        ssize_t got = pread(fd_, buf, n, static_cast<off_t>(pos_));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            throw std::runtime_error("cannot read media " + sha_.substr(0, 16) + ": " +
                                     (got < 0 ? std::strerror(errno) : "file shrank"));
        if (seg_size_ == 0)
            hash_.update(buf, static_cast<size_t>(got));
        pos_ += static_cast<uint64_t>(got);
        return static_cast<size_t>(got);
    }
}

void GrowingMedia::finish()
{
    if (pos_ != size_)
        throw std::runtime_error("media " + sha_.substr(0, 16) + ": fewer bytes than the handle's size");
    // With segments every byte was in a checked one.
    if (seg_size_ == 0 && hash_.hex_digest() != sha_)
        throw std::runtime_error("media " + sha_.substr(0, 16) + ": SHA-256 differs from the handle's");
}

} // namespace mm
