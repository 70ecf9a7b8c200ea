// store.cpp - the sender's media store: content-addressed files under objects/,
// written through tmp/ and fsync'ed before a row in the index (index.h, shared by
// mm-milter and mm-gateway) makes them reachable. Reads store.dir,
// gateway.public_url, gateway.retention, and the quota keys (quota.h).
#include "store/store.h"

#include "store/append_file.h"
#include "store/index.h"
#include "store/layout.h"
#include "store/quota.h"
#include "mime/segments.h"
#include "core/address.h"
#include "core/fileio.h"
#include "core/util.h"

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

namespace mm {

namespace {

std::string errno_text(int e) { return std::strerror(e); }

// mkdir that tolerates an existing directory; a missing parent is an error on
// purpose except for store.dir itself, which make_dirs creates.
void ensure_dir(const std::string& path, mode_t mode)
{
    if (mkdir(path.c_str(), mode) == 0) {
        fsync_dir_of(path);
        return;
    }
    if (errno != EEXIST)
        throw StoreError("cannot create directory " + path + ": " + errno_text(errno));
    struct stat st;
    if (stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        throw StoreError(path + " exists and is not a directory");
}

void make_dirs(const std::string& path, mode_t mode)
{
    for (size_t pos = 1; pos <= path.size(); ++pos) {
        if (pos == path.size() || path[pos] == '/') {
            std::string part = path.substr(0, pos);
            if (!part.empty() && part.back() != '/')
                ensure_dir(part, mode);
        }
    }
}

} // namespace

struct Store::Impl {
    std::string dir, public_url;
    int64_t retention = 0;
    std::string pin;
    std::unique_ptr<Index> index;   // opened once the directories exist
    QuotaLimits limits;
    FreeSpaceFn free_space;
    bool direct_io = true;   // store.direct_io: media blocks around the page cache (append_file.h)

    /// Within index->write(): reserves `total` bytes for writer `id` (of which
    /// `written` are on disk), with up to `slack` more when that fits too, so a
    /// growing file takes the write lock once per slack and not per chunk.
    /// Returns the bytes reserved; throws QuotaError when `total` does not fit.
    uint64_t reserve(const std::string& id, const std::string& sender, uint64_t total, uint64_t written,
                     uint64_t slack)
    {
        int64_t now = static_cast<int64_t>(time(nullptr));
        index->drop_stale_reservations(now - kStaleReservation);
        QuotaUsage u = index->quota_usage(sender, now - limits.window, id);
        if (limits.min_free > 0) {
            std::optional<uint64_t> free = free_space(dir);
            if (!free)
                throw StoreError("cannot statvfs " + dir + ": " + std::strerror(errno));
            u.fs_free = *free;
        }
        uint64_t want = total > UINT64_MAX - slack ? total : total + slack;
        if (!quota_refusal(limits, u, sender, want, written).empty())
            want = total;
        if (std::string why = quota_refusal(limits, u, sender, want, written); !why.empty())
            throw QuotaError(why);
        index->reserve(id, sender, want, written, static_cast<int64_t>(getpid()), now);
        return want;
    }
    // A reservation not renewed for this long is a dead writer's even if its
    // pid was reused: writers renew at least every kReserveStep bytes, and no
    // mail client or MTA waits a day between two of them.
    static constexpr int64_t kStaleReservation = 86400;
};

Store::Store(const Config& cfg, FreeSpaceFn free_space) : impl_(std::make_unique<Impl>())
{
    Impl& s = *impl_;
    s.limits = QuotaLimits::from(cfg);
    s.free_space = free_space ? std::move(free_space) : FreeSpaceFn(statvfs_free);
    s.dir = layout::store_dir(cfg);
    s.public_url = cfg.str("gateway.public_url");
    while (!s.public_url.empty() && s.public_url.back() == '/')
        s.public_url.pop_back();
    s.retention = cfg.duration("gateway.retention").count();
    s.direct_io = cfg.boolean("store.direct_io");

    // The TLS identity first: a misconfigured key pair fails before anything is created.
    try {
        s.pin = tls_identity(cfg).pin;
    } catch (const StoreError&) {
        throw;
    } catch (const std::exception& e) {
        throw StoreError(e.what());
    }

    make_dirs(s.dir, 0750);
    ensure_dir(layout::objects_dir(s.dir), 0750);
    ensure_dir(layout::tmp_dir(s.dir), 0700);
    ensure_dir(layout::uploads_dir(s.dir), 0700);
    s.index = std::make_unique<Index>(layout::index_path(s.dir), Index::Open::create);
}

Store::~Store() = default;

const std::string& Store::pin() const { return impl_->pin; }

std::string Store::object_path(const std::string& sha256) const
{
    return layout::object_path(impl_->dir, sha256);
}

namespace {

// Gives `item` (sha256 and size set) an id and token and records it with its
// recipients in one transaction; `link` is empty for objects in objects/.
struct Link {
    std::string path;
    uint64_t size = 0;
    int64_t mtime_ns = 0;
};

void register_item(Store::Impl& s_, NewItem& item, const ItemMeta& meta, const Link& link,
                   const std::string& sender = "", const std::string& reservation = "")
{
    item.id = random_hex(16);
    item.token = random_hex(16);
    time_t now = time(nullptr);
    time_t expires = now + static_cast<time_t>(s_.retention);
    item.expires = rfc3339(expires);
    item.pin = s_.pin;

    ItemRecord rec;
    rec.item.id = item.id;
    rec.item.sha256 = item.sha256;
    rec.item.size = item.size;
    rec.item.type = meta.type;
    rec.item.name = meta.name;
    rec.item.title = meta.title;
    rec.item.note = meta.note;
    rec.item.copyright = meta.copyright;
    rec.item.date = meta.date;
    rec.item.created = rfc3339(now);
    rec.item.expires = item.expires;
    rec.item.link_path = link.path;
    rec.item.link_size = link.size;
    rec.item.link_mtime_ns = link.mtime_ns;
    rec.token_sha256 = sha256_hex(item.token);
    rec.expires_unix = static_cast<int64_t>(expires);
    // One token per distinct recipient (by normalized address, as receipts are
    // keyed); an address that does not normalize gets none, so only the item
    // token reaches it and its receipts count for nobody.
    std::vector<std::string> addresses, hashes;
    std::set<std::string> seen;
    for (const auto& r : meta.recipients) {
        std::string a = normalize_address(r);
        if (a.empty() || !seen.insert(a).second)
            continue;
        std::string token = random_hex(16);
        addresses.push_back(r);
        hashes.push_back(sha256_hex(token));
        item.recipient_tokens.emplace_back(a, std::move(token));
    }
    for (const auto& r : meta.recipients)
        if (normalize_address(r).empty())
            addresses.push_back(r);   // recorded (the admin sees it), without a token
    // On failure the object may stay: without a row nobody can reach it, and
    // another item may share it (dedup). The collector removes orphans.
    s_.index->write([&] {
        s_.index->insert_item(rec, addresses, hashes);
        // The item now counts in the reservation's place, in one transaction.
        s_.index->set_item_sender(item.id, sender, static_cast<int64_t>(now), reservation);
    });
    item.url = s_.public_url + "/m/" + item.id + "/" + item.token;
}

// Hashes (SHA-256 and segment digests) on a thread of its own, in order, the
// bytes given to feed(): an upload's bytes are decrypted and written by the
// gateway's worker while another core hashes them. The bytes are copied into
// a ring of kSlots buffers allocated once (fresh large buffers per piece cost
// more in page faults than the copy); when it is full the writer waits, so
// memory stays bounded and a slow hasher slows the writer.
class HashPipe {
public:
    HashPipe(Sha256& sha, SegmentHasher& seg)
        : sha_(sha), seg_(seg), ring_(new char[kSlots * kSlot]), thread_([this] { run(); })
    {
    }
    /// Hashes what is still queued, then ends the thread.
    ~HashPipe()
    {
        {
            std::lock_guard<std::mutex> l(mu_);
            stop_ = true;
        }
        ready_.notify_all();
        thread_.join();
    }
    void feed(const void* data, size_t len)
    {
        const char* p = static_cast<const char*>(data);
        while (len > 0) {
            size_t n = std::min(len, kSlot);
            std::unique_lock<std::mutex> l(mu_);
            free_.wait(l, [&] { return queued_ < kSlots; });
            size_t slot = (head_ + queued_) % kSlots;
            l.unlock();
            std::memcpy(ring_.get() + slot * kSlot, p, n);   // the slot is ours until queued
            l.lock();
            sizes_[slot] = n;
            ++queued_;
            ready_.notify_one();
            p += n;
            len -= n;
        }
    }

private:
    void run()
    {
        std::unique_lock<std::mutex> l(mu_);
        for (;;) {
            ready_.wait(l, [&] { return stop_ || queued_ > 0; });
            if (queued_ == 0)
                return;   // stopping, nothing left
            size_t slot = head_;
            l.unlock();
            const char* p = ring_.get() + slot * kSlot;
            sha_.update(p, sizes_[slot]);
            seg_.update(p, sizes_[slot]);
            l.lock();
            head_ = (head_ + 1) % kSlots;
            --queued_;
            free_.notify_one();
        }
    }
    static constexpr size_t kSlot = 256 * 1024;
    static constexpr size_t kSlots = 16;   // 4 MiB per upload being written
    Sha256& sha_;
    SegmentHasher& seg_;
    std::unique_ptr<char[]> ring_;
    size_t sizes_[kSlots] = {};
    size_t head_ = 0, queued_ = 0;   // the oldest queued slot; how many are queued
    std::mutex mu_;
    std::condition_variable ready_, free_;
    bool stop_ = false;
    std::thread thread_;   // last: started once the rest exists
};

class FileWriter : public Store::Writer {
public:
    FileWriter(Store::Impl& s, std::string sender, uint64_t expected)
        : s_(s), sender_(std::move(sender)), reservation_(random_hex(16))
    {
        // Reserved before the temp file exists: a refusal leaves nothing behind.
        if (expected > 0)
            reserved_ = s_.index->write([&] { return s_.reserve(reservation_, sender_, expected, 0, 0); });
        tmp_path_ = layout::new_tmp_path(s_.dir);
        int fd = open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            int e = errno;
            release();
            throw StoreError("cannot create " + tmp_path_ + ": " + errno_text(e));
        }
        file_ = std::make_unique<AppendFile>(fd, tmp_path_, 0, s_.direct_io);
    }

    // An upload's file (Store::resume_upload): what is there already is hashed
    // first, and the file stays when we go without a commit.
    struct Resume {};
    FileWriter(Store::Impl& s, Resume, const std::string& upload_id, std::string sender, uint64_t expected)
        : s_(s), sender_(std::move(sender)), reservation_("upload-" + upload_id), keep_(true)
    {
        tmp_path_ = layout::upload_path(s_.dir, upload_id);
        int fd = open(tmp_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
            throw StoreError("cannot open " + tmp_path_ + ": " + errno_text(errno));
        try {
            struct stat st;
            if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
                throw StoreError(tmp_path_ + " is not a regular file");
            uint64_t have = static_cast<uint64_t>(st.st_size);
            if (have > expected)
                throw StoreError(tmp_path_ + " holds more than the upload's declared size");
            reserved_ = s_.index->write([&] { return s_.reserve(reservation_, sender_, expected, have, 0); });
            std::string buf(1 << 20, '\0');
            while (size_ < have) {
                ssize_t n = pread(fd, buf.data(), buf.size(), static_cast<off_t>(size_));
                if (n < 0 && errno == EINTR)
                    continue;
                if (n <= 0)
                    throw StoreError("cannot read " + tmp_path_ + ": " + (n < 0 ? errno_text(errno) : "short file"));
                hash_.update(buf.data(), static_cast<size_t>(n));
                segments_.update(buf.data(), static_cast<size_t>(n));
                size_ += static_cast<uint64_t>(n);
            }
        } catch (...) {
            close(fd);
            release();
            throw;
        }
        file_ = std::make_unique<AppendFile>(fd, tmp_path_, size_, s_.direct_io);
    }

    uint64_t size() const override { return size_; }
    void idle() override
    {
        if (file_) {
            try {
                file_->flush();   // the file holds every byte size() counts
            } catch (const StoreError&) {
                file_.reset();
                throw;
            }
        }
        pipe_.reset();   // hashes what is queued; the thread ends
    }

    ~FileWriter() override
    {
        if (file_ && keep_ && !done_) {
            try {
                file_->flush();   // an upload's file keeps what was received
            } catch (const StoreError&) {
            }
        }
        file_.reset();
        if (!done_) {
            if (!keep_)
                unlink(tmp_path_.c_str());
            release();
        }
    }

    void write(const void* data, size_t len) override
    {
        if (done_ || !file_)
            throw StoreError("write after commit or failure on " + tmp_path_);
        if (len > reserved_ - size_) {
            try {
                reserved_ = s_.index->write(
                    [&] { return s_.reserve(reservation_, sender_, size_ + len, size_, kReserveStep); });
            } catch (const QuotaError&) {
                // Over a quota: the partial file goes now, not when the caller
                // gets round to destroying us; the message is refused whole.
                file_.reset();
                if (!keep_)
                    unlink(tmp_path_.c_str());
                release();
                throw;
            }
        }
        try {
            file_->append(data, len);
        } catch (const StoreError& e) {
            fail(e.what());
        }
        if (keep_ && !pipe_)
            pipe_ = std::make_unique<HashPipe>(hash_, segments_);
        if (pipe_) {
            pipe_->feed(data, len);
        } else {
            hash_.update(data, len);
            segments_.update(data, len);
        }
        size_ += len;
    }

    NewItem commit(const ItemMeta& meta) override
    {
        if (done_ || !file_)
            throw StoreError("commit twice or after failure on " + tmp_path_);
        try {
            file_->sync();
            if (fchmod(file_->fd(), 0640) != 0)
                throw StoreError("cannot chmod " + tmp_path_ + ": " + errno_text(errno));
            file_->close();
        } catch (const StoreError& e) {
            fail(e.what());
        }
        file_.reset();

        pipe_.reset();   // drains: every byte written is hashed
        NewItem item;
        item.sha256 = hash_.hex_digest();
        item.size = size_;
        item.seg_sha256 = segments_.finish(item.seg_size);
        std::string obj = layout::object_path(s_.dir, item.sha256);
        ensure_dir(layout::object_dir(s_.dir, item.sha256), 0750);
        // link() fails if the object exists: identical content is already
        // stored (same hash), so the first copy stays and ours goes (dedup).
        if (link(tmp_path_.c_str(), obj.c_str()) != 0 && errno != EEXIST)
            throw StoreError("cannot place object " + obj + ": " + errno_text(errno));
        if (!fsync_dir_of(obj))
            throw StoreError("cannot fsync directory of " + obj + ": " + errno_text(errno));

        register_item(s_, item, meta, Link{}, sender_, reservation_);
        // remove_item() or the collector may have deleted the shared object
        // between our link() and our insert (no active row needed it then): our temp file still has the bytes, so put them back.
        if (access(obj.c_str(), F_OK) != 0 && link(tmp_path_.c_str(), obj.c_str()) != 0 && errno != EEXIST)
            throw StoreError("cannot place object " + obj + ": " + errno_text(errno));
        unlink(tmp_path_.c_str());
        done_ = true;
        return item;
    }

private:
    // Takes our reservation out of the index; a failure (index gone) leaves a
    // row that drop_stale_reservations() removes once this process is gone.
    void release() noexcept
    {
        if (reserved_ == 0)
            return;
        try {
            s_.index->write([&] { s_.index->release(reservation_); });
            reserved_ = 0;
        } catch (const std::exception&) {
        }
    }

    [[noreturn]] void fail(const std::string& msg)
    {
        file_.reset();
        throw StoreError(msg);
    }

    Store::Impl& s_;
    std::string sender_, reservation_;
    bool keep_ = false;       // an upload's file: it stays without a commit
    uint64_t reserved_ = 0;   // bytes our row in reservations holds
    static constexpr uint64_t kReserveStep = 8ULL << 20;
    std::string tmp_path_;
    std::unique_ptr<AppendFile> file_;   // null after a failure or commit
    bool done_ = false;
    uint64_t size_ = 0;
    Sha256 hash_;
    SegmentHasher segments_;
    // An upload's writer hashes on another thread (HashPipe); last, so that
    // it is stopped before the hashes it feeds are destroyed.
    std::unique_ptr<HashPipe> pipe_;
};

} // namespace

std::unique_ptr<Store::Writer> Store::create(const std::string& sender, uint64_t expected)
{
    return std::make_unique<FileWriter>(*impl_, sender, expected);
}

std::unique_ptr<Store::Writer> Store::resume_upload(const std::string& upload_id, const std::string& sender,
                                                    uint64_t expected)
{
    return std::make_unique<FileWriter>(*impl_, FileWriter::Resume{}, upload_id, sender, expected);
}

const std::string& Store::dir() const { return impl_->dir; }

void Store::check_room(const std::string& sender, uint64_t bytes)
{
    Impl& s = *impl_;
    // A reservation of our own, dropped again in the same transaction: the
    // check sees exactly what a Writer would.
    std::string probe = random_hex(16);
    s.index->write([&] {
        s.reserve(probe, sender, bytes, 0, 0);
        s.index->release(probe);
    });
}

std::optional<Item> Store::authorize(const std::string& id, const std::string& token)
{
    // Lexical check first: nothing malformed reaches SQL or the file system.
    if (!is_lower_hex(id, 32) || !is_lower_hex(token, 32))
        return std::nullopt;
    std::string want = sha256_hex(token);
    std::optional<ItemRecord> rec = impl_->index->find_item(id);
    if (!rec) {
        // An unknown id costs the same comparison as a wrong token, so
        // timing tells neither apart.
        static const std::string kNoToken(64, '0');
        (void)equal_ct(want, kNoToken);
        return std::nullopt;
    }
    Item& it = rec->item;
    // Compare hashes in constant time so the check leaks nothing about the
    // token. The recipients' tokens are looked up by their hash: an index
    // lookup on a SHA-256 tells a prober nothing about the token either.
    bool item_token = equal_ct(want, rec->token_sha256);
    std::optional<RecipientToken> rt = impl_->index->find_recipient_token(id, want);
    if (!item_token) {
        if (!rt || rt->revoked)
            return std::nullopt;
        it.recipient = normalize_address(rt->address);
        if (it.recipient.empty())
            return std::nullopt;
    }
    if (it.state != "active")
        return std::nullopt;
    if (static_cast<int64_t>(time(nullptr)) >= rec->expires_unix)
        return std::nullopt;
    if (!is_hex_digest(it.sha256))
        return std::nullopt;
    return std::move(rec->item);
}

std::string recipient_url(const std::string& url, const std::string& token)
{
    if (url.size() < token.size())
        return url;
    return url.substr(0, url.size() - token.size()) + token;
}

namespace {

int64_t mtime_ns(const struct stat& st)
{
    return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

// SHA-256 of an open file from its start, in fixed buffers; its segments'
// digests too when `segments` is given.
std::string hash_fd(int fd, const std::string& path, uint64_t total,
                    const std::function<void(uint64_t, uint64_t)>& progress, SegmentHasher* segments = nullptr)
{
    Sha256 sha;
    std::string buf(1 << 20, '\0');
    uint64_t done = 0;
    for (;;) {
        ssize_t n = pread(fd, buf.data(), buf.size(), static_cast<off_t>(done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            throw StoreError("cannot read " + path + ": " + errno_text(errno));
        if (n == 0)
            break;
        sha.update(buf.data(), static_cast<size_t>(n));
        if (segments)
            segments->update(buf.data(), static_cast<size_t>(n));
        done += static_cast<uint64_t>(n);
        if (progress)
            progress(done, total);
    }
    if (done != total)
        throw StoreError(path + " changed size while it was read");
    return sha.hex_digest();
}


} // namespace

NewItem Store::link_file(const std::string& path, const ItemMeta& meta,
                         const std::function<void(uint64_t, uint64_t)>& progress)
{
    // The real path: the gateway must find the same file whatever the caller's
    // working directory or symlinks were.
    char* real = realpath(path.c_str(), nullptr);
    if (!real)
        throw StoreError("cannot resolve " + path + ": " + errno_text(errno));
    Link link;
    link.path = real;
    free(real);
    UniqueFd f(open(link.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (f.get() < 0)
        throw StoreError("cannot open " + link.path + ": " + errno_text(errno));
    struct stat before, after;
    if (fstat(f.get(), &before) != 0)
        throw StoreError("cannot stat " + link.path + ": " + errno_text(errno));
    if (!S_ISREG(before.st_mode))
        throw StoreError(link.path + " is not a regular file");
    NewItem item;
    item.size = static_cast<uint64_t>(before.st_size);
    SegmentHasher segments;
    item.sha256 = hash_fd(f.get(), link.path, item.size, progress, &segments);
    item.seg_sha256 = segments.finish(item.seg_size);
    if (fstat(f.get(), &after) != 0 || after.st_size != before.st_size || mtime_ns(after) != mtime_ns(before))
        throw StoreError(link.path + " changed while it was hashed");
    link.size = item.size;
    link.mtime_ns = mtime_ns(before);
    register_item(*impl_, item, meta, link);
    return item;
}

std::string Store::item_path(const Item& item) const
{
    return item.link_path.empty() ? object_path(item.sha256) : item.link_path;
}

bool Store::linked_file_intact(const Item& item, std::string& why) const
{
    if (item.link_path.empty())
        return true;
    UniqueFd f(open(item.link_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (f.get() < 0) {
        why = "linked file " + item.link_path + " is gone: " + errno_text(errno);
        return false;
    }
    return linked_file_intact(item, f.get(), LinkCheck::content, why);
}

bool Store::linked_file_intact(const Item& item, int fd, LinkCheck how, std::string& why) const
{
    if (item.link_path.empty())
        return true;
    struct stat st;
    if (fd < 0) {
        why = "linked file " + item.link_path + " cannot be opened";
        return false;
    }
    if (fstat(fd, &st) != 0) {
        why = "linked file " + item.link_path + " is gone: " + errno_text(errno);
        return false;
    }
    // item.size too: it is the length the gateway promises in Content-Length.
    if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != item.link_size ||
        static_cast<uint64_t>(st.st_size) != item.size) {
        why = "linked file " + item.link_path + " changed size";
        return false;
    }
    if (mtime_ns(st) != item.link_mtime_ns) {
        why = "linked file " + item.link_path + " was modified";
        return false;
    }
    if (how == LinkCheck::stat)
        return true;
    try {
        if (hash_fd(fd, item.link_path, item.link_size, {}) != item.sha256) {
            why = "linked file " + item.link_path + " changed content";
            return false;
        }
    } catch (const StoreError& e) {
        why = e.what();
        return false;
    }
    return true;
}

void Store::record_trace(const std::vector<std::string>& ids, const ItemTrace& trace)
{
    if (ids.empty())
        return;
    impl_->index->write([&] {
        for (const auto& id : ids)
            impl_->index->set_item_trace(id, trace);
    });
}

bool Store::remove_item(const std::string& id)
{
    if (!is_lower_hex(id, 32))
        return false;
    Impl& s = *impl_;
    return s.index->write([&] {
        std::optional<ItemRecord> rec = s.index->find_item(id);
        if (!rec)
            return false;
        // Recipients and receipts go with the row.
        s.index->delete_item(id);
        // A linked file is the sender's own: never deleted. An object goes
        // when no other item needs it, by the rule gc uses too.
        if (rec->item.link_path.empty())
            layout::drop_object_if_unneeded(*s.index, s.dir, rec->item.sha256);
        return true;
    });
}

} // namespace mm
