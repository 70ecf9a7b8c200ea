// media_input.h - the bytes of one media file as re-insertion reads them, front
// to back: a finished file here, a download still being written in the fetcher
// (fetcher/growing_media.h).
//
// Errors: exceptions. A MediaInput throws when its bytes are missing or are not
// the ones promised; reinsert_media (reinsert.h) catches that and reports it.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace mm {

/// The bytes of one media file, read front to back by reinsert_media. The
/// plain one reads a finished file; the fetcher's follows a download still
/// being written and checks the SHA-256 itself (fetcher/growing_media.h).
class MediaInput {
public:
    virtual ~MediaInput() = default;
    /// Up to n (> 0) next bytes into buf; never 0. Throws when there are no more
    /// (a file shorter than the handle says, a download that failed).
    virtual size_t read(char* buf, size_t n) = 0;
    /// After the handle's size has been read: throws unless the bytes were the
    /// ones promised (for a plain file: that nothing follows them).
    virtual void finish() {}
};

/// A MediaInput reading the finished file at path (throws if it cannot be opened).
std::unique_ptr<MediaInput> open_media_file(const std::string& path);

} // namespace mm
