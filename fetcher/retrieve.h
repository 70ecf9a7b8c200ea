// retrieve.h - the octets of one message a POP3 client asks for (RETR, TOP), from
// wherever mm-fetcher keeps them: an entry of a cache pack (cache.h; checked before
// use, fetched again from upstream when damaged), a presented file (present.h), or
// a presented message still growing (growing_message.h, fetcher.stream). The
// session sees one reader and sends what it reads. Config keys: those of
// SyncOptions (cache_dir, max_size), passed in.
#pragma once

#include "fetcher/sync.h"
#include "fetcher/upstream.h"
#include "core/fileio.h"

#include <cstdint>
#include <memory>
#include <string>
#include <sys/types.h>

namespace mm {

/// One message opened for sending.
class MessageReader {
public:
    virtual ~MessageReader() = default;
    /// Up to n octets at offset `at`: > 0 octets, 0 at the message's end, or
    /// < 0 when the message failed (why() says how).
    virtual ssize_t read(char* buf, size_t n, uint64_t at) = 0;
    /// At most this many octets are sent (UINT64_MAX: up to the file's end).
    uint64_t limit() const { return limit_; }
    /// Whether ending before limit() is a failure: a growing message that
    /// stopped, whose answer can then only be cut short.
    bool exact() const { return exact_; }
    const std::string& why() const { return why_; }

protected:
    MessageReader(uint64_t limit, bool exact) : limit_(limit), exact_(exact) {}
    uint64_t limit_;
    bool exact_;
    std::string why_;
};

/// Opens the messages of one session. A session's cache copies are mostly in
/// one pack: its descriptor stays open between RETRs.
class Retriever {
public:
    Retriever(Upstream& up, const SyncOptions& opt) : up_(up), opt_(opt) {}
    /// The reader of a message kept here (not Source::as_is, which the session
    /// relays from upstream). nullptr when it cannot be had: `why` says why, or
    /// is empty when a presented file is simply gone.
    std::unique_ptr<MessageReader> open(const ShownMessage& m, const std::string& user, std::string& why);

private:
    Upstream& up_;
    const SyncOptions& opt_;
    std::string pack_path_;   // the pack pack_fd_ reads, pack_size_ octets long
    UniqueFd pack_fd_;
    uint64_t pack_size_ = 0;
};

/// Opens the octets of a `copy` message for RETR: its cache copy if that passes
/// open_entry(), else (a crash left it damaged, or it is gone) the message
/// RETR'd again from upstream into a new copy, used only if it is as long as the
/// size the client was told. Returns the descriptor positioned at the first
/// octet, or -1 with `why` set.
int open_copy(Upstream& up, const ShownMessage& m, const std::string& user, const SyncOptions& opt,
              std::string& why);

} // namespace mm
