// growing_media.h - reading a media file while mm-fetcher's downloader is still writing
// it (a "growing" file, like growing_message.h and mime/growing.h), so that a login's re-insertion runs alongside the download rather than after
// it (a 200 MiB video: about half a second less before the client sees its mail).
// It trusts nothing the downloader has not verified: it hashes what it reads, and
// re-insertion fails unless the SHA-256 and size are the handle's. With the
// handle's segment digests (segments.h) it hands out no byte before the segment
// holding it has been checked, so that what it gives may be shown at once.
#pragma once

#include "fetcher/download.h"
#include "mime/media_input.h"
#include "mime/segments.h"
#include "core/util.h"

#include <atomic>
#include <chrono>
#include <string>

namespace mm {

class GrowingMedia : public MediaInput {
public:
    /// Follows the download of h (h.sha256, h.size) until `until`; read() throws
    /// once that passes, when the download stops or starts over, or when `stop`
    /// (the process shutting down) is set.
    /// `by_segment` (fetcher.stream, the handle having segment digests): each
    /// segment is checked before any of its bytes is read out; else the bytes
    /// go out as they are written, and finish() checks the whole file's SHA-256
    /// (nothing is shown before that, and the lag is smaller).
    /// `cancel`, if given, ends the following like `stop` (a build nobody reads).
    GrowingMedia(Downloader& dl, const Handle& h, std::chrono::steady_clock::time_point until,
                  const std::atomic<bool>* stop = nullptr, bool by_segment = false,
                  const std::atomic<bool>* cancel = nullptr);
    ~GrowingMedia() override;
    GrowingMedia(const GrowingMedia&) = delete;
    GrowingMedia& operator=(const GrowingMedia&) = delete;

    size_t read(char* buf, size_t n) override;
    void finish() override;   // throws unless all h.size bytes were read and their SHA-256 is h's

private:
    bool open_file();
    bool same_file(const std::string& path) const;
    void wait_for(uint64_t end);
    void check_segment();

    Downloader& dl_;
    std::string sha_;
    uint64_t size_;
    std::chrono::steady_clock::time_point until_;
    const std::atomic<bool>* stop_;
    const std::atomic<bool>* cancel_;
    int fd_ = -1;
    uint64_t pos_ = 0;
    Sha256 hash_;               // without segments: the whole file's
    uint64_t seg_size_ = 0;     // with segments: each is checked before its bytes go out
    std::string seg_sha256_;
    uint64_t checked_ = 0;      // bytes of the file in checked segments
    SegmentCheck check_;
    std::string buf_;           // for checking
};

} // namespace mm
