// index.cpp - the media store's SQLite index (see index.h): connection, schema,
// migrations by PRAGMA user_version, and every statement the store runs.
// Reads nothing from the config: Store and Lifecycle pass the path.
//
// Several processes open the same file (mm-milter writes, mm-gateway serves
// and collects, mmsend and the admin commands come and go): WAL so readers never
// wait for the writer, a busy timeout so writers queue instead of failing, and
// every change under BEGIN IMMEDIATE so that the write lock is taken up front.
#include "store/index.h"

#include <sqlite3.h>

#include <cerrno>
#include <csignal>
#include <unistd.h>

namespace mm {

namespace {

constexpr int kBusyTimeoutMs = 10000;   // writers wait for each other this long
constexpr int kSetupAttempts = 200;     // x 50 ms: see exec_retrying()

// The latest items and recipients, for a new index (with kReceiptsTable). An
// older index reaches the same shape through kMigrations (ALTER TABLE appends
// columns, as here); test_index.cpp compares the two.
const char* const kSchema =
    "CREATE TABLE IF NOT EXISTS items ("
    " id TEXT PRIMARY KEY,"
    " token_sha256 TEXT NOT NULL,"   // the token itself is never stored
    " sha256 TEXT NOT NULL,"
    " size INTEGER NOT NULL,"
    " type TEXT NOT NULL, name TEXT NOT NULL, title TEXT NOT NULL, note TEXT NOT NULL,"
    " copyright TEXT NOT NULL, date TEXT NOT NULL,"
    " created TEXT NOT NULL, expires TEXT NOT NULL, expires_unix INTEGER NOT NULL,"
    " state TEXT NOT NULL DEFAULT 'active',"
    " link_path TEXT NOT NULL DEFAULT '',"
    " link_size INTEGER NOT NULL DEFAULT 0,"
    " link_mtime_ns INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS items_sha256 ON items(sha256);"
    "CREATE TABLE IF NOT EXISTS recipients ("
    " item_id TEXT NOT NULL REFERENCES items(id) ON DELETE CASCADE,"
    " address TEXT NOT NULL,"
    " token_sha256 TEXT NOT NULL DEFAULT '',"   // the recipient's own token (version 4), hashed
    " revoked INTEGER NOT NULL DEFAULT 0,"       // mm-gateway revoke ID --recipient ADDR
    " PRIMARY KEY (item_id, address));"
    "CREATE INDEX IF NOT EXISTS recipients_token ON recipients(item_id, token_sha256);";

// Version 3's table, in a new index and in the migration alike. Receipts are
// keyed by the normalized address, so a repeated receipt is a no-op.
const char* const kReceiptsTable =
    "CREATE TABLE IF NOT EXISTS receipts ("
    " item_id TEXT NOT NULL REFERENCES items(id) ON DELETE CASCADE,"
    " address TEXT NOT NULL,"
    " received TEXT NOT NULL,"
    " PRIMARY KEY (item_id, address))";

StoreError index_error(const std::string& path, const std::string& what)
{
    return StoreError("index " + path + ": " + what);
}

// The one prepared-statement wrapper: finalized on every path, errors as StoreError.
class Statement {
public:
    Statement(sqlite3* db, const std::string& path, const char* sql) : db_(db), path_(path)
    {
        if (sqlite3_prepare_v2(db_, sql, -1, &st_, nullptr) != SQLITE_OK)
            throw index_error(path_, std::string("cannot prepare statement: ") + sqlite3_errmsg(db_));
    }
    ~Statement() { sqlite3_finalize(st_); }
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    Statement& bind(int i, const std::string& s)
    {
        sqlite3_bind_text(st_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
        return *this;
    }
    Statement& bind(int i, int64_t v)
    {
        sqlite3_bind_int64(st_, i, v);
        return *this;
    }
    /// Steps once: true with a row, false when done; throws on an error.
    bool row()
    {
        int rc = sqlite3_step(st_);
        if (rc == SQLITE_ROW)
            return true;
        if (rc != SQLITE_DONE)
            throw index_error(path_, sqlite3_errmsg(db_));
        return false;
    }
    /// Runs a statement that returns no rows; the number of rows it changed.
    int64_t run()
    {
        while (row()) {
        }
        return sqlite3_changes64(db_);
    }
    std::string text(int i)
    {
        const unsigned char* p = sqlite3_column_text(st_, i);
        return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(st_, i)))
                 : std::string();
    }
    int64_t num(int i) { return sqlite3_column_int64(st_, i); }

private:
    sqlite3* db_;
    const std::string& path_;
    sqlite3_stmt* st_ = nullptr;
};

void exec(sqlite3* db, const std::string& path, const char* sql)
{
    char* err = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
        std::string msg = err ? err : sqlite3_errmsg(db);
        sqlite3_free(err);
        throw index_error(path, msg);
    }
}

// While another process creates the same index or switches it to WAL, SQLite
// may answer SQLITE_BUSY without waiting on the busy handler: setup statements
// retry for a bounded time (10 s) instead.
void exec_retrying(sqlite3* db, const std::string& path, const char* sql)
{
    for (int attempt = 0;; ++attempt) {
        int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
        if (rc == SQLITE_OK)
            return;
        if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || attempt >= kSetupAttempts) {
            exec(db, path, sql);   // once more, for the error message
            return;
        }
        usleep(50000);
    }
}

int user_version(sqlite3* db, const std::string& path)
{
    Statement q(db, path, "PRAGMA user_version");
    return q.row() ? static_cast<int>(q.num(0)) : 0;
}

void refuse_newer(const std::string& path, int version)
{
    if (version > Index::kVersion)
        throw index_error(path, "schema version " + std::to_string(version) + " is newer than this program's (" +
                                    std::to_string(Index::kVersion) +
                                    "): a newer MediaMail wrote it; run that one, or move the store aside");
    if (version < 0)
        throw index_error(path, "schema version " + std::to_string(version) + " is not one MediaMail writes");
}

bool table_exists(sqlite3* db, const std::string& path, const char* table)
{
    Statement q(db, path, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?");
    q.bind(1, std::string(table));
    return q.row();
}

bool column_exists(sqlite3* db, const std::string& path, const char* table, const char* column)
{
    Statement q(db, path, "SELECT 1 FROM pragma_table_info(?) WHERE name = ?");
    q.bind(1, std::string(table)).bind(2, std::string(column));
    return q.row();
}

// ---- migrations: each brings an index from version `to - 1` to `to` ----
//
// Indexes written before user_version was kept say 0 but have version 1's
// tables, and often already 2's columns and 3's table (each program added what
// it needed on open): so every step tolerates finding its work done.

void add_link_columns(sqlite3* db, const std::string& path)
{
    const struct {
        const char* name;
        const char* sql;
    } cols[] = {
        {"link_path", "ALTER TABLE items ADD COLUMN link_path TEXT NOT NULL DEFAULT ''"},
        {"link_size", "ALTER TABLE items ADD COLUMN link_size INTEGER NOT NULL DEFAULT 0"},
        {"link_mtime_ns", "ALTER TABLE items ADD COLUMN link_mtime_ns INTEGER NOT NULL DEFAULT 0"},
    };
    for (const auto& c : cols)
        if (!column_exists(db, path, "items", c.name))
            exec(db, path, c.sql);
}

// Lifecycle created this table on open before user_version was kept.
void add_receipts(sqlite3* db, const std::string& path) { exec(db, path, kReceiptsTable); }

// Versions 4 and 6: each recipient's own token (hashed, like the item's) and
// its revocation. Rows from before have no token: those recipients only ever
// got the item token, whose receipts count for nobody (lifecycle.cpp).
// The quota change (version 5) landed first with version 4 an empty step, so
// stores made by that release are at version 5 without these columns; step 6
// runs the same idempotent function again to give them what step 4 gives
// everyone else (on a store that had step 4 it finds everything in place).
void add_recipient_tokens(sqlite3* db, const std::string& path)
{
    if (!column_exists(db, path, "recipients", "token_sha256"))
        exec(db, path, "ALTER TABLE recipients ADD COLUMN token_sha256 TEXT NOT NULL DEFAULT ''");
    if (!column_exists(db, path, "recipients", "revoked"))
        exec(db, path, "ALTER TABLE recipients ADD COLUMN revoked INTEGER NOT NULL DEFAULT 0");
    exec(db, path, "CREATE INDEX IF NOT EXISTS recipients_token ON recipients(item_id, token_sha256)");
}

// Version 5: quota accounting (quota.h). Who stored each item and when, and
// the running writers' reservations: the index is shared by every process that
// writes media, so the accounting has to live where they all see it, under the
// same write lock. Items from before keep sender '' and created_unix 0 (outside
// every sender's window; their bytes still count toward store.max_bytes).
void add_quota_accounting(sqlite3* db, const std::string& path)
{
    if (!column_exists(db, path, "items", "sender"))
        exec(db, path, "ALTER TABLE items ADD COLUMN sender TEXT NOT NULL DEFAULT ''");
    if (!column_exists(db, path, "items", "created_unix"))
        exec(db, path, "ALTER TABLE items ADD COLUMN created_unix INTEGER NOT NULL DEFAULT 0");
    exec(db, path,
         "CREATE INDEX IF NOT EXISTS items_sender ON items(sender, created_unix);"
         "CREATE TABLE IF NOT EXISTS reservations ("
         " id TEXT PRIMARY KEY,"
         " sender TEXT NOT NULL,"
         " bytes INTEGER NOT NULL,"     // the writer's whole reservation
         " written INTEGER NOT NULL,"   // of which already on disk (in tmp/)
         " pid INTEGER NOT NULL,"       // a crashed writer's row goes when its pid does
         " updated_unix INTEGER NOT NULL)");
}

// Version 6: which mail each item went out in (ItemTrace), so that one mail can
// be followed from the milter's log line to the gateway's and found again with
// `mm-gateway list --message-id`. Items from before keep ''.
void add_trace_columns(sqlite3* db, const std::string& path)
{
    const struct {
        const char* name;
        const char* sql;
    } cols[] = {
        {"message_id", "ALTER TABLE items ADD COLUMN message_id TEXT NOT NULL DEFAULT ''"},
        {"envelope_from", "ALTER TABLE items ADD COLUMN envelope_from TEXT NOT NULL DEFAULT ''"},
        {"queue_id", "ALTER TABLE items ADD COLUMN queue_id TEXT NOT NULL DEFAULT ''"},
    };
    for (const auto& c : cols)
        if (!column_exists(db, path, "items", c.name))
            exec(db, path, c.sql);
    exec(db, path, "CREATE INDEX IF NOT EXISTS items_message_id ON items(message_id)");
}

// Version 8: uploads to the gateway (docs/gateway-api.md, "Uploads"). Each
// user's upload token, hashed like item tokens, and the uploads still open:
// what their POST declared. The bytes are in uploads/<id> (layout.h); an
// upload becomes an item, with its own row in items, on its last byte.
void add_uploads(sqlite3* db, const std::string& path)
{
    exec(db, path,
         "CREATE TABLE IF NOT EXISTS upload_tokens ("
         " user TEXT PRIMARY KEY,"
         " token_sha256 TEXT NOT NULL UNIQUE,"
         " created TEXT NOT NULL);"
         "CREATE TABLE IF NOT EXISTS uploads ("
         " id TEXT PRIMARY KEY,"
         " user TEXT NOT NULL,"
         " size INTEGER NOT NULL,"
         " sha256 TEXT NOT NULL,"   // as declared by the client ('' if none): the resume key
         " type TEXT NOT NULL, name TEXT NOT NULL, title TEXT NOT NULL, note TEXT NOT NULL,"
         " copyright TEXT NOT NULL, date TEXT NOT NULL,"
         " recipients TEXT NOT NULL,"   // one address per line
         " created_unix INTEGER NOT NULL,"
         " expires_unix INTEGER NOT NULL);"
         "CREATE INDEX IF NOT EXISTS uploads_user ON uploads(user, sha256, size)");
}

const struct Migration {
    int to;
    void (*apply)(sqlite3*, const std::string&);
} kMigrations[] = {
    {2, add_link_columns},
    {3, add_receipts},
    {4, add_recipient_tokens},
    {5, add_quota_accounting},
    {6, add_recipient_tokens},   // again: see above
    {7, add_trace_columns},
    {8, add_uploads},
};
static_assert(sizeof kMigrations / sizeof kMigrations[0] == Index::kVersion - 1, "one migration per version after 1");

std::vector<ItemRef> item_refs(Statement& q)
{
    std::vector<ItemRef> out;
    while (q.row())
        out.push_back(ItemRef{q.text(0), q.text(1), q.num(2) != 0});
    return out;
}

const char* const kSummarySelect =
    "SELECT i.id, i.sha256, i.size, i.type, i.name, i.title, i.note, i.date, i.created, i.expires, i.state, "
    "i.expires_unix, "
    "(SELECT count(*) FROM recipients r WHERE r.item_id = i.id), "
    "(SELECT count(*) FROM receipts x WHERE x.item_id = i.id), "
    "i.link_path != '', i.message_id, i.envelope_from, i.queue_id "
    "FROM items i ";

ItemSummary summary_of(Statement& q)
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
    s.message_id = q.text(15);
    s.envelope_from = q.text(16);
    s.queue_id = q.text(17);
    return s;
}

} // namespace

std::string sanitize_trace(std::string_view value, size_t max)
{
    std::string out;
    for (char c : value) {
        unsigned char u = static_cast<unsigned char>(c);
        if (u >= 0x20 && u != 0x7f)   // CR, LF, NUL, ESC... would forge lines or fool terminals
            out += c;
        else if (c == '\t')
            out += ' ';
    }
    size_t b = out.find_first_not_of(' ');
    if (b == std::string::npos)
        return std::string();
    size_t e = out.find_last_not_of(' ');
    out = out.substr(b, e - b + 1);
    if (out.size() > max) {
        out.resize(max);
        // Not in the middle of a UTF-8 sequence: drop continuation bytes and their lead.
        size_t k = out.size();
        while (k > 0 && (static_cast<unsigned char>(out[k - 1]) & 0xC0) == 0x80)
            --k;
        if (k > 0 && static_cast<unsigned char>(out[k - 1]) >= 0xC0) {
            unsigned char lead = static_cast<unsigned char>(out[k - 1]);
            size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
            if (out.size() - (k - 1) < need)
                out.resize(k - 1);
        }
    }
    return out;
}

Index::Index(const std::string& path, Open how) : path_(path)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (how == Open::create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path_.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
        std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
        sqlite3_close(db_);
        db_ = nullptr;
        throw StoreError("cannot open index " + path_ + ": " + msg);
    }
    try {
        sqlite3_busy_timeout(db_, kBusyTimeoutMs);
        // A newer program's index is refused before anything here touches it.
        refuse_newer(path_, user_version(db_, path_));
        exec_retrying(db_, path_, "PRAGMA journal_mode=WAL");
        exec_retrying(db_, path_, "PRAGMA synchronous=FULL");   // a committed item survives a power cut
        exec_retrying(db_, path_, "PRAGMA foreign_keys=ON");    // recipients and receipts go with their item
        migrate();
    } catch (...) {
        sqlite3_close(db_);
        db_ = nullptr;
        throw;
    }
}

Index::~Index()
{
    if (db_)
        sqlite3_close(db_);
}

// The whole migration is one transaction under the write lock, and the version
// is read again once the lock is held: when mm-milter and mm-gateway open an
// old (or new) store at the same moment, one migrates and commits, the other
// then finds kVersion and does nothing. A failure leaves the old schema whole.
void Index::migrate()
{
    if (version() == kVersion)
        return;   // the usual case: no write lock taken
    std::lock_guard<std::recursive_mutex> lock(mu_);
    exec_retrying(db_, path_, "BEGIN IMMEDIATE");
    try {
        int v = user_version(db_, path_);
        refuse_newer(path_, v);
        if (v == 0 && !table_exists(db_, path_, "items")) {
            exec(db_, path_, kSchema);   // a new index: straight to the latest
            exec(db_, path_, kReceiptsTable);
            add_quota_accounting(db_, path_);   // version 5's columns, appended as on an old index
            add_trace_columns(db_, path_);      // and version 6's
            add_uploads(db_, path_);            // and version 8's
        } else {
            if (v == 0)
                v = 1;   // written before user_version was kept: at least version 1
            for (const auto& m : kMigrations)
                if (m.to > v)
                    m.apply(db_, path_);
        }
        if (v != kVersion)
            exec(db_, path_, ("PRAGMA user_version = " + std::to_string(kVersion)).c_str());
        exec(db_, path_, "COMMIT");
    } catch (...) {
        sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
    }
}

void Index::begin() { exec(db_, path_, "BEGIN IMMEDIATE"); }
void Index::commit() { exec(db_, path_, "COMMIT"); }
void Index::rollback() { sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr); }

int Index::version()
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    return user_version(db_, path_);
}

void Index::insert_item(const ItemRecord& rec, const std::vector<std::string>& recipients,
                        const std::vector<std::string>& token_sha256s)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    const Item& it = rec.item;
    Statement ins(db_, path_,
                  "INSERT INTO items (id, token_sha256, sha256, size, type, name, title, note, copyright, date, "
                  "created, expires, expires_unix, state, link_path, link_size, link_mtime_ns) "
                  "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,'active',?,?,?)");
    ins.bind(1, it.id)
        .bind(2, rec.token_sha256)
        .bind(3, it.sha256)
        .bind(4, static_cast<int64_t>(it.size))
        .bind(5, it.type)
        .bind(6, it.name)
        .bind(7, it.title)
        .bind(8, it.note)
        .bind(9, it.copyright)
        .bind(10, it.date)
        .bind(11, it.created)
        .bind(12, it.expires)
        .bind(13, rec.expires_unix)
        .bind(14, it.link_path)
        .bind(15, static_cast<int64_t>(it.link_size))
        .bind(16, it.link_mtime_ns)
        .run();
    for (size_t i = 0; i < recipients.size(); ++i) {
        Statement rcpt(db_, path_, "INSERT OR IGNORE INTO recipients (item_id, address, token_sha256) VALUES (?,?,?)");
        rcpt.bind(1, it.id).bind(2, recipients[i]).bind(3, i < token_sha256s.size() ? token_sha256s[i] : std::string()).run();
    }
}

std::optional<ItemRecord> Index::find_item(const std::string& id)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_,
                "SELECT id, sha256, size, type, name, title, note, copyright, date, created, expires, state, "
                "token_sha256, expires_unix, link_path, link_size, link_mtime_ns FROM items WHERE id = ?");
    q.bind(1, id);
    if (!q.row())
        return std::nullopt;
    ItemRecord rec;
    Item& it = rec.item;
    it.id = q.text(0);
    it.sha256 = q.text(1);
    it.size = static_cast<uint64_t>(q.num(2));
    it.type = q.text(3);
    it.name = q.text(4);
    it.title = q.text(5);
    it.note = q.text(6);
    it.copyright = q.text(7);
    it.date = q.text(8);
    it.created = q.text(9);
    it.expires = q.text(10);
    it.state = q.text(11);
    rec.token_sha256 = q.text(12);
    rec.expires_unix = q.num(13);
    it.link_path = q.text(14);
    it.link_size = static_cast<uint64_t>(q.num(15));
    it.link_mtime_ns = q.num(16);
    return rec;
}

bool Index::delete_item(const std::string& id)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement del(db_, path_, "DELETE FROM items WHERE id = ?");
    return del.bind(1, id).run() > 0;
}

bool Index::retire_item(const std::string& id, const std::string& state)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement up(db_, path_, "UPDATE items SET state = ? WHERE id = ? AND state = 'active'");
    return up.bind(1, state).bind(2, id).run() > 0;
}

std::vector<std::string> Index::ids_with_prefix(const std::string& prefix, size_t limit)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_, "SELECT id FROM items WHERE substr(id, 1, ?) = ? ORDER BY id LIMIT ?");
    q.bind(1, static_cast<int64_t>(prefix.size())).bind(2, prefix).bind(3, static_cast<int64_t>(limit));
    std::vector<std::string> ids;
    while (q.row())
        ids.push_back(q.text(0));
    return ids;
}

std::vector<ItemRef> Index::active_items()
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_, "SELECT id, sha256, link_path != '' FROM items WHERE state = 'active'");
    return item_refs(q);
}

std::vector<ItemRef> Index::expired_items(int64_t now)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_, "SELECT id, sha256, link_path != '' FROM items WHERE expires_unix <= ?");
    q.bind(1, now);
    return item_refs(q);
}

std::set<std::string> Index::retired_digests()
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_, "SELECT DISTINCT sha256 FROM items WHERE state != 'active'");
    std::set<std::string> out;
    while (q.row())
        out.insert(q.text(0));
    return out;
}

std::set<std::string> Index::all_digests()
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_, "SELECT DISTINCT sha256 FROM items");
    std::set<std::string> out;
    while (q.row())
        out.insert(q.text(0));
    return out;
}

// When is an object still needed? Store::remove_item used to keep it while any
// row of the non-linked kind named it, whatever its state; Lifecycle kept it
// only for active rows. Active is right: authorize() serves nothing else, and
// no state leads back to active (retire_item() only moves away from it), so a
// revoked, delivered or archived item will never read those bytes again (an
// archived one has its own copy in archive_dir). The other rule only put the
// removal off until the next gc, which then made it anyway. A linked item is
// served from the sender's own file, so it needs no object even when the
// digests match.
bool Index::object_needed(const std::string& sha256)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_, "SELECT 1 FROM items WHERE sha256 = ? AND state = 'active' AND link_path = '' LIMIT 1");
    q.bind(1, sha256);
    return q.row();
}

std::vector<std::string> Index::recipients(const std::string& id)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_, "SELECT address FROM recipients WHERE item_id = ? ORDER BY address");
    q.bind(1, id);
    std::vector<std::string> out;
    while (q.row())
        out.push_back(q.text(0));
    return out;
}

std::optional<RecipientToken> Index::find_recipient_token(const std::string& id, const std::string& token_sha256)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_,
                "SELECT address, revoked FROM recipients WHERE item_id = ? AND token_sha256 = ? AND token_sha256 != ''");
    q.bind(1, id).bind(2, token_sha256);
    if (!q.row())
        return std::nullopt;
    return RecipientToken{q.text(0), q.num(1) != 0};
}

bool Index::revoke_recipient(const std::string& id, const std::string& address)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement up(db_, path_, "UPDATE recipients SET revoked = 1 WHERE item_id = ? AND address = ? AND revoked = 0");
    return up.bind(1, id).bind(2, address).run() > 0;
}

std::set<std::string> Index::revoked_recipients(const std::string& id)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_, "SELECT address FROM recipients WHERE item_id = ? AND revoked != 0");
    q.bind(1, id);
    std::set<std::string> out;
    while (q.row())
        out.insert(q.text(0));
    return out;
}

std::map<std::string, std::string> Index::receipts(const std::string& id)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_, "SELECT address, received FROM receipts WHERE item_id = ?");
    q.bind(1, id);
    std::map<std::string, std::string> out;
    while (q.row())
        out[q.text(0)] = q.text(1);
    return out;
}

void Index::add_receipt(const std::string& id, const std::string& address, const std::string& received)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement ins(db_, path_, "INSERT OR IGNORE INTO receipts (item_id, address, received) VALUES (?,?,?)");
    ins.bind(1, id).bind(2, address).bind(3, received).run();
}

void Index::set_item_sender(const std::string& id, const std::string& sender, int64_t created_unix,
                            const std::string& reservation)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement up(db_, path_, "UPDATE items SET sender = ?, created_unix = ? WHERE id = ?");
    up.bind(1, sender).bind(2, created_unix).bind(3, id).run();
    release(reservation);
}

// The store's bytes: each active object once (dedup), linked items not at all
// (the sender's own files); a sender's: every item it stored in the window,
// whatever became of it since, as the bytes were taken in all the same.
QuotaUsage Index::quota_usage(const std::string& sender, int64_t since, const std::string& except)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    QuotaUsage u;
    Statement objects(db_, path_,
                      "SELECT COALESCE(SUM(size), 0) FROM (SELECT MAX(size) AS size FROM items "
                      "WHERE state = 'active' AND link_path = '' GROUP BY sha256)");
    if (objects.row())
        u.store_bytes = static_cast<uint64_t>(objects.num(0));
    Statement res(db_, path_,
                  "SELECT COALESCE(SUM(bytes), 0), COALESCE(SUM(MAX(bytes - written, 0)), 0), "
                  "COALESCE(SUM(CASE WHEN sender = ? THEN bytes ELSE 0 END), 0) FROM reservations WHERE id != ?");
    res.bind(1, sender).bind(2, except);
    if (res.row()) {
        u.store_bytes += static_cast<uint64_t>(res.num(0));
        u.pending = static_cast<uint64_t>(res.num(1));
        u.sender_bytes = static_cast<uint64_t>(res.num(2));
    }
    if (!sender.empty()) {
        Statement mine(db_, path_,
                       "SELECT COALESCE(SUM(size), 0) FROM items WHERE sender = ? AND created_unix >= ? "
                       "AND link_path = ''");
        mine.bind(1, sender).bind(2, since);
        if (mine.row())
            u.sender_bytes += static_cast<uint64_t>(mine.num(0));
    }
    return u;
}

void Index::reserve(const std::string& id, const std::string& sender, uint64_t bytes, uint64_t written, int64_t pid,
                    int64_t now)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement ins(db_, path_,
                  "INSERT OR REPLACE INTO reservations (id, sender, bytes, written, pid, updated_unix) "
                  "VALUES (?,?,?,?,?,?)");
    ins.bind(1, id)
        .bind(2, sender)
        .bind(3, static_cast<int64_t>(bytes))
        .bind(4, static_cast<int64_t>(written))
        .bind(5, pid)
        .bind(6, now)
        .run();
}

void Index::release(const std::string& id)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement del(db_, path_, "DELETE FROM reservations WHERE id = ?");
    del.bind(1, id).run();
}

int Index::drop_stale_reservations(int64_t before)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    std::vector<std::string> stale;
    {
        Statement q(db_, path_, "SELECT id, pid, updated_unix FROM reservations");
        while (q.row()) {
            // kill(pid, 0): ESRCH only when no such process exists; EPERM
            // means it exists under another user, so its row stays.
            pid_t pid = static_cast<pid_t>(q.num(1));
            bool gone = pid <= 0 || (kill(pid, 0) != 0 && errno == ESRCH);
            if (gone || q.num(2) < before)
                stale.push_back(q.text(0));
        }
    }
    for (const auto& id : stale)
        release(id);
    return static_cast<int>(stale.size());
}

std::string Index::item_sender(const std::string& id)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_, "SELECT sender FROM items WHERE id = ?");
    q.bind(1, id);
    return q.row() ? q.text(0) : std::string();
}

void Index::set_item_trace(const std::string& id, const ItemTrace& t)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement up(db_, path_, "UPDATE items SET message_id = ?, envelope_from = ?, queue_id = ? WHERE id = ?");
    up.bind(1, sanitize_trace(t.message_id, kMaxMessageIdBytes))
        .bind(2, sanitize_trace(t.envelope_from, kMaxSenderBytes))
        .bind(3, sanitize_trace(t.queue_id, kMaxQueueIdBytes))
        .bind(4, id)
        .run();
}

std::vector<ItemSummary> Index::summaries(const ItemFilter& f)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    // One statement for every combination: an empty filter value matches all.
    // Recipients are stored as the sender wrote them, so both sides are
    // compared lower-cased (normalize_address lower-cases the filter too).
    std::string mid = f.message_id;
    if (mid.size() >= 2 && mid.front() == '<' && mid.back() == '>')
        mid = mid.substr(1, mid.size() - 2);
    Statement q(db_, path_,
                (std::string(kSummarySelect) +
                 "WHERE (?1 = '' OR EXISTS (SELECT 1 FROM recipients r WHERE r.item_id = i.id AND "
                 "lower(r.address) = lower(?1))) "
                 "AND (?2 = '' OR i.created >= ?2) "
                 "AND (?3 = '' OR i.message_id = ?3 OR i.message_id = '<' || ?3 || '>') "
                 "ORDER BY i.created, i.id")
                    .c_str());
    q.bind(1, f.recipient).bind(2, f.since).bind(3, mid);
    std::vector<ItemSummary> out;
    while (q.row())
        out.push_back(summary_of(q));
    return out;
}

std::vector<ItemSummary> Index::summaries()
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_, (std::string(kSummarySelect) + "ORDER BY i.created, i.id").c_str());
    std::vector<ItemSummary> out;
    while (q.row())
        out.push_back(summary_of(q));
    return out;
}

std::optional<ItemSummary> Index::summary(const std::string& id)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_, (std::string(kSummarySelect) + "WHERE i.id = ?").c_str());
    q.bind(1, id);
    if (!q.row())
        return std::nullopt;
    return summary_of(q);
}

std::map<std::string, uint64_t> Index::items_by_state()
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_, "SELECT state, count(*) FROM items GROUP BY state ORDER BY state");
    std::map<std::string, uint64_t> out;
    while (q.row())
        out[q.text(0)] = static_cast<uint64_t>(q.num(1));
    return out;
}

uint64_t Index::receipt_count()
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_, "SELECT count(*) FROM receipts");
    return q.row() ? static_cast<uint64_t>(q.num(0)) : 0;
}

// ---- uploads (version 8) ----

void Index::set_upload_token(const std::string& user, const std::string& token_sha256, const std::string& created)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement ins(db_, path_, "INSERT OR REPLACE INTO upload_tokens (user, token_sha256, created) VALUES (?,?,?)");
    ins.bind(1, user).bind(2, token_sha256).bind(3, created).run();
}

bool Index::delete_upload_token(const std::string& user)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement del(db_, path_, "DELETE FROM upload_tokens WHERE user = ?");
    return del.bind(1, user).run() > 0;
}

std::vector<std::pair<std::string, std::string>> Index::upload_tokens()
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_, "SELECT user, created FROM upload_tokens ORDER BY user");
    std::vector<std::pair<std::string, std::string>> out;
    while (q.row())
        out.emplace_back(q.text(0), q.text(1));
    return out;
}

std::optional<std::string> Index::upload_token_user(const std::string& token_sha256)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_, "SELECT user FROM upload_tokens WHERE token_sha256 = ?");
    q.bind(1, token_sha256);
    if (!q.row())
        return std::nullopt;
    return q.text(0);
}

namespace {

const char* const kUploadSelect =
    "SELECT id, user, size, sha256, type, name, title, note, copyright, date, recipients, created_unix, "
    "expires_unix FROM uploads ";

UploadRow upload_of(Statement& q)
{
    UploadRow u;
    u.id = q.text(0);
    u.user = q.text(1);
    u.size = static_cast<uint64_t>(q.num(2));
    u.sha256 = q.text(3);
    u.meta.type = q.text(4);
    u.meta.name = q.text(5);
    u.meta.title = q.text(6);
    u.meta.note = q.text(7);
    u.meta.copyright = q.text(8);
    u.meta.date = q.text(9);
    std::string all = q.text(10);
    for (size_t pos = 0; pos < all.size();) {
        size_t nl = all.find('\n', pos);
        if (nl == std::string::npos)
            nl = all.size();
        if (nl > pos)
            u.meta.recipients.push_back(all.substr(pos, nl - pos));
        pos = nl + 1;
    }
    u.created_unix = q.num(11);
    u.expires_unix = q.num(12);
    return u;
}

} // namespace

void Index::insert_upload(const UploadRow& u)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    std::string rcpts;
    for (const auto& r : u.meta.recipients)
        rcpts += r + "\n";
    Statement ins(db_, path_,
                  "INSERT INTO uploads (id, user, size, sha256, type, name, title, note, copyright, date, recipients, "
                  "created_unix, expires_unix) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)");
    ins.bind(1, u.id)
        .bind(2, u.user)
        .bind(3, static_cast<int64_t>(u.size))
        .bind(4, u.sha256)
        .bind(5, u.meta.type)
        .bind(6, u.meta.name)
        .bind(7, u.meta.title)
        .bind(8, u.meta.note)
        .bind(9, u.meta.copyright)
        .bind(10, u.meta.date)
        .bind(11, rcpts)
        .bind(12, u.created_unix)
        .bind(13, u.expires_unix)
        .run();
}

std::optional<UploadRow> Index::find_upload(const std::string& id)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_, (std::string(kUploadSelect) + "WHERE id = ?").c_str());
    q.bind(1, id);
    if (!q.row())
        return std::nullopt;
    return upload_of(q);
}

std::optional<UploadRow> Index::find_upload_by_key(const std::string& user, const std::string& sha256, uint64_t size)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_,
                (std::string(kUploadSelect) + "WHERE user = ? AND sha256 = ? AND size = ? ORDER BY created_unix DESC")
                    .c_str());
    q.bind(1, user).bind(2, sha256).bind(3, static_cast<int64_t>(size));
    if (!q.row())
        return std::nullopt;
    return upload_of(q);
}

uint64_t Index::upload_count(const std::string& user)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_, "SELECT count(*) FROM uploads WHERE user = ?");
    q.bind(1, user);
    return q.row() ? static_cast<uint64_t>(q.num(0)) : 0;
}

bool Index::delete_upload(const std::string& id)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement del(db_, path_, "DELETE FROM uploads WHERE id = ?");
    return del.bind(1, id).run() > 0;
}

std::vector<std::string> Index::expired_uploads(int64_t now)
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_, "SELECT id FROM uploads WHERE expires_unix <= ?");
    q.bind(1, now);
    std::vector<std::string> out;
    while (q.row())
        out.push_back(q.text(0));
    return out;
}

std::vector<std::string> Index::upload_ids()
{
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Statement q(db_, path_, "SELECT id FROM uploads");
    std::vector<std::string> out;
    while (q.row())
        out.push_back(q.text(0));
    return out;
}

} // namespace mm
