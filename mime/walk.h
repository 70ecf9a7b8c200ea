// walk.h - internal to mime/: a message file as detach, find_handles and reinsert
// read it. Positioned reads and a buffered output file; GMime's parse with a
// persistent stream (part bodies stay in the file, GMime keeps only offsets, so
// memory does not grow with the message); and the walk that lists the leaf parts
// with their exact byte ranges, within the MIME depth and part caps.
//
// Errors: every function here throws std::runtime_error on I/O failure.
#pragma once

#include "mime/handle.h"

#include <cstdint>
#include <gmime/gmime.h>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mm::walk {

/// Caps on what the walk descends into; a message over them is left alone.
constexpr unsigned kMaxMimeDepth = 32;
constexpr unsigned kMaxMimeParts = 2000;

constexpr size_t kIoBuffer = 64 * 1024;

/// Throws "<what> <path>: <strerror(errno)>".
[[noreturn]] void io_fail(const std::string& what, const std::string& path);

/// An input file with positioned reads.
class InFile {
public:
    explicit InFile(const std::string& path);
    ~InFile();
    InFile(const InFile&) = delete;
    InFile& operator=(const InFile&) = delete;

    /// Up to len bytes at off; 0 at the end of the file.
    size_t pread_some(void* buf, size_t len, uint64_t off) const;
    uint64_t size() const { return size_; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    int fd_ = -1;
    uint64_t size_ = 0;
};

/// A buffered output file, created (or truncated) at the caller's choice of name.
class OutFile {
public:
    explicit OutFile(const std::string& path);
    ~OutFile();
    OutFile(const OutFile&) = delete;
    OutFile& operator=(const OutFile&) = delete;

    void write(const void* data, size_t len);
    void write(std::string_view s) { write(s.data(), s.size()); }
    void flush();
    /// Flushes and closes; a failing close() is an I/O error too.
    void close_checked();
    uint64_t written() const { return written_ + buf_.size(); }

private:
    void write_through(const char* p, size_t len);
    std::string path_;
    int fd_ = -1;
    std::string buf_;
    uint64_t written_ = 0;
};

/// Copies the input's bytes [from, to) to out.
void copy_range(const InFile& in, uint64_t from, uint64_t to, OutFile& out);

/// The parsed message, owning GMime's objects.
struct Parsed {
    GMimeStream* stream = nullptr;
    GMimeParser* parser = nullptr;
    GMimeMessage* message = nullptr;   // null when GMime found no message
    Parsed() = default;
    Parsed(const Parsed&) = delete;
    Parsed& operator=(const Parsed&) = delete;
    ~Parsed();
};

/// Parses the message `stream` reads (the result owns the stream).
std::unique_ptr<Parsed> parse_stream(GMimeStream* stream);
/// Parses the message file at path.
std::unique_ptr<Parsed> parse_file(const std::string& path);

/// A leaf part directly inside a multipart, with its byte range in the file:
/// [hdr_start, body_start) is its header block including the empty line,
/// [body_start, body_end) its body without the line break that belongs to the
/// next boundary delimiter.
struct Leaf {
    GMimePart* part;
    uint64_t hdr_start, body_start, body_end;
};

struct MessageWalk {
    std::vector<Leaf> leaves;    // in message order
    unsigned parts = 0;
    bool over_cap = false;       // deeper than kMaxMimeDepth or more than kMaxMimeParts
    std::string protected_why;   // signed/encrypted content seen and left alone
};

/// The leaf parts of a parsed message whose byte ranges could be confirmed in
/// the file, and whether anything signed or encrypted was seen.
MessageWalk walk_message(const InFile& in, Parsed& p);

/// A location part, with its parsed handle.
struct Located {
    Leaf leaf;
    HandleParse parsed;
};

/// The location parts (leaves with an X-Media-Handle field) in message order.
std::vector<Located> locate(const InFile& in, Parsed& p);

} // namespace mm::walk
