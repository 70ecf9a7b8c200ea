// progress.h - a one-line progress bar on standard error (percent, MB/s, ETA)
// while mmsend encodes, stores or hashes a large file; silent when standard
// error is not a terminal, so scripts and logs get no control characters.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace mm::send {

class Progress {
public:
    /// `enabled` false makes every call a no-op.
    Progress(std::string label, uint64_t total, bool enabled);
    ~Progress();
    void update(uint64_t done);
    void finish();

    /// Whether progress bars should be drawn: stderr is a terminal and not quiet.
    static bool wanted(bool quiet);

    /// The text drawn for a state, without the leading carriage return (for tests).
    static std::string render(const std::string& label, uint64_t done, uint64_t total, double seconds);

private:
    std::string label_;
    uint64_t total_;
    bool enabled_, drawn_ = false;
    std::chrono::steady_clock::time_point start_, last_;
};

} // namespace mm::send
