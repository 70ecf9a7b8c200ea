// cache.cpp - cached copies of plain messages: header format, the RETR sink that
// writes them in one pass (hash and location-part name found on the way), and the
// check before use. No fsync here by design: see cache.h. Reads no config keys.
#include "cache.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

namespace mm {

namespace {

constexpr char kMagic[] = "MMCACHE1";

bool write_all(int fd, const char* p, size_t n)
{
    while (n > 0) {
        ssize_t k = ::write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        p += k;
        n -= static_cast<size_t>(k);
    }
    return true;
}

std::string hex16(uint64_t v)
{
    char buf[17];
    snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
}

} // namespace

std::string format_cache_header(const CacheHeader& h)
{
    std::string s = std::string(kMagic) + " " + hex16(h.size) + " " + h.sha256 + " " + h.key + " " +
                    (h.boot.empty() ? std::string(32, '-') : h.boot) + "\r\n";
    return s;
}

bool parse_cache_header(std::string_view t, CacheHeader& out)
{
    if (t.size() != kCacheHeaderLen || t.substr(0, 8) != kMagic || t[8] != ' ' || t[25] != ' ' ||
        t[90] != ' ' || t[155] != ' ' || t.substr(188) != "\r\n")
        return false;
    std::string_view size = t.substr(9, 16), sha = t.substr(26, 64), key = t.substr(91, 64),
                     boot = t.substr(156, 32);
    if (!is_lower_hex(size, 16) || !is_lower_hex(sha, 64) || !is_lower_hex(key, 64))
        return false;
    if (boot != std::string(32, '-') && !is_lower_hex(boot, 32))
        return false;
    uint64_t v = 0;
    for (char c : size)
        v = v << 4 | static_cast<uint64_t>(hex_value(c));
    out.size = v;
    out.sha256 = std::string(sha);
    out.key = std::string(key);
    out.boot = boot[0] == '-' ? std::string() : std::string(boot);
    return true;
}

const std::string& boot_id()
{
    static const std::string id = [] {
        std::string out;
        FILE* f = fopen("/proc/sys/kernel/random/boot_id", "r");
        if (!f)
            return out;
        char buf[64] = {};
        bool ok = fgets(buf, sizeof buf, f) != nullptr;
        fclose(f);
        for (const char* p = buf; ok && *p && *p != '\n'; ++p)
            if (*p != '-')
                out.push_back(*p);
        return ok && is_lower_hex(out, 32) ? out : std::string();
    }();
    return id;
}

CacheSink::CacheSink(std::string tmp_path, std::string key, std::string boot)
    : path_(std::move(tmp_path)), key_(std::move(key)), boot_(std::move(boot))
{
}

CacheSink::~CacheSink()
{
    if (fd_ >= 0)
        ::close(fd_);
}

bool CacheSink::write(const char* p, size_t n)
{
    static const char kName[] = "x-media-handle";
    sha_.update(p, n);
    size_ += n;
    // The pattern's first letter does not occur again in it, so a mismatch can
    // only restart a match at that letter: one pass, across chunk boundaries.
    for (size_t i = 0; i < n && matched_ < kNameLen; ++i) {
        char c = p[i];
        c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
        matched_ = c == kName[matched_] ? matched_ + 1 : (c == kName[0] ? 1 : 0);
    }
    if (fd_ < 0 && first_.empty()) {
        first_.assign(p, n);
        return true;
    }
    return spill() && write_all(fd_, p, n);
}

bool CacheSink::spill()
{
    if (fd_ >= 0)
        return true;
    fd_ = open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    // The header goes in last (finish): until then its place reads as zeros,
    // which no check accepts.
    if (fd_ < 0 || lseek(fd_, static_cast<off_t>(kCacheHeaderLen), SEEK_SET) < 0 ||
        !write_all(fd_, first_.data(), first_.size()))
        return false;
    std::string().swap(first_);
    return true;
}

bool CacheSink::finish()
{
    CacheHeader h;
    h.size = size_;
    h.sha256 = sha_.hex_digest();
    h.key = key_;
    h.boot = boot_;
    const std::string head = format_cache_header(h);
    bool ok;
    if (fd_ < 0) {
        // The whole message is in first_: one write, and a message that names
        // location parts goes out without the header, as the raw copy GMime reads.
        with_header_ = !handle_name();
        fd_ = open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        iovec v[2] = {{const_cast<char*>(head.data()), head.size()},
                      {const_cast<char*>(first_.data()), first_.size()}};
        size_t want = with_header_ ? head.size() + first_.size() : first_.size();
        ok = fd_ >= 0 && writev(fd_, with_header_ ? v : v + 1, with_header_ ? 2 : 1) == static_cast<ssize_t>(want);
    } else {
        ok = pwrite(fd_, head.data(), head.size(), 0) == static_cast<ssize_t>(head.size());
    }
    if (fd_ >= 0 && ::close(fd_) != 0)
        ok = false;
    fd_ = -1;
    if (!ok)
        unlink(path_.c_str());
    return ok;
}

void CacheSink::abandon()
{
    if (fd_ >= 0)
        ::close(fd_);
    fd_ = -1;
    unlink(path_.c_str());
}

int open_cache_copy(const std::string& path, const std::string& key, uint64_t& size, std::string& why,
                    const std::string& this_boot)
{
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        why = std::string("cannot open: ") + std::strerror(errno);
        return -1;
    }
    char head[kCacheHeaderLen];
    CacheHeader h;
    struct stat st;
    auto fail = [&](const char* w) {
        why = w;
        ::close(fd);
        return -1;
    };
    if (pread(fd, head, sizeof head, 0) != static_cast<ssize_t>(sizeof head) ||
        !parse_cache_header(std::string_view(head, sizeof head), h))
        return fail("bad header");
    if (h.key != key)
        return fail("header names another message");
    if (fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) != kCacheHeaderLen + h.size)
        return fail("size differs from the header");
    // Written and renamed whole in this boot: the page cache holds exactly what
    // was written, so size and header are proof enough. From an earlier boot
    // the disk may hold less than was written: read it all once.
    if (this_boot.empty() || h.boot != this_boot) {
        Sha256 sha;
        char buf[65536];
        uint64_t left = h.size;
        off_t off = static_cast<off_t>(kCacheHeaderLen);
        while (left > 0) {
            ssize_t n = pread(fd, buf, std::min<uint64_t>(sizeof buf, left), off);
            if (n <= 0)
                return fail("short read");
            sha.update(buf, static_cast<size_t>(n));
            left -= static_cast<uint64_t>(n);
            off += n;
        }
        if (sha.hex_digest() != h.sha256)
            return fail("content differs from its SHA-256");
    }
    if (lseek(fd, static_cast<off_t>(kCacheHeaderLen), SEEK_SET) < 0)
        return fail("cannot seek");
    size = h.size;
    return fd;
}

bool copy_cache_content(const std::string& path, const std::string& out_path)
{
    int in = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return false;
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = out >= 0 && lseek(in, static_cast<off_t>(kCacheHeaderLen), SEEK_SET) >= 0;
    char buf[65536];
    ssize_t n;
    while (ok && (n = ::read(in, buf, sizeof buf)) != 0)
        ok = n > 0 && write_all(out, buf, static_cast<size_t>(n));
    ::close(in);
    if (out >= 0 && ::close(out) != 0)
        ok = false;
    if (!ok)
        unlink(out_path.c_str());
    return ok;
}

} // namespace mm
