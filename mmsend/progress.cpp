// progress.cpp - the progress bar (see progress.h). Redraws at most ten times a
// second so that printing never costs more than the copying it reports.
#include "mmsend/progress.h"

#include <cstdio>
#include <unistd.h>

namespace mm::send {

Progress::Progress(std::string label, uint64_t total, bool enabled)
    : label_(std::move(label)), total_(total), enabled_(enabled), start_(std::chrono::steady_clock::now()), last_()
{
}

Progress::~Progress() { finish(); }

bool Progress::wanted(bool quiet) { return !quiet && isatty(STDERR_FILENO) == 1; }

std::string Progress::render(const std::string& label, uint64_t done, uint64_t total, double seconds)
{
    unsigned pct = total == 0 ? 100 : static_cast<unsigned>(done * 100 / total);
    if (pct > 100)
        pct = 100;
    constexpr unsigned width = 24;
    std::string bar(width * pct / 100, '#');
    bar.resize(width, '.');
    double rate = seconds > 0 ? static_cast<double>(done) / seconds / 1e6 : 0;   // MB/s
    char eta[32] = "--:--";
    if (rate > 0 && total >= done) {
        uint64_t left = static_cast<uint64_t>(static_cast<double>(total - done) / (rate * 1e6));
        std::snprintf(eta, sizeof eta, "%llu:%02llu", static_cast<unsigned long long>(left / 60),
                      static_cast<unsigned long long>(left % 60));
    }
    char line[256];
    if (total == 0) {
        // Size unknown (a part of a message read from stdin): bytes and rate only.
        std::snprintf(line, sizeof line, "%-28.28s %9.1f MB %7.1f MB/s", label.c_str(),
                      static_cast<double>(done) / 1e6, rate);
        return line;
    }
    std::snprintf(line, sizeof line, "%-28.28s [%s] %3u%% %7.1f MB/s ETA %s", label.c_str(), bar.c_str(), pct, rate,
                  eta);
    return line;
}

void Progress::update(uint64_t done)
{
    if (!enabled_)
        return;
    auto now = std::chrono::steady_clock::now();
    if (drawn_ && now - last_ < std::chrono::milliseconds(100) && done < total_)
        return;
    last_ = now;
    drawn_ = true;
    double secs = std::chrono::duration<double>(now - start_).count();
    std::string line = render(label_, done, total_, secs);
    std::fprintf(stderr, "\r%s", line.c_str());
    std::fflush(stderr);
}

void Progress::finish()
{
    if (enabled_ && drawn_) {
        std::fputs("\n", stderr);
        std::fflush(stderr);
    }
    enabled_ = false;
}

} // namespace mm::send
