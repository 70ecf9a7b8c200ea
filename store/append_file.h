// append_file.h - a file written once, front to back, with O_DIRECT where the
// file system takes it.
//
// A media file is written once and fsync'ed before its handle exists. Through
// the page cache each byte is copied into the cache, then written back at the
// fsync: measured on an ext4 VM, 1 GiB took 2.72 s buffered + fsync against
// 1.00 s with O_DIRECT, and the copy was half of mm-gateway's CPU during an
// upload (docs/PERFORMANCE.md). So whole aligned blocks go straight to the
// disk from aligned staging buffers, written by a thread of their own so that
// the disk works while the caller receives the next MiB; what does not fill a
// block (an unaligned start after a resume, the tail) is written through the
// cache. Durability is unchanged: the caller's fsync still decides it.
//
// Where O_DIRECT is refused (a file system without it: EINVAL at open or at
// a write) or store.direct_io is off, every byte goes through the cache, with
// writeback started every few MiB so that the final fsync does not wait for
// the whole file.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace mm {

class AppendFile {
public:
    /// Takes over `fd` (open for writing on `path`), whose first `offset`
    /// bytes stay as they are; appends start there.
    AppendFile(int fd, std::string path, uint64_t offset, bool direct);
    /// Stops the writing thread and closes; what is staged or queued is
    /// dropped (a caller that keeps the file says flush() first).
    ~AppendFile();
    AppendFile(const AppendFile&) = delete;
    AppendFile& operator=(const AppendFile&) = delete;

    /// Appends; throws StoreError when the file cannot be written (maybe a
    /// failure of an earlier append's blocks, found now).
    void append(const void* data, size_t len);
    /// Waits for the queued blocks and writes what is staged: the file then
    /// holds every byte appended, and the buffers and the thread are gone (an
    /// upload between two requests holds neither).
    void flush();
    /// flush() and fsync(2).
    void sync();
    /// Closes the file (after sync() for durability); throws on failure.
    void close();

    int fd() const { return fd_; }
    /// The offset it started at plus the bytes appended, staged ones included.
    uint64_t size() const { return pos_ + staged_; }
    /// Whether blocks still go around the page cache.
    bool direct() const { return dfd_ >= 0 && direct_ok_; }

    /// Block size for O_DIRECT offsets, lengths and buffers: 4 KiB suits
    /// disks with 512-byte and with 4 KiB sectors alike.
    static constexpr size_t kAlign = 4096;
    /// One staging buffer; kBuffers of them per file being written.
    static constexpr size_t kStage = 1 << 20;
    static constexpr size_t kBuffers = 4;

private:
    struct Free {
        void operator()(char* p) const;
    };
    using Buffer = std::unique_ptr<char, Free>;
    struct Block {
        Buffer buf;
        size_t len;
        uint64_t off;
    };

    void append_cached(const char* p, size_t len);
    void hand_over();   // the full staging buffer to the thread
    void write_at(const char* p, size_t n, uint64_t off);   // through fd_, all of it
    void drain();       // waits for the queue; rethrows the thread's failure
    void stop_thread() noexcept;
    void run();

    std::string path_;
    int fd_ = -1;    // through the page cache
    int dfd_ = -1;   // the same file with O_DIRECT; -1 when not used
    uint64_t pos_ = 0;           // file offset of the staging buffer's first byte
    uint64_t written_back_ = 0;  // through the cache: bytes whose writeback was started
    Buffer stage_;
    size_t staged_ = 0;

    // The writing thread: full blocks in order, buffers back when written.
    std::mutex mu_;
    std::condition_variable work_, done_;
    std::deque<Block> queue_;
    std::vector<Buffer> spare_;
    size_t buffers_ = 0;    // allocated, staged, queued or spare
    bool busy_ = false;     // the thread is writing a block it took off the queue
    bool stop_ = false;
    std::string failure_;   // the thread's first error; later blocks are dropped
    std::atomic<bool> direct_ok_{true};   // false once the file system refused a direct write
    std::thread thread_;
};

} // namespace mm
