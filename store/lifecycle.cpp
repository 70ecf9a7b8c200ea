// lifecycle.cpp - receipts, after-delivery policy (keep | delete | archive),
// revocation and the expiry collector over the store's SQLite index.
// Reads store.dir, gateway.after_delivery, gateway.archive_dir.
//
// Every change that can remove a media file runs inside BEGIN IMMEDIATE, the
// same write lock under which Store registers new items, so an object is never
// removed while another process is recording an item that needs it.
#include "store/lifecycle.h"

#include "core/address.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/util.h"

#include <sqlite3.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <mutex>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

namespace mm {

namespace {

constexpr time_t kOrphanAge = 3600;            // an unregistered object younger than this may be mid-commit
constexpr time_t kTmpAge = 24 * 3600;          // a writer's temp file older than this is abandoned

struct Q {
    sqlite3* db;
    sqlite3_stmt* st = nullptr;
    Q(sqlite3* d, const char* sql) : db(d)
    {
        if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) != SQLITE_OK)
            throw StoreError(std::string("index: cannot prepare statement: ") + sqlite3_errmsg(db));
    }
    ~Q() { sqlite3_finalize(st); }
    Q(const Q&) = delete;
    Q& operator=(const Q&) = delete;
    Q& bind(int i, const std::string& s)
    {
        sqlite3_bind_text(st, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
        return *this;
    }
    Q& bind(int i, int64_t v)
    {
        sqlite3_bind_int64(st, i, v);
        return *this;
    }
    bool row()
    {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            return true;
        if (rc != SQLITE_DONE)
            throw StoreError(std::string("index: ") + sqlite3_errmsg(db));
        return false;
    }
    void done() { row(); }
    std::string text(int i)
    {
        const unsigned char* p = sqlite3_column_text(st, i);
        return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(st, i))) : "";
    }
    int64_t num(int i) { return sqlite3_column_int64(st, i); }
};

bool is_hex_prefix(const std::string& s)
{
    if (s.size() < 6 || s.size() > 32)
        return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    return true;
}

} // namespace


struct Lifecycle::Impl {
    std::string dir, policy, archive_dir;
    sqlite3* db = nullptr;
    std::mutex mu;
    bool has_link = false;   // index made by a store that knows linked items

    ~Impl()
    {
        if (db)
            sqlite3_close(db);
    }

    void exec(const char* sql)
    {
        char* err = nullptr;
        if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
            std::string msg = err ? err : sqlite3_errmsg(db);
            sqlite3_free(err);
            throw StoreError("index " + dir + "/index.sqlite: " + msg);
        }
    }

    std::string object_path(const std::string& sha) const
    {
        return dir + "/objects/" + sha.substr(0, 2) + "/" + sha;
    }

    // Within a write transaction: does any item that may still be served need
    // the object with this digest?
    bool object_needed(const std::string& sha)
    {
        Q q(db, has_link ? "SELECT 1 FROM items WHERE sha256 = ? AND state = 'active' AND link_path = '' LIMIT 1"
                         : "SELECT 1 FROM items WHERE sha256 = ? AND state = 'active' LIMIT 1");
        q.bind(1, sha);
        return q.row();
    }

    // Within a write transaction: removes the object unless an active item needs it.
    void drop_object_if_unneeded(const std::string& sha, GcReport* report)
    {
        if (!is_hex_digest(sha) || object_needed(sha))
            return;
        std::string path = object_path(sha);
        struct stat st;
        if (lstat(path.c_str(), &st) != 0)
            return;
        if (unlink(path.c_str()) != 0) {
            log_error("cannot remove " + path + ": " + std::strerror(errno));
            return;
        }
        if (report) {
            report->objects_removed++;
            report->bytes_freed += static_cast<uint64_t>(st.st_size);
        }
    }

    // Copies (or hard-links) the object into archive_dir/<sha256>, durably,
    // before anything is removed.
    void archive_object(const std::string& sha)
    {
        std::string src = object_path(sha), dst = archive_dir + "/" + sha;
        struct stat st;
        if (stat(dst.c_str(), &st) == 0)
            return;   // already archived (the same media, delivered before)
        if (mkdir(archive_dir.c_str(), 0750) != 0 && errno != EEXIST)
            throw StoreError("cannot create archive_dir " + archive_dir + ": " + std::strerror(errno));
        if (link(src.c_str(), dst.c_str()) == 0) {
            if (!fsync_dir_of(dst))
                throw StoreError("cannot fsync " + archive_dir + ": " + std::strerror(errno));
            return;
        }
        if (errno != EXDEV && errno != EPERM)
            throw StoreError("cannot archive " + src + " to " + dst + ": " + std::strerror(errno));
        // Another file system: copy to a temp name, fsync, rename.
        std::string tmp = dst + ".tmp-" + random_hex(8);
        int in = open(src.c_str(), O_RDONLY | O_CLOEXEC);
        if (in < 0)
            throw StoreError("cannot open " + src + ": " + std::strerror(errno));
        int out = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        if (out < 0) {
            int e = errno;
            close(in);
            throw StoreError("cannot create " + tmp + ": " + std::strerror(e));
        }
        std::string buf(256 * 1024, '\0');
        bool ok = true;
        for (;;) {
            ssize_t n = read(in, buf.data(), buf.size());
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                ok = n == 0;
                break;
            }
            for (ssize_t done = 0; done < n && ok;) {
                ssize_t w = write(out, buf.data() + done, static_cast<size_t>(n - done));
                if (w < 0 && errno == EINTR)
                    continue;
                ok = w > 0;
                done += w > 0 ? w : 0;
            }
            if (!ok)
                break;
        }
        int e = errno;
        close(in);
        ok = ok && fsync(out) == 0;
        ok = close(out) == 0 && ok;
        if (!ok || rename(tmp.c_str(), dst.c_str()) != 0 || !fsync_dir_of(dst)) {
            unlink(tmp.c_str());
            throw StoreError("cannot copy " + src + " to " + dst + ": " + std::strerror(e ? e : errno));
        }
    }

    // Within a write transaction: the after-delivery policy for one item whose
    // every recipient has a receipt. Returns true if the item changed state.
    bool finish(const std::string& id, const std::string& sha, bool linked, GcReport* report)
    {
        if (policy == "keep")
            return false;
        if (policy == "archive" && !linked)
            archive_object(sha);
        // A linked item is the sender's own file: never archived or removed, only retired.
        Q up(db, "UPDATE items SET state = ? WHERE id = ? AND state = 'active'");
        up.bind(1, std::string(policy == "archive" ? "archived" : "deleted")).bind(2, id).done();
        if (!linked)
            drop_object_if_unneeded(sha, report);
        return true;
    }

    // The item's envelope recipients, normalized as receipts are (the index
    // keeps them as the sending program gave them).
    std::set<std::string> recipients_of(const std::string& id)
    {
        std::set<std::string> out;
        Q q(db, "SELECT address FROM recipients WHERE item_id = ?");
        q.bind(1, id);
        while (q.row()) {
            std::string a = normalize_address(q.text(0));
            if (!a.empty())
                out.insert(a);
        }
        return out;
    }

    std::map<std::string, std::string> receipts_of(const std::string& id)
    {
        std::map<std::string, std::string> out;
        Q q(db, "SELECT address, received FROM receipts WHERE item_id = ?");
        q.bind(1, id);
        while (q.row())
            out[q.text(0)] = q.text(1);
        return out;
    }

    // Within a write transaction: is every recipient of the item covered by a receipt?
    bool all_received(const std::string& id)
    {
        std::set<std::string> want = recipients_of(id);
        std::map<std::string, std::string> got = receipts_of(id);
        if (want.empty())
            return false;   // nobody to confirm: only expiry ends such an item
        for (const auto& a : want)
            if (!got.count(a))
                return false;
        return true;
    }

    std::string resolve(const std::string& id_or_prefix)
    {
        if (!is_hex_prefix(id_or_prefix))
            throw StoreError("not an item id (6 to 32 lowercase hex digits): " + printable(id_or_prefix, 40));
        Q q(db, "SELECT id FROM items WHERE substr(id, 1, ?) = ? LIMIT 2");
        q.bind(1, static_cast<int64_t>(id_or_prefix.size())).bind(2, id_or_prefix);
        std::vector<std::string> ids;
        while (q.row())
            ids.push_back(q.text(0));
        if (ids.empty())
            throw StoreError("no item " + id_or_prefix);
        if (ids.size() > 1)
            throw StoreError("more than one item starts with " + id_or_prefix);
        return ids[0];
    }

    ItemSummary summary(Q& q)
    {
        ItemSummary s;
        s.id = q.text(0);
        s.sha256 = q.text(1);
        s.size = static_cast<uint64_t>(q.num(2));
        s.type = q.text(3);
        s.name = q.text(4);
        s.title = q.text(5);
        s.note = q.text(6);
        s.date = q.text(7);
        s.created = q.text(8);
        s.expires = q.text(9);
        s.state = q.text(10);
        s.expires_unix = q.num(11);
        s.recipients = static_cast<uint64_t>(q.num(12));
        s.receipts = static_cast<uint64_t>(q.num(13));
        s.linked = q.num(14) != 0;
        return s;
    }

    std::string summary_sql(const char* where)
    {
        return std::string("SELECT i.id, i.sha256, i.size, i.type, i.name, i.title, i.note, i.date, i.created, "
                           "i.expires, i.state, i.expires_unix, "
                           "(SELECT count(*) FROM recipients r WHERE r.item_id = i.id), "
                           "(SELECT count(*) FROM receipts x WHERE x.item_id = i.id), ") +
               (has_link ? "i.link_path != ''" : "0") + " FROM items i " + where;
    }
};

// Runs `body` inside BEGIN IMMEDIATE, rolling back on any exception.
template <class F>
static auto in_write_txn(Lifecycle::Impl& s, F body)
{
    s.exec("BEGIN IMMEDIATE");
    try {
        auto r = body();
        s.exec("COMMIT");
        return r;
    } catch (...) {
        sqlite3_exec(s.db, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
    }
}

Lifecycle::Lifecycle(const Config& cfg) : impl_(std::make_unique<Impl>())
{
    Impl& s = *impl_;
    s.dir = cfg.str("store.dir");
    while (s.dir.size() > 1 && s.dir.back() == '/')
        s.dir.pop_back();
    s.policy = cfg.str("gateway.after_delivery");
    s.archive_dir = cfg.str("gateway.archive_dir");
    while (s.archive_dir.size() > 1 && s.archive_dir.back() == '/')
        s.archive_dir.pop_back();
    if (s.policy == "archive" && (s.archive_dir == s.dir || s.archive_dir.rfind(s.dir + "/objects", 0) == 0))
        throw ConfigError("gateway.archive_dir = '" + s.archive_dir + "' must not be store.dir or inside its objects/");

    std::string path = s.dir + "/index.sqlite";
    if (sqlite3_open_v2(path.c_str(), &s.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
        std::string msg = s.db ? sqlite3_errmsg(s.db) : "out of memory";
        throw StoreError("cannot open index " + path + ": " + msg);
    }
    sqlite3_busy_timeout(s.db, 10000);
    s.exec("PRAGMA synchronous=FULL");
    s.exec("PRAGMA foreign_keys=ON");
    // Receipts are keyed by the normalized address, so a repeated receipt is a no-op.
    for (int attempt = 0;; ++attempt) {
        int rc = sqlite3_exec(s.db,
                              "CREATE TABLE IF NOT EXISTS receipts ("
                              " item_id TEXT NOT NULL REFERENCES items(id) ON DELETE CASCADE,"
                              " address TEXT NOT NULL,"
                              " received TEXT NOT NULL,"
                              " PRIMARY KEY (item_id, address))",
                              nullptr, nullptr, nullptr);
        if (rc == SQLITE_OK)
            break;
        if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || attempt >= 200)
            throw StoreError("index " + path + ": cannot create receipts table: " + sqlite3_errmsg(s.db));
        usleep(50000);
    }
    Q cols(s.db, "SELECT 1 FROM pragma_table_info('items') WHERE name = 'link_path'");
    s.has_link = cols.row();
}

Lifecycle::~Lifecycle() = default;

bool Lifecycle::receipt(const Item& item, const std::string& recipient, const std::string& sha256)
{
    Impl& s = *impl_;
    std::string addr = normalize_address(recipient);
    // The digest is public (it is in the mail); comparing in constant time anyway
    // keeps every refusal path the same shape.
    bool digest_ok = equal_ct(sha256, item.sha256);
    if (addr.empty() || !digest_ok)
        return false;
    std::lock_guard<std::mutex> lock(s.mu);
    return in_write_txn(s, [&] {
        if (!s.recipients_of(item.id).count(addr))
            return false;
        Q ins(s.db, "INSERT OR IGNORE INTO receipts (item_id, address, received) VALUES (?,?,?)");
        ins.bind(1, item.id).bind(2, addr).bind(3, rfc3339(time(nullptr))).done();
        if (s.all_received(item.id)) {
            try {
                bool linked = false;
                if (s.has_link) {
                    Q l(s.db, "SELECT link_path != '' FROM items WHERE id = ?");
                    l.bind(1, item.id);
                    linked = l.row() && l.num(0) != 0;
                }
                if (s.finish(item.id, item.sha256, linked, nullptr))
                    log_info("item " + item.id.substr(0, 8) + ": every recipient has it, " + s.policy + "d");
            } catch (const StoreError& e) {
                // The receipt stands; the collector retries the policy later.
                log_error("item " + item.id.substr(0, 8) + ": after-delivery " + s.policy + " failed: " + e.what());
            }
        }
        return true;
    });
}

bool Lifecycle::revoke(const std::string& id_or_prefix)
{
    Impl& s = *impl_;
    std::lock_guard<std::mutex> lock(s.mu);
    return in_write_txn(s, [&] {
        std::string id = s.resolve(id_or_prefix);
        Q up(s.db, "UPDATE items SET state = 'revoked' WHERE id = ? AND state = 'active'");
        up.bind(1, id).done();
        return sqlite3_changes(s.db) > 0;
    });
}

GcReport Lifecycle::gc()
{
    Impl& s = *impl_;
    std::lock_guard<std::mutex> lock(s.mu);
    GcReport report;
    in_write_txn(s, [&] {
        // 1. Finished items whose policy has not run yet (e.g. archive_dir was full).
        std::vector<std::tuple<std::string, std::string, bool>> finished;
        {
            Q q(s.db, s.has_link ? "SELECT id, sha256, link_path != '' FROM items WHERE state = 'active'"
                                 : "SELECT id, sha256, 0 FROM items WHERE state = 'active'");
            while (q.row())
                finished.emplace_back(q.text(0), q.text(1), q.num(2) != 0);
        }
        for (const auto& [id, sha, linked] : finished) {
            if (!s.all_received(id))
                continue;
            try {
                if (s.finish(id, sha, linked, &report))
                    report.delivered_items++;
            } catch (const StoreError& e) {
                log_error("item " + id.substr(0, 8) + ": after-delivery " + s.policy + " failed: " + e.what());
            }
        }

        // 2. Expired items, whatever their state: rows go (recipients and
        // receipts cascade), and their objects if nothing else needs them.
        std::set<std::string> touched;
        {
            Q q(s.db, "SELECT id, sha256 FROM items WHERE expires_unix <= ?");
            q.bind(1, static_cast<int64_t>(time(nullptr)));
            std::vector<std::string> ids;
            while (q.row()) {
                ids.push_back(q.text(0));
                touched.insert(q.text(1));
            }
            for (const auto& id : ids) {
                Q del(s.db, "DELETE FROM items WHERE id = ?");
                del.bind(1, id).done();
                report.expired_items++;
            }
        }
        // Revoked items' media is not needed either.
        {
            Q q(s.db, "SELECT DISTINCT sha256 FROM items WHERE state != 'active'");
            while (q.row())
                touched.insert(q.text(0));
        }
        for (const auto& sha : touched)
            s.drop_object_if_unneeded(sha, &report);

        // 3. Objects without any row (a commit that failed after placing its
        // file), once old enough that no commit can still be under way.
        std::set<std::string> known;
        {
            Q q(s.db, "SELECT DISTINCT sha256 FROM items");
            while (q.row())
                known.insert(q.text(0));
        }
        time_t now = time(nullptr);
        std::string objects = s.dir + "/objects";
        if (DIR* top = opendir(objects.c_str())) {
            while (dirent* d = readdir(top)) {
                std::string sub = d->d_name;
                if (sub.size() != 2)
                    continue;
                std::string subdir = objects + "/" + sub;
                DIR* inner = opendir(subdir.c_str());
                if (!inner)
                    continue;
                while (dirent* e = readdir(inner)) {
                    std::string name = e->d_name;
                    if (!is_hex_digest(name) || name.compare(0, 2, sub) != 0 || known.count(name))
                        continue;
                    std::string path = subdir + "/" + name;
                    struct stat st;
                    if (lstat(path.c_str(), &st) == 0 && now - st.st_mtime > kOrphanAge && unlink(path.c_str()) == 0) {
                        report.objects_removed++;
                        report.bytes_freed += static_cast<uint64_t>(st.st_size);
                    }
                }
                closedir(inner);
            }
            closedir(top);
        }
        return 0;
    });

    // 4. Temp files of writers that died (outside the transaction: no row refers to them).
    std::string tmp = s.dir + "/tmp";
    if (DIR* d = opendir(tmp.c_str())) {
        time_t now = time(nullptr);
        while (dirent* e = readdir(d)) {
            std::string name = e->d_name;
            if (name == "." || name == "..")
                continue;
            std::string path = tmp + "/" + name;
            struct stat st;
            if (lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && now - st.st_mtime > kTmpAge &&
                unlink(path.c_str()) == 0)
                report.tmp_removed++;
        }
        closedir(d);
    }
    return report;
}

std::vector<ItemSummary> Lifecycle::list()
{
    Impl& s = *impl_;
    std::lock_guard<std::mutex> lock(s.mu);
    std::vector<ItemSummary> out;
    Q q(s.db, s.summary_sql("ORDER BY i.created, i.id").c_str());
    while (q.row())
        out.push_back(s.summary(q));
    return out;
}

ItemDetail Lifecycle::show(const std::string& id_or_prefix)
{
    Impl& s = *impl_;
    std::lock_guard<std::mutex> lock(s.mu);
    ItemDetail d;
    std::string id = s.resolve(id_or_prefix);
    {
        Q q(s.db, s.summary_sql("WHERE i.id = ?").c_str());
        q.bind(1, id);
        if (!q.row())
            throw StoreError("no item " + id);
        d.item = s.summary(q);
    }
    std::map<std::string, std::string> got = s.receipts_of(id);
    Q r(s.db, "SELECT address FROM recipients WHERE item_id = ? ORDER BY address");
    r.bind(1, id);
    while (r.row()) {
        auto it = got.find(normalize_address(r.text(0)));
        d.recipients.push_back(RecipientStatus{r.text(0), it == got.end() ? "" : it->second});
    }
    return d;
}

StoreStats Lifecycle::stats()
{
    Impl& s = *impl_;
    std::lock_guard<std::mutex> lock(s.mu);
    StoreStats st;
    {
        Q q(s.db, "SELECT state, count(*) FROM items GROUP BY state ORDER BY state");
        while (q.row()) {
            st.items_by_state[q.text(0)] = static_cast<uint64_t>(q.num(1));
            st.items += static_cast<uint64_t>(q.num(1));
        }
    }
    {
        Q q(s.db, "SELECT count(*) FROM receipts");
        if (q.row())
            st.receipts = static_cast<uint64_t>(q.num(0));
    }
    auto walk = [](const std::string& dir, uint64_t& files, uint64_t* bytes, bool nested) {
        DIR* d = opendir(dir.c_str());
        if (!d)
            return;
        while (dirent* e = readdir(d)) {
            std::string name = e->d_name;
            if (name == "." || name == "..")
                continue;
            std::string path = dir + "/" + name;
            struct stat sb;
            if (lstat(path.c_str(), &sb) != 0)
                continue;
            if (nested && S_ISDIR(sb.st_mode)) {
                if (DIR* in = opendir(path.c_str())) {
                    while (dirent* f = readdir(in)) {
                        struct stat fb;
                        if (is_hex_digest(f->d_name) && lstat((path + "/" + f->d_name).c_str(), &fb) == 0) {
                            files++;
                            if (bytes)
                                *bytes += static_cast<uint64_t>(fb.st_size);
                        }
                    }
                    closedir(in);
                }
            } else if (!nested && is_hex_digest(name)) {
                files++;
            }
        }
        closedir(d);
    };
    walk(s.dir + "/objects", st.objects, &st.object_bytes, true);
    walk(s.archive_dir, st.archived_files, nullptr, false);
    return st;
}

} // namespace mm
