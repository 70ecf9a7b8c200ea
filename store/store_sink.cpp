// store_sink.cpp - MediaSink onto the media store, and each recipient's own
// copy of the rewritten mail (see store_sink.h).
#include "store/store_sink.h"

#include "mime/handle.h"
#include "core/fileio.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <unistd.h>

namespace mm {

namespace {

constexpr uint64_t kProgressEvery = 16ULL << 20;
// A line to swap must be this long: with the RFC 2231 section name it holds
// enough of the random token not to be found anywhere else by chance.
constexpr size_t kMinKey = 24;
constexpr size_t kCopyBuffer = 64 * 1024;

std::vector<std::string> lines_of(const std::string& s)
{
    std::vector<std::string> out;
    size_t start = 0;
    while (start < s.size()) {
        size_t nl = s.find('\n', start);
        size_t end = nl == std::string::npos ? s.size() : nl;
        size_t stop = end > start && s[end - 1] == '\r' ? end - 1 : end;
        out.push_back(s.substr(start, stop - start));
        start = end + 1;
    }
    return out;
}

class StorePart : public MediaSink::Part {
public:
    StorePart(std::unique_ptr<Store::Writer> w, ItemMeta meta, const std::function<void()>& progress,
              std::vector<std::string>& committed, std::vector<std::string>& committed_sha256,
              RecipientCopies* copies)
        : writer_(std::move(w)), meta_(std::move(meta)), progress_(progress), committed_(committed),
          committed_sha256_(committed_sha256), copies_(copies)
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
        if (copies_)
            copies_->add(h, item);
    }

private:
    std::unique_ptr<Store::Writer> writer_;
    ItemMeta meta_;
    const std::function<void()>& progress_;
    std::vector<std::string>& committed_;
    std::vector<std::string>& committed_sha256_;
    RecipientCopies* copies_;
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
                                       committed_sha256_, copies_);
}

void RecipientCopies::add(const Handle& h, const NewItem& item)
{
    ++items_;
    if (item.recipient_tokens.empty()) {
        why_ = "an item without recipient tokens";
        return;
    }
    const std::vector<std::string> shared = lines_of(build_location_part(h, "\r\n"));
    std::set<std::string> mine_keys;   // this item's lines to swap (a line may repeat within the part)
    for (const auto& [address, token] : item.recipient_tokens) {
        Handle own = h;
        own.url = recipient_url(h.url, token);
        std::vector<std::string> mine = lines_of(build_location_part(own, "\r\n"));
        if (mine.size() != shared.size()) {
            why_ = "a location part that changes shape with the token";
            return;
        }
        Substitutions& subs = subs_[address];
        for (size_t i = 0; i < shared.size(); ++i) {
            if (shared[i] == mine[i])
                continue;
            if (shared[i].size() != mine[i].size() || shared[i].size() < kMinKey) {
                why_ = "a token line too short to swap safely";
                return;
            }
            // The same line in two items' parts could not be told apart.
            if (keys_.count(shared[i])) {
                why_ = "two items with the same token line";
                return;
            }
            mine_keys.insert(shared[i]);
            bool known = false;
            for (const auto& [from, to] : subs)
                known = known || from == shared[i];
            if (!known)
                subs.emplace_back(shared[i], mine[i]);
        }
        ++counts_[address];
    }
    keys_.insert(mine_keys.begin(), mine_keys.end());
}

const Substitutions* RecipientCopies::for_address(const std::string& normalized) const
{
    auto c = counts_.find(normalized);
    if (c == counts_.end() || c->second != items_)
        return nullptr;
    return &subs_.at(normalized);
}

void RecipientCopies::clear()
{
    subs_.clear();
    counts_.clear();
    keys_.clear();
    items_ = 0;
    why_.clear();
}

Substituter::Substituter(const Substitutions& subs) : subs_(subs)
{
    for (const auto& [from, to] : subs_)
        keep_ = std::max(keep_, from.size());
}

void Substituter::feed(const char* p, size_t n, std::string& out)
{
    buf_.append(p, n);
    for (const auto& [from, to] : subs_)
        for (size_t at = buf_.find(from); at != std::string::npos; at = buf_.find(from, at + from.size()))
            buf_.replace(at, from.size(), to);
    // Keep what a key starting here could still need: it is complete only
    // once more bytes have come.
    if (buf_.size() > keep_) {
        size_t emit = buf_.size() - keep_;
        out.append(buf_, 0, emit);
        buf_.erase(0, emit);
    }
}

void Substituter::finish(std::string& out)
{
    out += buf_;
    buf_.clear();
}

void write_substituted(const std::string& in, const std::string& out, const Substitutions& subs)
{
    UniqueFd src(open(in.c_str(), O_RDONLY | O_CLOEXEC));
    if (!src)
        throw std::runtime_error("cannot open " + in + ": " + std::strerror(errno));
    UniqueFd dst(open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!dst)
        throw std::runtime_error("cannot create " + out + ": " + std::strerror(errno));
    Substituter sub(subs);
    std::string buf(kCopyBuffer, '\0'), done;
    for (;;) {
        ssize_t n = read(src.get(), buf.data(), buf.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            throw std::runtime_error("cannot read " + in + ": " + std::strerror(errno));
        if (n == 0)
            sub.finish(done);
        else
            sub.feed(buf.data(), static_cast<size_t>(n), done);
        if (!write_all(dst.get(), done.data(), done.size()))
            throw std::runtime_error("cannot write " + out + ": " + std::strerror(errno));
        done.clear();
        if (n == 0)
            break;
    }
    if (close(dst.release()) != 0)
        throw std::runtime_error("cannot write " + out + ": " + std::strerror(errno));
}

} // namespace mm
