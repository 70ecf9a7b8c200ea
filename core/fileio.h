// fileio.h - the file operations every program repeats, written once: an owned
// file descriptor, writing a whole buffer through EINTR and short writes, a
// regular file's size, the durable rename (fsync, rename, fsync the directory)
// behind "durable before visible", and the first line of a secret file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mm {

/// Owns one file descriptor and closes it once; -1 means none.
class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    ~UniqueFd() { reset(); }
    UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept
    {
        if (this != &o)
            reset(o.release());
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;

    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    int release()
    {
        int fd = fd_;
        fd_ = -1;
        return fd;
    }
    void reset(int fd = -1);

private:
    int fd_ = -1;
};

/// Writes all n bytes, retrying on EINTR and short writes. False on any error
/// (errno says which); a partial write is then the caller's to undo.
bool write_all(int fd, const void* p, size_t n);
/// The same at an offset (pwrite), leaving the file position alone.
bool pwrite_all(int fd, const void* p, size_t n, uint64_t offset);

/// The size of the regular file at path; false if it is missing or not a regular file.
bool file_size(const std::string& path, uint64_t& out);

/// fsync of the directory containing `path`, so that a rename or create in it is durable.
bool fsync_dir_of(const std::string& path);

/// fsync `from` (unless the caller already did), rename it to `to`, fsync the
/// directory: after true, `to` survives a crash with all its bytes.
bool durable_rename(const std::string& from, const std::string& to, bool file_synced = false);

/// The first line of the file at path (a password file), without its line end:
/// 1..max_len octets. False with err naming the problem (not the contents).
bool read_secret_line(const std::string& path, size_t max_len, std::string& out, std::string& err);

} // namespace mm
