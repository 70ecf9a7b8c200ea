// store_sink.cpp - MediaSink onto the media store (see store_sink.h).
#include "store/store_sink.h"

#include <stdexcept>

namespace mm {

namespace {

constexpr uint64_t kProgressEvery = 16ULL << 20;

class StorePart : public MediaSink::Part {
public:
    StorePart(std::unique_ptr<Store::Writer> w, ItemMeta meta, const std::function<void()>& progress,
              std::vector<std::string>& committed, std::vector<std::string>& committed_sha256)
        : writer_(std::move(w)), meta_(std::move(meta)), progress_(progress), committed_(committed),
          committed_sha256_(committed_sha256)
    {
    }
    void write(const void* data, size_t len) override
    {
        writer_->write(data, len);
        written_ += len;
        if (progress_ && written_ - last_progress_ >= kProgressEvery) {
            last_progress_ = written_;
            progress_();
        }
    }
    bool hashes_itself() const override { return true; }   // one SHA-256 pass, not two
    void finish(Handle& h) override
    {
        // A part begun while the message was still arriving had no name yet.
        meta_.type = h.type;
        meta_.name = h.name;
        meta_.title = h.title;
        meta_.note = h.note;
        meta_.copyright = h.copyright;
        meta_.date = h.date;
        NewItem item = writer_->commit(meta_);
        committed_.push_back(item.id);
        committed_sha256_.push_back(item.sha256);
        // The store hashed what it wrote, the engine counted what it decoded:
        // they must agree, or the handle would promise bytes nobody has.
        if (item.size != h.size || (!h.sha256.empty() && item.sha256 != h.sha256))
            throw std::runtime_error("store and engine disagree on the media's hash or size");
        h.sha256 = item.sha256;
        h.url = item.url;
        h.pin = item.pin;
        h.expires = item.expires;
        h.seg_size = item.seg_size;
        h.seg_sha256 = item.seg_sha256;
    }

private:
    std::unique_ptr<Store::Writer> writer_;
    ItemMeta meta_;
    const std::function<void()>& progress_;
    std::vector<std::string>& committed_;
    std::vector<std::string>& committed_sha256_;
    uint64_t written_ = 0, last_progress_ = 0;
};

} // namespace

std::unique_ptr<MediaSink::Part> StoreSink::begin(const std::string& type, const std::string& name)
{
    ItemMeta meta;
    meta.type = type;
    meta.name = name;
    meta.recipients = recipients_;
    return std::make_unique<StorePart>(store_.create(sender_), std::move(meta), progress_, committed_,
                                       committed_sha256_);
}

} // namespace mm
