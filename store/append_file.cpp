// append_file.cpp - see append_file.h.
#include "store/append_file.h"

#include "store/store.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace mm {

namespace {

// Through the cache: start writeback every this many bytes, so that the fsync
// at the end waits for the last few MiB instead of the whole file (a 2 GiB
// video would otherwise stall the MTA for the whole flush at the end).
constexpr uint64_t kWritebackEvery = 8ULL << 20;

// Writes all of [p, p+n) at `off`; "" or what went wrong. Never throws: the
// writing thread uses it too.
std::string pwrite_all(int fd, const char* p, size_t n, uint64_t off, const std::string& path)
{
    while (n > 0) {
        ssize_t r = pwrite(fd, p, n, static_cast<off_t>(off));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return "cannot write " + path + ": " + (r < 0 ? std::strerror(errno) : "no progress");
        p += r;
        n -= static_cast<size_t>(r);
        off += static_cast<uint64_t>(r);
    }
    return "";
}

} // namespace

void AppendFile::Free::operator()(char* p) const { std::free(p); }

AppendFile::AppendFile(int fd, std::string path, uint64_t offset, bool direct)
    : path_(std::move(path)), fd_(fd), pos_(offset), written_back_(offset)
{
    if (!direct)
        return;
    // A second descriptor rather than toggling O_DIRECT with fcntl around each
    // write: the unaligned pieces go through fd_, the blocks through dfd_.
    dfd_ = open(path_.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC | O_NOFOLLOW);
    // EINVAL: this file system has no O_DIRECT; anything else shows up again
    // on fd_ if it matters. Either way the cache path works.
    if (dfd_ < 0)
        dfd_ = -1;
}

AppendFile::~AppendFile()
{
    stop_thread();
    if (dfd_ >= 0)
        ::close(dfd_);
    if (fd_ >= 0)
        ::close(fd_);
}

void AppendFile::append(const void* data, size_t len)
{
    if (fd_ < 0)
        throw StoreError("write after close on " + path_);
    const char* p = static_cast<const char*>(data);
    if (dfd_ < 0) {
        append_cached(p, len);
        return;
    }
    while (len > 0) {
        if (!stage_) {
            std::unique_lock<std::mutex> l(mu_);
            for (;;) {
                if (!failure_.empty())
                    throw StoreError(failure_);
                if (!spare_.empty()) {
                    stage_ = std::move(spare_.back());
                    spare_.pop_back();
                    break;
                }
                if (buffers_ < kBuffers) {
                    void* mem = nullptr;
                    if (posix_memalign(&mem, kAlign, kStage) != 0)
                        throw StoreError("out of memory for a staging buffer of " + path_);
                    stage_.reset(static_cast<char*>(mem));
                    ++buffers_;
                    break;
                }
                done_.wait(l);   // all kBuffers queued: the disk sets the pace
            }
        }
        size_t n = std::min(len, kStage - staged_);
        std::memcpy(stage_.get() + staged_, p, n);
        staged_ += n;
        p += n;
        len -= n;
        if (staged_ == kStage)
            hand_over();
    }
}

void AppendFile::append_cached(const char* p, size_t len)
{
    write_at(p, len, pos_);
    pos_ += len;
    if (pos_ - written_back_ >= kWritebackEvery) {
        // Only starts the I/O early; durability is still fsync's job.
        sync_file_range(fd_, static_cast<off_t>(written_back_), static_cast<off_t>(pos_ - written_back_),
                        SYNC_FILE_RANGE_WRITE);
        written_back_ = pos_;
    }
}

void AppendFile::hand_over()
{
    if (pos_ % kAlign != 0) {
        // A resumed file ends inside a block. Nothing is queued yet (the
        // offset is aligned after every block), so complete that block
        // through the cache here; from then on every block is aligned.
        size_t head = kAlign - pos_ % kAlign;
        write_at(stage_.get(), head, pos_);
        std::memmove(stage_.get(), stage_.get() + head, staged_ - head);
        staged_ -= head;
        pos_ += head;
        return;
    }
    Block b{std::move(stage_), staged_, pos_};
    pos_ += staged_;
    staged_ = 0;
    {
        std::lock_guard<std::mutex> l(mu_);
        queue_.push_back(std::move(b));
        if (!thread_.joinable())
            thread_ = std::thread([this] { run(); });
    }
    work_.notify_one();
}

void AppendFile::run()
{
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
        work_.wait(l, [&] { return stop_ || !queue_.empty(); });
        if (stop_)
            return;
        Block b = std::move(queue_.front());
        queue_.pop_front();
        busy_ = true;
        bool skip = !failure_.empty();   // after a failure the file is abandoned
        l.unlock();
        std::string error;
        size_t at = 0;
        while (!skip && at < b.len && direct_ok_) {
            ssize_t r = pwrite(dfd_, b.buf.get() + at, b.len - at, static_cast<off_t>(b.off + at));
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0 && errno == EINVAL) {
                direct_ok_ = false;   // the file system takes the open but not the write
                break;
            }
            if (r <= 0) {
                error = "cannot write " + path_ + ": " + (r < 0 ? std::strerror(errno) : "no progress");
                break;
            }
            at += static_cast<size_t>(r);
            if ((b.off + at) % kAlign != 0)
                direct_ok_ = false;   // a short write off a block boundary: the rest through the cache
        }
        if (!skip && error.empty() && at < b.len)
            error = pwrite_all(fd_, b.buf.get() + at, b.len - at, b.off + at, path_);
        l.lock();
        busy_ = false;
        if (!error.empty() && failure_.empty())
            failure_ = error;
        spare_.push_back(std::move(b.buf));
        done_.notify_all();
    }
}

void AppendFile::drain()
{
    std::unique_lock<std::mutex> l(mu_);
    done_.wait(l, [&] { return queue_.empty() && !busy_; });
    if (!failure_.empty())
        throw StoreError(failure_);
}

void AppendFile::flush()
{
    if (dfd_ < 0)
        return;   // nothing is ever staged without O_DIRECT
    drain();
    if (staged_ > 0) {
        write_at(stage_.get(), staged_, pos_);
        pos_ += staged_;
        staged_ = 0;
    }
    stop_thread();
    stage_.reset();
    spare_.clear();
    buffers_ = 0;
}

void AppendFile::sync()
{
    flush();
    if (fsync(fd_) != 0)
        throw StoreError("cannot fsync " + path_ + ": " + std::strerror(errno));
}

void AppendFile::close()
{
    stop_thread();
    if (dfd_ >= 0)
        ::close(dfd_);
    dfd_ = -1;
    int fd = fd_;
    fd_ = -1;
    if (fd >= 0 && ::close(fd) != 0)
        throw StoreError("cannot close " + path_ + ": " + std::strerror(errno));
}

void AppendFile::write_at(const char* p, size_t n, uint64_t off)
{
    if (std::string error = pwrite_all(fd_, p, n, off, path_); !error.empty())
        throw StoreError(error);
}

void AppendFile::stop_thread() noexcept
{
    if (!thread_.joinable())
        return;
    {
        std::lock_guard<std::mutex> l(mu_);
        stop_ = true;
    }
    work_.notify_all();
    thread_.join();
    std::lock_guard<std::mutex> l(mu_);
    stop_ = false;
    queue_.clear();   // dropped: only a destructor or close() stops with blocks queued
    busy_ = false;
}

} // namespace mm
