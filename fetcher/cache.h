// cache.h - cached copies of plain messages: per login that fetches, one pack file
// (cache_dir/msg/<user key>-<tag>.pack) of entries, each a fixed-length header line
// then exactly the octets RETR sends (RFC 1939, CRLF); per user one index
// (msg/<user key>.idx) naming each message's pack and offset. Neither is flushed
// to disk: the entry header lets every use tell a whole copy from one a crash cut
// short, and a bad copy is fetched again from upstream. Reads no config keys.
#pragma once

#include "fetcher/upstream.h"

#include "core/util.h"

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>

namespace mm {

/// "MMCACHE1 <size, 16 hex> <sha256, 64 hex> <key, 64 hex> <boot, 32 hex or '-'>\r\n"
constexpr size_t kCacheHeaderLen = 190;

struct CacheHeader {
    uint64_t size = 0;     // octets after the header
    std::string sha256;    // of those octets
    std::string key;       // cache_key() of the message: the entry is the one it names
    std::string boot;      // boot_id() when written, or "" if it was unknown
};

std::string format_cache_header(const CacheHeader& h);
/// Strict: exactly kCacheHeaderLen octets in the format above, lowercase hex.
bool parse_cache_header(std::string_view text, CacheHeader& out);

/// The running kernel's boot id (/proc/sys/kernel/random/boot_id, 32 hex
/// without dashes), or "" if it cannot be read.
const std::string& boot_id();

/// Where one message's copy is: pack tag (8 hex), offset of its header, octets.
struct IndexEntry {
    std::string pack;
    uint64_t offset = 0, size = 0;
};
using CacheIndex = std::map<std::string, IndexEntry>;   // by message key

/// Reads an index file: lines "<key> <pack> <offset> <size>\n" after "MMINDEX1\n".
/// Damaged lines (a crash can cut the file anywhere) are skipped: those messages
/// are fetched again. A missing file is an empty index.
CacheIndex read_index(const std::string& path);
/// Writes it under a temporary name and renames it over `path`.
bool write_index(const std::string& path, const CacheIndex& index);

/// Per user, the keys of messages that have a raw copy or presented file
/// (msg/<key>.raw, .eml): "MMKEYS1\n" then one 64-hex key a line. Damaged lines
/// are skipped (a file left behind is then kept until the cache is cleared by hand).
std::set<std::string> read_key_list(const std::string& path);
bool write_key_list(const std::string& path, const std::set<std::string>& keys);

/// A pack being written: entries appended one after another. The file is
/// created on first use (creating a file costs far more than writing one here).
class PackWriter {
public:
    PackWriter(std::string path, std::string tag, std::string boot = boot_id())
        : path_(std::move(path)), tag_(std::move(tag)), boot_(std::move(boot)) {}
    ~PackWriter();
    PackWriter(const PackWriter&) = delete;
    PackWriter& operator=(const PackWriter&) = delete;
    const std::string& path() const { return path_; }
    const std::string& tag() const { return tag_; }
    const std::string& boot() const { return boot_; }
    /// Writes at `offset` (creating the file first); false on any error.
    bool pwrite_all(const void* p, size_t n, uint64_t offset);
    uint64_t end = 0;   // where the next entry starts

private:
    std::string path_, tag_, boot_;
    int fd_ = -1;
    bool failed_ = false;
};

/// Writes one RETR answer as the next entry of a pack, hashing it on the way and
/// noting whether "X-Media-Handle" occurs (any letter case). Such a message is
/// not a plain one: it goes to `raw_path` instead (bare octets, for the GMime
/// walk), and the pack is left as it was. After finish(): entry() or raw().
class PackSink : public RetrSink {
public:
    PackSink(PackWriter& pack, std::string key, std::string raw_path);
    bool write(const char* p, size_t n) override;
    bool finish() override;
    void abandon() override;

    bool handle_name() const { return matched_ == kNameLen; }
    IndexEntry entry() const { return {pack_.tag(), start_, size_}; }
    const std::string& raw_path() const { return raw_path_; }

private:
    static constexpr size_t kNameLen = 14;   // "x-media-handle"
    void begin();
    void find_name(const char* p, size_t n);
    bool spill();
    PackWriter& pack_;
    std::string key_, raw_path_;
    Sha256 sha_;
    std::string first_;   // the first chunk, held back: a small message is one write
    std::string tail_;    // the last 13 octets so far: a name split between chunks
    bool started_ = false, spilled_ = false;
    uint64_t start_ = 0, size_ = 0;
    size_t matched_ = 0;
};

/// Opens the entry of `key` at `offset` in the pack at `path` and checks it: the
/// header is well formed, names `key` and `size` octets, and the pack holds
/// them all. An entry written in an earlier boot of the machine (or when the
/// boot is not known) must also match its SHA-256: only a crash can have cut it
/// short or left blocks of it unwritten. Returns the descriptor positioned at
/// the first octet, or -1 with `why` set.
int open_entry(const std::string& path, uint64_t offset, const std::string& key, uint64_t size, std::string& why,
               const std::string& this_boot = boot_id());

/// open_entry's checks on a pack already open, `pack_size` octets long.
bool check_entry(int fd, uint64_t pack_size, uint64_t offset, const std::string& key, uint64_t size,
                 std::string& why, const std::string& this_boot = boot_id());

/// Removes the packs named in `before` but in no entry of `after` (their
/// messages are gone upstream or were fetched again elsewhere). `dir_prefix` is
/// "<cache_dir>/msg/<user key>-".
void remove_unused_packs(const std::string& dir_prefix, const CacheIndex& before, const CacheIndex& after);

} // namespace mm
