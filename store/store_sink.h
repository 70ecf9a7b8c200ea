// store_sink.h - the bridge from the rewrite engine to the media store: each
// detached attachment is streamed into a Store::Writer and committed (durable)
// before its handle is finished. Reads nothing from the config itself.
#pragma once

#include "store/store.h"
#include "mime/detach.h"

#include <functional>

namespace mm {

class StoreSink : public MediaSink {
public:
    /// `progress` is called every few MiB so a long detach keeps the MTA waiting.
    StoreSink(Store& store, std::vector<std::string> recipients, std::function<void()> progress)
        : store_(store), recipients_(std::move(recipients)), progress_(std::move(progress))
    {
    }
    std::unique_ptr<Part> begin(const std::string& type, const std::string& name) override;

    /// Whom the media counts against (Store::create); set before the first begin().
    void set_sender(std::string sender) { sender_ = std::move(sender); }
    /// Ids of the items committed through this sink, for a caller that must
    /// take them out again when the message as a whole is refused.
    const std::vector<std::string>& committed() const { return committed_; }
    /// Their media's SHA-256, in the same order (for log lines).
    const std::vector<std::string>& committed_sha256() const { return committed_sha256_; }

private:
    std::string sender_;
    std::vector<std::string> committed_, committed_sha256_;
    Store& store_;
    std::vector<std::string> recipients_;
    std::function<void()> progress_;
};

} // namespace mm
