// test_index.cpp - the media store's index (store/index.h): older index files,
// made here with raw SQL as older MediaMail wrote them, migrated by
// PRAGMA user_version and still served; a newer schema refused untouched;
// several processes opening one file at once; and one rule for when an object
// is still needed, the same through Store::remove_item and Lifecycle::gc.
#include <doctest/doctest.h>

#include "store/index.h"
#include "store/layout.h"
#include "store/lifecycle.h"
#include "store/store.h"
#include "core/util.h"

#include <filesystem>
#include <fstream>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace mm;

namespace {

struct TempDir {
    std::string dir;
    TempDir()
    {
        char tmpl[] = "/tmp/mm-index-test-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        dir = tmpl;
    }
    ~TempDir() { std::filesystem::remove_all(dir); }
    std::string store() const { return dir + "/store"; }
    std::string index() const { return store() + "/index.sqlite"; }
    Config cfg(const std::vector<std::string>& extra = {}) const
    {
        std::vector<std::string> o = {"store.dir=" + store(), "gateway.public_url=https://media.example/"};
        o.insert(o.end(), extra.begin(), extra.end());
        return Config::load("", o);
    }
};

// Raw SQL on the file, as another (older or newer) program would run it.
void raw_exec(const std::string& path, const std::string& sql)
{
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    std::string msg = err ? err : "";
    sqlite3_free(err);
    sqlite3_close(db);
    INFO(sql);
    INFO(msg);
    REQUIRE(rc == SQLITE_OK);
}

// The rows of a query, each as its columns joined by '|'.
std::vector<std::string> raw_rows(const std::string& path, const std::string& sql)
{
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
    std::vector<std::string> out;
    while (sqlite3_step(st) == SQLITE_ROW) {
        std::string row;
        for (int i = 0; i < sqlite3_column_count(st); ++i) {
            const unsigned char* p = sqlite3_column_text(st, i);
            row += (i ? "|" : "") + std::string(p ? reinterpret_cast<const char*>(p) : "");
        }
        out.push_back(row);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

std::string raw_one(const std::string& path, const std::string& sql)
{
    auto rows = raw_rows(path, sql);
    return rows.empty() ? "" : rows[0];
}

// Version 1 as the first MediaMail made it: items and recipients, no link
// columns, no receipts, WAL.
const char* const kVersion1 =
    "PRAGMA journal_mode=WAL;"
    "CREATE TABLE items (id TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL, sha256 TEXT NOT NULL,"
    " size INTEGER NOT NULL, type TEXT NOT NULL, name TEXT NOT NULL, title TEXT NOT NULL, note TEXT NOT NULL,"
    " copyright TEXT NOT NULL, date TEXT NOT NULL, created TEXT NOT NULL, expires TEXT NOT NULL,"
    " expires_unix INTEGER NOT NULL, state TEXT NOT NULL DEFAULT 'active');"
    "CREATE INDEX items_sha256 ON items(sha256);"
    "CREATE TABLE recipients (item_id TEXT NOT NULL REFERENCES items(id) ON DELETE CASCADE,"
    " address TEXT NOT NULL, PRIMARY KEY (item_id, address));";
const char* const kLinkColumns =
    "ALTER TABLE items ADD COLUMN link_path TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE items ADD COLUMN link_size INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE items ADD COLUMN link_mtime_ns INTEGER NOT NULL DEFAULT 0;";
const char* const kReceipts =
    "CREATE TABLE receipts (item_id TEXT NOT NULL REFERENCES items(id) ON DELETE CASCADE,"
    " address TEXT NOT NULL, received TEXT NOT NULL, PRIMARY KEY (item_id, address));";
// Per-recipient tokens as their own branch wrote them (its version 4, before
// the quota change): recipients' token_sha256 and revoked.
const char* const kRecipientTokens =
    "ALTER TABLE recipients ADD COLUMN token_sha256 TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE recipients ADD COLUMN revoked INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX recipients_token ON recipients(item_id, token_sha256);";
// The quota change as it was released with version 4 an empty placeholder:
// its version 5 index has these and no recipient tokens.
const char* const kQuota =
    "ALTER TABLE items ADD COLUMN sender TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE items ADD COLUMN created_unix INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX items_sender ON items(sender, created_unix);"
    "CREATE TABLE reservations (id TEXT PRIMARY KEY, sender TEXT NOT NULL, bytes INTEGER NOT NULL,"
    " written INTEGER NOT NULL, pid INTEGER NOT NULL, updated_unix INTEGER NOT NULL);";

struct OldItem {
    std::string id = std::string(30, 'a') + "01";
    std::string token = std::string(30, 'b') + "02";
    std::string a_token = std::string(30, 'c') + "03";   // a@example.org's own, with recipient tokens
    std::string content = "media from an older store\n";
    std::string sha256 = sha256_hex(content);
};

// The parts of an older index beyond version 1.
struct Shape {
    bool link_columns = false, receipts = false;
    bool recipient_tokens = false;   // a@example.org has its own token (OldItem::a_token)
    bool quota = false;              // the item was stored by alice@example.org
};

// An older store: its index in the given shape, one item with two recipients,
// the item's object in place (and a receipt when the shape has receipts).
void make_old_store(const TempDir& t, const OldItem& it, int user_version, const Shape& shape)
{
    const bool link_columns = shape.link_columns, receipts = shape.receipts;
    std::filesystem::create_directories(t.store() + "/objects/" + it.sha256.substr(0, 2));
    std::filesystem::create_directories(t.store() + "/tmp");
    std::ofstream(t.store() + "/objects/" + it.sha256.substr(0, 2) + "/" + it.sha256) << it.content;
    std::string sql = kVersion1;
    if (link_columns)
        sql += kLinkColumns;
    if (receipts)
        sql += kReceipts;
    if (shape.recipient_tokens)
        sql += kRecipientTokens;
    if (shape.quota)
        sql += kQuota;
    int64_t expires = time(nullptr) + 86400;
    sql += "INSERT INTO items (id, token_sha256, sha256, size, type, name, title, note, copyright, date, created,"
           " expires, expires_unix) VALUES ('" + it.id + "', '" + sha256_hex(it.token) + "', '" + it.sha256 + "', " +
           std::to_string(it.content.size()) + ", 'video/mp4', 'old.mp4', 'Old', '', '', '', '" +
           rfc3339(time(nullptr)) + "', '" + rfc3339(expires) + "', " + std::to_string(expires) + ");";
    sql += "INSERT INTO recipients (item_id, address) VALUES ('" + it.id + "', 'a@example.org'), ('" + it.id +
           "', 'b@example.org');";
    if (shape.recipient_tokens)
        sql += "UPDATE recipients SET token_sha256 = '" + sha256_hex(it.a_token) + "' WHERE address = 'a@example.org';";
    if (shape.quota)
        sql += "UPDATE items SET sender = 'alice@example.org', created_unix = " + std::to_string(time(nullptr)) + ";";
    if (receipts)
        sql += "INSERT INTO receipts VALUES ('" + it.id + "', 'a@example.org', '2026-01-01T00:00:00Z');";
    sql += "PRAGMA user_version = " + std::to_string(user_version) + ";";
    raw_exec(t.index(), sql);
}

std::vector<std::string> items_columns(const std::string& path)
{
    return raw_rows(path, "SELECT name, type, \"notnull\", dflt_value FROM pragma_table_info('items') ORDER BY cid");
}

std::vector<std::string> recipients_columns(const std::string& path)
{
    return raw_rows(path,
                    "SELECT name, type, \"notnull\", dflt_value FROM pragma_table_info('recipients') ORDER BY cid");
}

std::vector<std::string> tables(const std::string& path)
{
    return raw_rows(path, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name");
}

bool exists(const std::string& path)
{
    struct stat st;
    return stat(path.c_str(), &st) == 0;
}

NewItem put(Store& s, const std::string& data)
{
    auto w = s.create();
    w->write(data.data(), data.size());
    ItemMeta m;
    m.type = "video/mp4";
    m.name = "clip.mp4";
    m.recipients = {"a@example.org"};
    return w->commit(m);
}

} // namespace

TEST_CASE("index: a new index is created at the latest version in one go")
{
    TempDir t;
    std::filesystem::create_directories(t.store());
    {
        Index ix(t.index(), Index::Open::create);
        CHECK(ix.version() == Index::kVersion);
    }
    CHECK(raw_one(t.index(), "PRAGMA user_version") == std::to_string(Index::kVersion));
    CHECK(raw_one(t.index(), "PRAGMA journal_mode") == "wal");
    CHECK(tables(t.index()) == std::vector<std::string>{"items", "receipts", "recipients", "reservations", "upload_tokens", "uploads"});
    // Opening again changes nothing.
    auto before = items_columns(t.index());
    { Index again(t.index(), Index::Open::existing); }
    CHECK(items_columns(t.index()) == before);

    // Lifecycle never creates an index: Store makes it.
    TempDir empty;
    std::filesystem::create_directories(empty.store());
    CHECK_THROWS_AS(Index(empty.index(), Index::Open::existing), StoreError);
    CHECK_THROWS_AS(Lifecycle(empty.cfg()), StoreError);
    CHECK_FALSE(exists(empty.index()));
}

TEST_CASE("index: an older index is migrated and keeps serving its items")
{
    // The latest shape, for comparison: a migrated index must end up the same.
    TempDir fresh;
    std::filesystem::create_directories(fresh.store());
    { Index ix(fresh.index(), Index::Open::create); }
    const auto latest_columns = items_columns(fresh.index());
    const auto latest_recipients = recipients_columns(fresh.index());
    REQUIRE(latest_recipients.size() == 4);   // item_id, address, token_sha256, revoked (version 4)

    struct Case {
        const char* what;
        int user_version;
        Shape shape;
        bool lifecycle_first;   // the first opener is Lifecycle, not Store
    } cases[] = {
        {"version 1: items and recipients only", 1, {}, false},
        {"version 1, opened first by the lifecycle", 1, {}, true},
        {"version 2: with link columns", 2, {true}, false},
        {"version 3: with receipts (before quotas, step 5)", 3, {true, true}, false},
        // The two changes that both took number 4, each as it was written alone.
        {"version 4 of the per-recipient tokens branch (no quota yet)", 4, {true, true, true, false}, false},
        {"version 5 with step 4 an empty placeholder (the quota release): tokens added by step 6", 5,
         {true, true, false, true}, false},
        {"version 5 placeholder store, opened first by the lifecycle", 5, {true, true, false, true}, true},
        {"unversioned, as stores before user_version were", 0, {}, false},
        {"unversioned with link columns", 0, {true}, false},
        {"unversioned with link columns and receipts", 0, {true, true}, true},
    };
    for (const auto& c : cases) {
        std::string what = c.what;
        CAPTURE(what);
        TempDir t;
        OldItem old;
        make_old_store(t, old, c.user_version, c.shape);
        Config cfg = t.cfg({"gateway.after_delivery=delete"});
        std::unique_ptr<Lifecycle> life;
        if (c.lifecycle_first)
            life = std::make_unique<Lifecycle>(cfg);
        Store s(cfg);
        if (!life)
            life = std::make_unique<Lifecycle>(cfg);

        CHECK(raw_one(t.index(), "PRAGMA user_version") == std::to_string(Index::kVersion));
        CHECK(items_columns(t.index()) == latest_columns);
        CHECK(recipients_columns(t.index()) == latest_recipients);
        CHECK(tables(t.index()) == std::vector<std::string>{"items", "receipts", "recipients", "reservations", "upload_tokens", "uploads"});

        // The old item is served as before: same token, same bytes, not linked.
        auto item = s.authorize(old.id, old.token);
        REQUIRE(item);
        CHECK(item->name == "old.mp4");
        CHECK(item->sha256 == old.sha256);
        CHECK(item->link_path.empty());
        CHECK(s.item_path(*item) == layout::object_path(t.store(), old.sha256));
        std::string why;
        CHECK(s.linked_file_intact(*item, why));
        ItemDetail d = life->show(old.id);
        CHECK(d.recipients.size() == 2);
        CHECK(d.item.receipts == (c.shape.receipts ? 1u : 0u));
        {
            // Version 5: an item from before it has no sender and counts in no
            // sender's window; one stored under quotas keeps its sender.
            Index ix(t.index(), Index::Open::existing);
            if (c.shape.quota) {
                CHECK(ix.item_sender(old.id) == "alice@example.org");
            } else {
                CHECK(ix.item_sender(old.id).empty());
                CHECK(ix.quota_usage("", 1, "").sender_bytes == 0);
                CHECK(raw_one(t.index(), "SELECT created_unix FROM items WHERE id = '" + old.id + "'") == "0");
            }
        }
        // Version 4: a recipient's own token survives every later step; rows
        // from before have none (and the item token alone reaches them).
        CHECK(raw_rows(t.index(), "SELECT address, token_sha256 != '', revoked FROM recipients WHERE item_id = '" +
                                      old.id + "' ORDER BY address") ==
              std::vector<std::string>{c.shape.recipient_tokens ? "a@example.org|1|0" : "a@example.org|0|0",
                                       "b@example.org|0|0"});
        CHECK(s.authorize(old.id, old.a_token).has_value() == c.shape.recipient_tokens);
        if (c.shape.recipient_tokens)
            CHECK(s.authorize(old.id, old.a_token)->recipient == "a@example.org");

        // The old item has only its item token: receipts with it get the
        // uniform answer and count for nobody (version 4), so it stays until
        // it expires or is revoked.
        CHECK(life->receipt(*item, "a@example.org", old.sha256));
        CHECK(life->receipt(*item, "mallory@example.org", old.sha256));
        CHECK(life->show(old.id).item.receipts == (c.shape.receipts ? 1u : 0u));
        CHECK(life->show(old.id).item.state == "active");
        if (c.shape.recipient_tokens) {
            // a's own token still makes a's receipt (recorded once); b has no
            // token of its own, so the item is not finished by receipts.
            REQUIRE(life->receipt(*s.authorize(old.id, old.a_token), "a@example.org", old.sha256));
            CHECK_FALSE(life->receipt(*s.authorize(old.id, old.a_token), "b@example.org", old.sha256));
            CHECK(life->show(old.id).item.receipts == 1u);
            CHECK(life->show(old.id).item.state == "active");
        }
        REQUIRE(life->revoke(old.id));
        CHECK_FALSE(s.authorize(old.id, old.token));
        life->gc();
        CHECK_FALSE(exists(layout::object_path(t.store(), old.sha256)));

        // Receipts with recipients' own tokens work on the migrated index and
        // finish an item as configured.
        NewItem r = put(s, "per-recipient media");
        for (const auto& [address, token] : r.recipient_tokens) {
            auto own = s.authorize(r.id, token);
            REQUIRE(own);
            REQUIRE(life->receipt(*own, address, r.sha256));
        }
        CHECK(life->show(r.id).item.state == "deleted");

        // New items, linked ones too, go into the migrated index.
        NewItem n = put(s, "new media");
        CHECK(s.authorize(n.id, n.token));
        std::string file = t.dir + "/own.bin";
        std::ofstream(file) << "the sender's own file";
        NewItem l = s.link_file(file, ItemMeta{});
        auto linked = s.authorize(l.id, l.url.substr(l.url.rfind('/') + 1));
        REQUIRE(linked);
        CHECK(linked->link_path == file);
    }
}

TEST_CASE("index: a schema newer than this program is refused untouched")
{
    const int versions[] = {Index::kVersion + 1, 99, -1};
    for (int v : versions) {
        CAPTURE(v);
        TempDir t;
        std::filesystem::create_directories(t.store());
        // A future program's index: its own tables, none of ours.
        raw_exec(t.index(), "CREATE TABLE future_things (x TEXT); PRAGMA user_version = " + std::to_string(v) + ";");
        for (auto open : {Index::Open::create, Index::Open::existing}) {
            try {
                Index ix(t.index(), open);
                FAIL("expected StoreError");
            } catch (const StoreError& e) {
                std::string msg = e.what();
                CHECK(msg.find(t.index()) != std::string::npos);
                CHECK(msg.find("schema version " + std::to_string(v)) != std::string::npos);
            }
        }
        CHECK_THROWS_AS(Store(t.cfg()), StoreError);
        CHECK_THROWS_AS(Lifecycle(t.cfg()), StoreError);
        CHECK(raw_one(t.index(), "PRAGMA user_version") == std::to_string(v));
        CHECK(tables(t.index()) == std::vector<std::string>{"future_things"});
        CHECK(raw_one(t.index(), "PRAGMA journal_mode") == "delete");
    }
}

TEST_CASE("index: several processes opening one index at once all migrate it safely")
{
    struct Case {
        const char* what;
        bool old;   // a version-1 index with an item, else no file yet
    } cases[] = {
        {"no index yet", false},
        {"a version-1 index", true},
    };
    constexpr int kOpeners = 4;
    for (const auto& c : cases) {
        std::string what = c.what;
        CAPTURE(what);
        for (int round = 0; round < 3; ++round) {
            CAPTURE(round);
            TempDir t;
            OldItem old;
            std::filesystem::create_directories(t.store());
            if (c.old)
                make_old_store(t, old, 1, Shape{});
            // The openers wait on a pipe, so that they start together, as
            // mm-milter and mm-gateway do when the host boots.
            int go[2];
            REQUIRE(pipe(go) == 0);
            std::vector<pid_t> kids;
            for (int i = 0; i < kOpeners; ++i) {
                pid_t pid = fork();
                REQUIRE(pid >= 0);
                if (pid == 0) {
                    close(go[1]);
                    char b;
                    if (read(go[0], &b, 1) < 0) {
                    }
                    int rc = 0;
                    try {
                        Index ix(t.index(), Index::Open::create);
                        rc = ix.version() == Index::kVersion ? 0 : 2;
                    } catch (...) {
                        rc = 1;
                    }
                    _exit(rc);
                }
                kids.push_back(pid);
            }
            close(go[0]);
            close(go[1]);   // go
            for (pid_t pid : kids) {
                int status = 0;
                REQUIRE(waitpid(pid, &status, 0) == pid);
                CHECK(WIFEXITED(status));
                CHECK(WEXITSTATUS(status) == 0);
            }
            CHECK(raw_one(t.index(), "PRAGMA user_version") == std::to_string(Index::kVersion));
            CHECK(tables(t.index()) == std::vector<std::string>{"items", "receipts", "recipients", "reservations", "upload_tokens", "uploads"});
            CHECK(raw_one(t.index(), "SELECT count(*) FROM pragma_table_info('items') WHERE name LIKE 'link_%'") ==
                  "3");
            CHECK(raw_one(t.index(), "SELECT count(*) FROM items") == (c.old ? "1" : "0"));
        }
    }

    // Two Index objects on one file in one process: each sees the other's writes.
    TempDir t;
    std::filesystem::create_directories(t.store());
    Index a(t.index(), Index::Open::create), b(t.index(), Index::Open::existing);
    ItemRecord rec;
    rec.item.id = std::string(32, 'c');
    rec.item.sha256 = sha256_hex("x");
    rec.expires_unix = time(nullptr) + 60;
    a.write([&] { a.insert_item(rec, {"a@example.org"}); });
    auto got = b.find_item(rec.item.id);
    REQUIRE(got);
    CHECK(got->item.state == "active");
    CHECK(b.recipients(rec.item.id) == std::vector<std::string>{"a@example.org"});
    CHECK(b.write([&] { return b.retire_item(rec.item.id, "revoked"); }));
    CHECK(a.find_item(rec.item.id)->item.state == "revoked");
    // A failed transaction leaves nothing behind.
    CHECK_THROWS_AS(a.write([&] {
                        a.delete_item(rec.item.id);
                        throw StoreError("abandon");
                    }),
                    StoreError);
    CHECK(b.find_item(rec.item.id));
}

TEST_CASE("index: remove_item and gc agree on when an object is still needed")
{
    // Item A goes (removed, or expired and collected); another item B with the
    // same bytes is in some state. The object stays only while B may still be
    // served from it: active and not linked.
    struct Case {
        const char* what;
        const char* other_state;   // nullptr: no other item
        bool other_linked;
        bool kept;
    } cases[] = {
        {"no other item", nullptr, false, false},
        {"another active item", "active", false, true},
        {"another revoked item", "revoked", false, false},
        {"another delivered and deleted item", "deleted", false, false},
        {"another archived item", "archived", false, false},
        {"an active linked item with the same bytes", "active", true, false},
    };
    const std::string bytes = "shared media bytes";
    for (const auto& c : cases) {
        for (bool by_gc : {false, true}) {
            std::string what = c.what;
            CAPTURE(what);
            CAPTURE(by_gc);
            TempDir t;
            Store live(t.cfg());
            Store dying(t.cfg({"gateway.retention=0s"}));
            Lifecycle life(t.cfg());
            NewItem a = put(by_gc ? dying : live, bytes);
            std::string obj = layout::object_path(t.store(), a.sha256);
            if (c.other_state) {
                std::string other_id;
                if (c.other_linked) {
                    std::string file = t.dir + "/own.bin";
                    std::ofstream(file) << bytes;
                    other_id = live.link_file(file, ItemMeta{}).id;
                } else {
                    other_id = put(live, bytes).id;
                }
                raw_exec(t.index(), std::string("UPDATE items SET state = '") + c.other_state + "' WHERE id = '" +
                                        other_id + "'");
            }
            if (by_gc) {
                GcReport r = life.gc();
                CHECK(r.expired_items == 1);
            } else {
                CHECK(live.remove_item(a.id));
            }
            CHECK(exists(obj) == c.kept);
            Index ix(t.index(), Index::Open::existing);
            CHECK(ix.object_needed(a.sha256) == c.kept);
        }
    }
}

TEST_CASE("index: version 5 gains the trace columns (step 6) and keeps its items")
{
    TempDir fresh;
    std::filesystem::create_directories(fresh.store());
    { Index ix(fresh.index(), Index::Open::create); }
    const auto latest_columns = items_columns(fresh.index());

    // A version 6 index, as stores were before tracing: made now, then step 7 undone.
    TempDir t;
    NewItem a;
    {
        Store s(t.cfg());
        a = put(s, "version five bytes");
    }
    raw_exec(t.index(), "DROP INDEX items_message_id; ALTER TABLE items DROP COLUMN message_id; "
                        "ALTER TABLE items DROP COLUMN envelope_from; ALTER TABLE items DROP COLUMN queue_id; "
                        "PRAGMA user_version = 6;");
    REQUIRE(items_columns(t.index()) != latest_columns);
    Store s(t.cfg());
    CHECK(raw_one(t.index(), "PRAGMA user_version") == std::to_string(Index::kVersion));
    CHECK(items_columns(t.index()) == latest_columns);
    CHECK(s.authorize(a.id, a.token));
    Lifecycle life(t.cfg());
    auto all = life.list();
    REQUIRE(all.size() == 1);
    CHECK(all[0].message_id.empty());
    CHECK(all[0].queue_id.empty());
    // And the old item takes a trace like a new one.
    s.record_trace({a.id}, ItemTrace{"<old@example.org>", "sender@example.org", "4QX1"});
    CHECK(life.list(ItemFilter{"", "", "old@example.org"}).size() == 1);
}

TEST_CASE("index: trace values from the mail are cleaned and cut")
{
    struct Case {
        const char* what;
        std::string in;
        size_t max;
        std::string want;
    } cases[] = {
        {"plain", "<a@b.example>", 998, "<a@b.example>"},
        {"spaces trimmed", "  <a@b>\t ", 998, "<a@b>"},
        {"CR LF cannot forge a line", "<a@b>\r\nX-Evil: 1", 998, "<a@b>X-Evil: 1"},
        {"NUL, ESC and DEL dropped", std::string("<a\0b\x1b[31m\x7f>", 11), 998, "<ab[31m>"},
        {"tab inside becomes a space", "a\tb", 998, "a b"},
        {"only controls", "\r\n\x01", 998, ""},
        {"cut at max", std::string(2000, 'x'), 998, std::string(998, 'x')},
        {"cut never splits UTF-8", "ab\xc3\xa9", 3, "ab"},
        {"cut after a whole UTF-8 sequence", "a\xc3\xa9z", 3, "a\xc3\xa9"},
    };
    for (const auto& c : cases) {
        CAPTURE(std::string(c.what));
        CHECK(sanitize_trace(c.in, c.max) == c.want);
    }

    TempDir t;
    Store s(t.cfg());
    NewItem a = put(s, "hostile trace bytes");
    s.record_trace({a.id}, ItemTrace{"<x@y>\r\n" + std::string(5000, 'm'), std::string(1000, 's') + "\n",
                                     "Q\x01" + std::string(100, 'q')});
    Lifecycle life(t.cfg());
    auto all = life.list();
    REQUIRE(all.size() == 1);
    CHECK(all[0].message_id.size() == kMaxMessageIdBytes);
    CHECK(all[0].message_id.rfind("<x@y>mmm", 0) == 0);
    CHECK(all[0].envelope_from == std::string(kMaxSenderBytes, 's'));
    CHECK(all[0].queue_id == "Q" + std::string(kMaxQueueIdBytes - 1, 'q'));
    // An unknown id changes nothing and is no error.
    s.record_trace({std::string(32, 'f')}, ItemTrace{"<z@z>", "", ""});
    CHECK(life.list(ItemFilter{"", "", "<z@z>"}).empty());
}

TEST_CASE("index: list filters by recipient, creation time and Message-ID, combined")
{
    TempDir t;
    Store s(t.cfg());
    auto put_for = [&](const std::string& data, std::vector<std::string> rcpts) {
        auto w = s.create();
        w->write(data.data(), data.size());
        ItemMeta m;
        m.type = "video/mp4";
        m.name = "clip.mp4";
        m.recipients = std::move(rcpts);
        return w->commit(m);
    };
    NewItem a = put_for("first item", {"Bob@Example.org", "carol@example.org"});
    NewItem b = put_for("second item", {"carol@example.org"});
    NewItem c = put_for("third item", {"dave@example.org"});
    s.record_trace({a.id, b.id}, ItemTrace{"<one@example.org>", "alice@example.org", "AAA1"});
    s.record_trace({c.id}, ItemTrace{"<two@example.org>", "alice@example.org", "BBB2"});
    // Creation times set apart (all three were made within the same second):
    // list is oldest first, and c is the only one "since 2999".
    raw_exec(t.index(), "UPDATE items SET created = '2000-01-01T00:00:00Z' WHERE id = '" + a.id + "';"
                        "UPDATE items SET created = '2000-01-02T00:00:00Z' WHERE id = '" + b.id + "';"
                        "UPDATE items SET created = '2999-01-02T00:00:00Z' WHERE id = '" + c.id + "'");

    Lifecycle life(t.cfg());
    auto ids = [&](const ItemFilter& f) {
        std::vector<std::string> out;
        for (const auto& sum : life.list(f))
            out.push_back(sum.id);
        return out;
    };
    struct Case {
        const char* what;
        ItemFilter f;
        std::vector<std::string> want;
    } cases[] = {
        {"no filter", {}, {a.id, b.id, c.id}},
        {"recipient, other letter case", {"bob@example.org", "", ""}, {a.id}},
        {"recipient of two", {"CAROL@example.org", "", ""}, {a.id, b.id}},
        {"recipient unknown", {"eve@example.org", "", ""}, {}},
        {"since", {"", "2999-01-01T00:00:00Z", ""}, {c.id}},
        {"since, nothing that late", {"", "3000-01-01T00:00:00Z", ""}, {}},
        {"Message-ID with brackets", {"", "", "<one@example.org>"}, {a.id, b.id}},
        {"Message-ID without brackets", {"", "", "two@example.org"}, {c.id}},
        {"Message-ID unknown", {"", "", "<three@example.org>"}, {}},
        {"recipient and Message-ID", {"carol@example.org", "", "one@example.org"}, {a.id, b.id}},
        {"recipient and Message-ID disagree", {"dave@example.org", "", "one@example.org"}, {}},
        {"all three", {"dave@example.org", "2999-01-01T00:00:00Z", "<two@example.org>"}, {c.id}},
        {"SQL in a filter is a value", {"' OR 1=1 --", "", ""}, {}},
    };
    for (const auto& cs : cases) {
        CAPTURE(std::string(cs.what));
        CHECK(ids(cs.f) == cs.want);
    }
    auto all = life.list(ItemFilter{"", "", "two@example.org"});
    REQUIRE(all.size() == 1);
    CHECK(all[0].envelope_from == "alice@example.org");
    CHECK(all[0].queue_id == "BBB2");
    CHECK(all[0].message_id == "<two@example.org>");
}
