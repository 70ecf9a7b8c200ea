// segments.cpp - block and segment digests (see segments.h).
#include "mime/segments.h"

#include <algorithm>

namespace mm {

uint64_t segment_size_for(uint64_t size)
{
    if (size == 0)
        return 0;
    uint64_t blocks = (size + kSegmentBlock - 1) / kSegmentBlock;
    uint64_t per = std::max(kSegmentMinBlocks, (blocks + kSegmentMaxCount - 1) / kSegmentMaxCount);
    return per * kSegmentBlock;
}

uint64_t segment_count(uint64_t size, uint64_t seg_size)
{
    return seg_size == 0 ? 0 : size / seg_size + (size % seg_size != 0);
}

bool valid_segments(uint64_t size, uint64_t seg_size, std::string_view hex)
{
    if (size == 0)
        return seg_size == 0 && hex.empty();
    if (seg_size == 0 || seg_size % kSegmentBlock != 0)
        return false;
    uint64_t n = segment_count(size, seg_size);
    if (n > kSegmentMaxCount || hex.size() != n * 64)
        return false;
    return is_lower_hex(hex, hex.size());
}

// The same blocking on both sides: a block ends every kSegmentBlock bytes.
template <typename EndBlock>
static void feed_blocks(Sha256& block, uint64_t& in_block, const void* data, size_t len, EndBlock end_block)
{
    const char* p = static_cast<const char*>(data);
    while (len > 0) {
        size_t k = static_cast<size_t>(std::min<uint64_t>(len, kSegmentBlock - in_block));
        block.update(p, k);
        in_block += k;
        p += k;
        len -= k;
        if (in_block == kSegmentBlock)
            end_block();
    }
}

void SegmentHasher::end_block()
{
    blocks_ += block_.raw_digest();
    block_.reset();
    in_block_ = 0;
}

void SegmentHasher::update(const void* data, size_t len)
{
    total_ += len;
    feed_blocks(block_, in_block_, data, len, [this] { end_block(); });
}

std::string SegmentHasher::finish(uint64_t& seg_size)
{
    if (in_block_ > 0)
        end_block();
    seg_size = segment_size_for(total_);
    std::string hex;
    if (seg_size == 0)
        return hex;
    const size_t per = static_cast<size_t>(seg_size / kSegmentBlock) * 32;
    for (size_t at = 0; at < blocks_.size(); at += per)
        hex += sha256_hex(std::string_view(blocks_).substr(at, per));
    return hex;
}

void SegmentCheck::end_block()
{
    std::string d = block_.raw_digest();
    segment_.update(d.data(), d.size());
    block_.reset();
    in_block_ = 0;
}

void SegmentCheck::update(const void* data, size_t len)
{
    feed_blocks(block_, in_block_, data, len, [this] { end_block(); });
}

bool SegmentCheck::matches(std::string_view hex_digest)
{
    if (in_block_ > 0)
        end_block();
    bool ok = segment_.hex_digest() == hex_digest;
    segment_.reset();
    return ok;
}

} // namespace mm
