// growing_message.h - a presented message still being built (fetcher.stream); one of
// the "growing" files: see also growing_media.h and mime/growing.h. The media's
// re-insertion runs in a thread of its own, following the downloads, while the
// client already sees the message with the size it will have and reads it as it
// grows. Only for media whose handles carry segment digests: every media byte
// in the file was checked before it was written (growing_media.h), so a failure can
// only cut a RETR short, never show a wrong byte. Reads no config keys.
#pragma once

#include "mime/reinsert.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <sys/types.h>
#include <thread>
#include <vector>

namespace mm {

class GrowingMessage {
public:
    /// Called by the build's thread with the finished file (CRLF throughout):
    /// puts it in place. False with `why` set if it could not.
    using Finish = std::function<bool(const std::string& rebuilt, std::string& why)>;

    /// Starts re-inserting the message at `raw` into `rebuilt` from `media`
    /// (nullptr: that location part stays), as reinsert_layout() said it will
    /// come out. `cancel` is what the media inputs watch: set when the last
    /// reader lets go. The build is known by `presented` (find()) until then.
    /// Returns nullptr with `err` set if it cannot start.
    static std::shared_ptr<GrowingMessage> start(const std::string& raw, const std::string& rebuilt,
                                                 const std::string& presented,
                                                 std::vector<std::unique_ptr<MediaInput>> media,
                                                 std::shared_ptr<std::atomic<bool>> cancel, const ReinsertLayout& layout,
                                                 Finish finish, std::string& err);

    /// The build of `presented` under way (or just finished) in this process,
    /// if any that has not failed.
    static std::shared_ptr<GrowingMessage> find(const std::string& presented);

    /// Cancels a build still running and waits for its thread: a build nobody
    /// reads is done again by the next login, from the downloaded files.
    ~GrowingMessage();
    GrowingMessage(const GrowingMessage&) = delete;
    GrowingMessage& operator=(const GrowingMessage&) = delete;

    uint64_t size() const { return layout_.size; }

    /// Waits until the first media bytes are in the file (so at least one
    /// segment passed its check), or the build ended. False with `why` set if
    /// it failed, or if `until` came first.
    bool wait_started(std::string& why,
                      std::chrono::steady_clock::time_point until = std::chrono::steady_clock::time_point::max());

    /// Up to n octets at pos, waiting until the build has written them: > 0
    /// octets, 0 at the end of the finished file, or -1 with `why` set when
    /// the build failed (or the file cannot be read).
    ssize_t read(char* buf, size_t n, uint64_t pos, std::string& why);

private:
    GrowingMessage() = default;
    void run();
    enum class State { running, done, failed };

    std::string raw_, rebuilt_, presented_;
    std::vector<std::unique_ptr<MediaInput>> media_;
    std::shared_ptr<std::atomic<bool>> cancel_;
    ReinsertLayout layout_;
    Finish finish_;
    int fd_ = -1;   // the file being built, for reading

    std::mutex mu_;
    std::condition_variable cv_;
    State state_ = State::running;
    std::string why_;
    std::thread thread_;
};

} // namespace mm
