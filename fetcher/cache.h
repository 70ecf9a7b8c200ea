// cache.h - the cached copy of a plain message (cache_dir/msg/<key>.msg): a
// fixed-length header line, then exactly the octets RETR sends (RFC 1939, CRLF).
// Such copies are not flushed to disk: the header lets every use tell a whole
// copy from one a crash cut short, and a bad copy is fetched again from upstream.
// Reads no config keys.
#pragma once

#include "upstream.h"

#include "util.h"

#include <cstdint>
#include <string>
#include <string_view>

namespace mm {

/// "MMCACHE1 <size, 16 hex> <sha256, 64 hex> <key, 64 hex> <boot, 32 hex or '-'>\r\n"
constexpr size_t kCacheHeaderLen = 190;

struct CacheHeader {
    uint64_t size = 0;     // octets after the header
    std::string sha256;    // of those octets
    std::string key;       // cache_key() of the message: the file is the one it names
    std::string boot;      // boot_id() when written, or "" if it was unknown
};

std::string format_cache_header(const CacheHeader& h);
/// Strict: exactly kCacheHeaderLen octets in the format above, lowercase hex.
bool parse_cache_header(std::string_view text, CacheHeader& out);

/// The running kernel's boot id (/proc/sys/kernel/random/boot_id, 32 hex
/// without dashes), or "" if it cannot be read.
const std::string& boot_id();

/// Writes a RETR answer into `tmp_path` as a cache copy, hashing it on the way
/// and noting whether "X-Media-Handle" occurs (any letter case): the caller
/// renames the file only when finish() returned true. A message with that name
/// that fits in one write is stored without the header (with_header() false),
/// ready for the GMime walk as the held-back raw copy.
class CacheSink : public RetrSink {
public:
    CacheSink(std::string tmp_path, std::string key, std::string boot = boot_id());
    ~CacheSink() override;
    CacheSink(const CacheSink&) = delete;
    CacheSink& operator=(const CacheSink&) = delete;
    bool write(const char* p, size_t n) override;
    bool finish() override;
    void abandon() override;

    bool handle_name() const { return matched_ == kNameLen; }
    bool with_header() const { return with_header_; }
    uint64_t size() const { return size_; }
    const std::string& path() const { return path_; }

private:
    static constexpr size_t kNameLen = 14;   // "x-media-handle"
    bool spill();
    std::string path_, key_, boot_;
    Sha256 sha_;
    std::string first_;   // the first chunk, held back: a small message is one write
    int fd_ = -1;
    uint64_t size_ = 0;
    size_t matched_ = 0;
    bool with_header_ = true;
};

/// Opens the cache copy at `path` for reading and checks it: the header is well
/// formed and names `key`, and the file holds exactly the octets it announces.
/// A copy written in an earlier boot of the machine (or when the boot is not
/// known) must also match its SHA-256: only a crash can have cut it short or
/// left blocks of it unwritten. Returns the descriptor positioned after the
/// header with `size` set, or -1 with `why` set.
int open_cache_copy(const std::string& path, const std::string& key, uint64_t& size, std::string& why,
                    const std::string& this_boot = boot_id());

/// Copies the message octets of a cache copy (without its header) to `out_path`.
bool copy_cache_content(const std::string& path, const std::string& out_path);

} // namespace mm
