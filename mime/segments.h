// segments.h - media verified a piece at a time. The sender's store hashes the
// media in blocks of 1 MiB while writing it, and the handle carries one digest
// per segment (a run of blocks): "segsize" and "segsha256" (docs/handle-format.md).
// The receiver can then pass on a segment as soon as its own bytes check out,
// instead of holding everything back until the whole file's SHA-256 does: the
// mail client reads a big video while the rest of it is still arriving.
//
// A segment's digest is the SHA-256 of the concatenated raw SHA-256 digests of
// its blocks (the last block and segment may be short). Two levels, so that the
// store can hash as the bytes come, before it knows the size that decides how
// long a segment is.
#pragma once

#include "core/util.h"

#include <cstdint>
#include <string>
#include <string_view>

namespace mm {

constexpr uint64_t kSegmentBlock = 1 << 20;       // bytes per block
constexpr uint64_t kSegmentMinBlocks = 16;        // a segment is at least 16 MiB...
constexpr uint64_t kSegmentMaxCount = 64;         // ...and a handle lists at most 64

/// The segment length a sender uses for media of `size` bytes: 16 MiB, or
/// longer (whole blocks) so that there are at most kSegmentMaxCount segments.
uint64_t segment_size_for(uint64_t size);

/// Number of segments of `seg_size` in `size` bytes (the last may be short).
uint64_t segment_count(uint64_t size, uint64_t seg_size);

/// Whether (size, seg_size, hex) is a well-formed segment list: seg_size a
/// multiple of kSegmentBlock, at most kSegmentMaxCount segments, 64 lowercase
/// hex digits each. Empty media have no segments (then seg_size is 0 and hex "").
bool valid_segments(uint64_t size, uint64_t seg_size, std::string_view hex);

/// Feeds bytes as they are written and keeps one raw digest per block.
/// Memory: 32 bytes per MiB of media.
class SegmentHasher {
public:
    void update(const void* data, size_t len);
    /// Finishes: the segment length for the total size and the segments'
    /// digests as hex ("" and 0 for empty media).
    std::string finish(uint64_t& seg_size);

private:
    void end_block();
    Sha256 block_;
    uint64_t in_block_ = 0;
    uint64_t total_ = 0;
    std::string blocks_;   // raw digests of the finished blocks
};

/// Checks one segment on the receiver's side: blocks hashed as the bytes are
/// fed, in order, then compared with the segment's digest from the handle.
class SegmentCheck {
public:
    void update(const void* data, size_t len);
    /// Finishes the segment; true if its bytes are the ones hashed by the sender.
    bool matches(std::string_view hex_digest);

private:
    void end_block();
    Sha256 block_;
    uint64_t in_block_ = 0;
    Sha256 segment_;
};

} // namespace mm
