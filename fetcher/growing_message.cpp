// growing_message.cpp - GrowingMessage: a presented message read while it is built (growing_message.h).
#include "fetcher/growing_message.h"

#include "core/log.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <sys/stat.h>
#include <unistd.h>

namespace mm {

namespace {

// The file grows as fast as the media are checked and encoded; a reader that
// catches up looks again this often. Reads are 64 KiB, so that is seldom.
constexpr auto kPollEvery = std::chrono::milliseconds(2);

uint64_t file_size_of(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

std::mutex g_mu;
std::map<std::string, std::weak_ptr<GrowingMessage>> g_builds;   // by presented path

} // namespace

std::shared_ptr<GrowingMessage> GrowingMessage::start(const std::string& raw, const std::string& rebuilt,
                                                      const std::string& presented,
                                                      std::vector<std::unique_ptr<MediaInput>> media,
                                                      std::shared_ptr<std::atomic<bool>> cancel, const ReinsertLayout& layout,
                                                      Finish finish, std::string& err)
                                                      {
    std::shared_ptr<GrowingMessage> b(new GrowingMessage);
    b->raw_ = raw;
    b->rebuilt_ = rebuilt;
    b->presented_ = presented;
    b->media_ = std::move(media);
    b->cancel_ = std::move(cancel);
    b->layout_ = layout;
    b->finish_ = std::move(finish);
    // Created here, written by reinsert_media (which truncates, keeping the
    // inode): readers hold this descriptor across the rename into place.
    b->fd_ = open(rebuilt.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (b->fd_ < 0) {
        err = "cannot create " + rebuilt + ": " + std::strerror(errno);
        return nullptr;
    }
    {
        std::lock_guard<std::mutex> lock(g_mu);
        g_builds[presented] = b;
    }
    b->thread_ = std::thread([p = b.get()] { p->run(); });
    return b;
}

std::shared_ptr<GrowingMessage> GrowingMessage::find(const std::string& presented)
{
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_builds.find(presented);
    if (it == g_builds.end())
        return nullptr;
    auto b = it->second.lock();
    if (!b) {
        g_builds.erase(it);
        return nullptr;
    }
    // A failed build is the business of the readers that saw it fail; a new
    // login starts from the downloader's state again.
    std::lock_guard<std::mutex> state_lock(b->mu_);
    return b->state_ == State::failed ? nullptr : b;
}

GrowingMessage::~GrowingMessage()
{
    cancel_->store(true);
    if (thread_.joinable())
        thread_.join();
    if (fd_ >= 0)
        ::close(fd_);
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_builds.find(presented_);
    if (it != g_builds.end() && it->second.expired())
        g_builds.erase(it);
}

void GrowingMessage::run()
{
    std::vector<MediaInput*> inputs;
    for (const auto& m : media_)
        inputs.push_back(m.get());
    std::string err;
    bool crlf = false;
    bool ok = reinsert_media(raw_, inputs, rebuilt_, err, &crlf);
    if (ok && (!crlf || file_size_of(fd_) != layout_.size)) {
        ok = false;
        err = "the rebuilt file is not what its layout promised";
    }
    if (ok)
        ok = finish_(rebuilt_, err);
    if (!ok) {
        unlink(rebuilt_.c_str());
        if (cancel_->load())
            log_debug("re-insertion while the client reads dropped: no reader left");
        else
            log_info("re-insertion while the client reads given up: " + printable(err));
    }
    std::lock_guard<std::mutex> lock(mu_);
    state_ = ok ? State::done : State::failed;
    why_ = err;
    cv_.notify_all();
}

bool GrowingMessage::wait_started(std::string& why, std::chrono::steady_clock::time_point until)
{
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
        if (state_ == State::failed) {
            why = why_;
            return false;
        }
        if (state_ == State::done || file_size_of(fd_) > layout_.first_media)
            return true;
        if (std::chrono::steady_clock::now() >= until) {
            why = "media not started in time";
            return false;
        }
        cv_.wait_for(lock, kPollEvery);
    }
}

ssize_t GrowingMessage::read(char* buf, size_t n, uint64_t pos, std::string& why)
{
    for (;;) {
        State st;
        {
            std::lock_guard<std::mutex> lock(mu_);
            st = state_;
            why = why_;
        }
        if (st == State::failed)
            return -1;
        // Once done, every byte is in: what pread finds now is all there is.
        ssize_t got = pread(fd_, buf, n, static_cast<off_t>(pos));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            why = std::string("cannot read ") + rebuilt_ + ": " + std::strerror(errno);
            return -1;
        }
        if (got > 0 || st == State::done)
            return got;
        std::unique_lock<std::mutex> lock(mu_);
        if (state_ == State::running)
            cv_.wait_for(lock, kPollEvery);
    }
}

} // namespace mm
