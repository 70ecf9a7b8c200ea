// cache.cpp - cached copies of plain messages: header format, the RETR sink that
// writes them in one pass (hash and location-part name found on the way), and the
// check before use. No fsync here by design: see cache.h. Reads no config keys.
#include "fetcher/cache.h"

#include "core/fileio.h"
#include "core/config.h"

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

namespace {

constexpr char kIndexMagic[] = "MMINDEX1\n";
constexpr size_t kMaxIndexBytes = 256u << 20;   // ~2 million entries: beyond any LIST we accept

bool parse_dec(std::string_view s, uint64_t& out)
{
    return parse_u64(s, out);
}

} // namespace

namespace {

/// The whole file at `path` if it is at most `cap` octets, else "".
std::string read_capped(const std::string& path, uint64_t cap)
{
    std::string text;
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return text;
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_size > 0 && static_cast<uint64_t>(st.st_size) <= cap) {
        text.resize(static_cast<size_t>(st.st_size));
        size_t got = 0;
        ssize_t n;
        while (got < text.size() && (n = ::read(fd, &text[got], text.size() - got)) > 0)
            got += static_cast<size_t>(n);
        text.resize(got);
    }
    ::close(fd);
    return text;
}

/// Writes `text` under a temporary name and renames it over `path`.
bool replace_file(const std::string& path, const std::string& text)
{
    const std::string tmp = path + ".tmp" + random_hex(4);
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write_all(fd, text.data(), text.size());
    if (fd >= 0 && ::close(fd) != 0)
        ok = false;
    if (ok && rename(tmp.c_str(), path.c_str()) == 0)
        return true;
    unlink(tmp.c_str());
    return false;
}

constexpr char kKeysMagic[] = "MMKEYS1\n";

// Calls `record` with each complete line of the file at `path` after its magic
// first line; nothing when the file is missing, too big or of another kind.
template <class F>
void for_each_record(const std::string& path, std::string_view magic, F record)
{
    const std::string text = read_capped(path, kMaxIndexBytes);
    if (text.compare(0, magic.size(), magic) != 0)
        return;
    size_t pos = magic.size();
    while (pos < text.size()) {
        size_t eol = text.find('\n', pos);
        if (eol == std::string::npos)
            break;   // cut short: the last line is not trusted
        record(std::string_view(text.data() + pos, eol - pos));
        pos = eol + 1;
    }
}

} // namespace

CacheIndex read_index(const std::string& path)
{
    CacheIndex index;
    for_each_record(path, kIndexMagic, [&](std::string_view line) {
        // "<key 64 hex> <pack 8 hex> <offset> <size>"
        if (line.size() < 64 + 1 + 8 + 1 + 1 + 1 + 1 || line[64] != ' ' || line[73] != ' ')
            return;
        std::string_view key = line.substr(0, 64), pack = line.substr(65, 8), rest = line.substr(74);
        size_t sp = rest.find(' ');
        IndexEntry e;
        if (!is_lower_hex(key, 64) || !is_lower_hex(pack, 8) || sp == std::string_view::npos ||
            !parse_dec(rest.substr(0, sp), e.offset) || !parse_dec(rest.substr(sp + 1), e.size))
            return;
        e.pack = std::string(pack);
        index[std::string(key)] = e;
    });
    return index;
}

bool write_index(const std::string& path, const CacheIndex& index)
{
    std::string text = kIndexMagic;
    text.reserve(index.size() * 100 + text.size());
    for (const auto& [key, e] : index)
        text += key + " " + e.pack + " " + std::to_string(e.offset) + " " + std::to_string(e.size) + "\n";
    return replace_file(path, text);
}

std::set<std::string> read_key_list(const std::string& path)
{
    std::set<std::string> keys;
    for_each_record(path, kKeysMagic, [&](std::string_view line) {
        if (line.size() == 64 && is_lower_hex(line, 64))
            keys.insert(std::string(line));
    });
    return keys;
}

bool write_key_list(const std::string& path, const std::set<std::string>& keys)
{
    std::string text = kKeysMagic;
    text.reserve(keys.size() * 65 + text.size());
    for (const auto& k : keys)
        text += k + "\n";
    return replace_file(path, text);
}

PackWriter::~PackWriter()
{
    if (fd_ >= 0)
        ::close(fd_);
}

bool PackWriter::pwrite_all(const void* p, size_t n, uint64_t offset)
{
    if (fd_ < 0 && !failed_) {
        // A new file always: writing into a pack an index already names (the
        // same random tag twice) could change octets a reader trusts.
        fd_ = open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        failed_ = fd_ < 0;
    }
    return !failed_ && mm::pwrite_all(fd_, p, n, offset);
}

PackSink::PackSink(PackWriter& pack, std::string key, std::string raw_path)
    : pack_(pack), key_(std::move(key)), raw_path_(std::move(raw_path))
{
}

namespace {

constexpr char kName[] = "x-media-handle";
constexpr size_t kNameChars = sizeof kName - 1;

bool name_at(const char* p)
{
    for (size_t i = 0; i < kNameChars; ++i)
        if ((p[i] >= 'A' && p[i] <= 'Z' ? p[i] + ('a' - 'A') : p[i]) != kName[i])
            return false;
    return true;
}

} // namespace

void PackSink::find_name(const char* p, size_t n)
{
    // Inside this chunk: every '-' (rare in text, found by memchr) that could be
    // the name's first one. Across the chunk boundary: the carried tail of the
    // chunk before with the start of this one.
    std::string edge = tail_;
    edge.append(p, std::min(n, kNameChars - 1));
    for (size_t i = 0; !handle_name() && i + kNameChars <= edge.size(); ++i)
        if (name_at(edge.data() + i))
            matched_ = kNameLen;
    for (const char* q = n > 1 ? static_cast<const char*>(memchr(p + 1, '-', n - 1)) : nullptr;
         q && !handle_name(); q = static_cast<const char*>(memchr(q + 1, '-', static_cast<size_t>(p + n - q - 1)))) {
        size_t at = static_cast<size_t>(q - p) - 1;
        if (at + kNameChars > n)
            break;
        if (name_at(p + at))
            matched_ = kNameLen;
    }
    const size_t keep = kNameChars - 1;
    tail_.append(p + (n > keep ? n - keep : 0), std::min(n, keep));
    if (tail_.size() > keep)
        tail_.erase(0, tail_.size() - keep);
}

void PackSink::begin()
{
    // Sinks of one pipelined window exist side by side but are fed one after
    // another: an entry starts where the one before it ended.
    if (!started_)
        start_ = pack_.end;
    started_ = true;
}

bool PackSink::write(const char* p, size_t n)
{
    begin();
    sha_.update(p, n);
    if (!handle_name())
        find_name(p, n);
    if (!spilled_ && first_.empty()) {
        first_.assign(p, n);
        size_ += n;
        return true;
    }
    if (!spill() || !pack_.pwrite_all(p, n, start_ + kCacheHeaderLen + size_))
        return false;
    size_ += n;
    return true;
}

bool PackSink::spill()
{
    if (spilled_)
        return true;
    // The header goes in last (finish): until then its place is whatever the
    // pack held there, which no check accepts for this key and size.
    spilled_ = true;
    bool ok = pack_.pwrite_all(first_.data(), first_.size(), start_ + kCacheHeaderLen);
    std::string().swap(first_);
    return ok;
}

bool PackSink::finish()
{
    begin();
    if (handle_name()) {
        // Not a plain message: its bare octets for the GMime walk, the pack untouched.
        int fd = open(raw_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        bool ok = fd >= 0;
        if (ok && !spilled_) {
            ok = write_all(fd, first_.data(), first_.size());
        } else if (ok) {
            int in = open(pack_.path().c_str(), O_RDONLY | O_CLOEXEC);
            ok = in >= 0;
            char buf[65536];
            uint64_t left = size_, off = start_ + kCacheHeaderLen;
            while (ok && left > 0) {
                ssize_t k = pread(in, buf, std::min<uint64_t>(sizeof buf, left), static_cast<off_t>(off));
                ok = k > 0 && write_all(fd, buf, static_cast<size_t>(k));
                left -= ok ? static_cast<uint64_t>(k) : 0;
                off += ok ? static_cast<uint64_t>(k) : 0;
            }
            if (in >= 0)
                ::close(in);
        }
        if (fd >= 0 && ::close(fd) != 0)
            ok = false;
        if (!ok)
            unlink(raw_path_.c_str());
        return ok;
    }
    CacheHeader h;
    h.size = size_;
    h.sha256 = sha_.hex_digest();
    h.key = key_;
    h.boot = pack_.boot();
    std::string head = format_cache_header(h);
    bool ok;
    if (!spilled_) {
        head += first_;   // the whole entry in one write
        ok = pack_.pwrite_all(head.data(), head.size(), start_);
    } else {
        ok = pack_.pwrite_all(head.data(), head.size(), start_);
    }
    if (ok)
        pack_.end = start_ + kCacheHeaderLen + size_;
    return ok;
}

void PackSink::abandon()
{
    // Whatever reached the pack is overwritten by the next entry, which starts here.
}

bool check_entry(int fd, uint64_t pack_size, uint64_t offset, const std::string& key, uint64_t size,
                 std::string& why, const std::string& this_boot)
{
    char head[kCacheHeaderLen];
    CacheHeader h;
    if (pread(fd, head, sizeof head, static_cast<off_t>(offset)) != static_cast<ssize_t>(sizeof head) ||
        !parse_cache_header(std::string_view(head, sizeof head), h)) {
        why = "bad entry header";
        return false;
    }
    if (h.key != key || h.size != size) {
        why = "entry header names another message or size";
        return false;
    }
    if (pack_size < offset + kCacheHeaderLen + size) {
        why = "pack shorter than the entry";
        return false;
    }
    // Written whole in this boot before the index named it: the page cache holds
    // exactly what was written, so header and length are proof enough. From an
    // earlier boot the disk may hold less than was written: read it all once.
    if (this_boot.empty() || h.boot != this_boot) {
        Sha256 sha;
        char buf[65536];
        uint64_t left = size;
        off_t off = static_cast<off_t>(offset + kCacheHeaderLen);
        while (left > 0) {
            ssize_t n = pread(fd, buf, std::min<uint64_t>(sizeof buf, left), off);
            if (n <= 0) {
                why = "short read";
                return false;
            }
            sha.update(buf, static_cast<size_t>(n));
            left -= static_cast<uint64_t>(n);
            off += n;
        }
        if (sha.hex_digest() != h.sha256) {
            why = "content differs from its SHA-256";
            return false;
        }
    }
    return true;
}

int open_entry(const std::string& path, uint64_t offset, const std::string& key, uint64_t size, std::string& why,
               const std::string& this_boot)
{
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        why = std::string("cannot open pack: ") + std::strerror(errno);
        return -1;
    }
    struct stat st;
    bool ok = fstat(fd, &st) == 0 &&
              check_entry(fd, static_cast<uint64_t>(st.st_size), offset, key, size, why, this_boot);
    if (ok && lseek(fd, static_cast<off_t>(offset + kCacheHeaderLen), SEEK_SET) < 0) {
        why = "cannot seek";
        ok = false;
    }
    if (!ok) {
        ::close(fd);
        return -1;
    }
    return fd;
}

void remove_unused_packs(const std::string& dir_prefix, const CacheIndex& before, const CacheIndex& after)
{
    std::set<std::string> used;
    for (const auto& [key, e] : after)
        used.insert(e.pack);
    std::set<std::string> gone;
    for (const auto& [key, e] : before)
        if (!used.count(e.pack))
            gone.insert(e.pack);
    for (const auto& tag : gone)
        unlink((dir_prefix + tag + ".pack").c_str());
}

} // namespace mm
