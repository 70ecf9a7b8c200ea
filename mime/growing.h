// growing.h - a file that is still being written (the milter's spool file while
// Postfix sends the body), and a GMime stream over it whose reads wait for bytes
// that have not arrived yet. With it GMime parses a message while it arrives,
// so at end of message the parse is already (nearly) done. The parse sees
// exactly the bytes of the finished file, only earlier. "Growing" is the tree's
// one word for a file read while it is still written (mm-fetcher has two more:
// fetcher/growing_media.h and fetcher/growing_message.h).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

typedef struct _GMimeStream GMimeStream;

namespace mm {

class GrowingFile {
public:
    /// `size` bytes of the file are written and readable.
    void grew(uint64_t size);
    /// The file is complete (or abandoned: readers see its end now).
    void finish();

    /// Waits until more than `pos` bytes exist or the file is complete;
    /// returns the size known then.
    uint64_t wait_beyond(uint64_t pos);
    /// Waits until the file is complete; returns its size.
    uint64_t wait_done();
    /// The size so far, and whether it is final.
    uint64_t size(bool& done);

private:
    std::mutex mu_;
    std::condition_variable cv_;
    uint64_t size_ = 0;
    bool done_ = false;
};

/// A GMime stream reading `fd` (which it takes) as `file` grows. Reads block
/// until the bytes exist; end of stream is the end of the complete file.
GMimeStream* growing_stream_new(int fd, std::shared_ptr<GrowingFile> file);

} // namespace mm
