// store.cpp - the sender's media store: content-addressed files under objects/,
// written through tmp/ and fsync'ed before an SQLite row (WAL, shared by mm-milter
// and mm-gateway) makes them reachable. Reads store.dir, gateway.public_url, gateway.retention.
#include "store/store.h"

#include "mime/segments.h"
#include "core/fileio.h"
#include "core/util.h"

#include <sqlite3.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <mutex>
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

// An id or token from a URL: exactly 32 lowercase hex digits (128 bits).

// A small RAII wrapper around a prepared statement.
struct Stmt {
    sqlite3_stmt* st = nullptr;
    Stmt(sqlite3* db, const char* sql)
    {
        if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) != SQLITE_OK)
            throw StoreError(std::string("index: cannot prepare statement: ") + sqlite3_errmsg(db));
    }
    ~Stmt() { sqlite3_finalize(st); }
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;
    void bind(int i, const std::string& s) { sqlite3_bind_text(st, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT); }
    void bind(int i, int64_t v) { sqlite3_bind_int64(st, i, v); }
};

std::string column_text(sqlite3_stmt* st, int i)
{
    const unsigned char* p = sqlite3_column_text(st, i);
    return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(st, i))) : "";
}

const char* const kSchema =
    "CREATE TABLE IF NOT EXISTS items ("
    " id TEXT PRIMARY KEY,"
    " token_sha256 TEXT NOT NULL,"   // the token itself is never stored
    " sha256 TEXT NOT NULL,"
    " size INTEGER NOT NULL,"
    " type TEXT NOT NULL, name TEXT NOT NULL, title TEXT NOT NULL, note TEXT NOT NULL,"
    " copyright TEXT NOT NULL, date TEXT NOT NULL,"
    " created TEXT NOT NULL, expires TEXT NOT NULL, expires_unix INTEGER NOT NULL,"
    " state TEXT NOT NULL DEFAULT 'active');"
    "CREATE INDEX IF NOT EXISTS items_sha256 ON items(sha256);"
    "CREATE TABLE IF NOT EXISTS recipients ("
    " item_id TEXT NOT NULL REFERENCES items(id) ON DELETE CASCADE,"
    " address TEXT NOT NULL,"
    " PRIMARY KEY (item_id, address));";

} // namespace

struct Store::Impl {
    std::string dir, public_url;
    int64_t retention = 0;
    std::string pin;
    sqlite3* db = nullptr;
    std::mutex mu;   // one connection, shared by the gateway's threads

    ~Impl()
    {
        if (db)
            sqlite3_close(db);
    }

    // Opening a new index while another process does the same: switching to WAL
    // and creating the schema may report SQLITE_BUSY without waiting on the busy
    // handler, so retry those for a bounded time.
    void exec_setup(const char* sql)
    {
        for (int attempt = 0;; ++attempt) {
            int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
            if (rc == SQLITE_OK)
                return;
            if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || attempt >= 200) {
                exec(sql);   // once more, for the error message
                return;
            }
            usleep(50000);
        }
    }

    // Indexes made before linked items existed lack their columns. Another
    // process may add them at the same moment: "duplicate column" is success.
    void migrate_link_columns()
    {
        const char* const cols[] = {
            "ALTER TABLE items ADD COLUMN link_path TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE items ADD COLUMN link_size INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE items ADD COLUMN link_mtime_ns INTEGER NOT NULL DEFAULT 0",
        };
        for (const char* sql : cols) {
            for (int attempt = 0;; ++attempt) {
                char* err = nullptr;
                int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
                std::string msg = err ? err : "";
                sqlite3_free(err);
                if (rc == SQLITE_OK || msg.find("duplicate column") != std::string::npos)
                    break;
                if ((rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && attempt < 200) {
                    usleep(50000);
                    continue;
                }
                throw StoreError("index " + dir + "/index.sqlite: cannot add link columns: " + msg);
            }
        }
    }

    void exec(const char* sql)
    {
        char* err = nullptr;
        if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
            std::string msg = err ? err : sqlite3_errmsg(db);
            sqlite3_free(err);
            throw StoreError(std::string("index ") + dir + "/index.sqlite: " + msg);
        }
    }
};

Store::Store(const Config& cfg) : impl_(std::make_unique<Impl>())
{
    Impl& s = *impl_;
    s.dir = cfg.str("store.dir");
    while (s.dir.size() > 1 && s.dir.back() == '/')
        s.dir.pop_back();
    s.public_url = cfg.str("gateway.public_url");
    while (!s.public_url.empty() && s.public_url.back() == '/')
        s.public_url.pop_back();
    s.retention = cfg.duration("gateway.retention").count();

    // The TLS identity first: a misconfigured key pair fails before anything is created.
    try {
        s.pin = tls_identity(cfg).pin;
    } catch (const StoreError&) {
        throw;
    } catch (const std::exception& e) {
        throw StoreError(e.what());
    }

    make_dirs(s.dir, 0750);
    ensure_dir(s.dir + "/objects", 0750);
    ensure_dir(s.dir + "/tmp", 0700);

    std::string db_path = s.dir + "/index.sqlite";
    if (sqlite3_open_v2(db_path.c_str(), &s.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        nullptr) != SQLITE_OK) {
        std::string msg = s.db ? sqlite3_errmsg(s.db) : "out of memory";
        sqlite3_close(s.db);
        s.db = nullptr;
        throw StoreError("cannot open index " + db_path + ": " + msg);
    }
    // Several processes (milter, gateway, admin commands) share the index: wait
    // for each other's locks rather than fail at once.
    sqlite3_busy_timeout(s.db, 10000);
    s.exec_setup("PRAGMA journal_mode=WAL");
    s.exec_setup("PRAGMA synchronous=FULL");   // a committed item survives a power cut
    s.exec_setup("PRAGMA foreign_keys=ON");
    s.exec_setup(kSchema);
    s.migrate_link_columns();

}

Store::~Store() = default;

const std::string& Store::pin() const { return impl_->pin; }

std::string Store::object_path(const std::string& sha256) const
{
    // The only path built from a name that could come from outside: checked lexically.
    if (!is_hex_digest(sha256))
        throw StoreError("not a SHA-256 digest: " + sha256.substr(0, 80));
    return impl_->dir + "/objects/" + sha256.substr(0, 2) + "/" + sha256;
}

namespace {

// Gives `item` (sha256 and size set) an id and token and records it with its
// recipients in one transaction; `link` is empty for objects in objects/.
struct Link {
    std::string path;
    uint64_t size = 0;
    int64_t mtime_ns = 0;
};

void register_item(Store::Impl& s_, NewItem& item, const ItemMeta& meta, const Link& link)
{
    item.id = random_hex(16);
    item.token = random_hex(16);
    time_t now = time(nullptr);
    time_t expires = now + static_cast<time_t>(s_.retention);
    item.expires = rfc3339(expires);
    item.pin = s_.pin;

    {
        std::lock_guard<std::mutex> lock(s_.mu);
        s_.exec("BEGIN IMMEDIATE");
        try {
            Stmt ins(s_.db,
                     "INSERT INTO items (id, token_sha256, sha256, size, type, name, title, note, copyright, "
                     "date, created, expires, expires_unix, state, link_path, link_size, link_mtime_ns) "
                     "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,'active',?,?,?)");
            ins.bind(1, item.id);
            ins.bind(2, sha256_hex(item.token));
            ins.bind(3, item.sha256);
            ins.bind(4, static_cast<int64_t>(item.size));
            ins.bind(5, meta.type);
            ins.bind(6, meta.name);
            ins.bind(7, meta.title);
            ins.bind(8, meta.note);
            ins.bind(9, meta.copyright);
            ins.bind(10, meta.date);
            ins.bind(11, rfc3339(now));
            ins.bind(12, item.expires);
            ins.bind(13, static_cast<int64_t>(expires));
            ins.bind(14, link.path);
            ins.bind(15, static_cast<int64_t>(link.size));
            ins.bind(16, link.mtime_ns);
            if (sqlite3_step(ins.st) != SQLITE_DONE)
                throw StoreError(std::string("index: cannot insert item: ") + sqlite3_errmsg(s_.db));
            for (const auto& r : meta.recipients) {
                Stmt rec(s_.db, "INSERT OR IGNORE INTO recipients (item_id, address) VALUES (?,?)");
                rec.bind(1, item.id);
                rec.bind(2, r);
                if (sqlite3_step(rec.st) != SQLITE_DONE)
                    throw StoreError(std::string("index: cannot insert recipient: ") + sqlite3_errmsg(s_.db));
            }
            s_.exec("COMMIT");
        } catch (...) {
            sqlite3_exec(s_.db, "ROLLBACK", nullptr, nullptr, nullptr);
            // The object may stay: without a row nobody can reach it, and
            // another item may share it (dedup). Clean-up collects orphans.
            throw;
        }
    }
    item.url = s_.public_url + "/m/" + item.id + "/" + item.token;
}

class FileWriter : public Store::Writer {
public:
    FileWriter(Store& store, Store::Impl& s) : store_(store), s_(s)
    {
        tmp_path_ = s_.dir + "/tmp/" + random_hex(16);
        fd_ = open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd_ < 0)
            throw StoreError("cannot create " + tmp_path_ + ": " + errno_text(errno));
    }

    ~FileWriter() override
    {
        if (fd_ >= 0)
            close(fd_);
        if (!done_)
            unlink(tmp_path_.c_str());
    }

    void write(const void* data, size_t len) override
    {
        if (done_ || fd_ < 0)
            throw StoreError("write after commit or failure on " + tmp_path_);
        const char* p = static_cast<const char*>(data);
        size_t left = len;
        while (left > 0) {
            ssize_t n = ::write(fd_, p, left);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                fail("cannot write " + tmp_path_ + ": " + errno_text(errno));
            }
            p += n;
            left -= static_cast<size_t>(n);
        }
        hash_.update(data, len);
        segments_.update(data, len);
        size_ += len;
        if (size_ - started_ >= kWritebackEvery) {
            // Start writing back what we have so far: commit's fsync then waits
            // for the last few MiB instead of the whole file (a 2 GiB video
            // would otherwise stall the MTA for the whole flush at the end).
            // Durability is still fsync's job; this only starts the I/O early.
            sync_file_range(fd_, static_cast<off_t>(started_), static_cast<off_t>(size_ - started_),
                            SYNC_FILE_RANGE_WRITE);
            started_ = size_;
        }
    }

    NewItem commit(const ItemMeta& meta) override
    {
        if (done_ || fd_ < 0)
            throw StoreError("commit twice or after failure on " + tmp_path_);
        if (fsync(fd_) != 0)
            fail("cannot fsync " + tmp_path_ + ": " + errno_text(errno));
        if (fchmod(fd_, 0640) != 0)
            fail("cannot chmod " + tmp_path_ + ": " + errno_text(errno));
        if (close(fd_) != 0) {
            fd_ = -1;
            fail("cannot close " + tmp_path_ + ": " + errno_text(errno));
        }
        fd_ = -1;

        NewItem item;
        item.sha256 = hash_.hex_digest();
        item.size = size_;
        item.seg_sha256 = segments_.finish(item.seg_size);
        std::string obj = store_.object_path(item.sha256);
        ensure_dir(s_.dir + "/objects/" + item.sha256.substr(0, 2), 0750);
        // link() fails if the object exists: identical content is already
        // stored (same hash), so the first copy stays and ours goes (dedup).
        if (link(tmp_path_.c_str(), obj.c_str()) != 0 && errno != EEXIST)
            throw StoreError("cannot place object " + obj + ": " + errno_text(errno));
        if (!fsync_dir_of(obj))
            throw StoreError("cannot fsync directory of " + obj + ": " + errno_text(errno));

        register_item(s_, item, meta, Link{});
        // remove_item() may have deleted the shared object between our link()
        // and our insert: our temp file still has the bytes, so put them back.
        if (access(obj.c_str(), F_OK) != 0 && link(tmp_path_.c_str(), obj.c_str()) != 0 && errno != EEXIST)
            throw StoreError("cannot place object " + obj + ": " + errno_text(errno));
        unlink(tmp_path_.c_str());
        done_ = true;
        return item;
    }

private:
    [[noreturn]] void fail(const std::string& msg)
    {
        if (fd_ >= 0)
            close(fd_);
        fd_ = -1;
        throw StoreError(msg);
    }

    Store& store_;
    Store::Impl& s_;
    std::string tmp_path_;
    int fd_ = -1;
    bool done_ = false;
    uint64_t size_ = 0;
    uint64_t started_ = 0;   // bytes whose writeback has been started
    static constexpr uint64_t kWritebackEvery = 8ULL << 20;
    Sha256 hash_;
    SegmentHasher segments_;
};

} // namespace

std::unique_ptr<Store::Writer> Store::create()
{
    return std::make_unique<FileWriter>(*this, *impl_);
}

std::optional<Item> Store::authorize(const std::string& id, const std::string& token)
{
    // Lexical check first: nothing malformed reaches SQL or the file system.
    if (!is_lower_hex(id, 32) || !is_lower_hex(token, 32))
        return std::nullopt;
    std::string want = sha256_hex(token);
    Item it;
    std::string token_hash;
    int64_t expires_unix = 0;
    {
        std::lock_guard<std::mutex> lock(impl_->mu);
        Stmt q(impl_->db,
               "SELECT id, sha256, size, type, name, title, note, copyright, date, created, expires, state, "
               "token_sha256, expires_unix, link_path, link_size, link_mtime_ns FROM items WHERE id = ?");
        q.bind(1, id);
        int rc = sqlite3_step(q.st);
        if (rc != SQLITE_ROW) {
            // An unknown id costs the same comparison as a wrong token, so
            // timing tells neither apart.
            static const std::string kNoToken(64, '0');
            (void)equal_ct(want, kNoToken);
            return std::nullopt;
        }
        it.id = column_text(q.st, 0);
        it.sha256 = column_text(q.st, 1);
        it.size = static_cast<uint64_t>(sqlite3_column_int64(q.st, 2));
        it.type = column_text(q.st, 3);
        it.name = column_text(q.st, 4);
        it.title = column_text(q.st, 5);
        it.note = column_text(q.st, 6);
        it.copyright = column_text(q.st, 7);
        it.date = column_text(q.st, 8);
        it.created = column_text(q.st, 9);
        it.expires = column_text(q.st, 10);
        it.state = column_text(q.st, 11);
        token_hash = column_text(q.st, 12);
        expires_unix = sqlite3_column_int64(q.st, 13);
        it.link_path = column_text(q.st, 14);
        it.link_size = static_cast<uint64_t>(sqlite3_column_int64(q.st, 15));
        it.link_mtime_ns = sqlite3_column_int64(q.st, 16);
    }
    // Compare hashes in constant time so the check leaks nothing about the token.
    if (!equal_ct(want, token_hash))
        return std::nullopt;
    if (it.state != "active")
        return std::nullopt;
    if (static_cast<int64_t>(time(nullptr)) >= expires_unix)
        return std::nullopt;
    if (!is_hex_digest(it.sha256))
        return std::nullopt;
    return it;
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
    struct stat st;
    if (f.get() < 0 || fstat(f.get(), &st) != 0) {
        why = "linked file " + item.link_path + " is gone: " + errno_text(errno);
        return false;
    }
    if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != item.link_size) {
        why = "linked file " + item.link_path + " changed size";
        return false;
    }
    if (mtime_ns(st) != item.link_mtime_ns) {
        why = "linked file " + item.link_path + " was modified";
        return false;
    }
    try {
        if (hash_fd(f.get(), item.link_path, item.link_size, {}) != item.sha256) {
            why = "linked file " + item.link_path + " changed content";
            return false;
        }
    } catch (const StoreError& e) {
        why = e.what();
        return false;
    }
    return true;
}

bool Store::remove_item(const std::string& id)
{
    if (!is_lower_hex(id, 32))
        return false;
    Impl& s = *impl_;
    std::lock_guard<std::mutex> lock(s.mu);
    s.exec("BEGIN IMMEDIATE");
    try {
        std::string sha, link_path;
        {
            Stmt q(s.db, "SELECT sha256, link_path FROM items WHERE id = ?");
            q.bind(1, id);
            if (sqlite3_step(q.st) != SQLITE_ROW) {
                s.exec("ROLLBACK");
                return false;
            }
            sha = column_text(q.st, 0);
            link_path = column_text(q.st, 1);
        }
        // Recipients go with the item (ON DELETE CASCADE).
        Stmt del(s.db, "DELETE FROM items WHERE id = ?");
        del.bind(1, id);
        if (sqlite3_step(del.st) != SQLITE_DONE)
            throw StoreError(std::string("index: cannot remove item: ") + sqlite3_errmsg(s.db));
        bool shared = false;
        if (link_path.empty()) {
            Stmt q(s.db, "SELECT 1 FROM items WHERE sha256 = ? AND link_path = '' LIMIT 1");
            q.bind(1, sha);
            shared = sqlite3_step(q.st) == SQLITE_ROW;
        }
        // A linked file is the user's own: never deleted. An object shared by
        // another item stays. The unlink happens while we hold the write lock,
        // so a writer deduplicating onto this object inserts its row after it
        // and then sees the object gone and places its own copy (see commit()).
        if (link_path.empty() && !shared && is_hex_digest(sha))
            unlink(object_path(sha).c_str());
        s.exec("COMMIT");
        return true;
    } catch (...) {
        sqlite3_exec(s.db, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
    }
}

} // namespace mm
