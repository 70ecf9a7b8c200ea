// retrieve.cpp - opening a message for RETR/TOP (retrieve.h): a pack entry, a
// presented file, or a presented message still growing, each behind MessageReader.
#include "fetcher/retrieve.h"

#include "fetcher/cache.h"
#include "core/log.h"
#include "core/util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mm {

namespace {

/// Octets of a file from `start`: a presented file (CRLF line ends already, to
/// its end) or one entry of a pack (exactly `limit` octets). The file was checked
/// before use, so a read error counts as its end.
class FileReader : public MessageReader {
public:
    FileReader(int fd, UniqueFd owned, off_t start, uint64_t limit)
        : MessageReader(limit, false), fd_(fd), owned_(std::move(owned)), start_(start) {}
    ssize_t read(char* buf, size_t n, uint64_t at) override
    {
        ssize_t got = pread(fd_, buf, n, start_ + static_cast<off_t>(at));
        return got < 0 ? 0 : got;
    }

private:
    int fd_;
    UniqueFd owned_;   // unset when fd_ is the Retriever's open pack
    off_t start_;
};

/// A presented message still being built: reads wait for its octets, and a
/// build that fails cuts the answer short.
class GrowingReader : public MessageReader {
public:
    explicit GrowingReader(std::shared_ptr<GrowingMessage> g)
        : MessageReader(g->size(), true), growing_(std::move(g)) {}
    ssize_t read(char* buf, size_t n, uint64_t at) override { return growing_->read(buf, n, at, why_); }

private:
    std::shared_ptr<GrowingMessage> growing_;
};

} // namespace

std::unique_ptr<MessageReader> Retriever::open(const ShownMessage& m, const std::string& user, std::string& why)
{
    if (m.growing) {
        // Until its first media segment has passed its check the client can
        // still get a clean -ERR; after that a failed check can only cut the
        // answer short, like a connection lost, so that the client keeps nothing
        // and the message stays where it is.
        if (!m.growing->wait_started(why))
            return nullptr;
        return std::make_unique<GrowingReader>(m.growing);
    }
    if (m.source != ShownMessage::Source::copy) {
        UniqueFd fd(::open(m.path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd)
            return nullptr;
        int raw = fd.get();
        return std::make_unique<FileReader>(raw, std::move(fd), 0, UINT64_MAX);
    }
    if (m.path != pack_path_) {
        pack_fd_.reset(::open(m.path.c_str(), O_RDONLY | O_CLOEXEC));
        struct stat st;
        if (pack_fd_ && fstat(pack_fd_.get(), &st) != 0)
            pack_fd_.reset();
        pack_size_ = pack_fd_ ? static_cast<uint64_t>(st.st_size) : 0;
        pack_path_ = pack_fd_ ? m.path : std::string();
    }
    if (pack_fd_ && check_entry(pack_fd_.get(), pack_size_, m.offset, m.key, m.size, why))
        return std::make_unique<FileReader>(pack_fd_.get(), UniqueFd(),
                                            static_cast<off_t>(m.offset + kCacheHeaderLen), m.size);
    UniqueFd fd(open_copy(up_, m, user, opt_, why));   // checks again; fetches again if it must
    if (!fd)
        return nullptr;
    off_t pos = lseek(fd.get(), 0, SEEK_CUR);
    int raw = fd.get();
    return std::make_unique<FileReader>(raw, std::move(fd), pos, m.size);
}

int open_copy(Upstream& up, const ShownMessage& m, const std::string& user, const SyncOptions& opt,
              std::string& why)
{
    int fd = open_entry(m.path, m.offset, m.key, m.size, why);
    if (fd >= 0)
        return fd;
    log_warning("cache copy of uidl=" + printable(m.uidl) + " unusable (" + why + "): fetched again");
    // The same message from upstream gives the same octets: a pack of its own,
    // then the index names it there.
    const UserCache uc(opt, user);
    const std::string tag = random_hex(4);
    PackWriter pack(uc.pack_prefix + tag + ".pack", tag);
    PackSink sink(pack, m.key, opt.cache_dir + "/msg/" + m.key + ".raw.tmp" + tag);
    std::vector<Upstream::Fetch> results;
    uint64_t written = 0;
    std::string err;
    if (!up.retr_many({m.upstream_num}, {&sink}, opt.max_size, results, written, err)) {
        why = "upstream: " + err;
        return -1;
    }
    if (results[0] != Upstream::Fetch::ok || sink.handle_name()) {
        unlink(sink.raw_path().c_str());
        unlink(pack.path().c_str());
        why = results[0] == Upstream::Fetch::ok ? "message changed upstream" : err;
        return -1;
    }
    const CacheIndex before = read_index(uc.index_path);
    CacheIndex index = before;
    index[m.key] = sink.entry();
    if (write_index(uc.index_path, index))
        remove_unused_packs(uc.pack_prefix, before, index);
    if (sink.entry().size != m.size) {
        why = "fetched again, size differs from LIST";
        return -1;
    }
    return open_entry(pack.path(), 0, m.key, m.size, why);
}

} // namespace mm
