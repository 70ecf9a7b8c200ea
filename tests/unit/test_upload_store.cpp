// test_upload_store.cpp - uploads on the store's side (store/uploads.h): tokens
// kept hashed, another user's upload unseen, the open-upload cap and the
// quota at creation, a writer that resumes by hashing the file again, the
// item made on the last byte (its object, segments, recipients' tokens), and
// expiry that spares an upload being written.
#include <doctest/doctest.h>

#include "mime/segments.h"
#include "store/layout.h"
#include "store/quota.h"
#include "store/store.h"
#include "store/uploads.h"
#include "core/util.h"

#include <filesystem>
#include <fstream>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace mm;

namespace {

struct TempUploads {
    std::string dir;
    TempUploads()
    {
        char tmpl[] = "/tmp/mm-upload-test-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        dir = tmpl;
    }
    ~TempUploads() { std::filesystem::remove_all(dir); }
    Config cfg(const std::vector<std::string>& extra = {}) const
    {
        std::vector<std::string> o = {"store.dir=" + dir + "/store", "store.min_free=0",
                                      "gateway.public_url=https://media.example:8443"};
        o.insert(o.end(), extra.begin(), extra.end());
        return Config::load("", o);
    }
    void sql(const std::string& statement) const
    {
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open((dir + "/store/index.sqlite").c_str(), &db) == SQLITE_OK);
        CHECK(sqlite3_exec(db, statement.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
        sqlite3_close(db);
    }
};

std::string bytes(size_t n)
{
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i)
        s[i] = static_cast<char>((i * 7919) >> 3);
    return s;
}

} // namespace

TEST_CASE("upload tokens: printed once, kept hashed, revocable")
{
    TempUploads t;
    Config cfg = t.cfg();
    Store store(cfg);
    Uploads up(cfg, store);
    std::string tok = up.add_token("alice");
    CHECK(is_lower_hex(tok, 64));
    CHECK(up.user_of(tok) == std::optional<std::string>("alice"));
    CHECK_FALSE(up.user_of(std::string(64, '0')));
    CHECK_FALSE(up.user_of(tok.substr(1)));
    CHECK_FALSE(up.user_of(tok + "0"));
    std::string tok2 = up.add_token("alice");   // replaces
    CHECK_FALSE(up.user_of(tok));
    CHECK(up.user_of(tok2));
    CHECK(up.tokens().size() == 1);
    CHECK_THROWS_AS(up.add_token("../etc"), StoreError);
    CHECK_THROWS_AS(up.add_token(""), StoreError);
    CHECK_THROWS_AS(up.add_token(std::string(65, 'a')), StoreError);
    CHECK(up.revoke_token("alice"));
    CHECK_FALSE(up.revoke_token("alice"));
    CHECK_FALSE(up.user_of(tok2));
    // Only the hash is in the index file.
    std::ifstream in(t.dir + "/store/index.sqlite", std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(all.find(tok2) == std::string::npos);
}

TEST_CASE("uploads: resumed by a new writer, complete on the last byte, another user's unseen")
{
    TempUploads t;
    Config cfg = t.cfg({"gateway.upload_max_open=2"});
    Store store(cfg);
    Uploads up(cfg, store);
    const std::string data = bytes(3 * 1024 * 1024 + 17);
    ItemMeta meta;
    meta.type = "video/mp4";
    meta.name = "clip.mp4";
    meta.recipients = {"bob@example.org", "Carol@example.org"};
    bool resumed = true;
    UploadRow row = up.create("alice", data.size(), sha256_hex(data), meta, resumed);
    CHECK_FALSE(resumed);
    CHECK(up.find(row.id, "alice"));
    CHECK_FALSE(up.find(row.id, "bob"));                 // another user's: unknown
    CHECK_FALSE(up.find("../" + row.id.substr(3), "alice"));
    CHECK(up.offset(row.id) == 0);

    // The same hash and size again: the same upload (the resume key).
    UploadRow again = up.create("alice", data.size(), sha256_hex(data), meta, resumed);
    CHECK(resumed);
    CHECK(again.id == row.id);
    // But not for another user, nor without a declared hash.
    UploadRow other = up.create("bob", data.size(), sha256_hex(data), meta, resumed);
    CHECK_FALSE(resumed);
    CHECK(other.id != row.id);

    {
        auto w = up.writer(row);
        w->write(data.data(), 999999);
        w->idle();   // between two requests: the file holds what size() says
        CHECK(up.offset(row.id) == 999999);
        CHECK(w->size() == 999999);
        w->write(data.data() + 999999, 1);
    }   // dropped without commit: the file stays, with what was staged
    CHECK(up.offset(row.id) == 1000000);
    auto w = up.writer(row);   // hashes the 1000000 bytes again
    CHECK(w->size() == 1000000);
    w->write(data.data() + 1000000, data.size() - 1000000);
    NewItem item = up.complete(*w, row);
    CHECK(item.sha256 == sha256_hex(data));
    CHECK(item.size == data.size());
    SegmentHasher seg;
    seg.update(data.data(), data.size());
    uint64_t seg_size = 0;
    CHECK(item.seg_sha256 == seg.finish(seg_size));
    CHECK(item.seg_size == seg_size);
    CHECK(item.recipient_tokens.size() == 2);
    CHECK_FALSE(up.find(row.id, "alice"));   // no longer an upload
    struct stat st;
    CHECK(stat(layout::upload_path(store.dir(), row.id).c_str(), &st) != 0);
    CHECK(stat(store.object_path(item.sha256).c_str(), &st) == 0);
    CHECK(store.authorize(item.id, item.token));

    // Its uploader may take it back (a mail that could not be sent); nobody else.
    CHECK_FALSE(up.remove_own_item(item.id, "bob"));
    CHECK_FALSE(up.remove_own_item(std::string(32, '0'), "alice"));
    CHECK(store.authorize(item.id, item.token));
    CHECK(up.remove_own_item(item.id, "alice"));
    CHECK_FALSE(store.authorize(item.id, item.token));
    CHECK(stat(store.object_path(item.sha256).c_str(), &st) != 0);
    CHECK_FALSE(up.remove_own_item(item.id, "alice"));
}

TEST_CASE("uploads: the open-upload cap, the quota at creation, expiry sparing a busy one")
{
    TempUploads t;
    Config cfg = t.cfg({"gateway.upload_max_open=2", "milter.sender_quota=1M"});
    Store store(cfg);
    Uploads up(cfg, store);
    ItemMeta meta;
    bool resumed;
    try {
        up.create("alice", 2 * 1024 * 1024, "", meta, resumed);
        FAIL("over quota accepted");
    } catch (const UploadRefused& e) {
        CHECK(e.why == UploadRefused::Why::quota);
    }
    UploadRow a = up.create("alice", 10, "", meta, resumed);
    UploadRow b = up.create("alice", 10, "", meta, resumed);
    try {
        up.create("alice", 10, "", meta, resumed);
        FAIL("a third open upload accepted");
    } catch (const UploadRefused& e) {
        CHECK(e.why == UploadRefused::Why::too_many_open);
    }
    CHECK_NOTHROW(up.create("bob", 10, "", meta, resumed));   // per user

    { auto w = up.writer(a); w->write("12345", 5); }
    { auto w = up.writer(b); w->write("12345", 5); }
    t.sql("UPDATE uploads SET expires_unix = 1");
    std::vector<std::string> gone = up.expire({b.id});
    CHECK(std::find(gone.begin(), gone.end(), a.id) != gone.end());
    CHECK(std::find(gone.begin(), gone.end(), b.id) == gone.end());
    struct stat st;
    CHECK(stat(layout::upload_path(store.dir(), a.id).c_str(), &st) != 0);
    CHECK(stat(layout::upload_path(store.dir(), b.id).c_str(), &st) == 0);
    CHECK_FALSE(up.find(b.id, "alice"));   // expired: no longer offered
    gone = up.expire();
    CHECK(std::find(gone.begin(), gone.end(), b.id) != gone.end());
}
