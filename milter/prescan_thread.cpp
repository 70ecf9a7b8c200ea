// prescan_thread.cpp - the prescanner on its own thread (see prescan_thread.h).
#include "milter/prescan_thread.h"

namespace mm {

PrescanThread::PrescanThread(const DetachPolicy& policy, MediaSink& sink)
    : scan_(policy, sink), thread_([this] { run(); })
{
}

PrescanThread::~PrescanThread()
{
    {
        std::lock_guard<std::mutex> lock(mu_);
        closed_ = true;
        queue_.clear();
        queued_ = 0;
    }
    cv_.notify_all();
    if (thread_.joinable())
        thread_.join();
}

void PrescanThread::feed(const char* p, size_t n)
{
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return queued_ < kMaxQueued || closed_; });
    if (closed_ || !error_.empty())
        return;   // a failed scan takes no more input
    queue_.emplace_back(p, n);
    queued_ += n;
    lock.unlock();
    cv_.notify_all();
}

void PrescanThread::run()
{
    for (;;) {
        std::string chunk;
        {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [&] { return !queue_.empty() || closed_; });
            if (queue_.empty())
                return;   // closed and drained
            chunk.swap(queue_.front());
            queue_.pop_front();
            queued_ -= chunk.size();
        }
        cv_.notify_all();
        try {
            scan_.feed(chunk.data(), chunk.size());
        } catch (const std::exception& e) {
            {
                std::lock_guard<std::mutex> lock(mu_);
                error_ = e.what();
                queue_.clear();
                queued_ = 0;
            }
            // A feed() may be waiting for room in a full queue: without this it
            // would wait for ever (seen as a milter that never answers when the
            // store's file system filled up while the queue was full).
            cv_.notify_all();
            return;
        }
    }
}

std::vector<Predecoded> PrescanThread::finish(std::string& error)
{
    {
        std::lock_guard<std::mutex> lock(mu_);
        closed_ = true;   // the thread drains the queue, then returns
    }
    cv_.notify_all();
    if (thread_.joinable())
        thread_.join();
    error = error_;
    if (!error.empty())
        return {};
    return scan_.finish();
}

ParseThread::ParseThread(const std::string& path, uint64_t size)
{
    file_->grew(size);
    thread_ = std::thread([this, path] {
        try {
            parsed_ = parse_growing(path, file_);
        } catch (const std::exception& e) {
            error_ = e.what();
        }
    });
}

ParseThread::~ParseThread()
{
    file_->finish();
    if (thread_.joinable())
        thread_.join();
}

ParsedMessagePtr ParseThread::finish(std::string& error)
{
    file_->finish();
    if (thread_.joinable())
        thread_.join();
    error = error_;
    return std::move(parsed_);
}

} // namespace mm
