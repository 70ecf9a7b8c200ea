// fileio.cpp - file operations shared by every program (fileio.h).
#include "core/fileio.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mm {

void UniqueFd::reset(int fd)
{
    if (fd_ >= 0)
        ::close(fd_);
    fd_ = fd;
}

namespace {

/// Writes all n bytes through `step` (write or pwrite at the running offset),
/// retrying on EINTR and short writes.
template <typename Step>
bool write_loop(const void* data, size_t n, Step step)
{
    const char* p = static_cast<const char*>(data);
    uint64_t done = 0;
    while (n > 0) {
        ssize_t k = step(p, n, done);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        p += k;
        n -= static_cast<size_t>(k);
        done += static_cast<uint64_t>(k);
    }
    return true;
}

} // namespace

bool write_all(int fd, const void* data, size_t n)
{
    return write_loop(data, n, [fd](const char* p, size_t len, uint64_t) { return ::write(fd, p, len); });
}

bool pwrite_all(int fd, const void* data, size_t n, uint64_t offset)
{
    return write_loop(data, n, [fd, offset](const char* p, size_t len, uint64_t done) {
        return ::pwrite(fd, p, len, static_cast<off_t>(offset + done));
    });
}

bool file_size(const std::string& path, uint64_t& out)
{
    struct stat st;
    if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    out = static_cast<uint64_t>(st.st_size);
    return true;
}

bool fsync_dir_of(const std::string& path)
{
    size_t slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    return fd && fsync(fd.get()) == 0;
}

bool durable_rename(const std::string& from, const std::string& to, bool file_synced)
{
    if (!file_synced) {
        UniqueFd fd(open(from.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd || fsync(fd.get()) != 0)
            return false;
    }
    return rename(from.c_str(), to.c_str()) == 0 && fsync_dir_of(to);
}

bool read_secret_line(const std::string& path, size_t max_len, std::string& out, std::string& err)
{
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        err = "cannot open " + path + ": " + std::strerror(errno);
        return false;
    }
    // One read more than the longest line allowed tells a long line from a short one.
    std::string buf(max_len + 2, '\0');
    size_t have = 0;
    while (have < buf.size()) {
        ssize_t k = ::read(fd.get(), &buf[have], buf.size() - have);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            err = "cannot read " + path + ": " + std::strerror(errno);
            return false;
        }
        if (k == 0)
            break;
        have += static_cast<size_t>(k);
    }
    buf.resize(have);
    size_t nl = buf.find_first_of("\r\n");
    if (nl != std::string::npos)
        buf.resize(nl);
    if (buf.empty() || buf.size() > max_len) {
        err = path + ": the first line must hold the password (1.." + std::to_string(max_len) + " octets)";
        return false;
    }
    out = std::move(buf);
    return true;
}

} // namespace mm
