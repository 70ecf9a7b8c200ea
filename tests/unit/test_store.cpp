// test_store.cpp - the media store (write, commit, dedup, authorize, expiry,
// abandoned writers), the gateway's TLS identity and pin, and lifecycle
// (the index and its migrations are test_index.cpp's, quotas test_quota.cpp's).
#include <doctest/doctest.h>

#include "store/layout.h"
#include "store/lifecycle.h"
#include "store/store.h"
#include "store/store_sink.h"
#include "mime/handle.h"
#include "core/util.h"

#include <algorithm>
#include <dirent.h>
#include <filesystem>
#include <fstream>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace mm;

namespace {

struct TempStore {
    std::string dir;
    TempStore()
    {
        char tmpl[] = "/tmp/mm-store-test-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        dir = tmpl;
    }
    ~TempStore() { std::filesystem::remove_all(dir); }
    Config cfg(const std::vector<std::string>& extra = {}) const
    {
        std::vector<std::string> o = {"store.dir=" + dir + "/store", "gateway.public_url=https://media.example:8443/"};
        o.insert(o.end(), extra.begin(), extra.end());
        return Config::load("", o);
    }
};

size_t count_entries(const std::string& dir)
{
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        (void)e;
        ++n;
    }
    return n;
}

int64_t count_items(const std::string& db_path)
{
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(db_path.c_str(), &db) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, "SELECT count(*) FROM items", -1, &st, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

NewItem put(Store& s, const std::string& data, const std::string& name = "clip.mp4")
{
    auto w = s.create();
    // Written in uneven pieces: the hash must not depend on how bytes arrive.
    for (size_t off = 0; off < data.size(); off += 7)
        w->write(data.data() + off, std::min<size_t>(7, data.size() - off));
    ItemMeta m;
    m.type = "video/mp4";
    m.name = name;
    m.recipients = {"a@example.org", "b@example.org"};
    return w->commit(m);
}

// The token of one recipient of `a` (normalized address), or "" if none.
std::string token_of(const NewItem& a, const std::string& address)
{
    for (const auto& [addr, token] : a.recipient_tokens)
        if (addr == address)
            return token;
    return "";
}

std::string slurp(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

} // namespace

TEST_CASE("store: write, commit and authorize round trip")
{
    TempStore t;
    Store s(t.cfg());
    std::string data = "hello media, not really a video\n";
    NewItem it = put(s, data);
    CHECK(it.id.size() == 32);
    CHECK(it.token.size() == 32);
    CHECK(it.id != it.token);
    CHECK(it.sha256 == sha256_hex(data));
    CHECK(it.size == data.size());
    CHECK(it.url == "https://media.example:8443/m/" + it.id + "/" + it.token);
    CHECK(it.pin.rfind("sha256//", 0) == 0);
    CHECK(it.pin == s.pin());
    time_t exp;
    CHECK(parse_rfc3339(it.expires, exp));
    CHECK(exp > time(nullptr) + 29 * 86400);

    auto got = s.authorize(it.id, it.token);
    REQUIRE(got);
    CHECK(got->sha256 == it.sha256);
    CHECK(got->size == data.size());
    CHECK(got->type == "video/mp4");
    CHECK(got->name == "clip.mp4");
    CHECK(got->state == "active");
    CHECK(slurp(s.object_path(it.sha256)) == data);
    CHECK(s.object_path(it.sha256) == t.dir + "/store/objects/" + it.sha256.substr(0, 2) + "/" + it.sha256);

    struct stat st;
    REQUIRE(stat(s.object_path(it.sha256).c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0640);
    CHECK(count_entries(t.dir + "/store/tmp") == 0);

    // The token is never stored in clear.
    CHECK(slurp(t.dir + "/store/index.sqlite").find(it.token) == std::string::npos);

    // A second Store on the same directory (another process) sees the item.
    Store s2(t.cfg());
    CHECK(s2.authorize(it.id, it.token));
}

TEST_CASE("store: identical content is stored once, as two items")
{
    TempStore t;
    Store s(t.cfg());
    NewItem a = put(s, "same bytes", "a.mp4");
    NewItem b = put(s, "same bytes", "b.mp4");
    CHECK(a.sha256 == b.sha256);
    CHECK(a.id != b.id);
    CHECK(a.token != b.token);
    CHECK(count_entries(t.dir + "/store/objects/" + a.sha256.substr(0, 2)) == 1);
    CHECK(s.authorize(a.id, a.token)->name == "a.mp4");
    CHECK(s.authorize(b.id, b.token)->name == "b.mp4");
    CHECK(count_entries(t.dir + "/store/tmp") == 0);
}

TEST_CASE("store: every bad id or token is refused alike")
{
    TempStore t;
    Store s(t.cfg());
    NewItem a = put(s, "item a");
    NewItem b = put(s, "item b");
    std::string upper = a.token;
    for (auto& c : upper)
        c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
    std::string flipped = a.token;
    flipped[31] = flipped[31] == '0' ? '1' : '0';
    const std::pair<std::string, std::string> bad[] = {
        {a.id, b.token},                       // another item's token
        {b.id, a.token},
        {a.id, flipped},                       // one digit off
        {a.id, ""},                            // missing
        {a.id, a.token.substr(0, 31)},         // short
        {a.id, a.token + "0"},                 // long
        {a.id, upper},                         // not lowercase
        {a.id, std::string(32, 'g')},          // not hex
        {a.id, a.token.substr(0, 31) + "\n"},  // control byte
        {a.id, std::string(32, '0')},
        {std::string(32, '0'), a.token},       // unknown id
        {"", a.token},
        {"../../etc/passwd", a.token},
        {a.id.substr(0, 31) + "%", a.token},
        {a.id + "' OR '1'='1", a.token},
    };
    for (const auto& [id, token] : bad) {
        CAPTURE(id);
        CAPTURE(token);
        CHECK_FALSE(s.authorize(id, token));
    }
    CHECK(s.authorize(a.id, a.token));
}

TEST_CASE("store: an expired item is refused")
{
    TempStore t;
    Store s(t.cfg({"gateway.retention=0s"}));
    NewItem a = put(s, "gone at once");
    CHECK_FALSE(s.authorize(a.id, a.token));
}

TEST_CASE("store: a revoked item is refused")
{
    TempStore t;
    Store s(t.cfg());
    NewItem a = put(s, "to be revoked");
    REQUIRE(s.authorize(a.id, a.token));
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open((t.dir + "/store/index.sqlite").c_str(), &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    REQUIRE(sqlite3_exec(db, ("UPDATE items SET state='revoked' WHERE id='" + a.id + "'").c_str(), nullptr, nullptr,
                         nullptr) == SQLITE_OK);
    sqlite3_close(db);
    CHECK_FALSE(s.authorize(a.id, a.token));
}

TEST_CASE("store: a writer dropped without commit leaves nothing")
{
    TempStore t;
    Store s(t.cfg());
    {
        auto w = s.create();
        w->write("half a video", 12);
        CHECK(count_entries(t.dir + "/store/tmp") == 1);
    }
    CHECK(count_entries(t.dir + "/store/tmp") == 0);
    CHECK(count_entries(t.dir + "/store/objects") == 0);
    CHECK(count_items(t.dir + "/store/index.sqlite") == 0);
}

TEST_CASE("store: commit twice and bad digests are errors")
{
    TempStore t;
    Store s(t.cfg());
    auto w = s.create();
    w->write("x", 1);
    w->commit(ItemMeta{});
    CHECK_THROWS_AS(w->commit(ItemMeta{}), StoreError);
    CHECK_THROWS_AS(w->write("y", 1), StoreError);
    CHECK_THROWS_AS(s.object_path("../../etc/passwd"), StoreError);
    CHECK_THROWS_AS(s.object_path(std::string(64, 'A')), StoreError);
}

TEST_CASE("store: an unusable store.dir is a StoreError naming the path")
{
    TempStore t;
    std::string file = t.dir + "/plainfile";
    std::ofstream(file) << "x";
    try {
        Store s(Config::load("", {"store.dir=" + file}));
        FAIL("expected StoreError");
    } catch (const StoreError& e) {
        CHECK(std::string(e.what()).find(file) != std::string::npos);
    }
}

TEST_CASE("tls_identity: created once, stable pin, key file private")
{
    TempStore t;
    Config cfg = t.cfg();
    TlsIdentity a = tls_identity(cfg);
    CHECK(a.key_path == t.dir + "/store/tls/key.pem");
    CHECK(a.cert_path == t.dir + "/store/tls/cert.pem");
    REQUIRE(a.pin.rfind("sha256//", 0) == 0);
    std::string raw;
    CHECK(base64_decode(a.pin.substr(8), raw));
    CHECK(raw.size() == 32);
    std::string key_before = slurp(a.key_path), cert_before = slurp(a.cert_path);
    TlsIdentity b = tls_identity(cfg);
    CHECK(b.pin == a.pin);
    CHECK(slurp(a.key_path) == key_before);
    CHECK(slurp(a.cert_path) == cert_before);
    struct stat st;
    REQUIRE(stat(a.key_path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    // No temp files left beside them.
    CHECK(count_entries(t.dir + "/store/tls") == 2);

    // Configured files are used as they are; the pin follows the key.
    TlsIdentity c = tls_identity(Config::load("", {"store.dir=/nonexistent", "gateway.tls_cert=" + a.cert_path,
                                                   "gateway.tls_key=" + a.key_path}));
    CHECK(c.pin == a.pin);
    CHECK(c.key_path == a.key_path);

    // A certificate lost on its own is recreated for the same key.
    unlink(a.cert_path.c_str());
    CHECK(tls_identity(cfg).pin == a.pin);
}

TEST_CASE("tls_identity: one of tls_cert/tls_key alone is an error naming the keys")
{
    for (const char* set : {"gateway.tls_cert=/etc/x.pem", "gateway.tls_key=/etc/x.pem"}) {
        try {
            tls_identity(Config::load("", {"store.dir=/nonexistent", set}));
            FAIL("expected StoreError");
        } catch (const StoreError& e) {
            std::string msg = e.what();
            CHECK(msg.find("gateway.tls_cert") != std::string::npos);
            CHECK(msg.find("gateway.tls_key") != std::string::npos);
        }
    }
    CHECK_THROWS_AS(tls_identity(Config::load("", {"store.dir=/nonexistent", "gateway.tls_cert=/nonexistent/c.pem",
                                                   "gateway.tls_key=/nonexistent/k.pem"})),
                    StoreError);
}



// ---- Lifecycle: receipts, after-delivery policy, revocation, collection ----

namespace {

bool object_exists(const TempStore& t, const std::string& sha)
{
    struct stat st;
    return stat((t.dir + "/store/objects/" + sha.substr(0, 2) + "/" + sha).c_str(), &st) == 0;
}

} // namespace

TEST_CASE("lifecycle: receipts are refused unless digest and recipient match")
{
    TempStore t;
    Config cfg = t.cfg();
    Store s(cfg);
    Lifecycle life(cfg);
    NewItem a = put(s, "receipt me");   // recipients a@example.org, b@example.org
    auto item = s.authorize(a.id, token_of(a, "a@example.org"));
    REQUIRE(item);
    CHECK(item->recipient == "a@example.org");
    struct Case {
        std::string recipient, sha;
        bool ok;
    } cases[] = {
        {"c@example.org", a.sha256, false},                      // not a recipient
        {"b@example.org", a.sha256, false},                      // another recipient: the same refusal
        {"a@example.org", std::string(64, '0'), false},         // wrong digest
        {"a@example.org", a.sha256.substr(0, 63), false},
        {"", a.sha256, false},
        {"a@example.org\n", a.sha256, false},
        {"a@example", a.sha256, false},
        {"A@Example.ORG", a.sha256, true},                      // case-insensitive
        {"<a@example.org>", a.sha256, true},                    // repeated: still fine
    };
    for (const auto& c : cases) {
        CAPTURE(c.recipient);
        CHECK(life.receipt(*item, c.recipient, c.sha) == c.ok);
    }
    ItemDetail d = life.show(a.id);
    CHECK(d.item.receipts == 1);
    CHECK(d.recipients.at(1).receipt.empty());   // b's state untouched by a's token
    CHECK(d.item.state == "active");   // b has not confirmed; and the default policy is keep
}

TEST_CASE("lifecycle: the item token answers alike for every address and counts for nobody")
{
    TempStore t;
    Config cfg = t.cfg({"gateway.after_delivery=delete"});
    Store s(cfg);
    Lifecycle life(cfg);
    NewItem a = put(s, "shared token");
    auto item = s.authorize(a.id, a.token);
    REQUIRE(item);
    CHECK(item->recipient.empty());
    struct Case {
        std::string recipient, sha;
        bool ok;
    } cases[] = {
        {"a@example.org", a.sha256, true},           // a recipient ...
        {"b@example.org", a.sha256, true},
        {"mallory@example.org", a.sha256, true},     // ... and not: the same answer
        {"nobody@example.net", a.sha256, true},
        {"a@example.org", std::string(64, '0'), false},   // the digest still matters (it is in the mail)
        {"mallory@example.org", std::string(64, '0'), false},
        {"not an address", a.sha256, false},
    };
    for (const auto& c : cases) {
        CAPTURE(c.recipient);
        CHECK(life.receipt(*item, c.recipient, c.sha) == c.ok);
    }
    CHECK(life.show(a.id).item.receipts == 0);
    CHECK(life.show(a.id).item.state == "active");   // both "confirmed", nothing deleted
    CHECK(life.gc().delivered_items == 0);
}

TEST_CASE("store: each recipient has its own token; authorize says whose")
{
    TempStore t;
    Config cfg = t.cfg();
    Store s(cfg);
    auto w = s.create();
    w->write("x", 1);
    ItemMeta m;
    m.type = "video/mp4";
    m.recipients = {"A@Example.org", "<a@example.org>", "b@example.org", "not an address"};
    NewItem a = w->commit(m);
    REQUIRE(a.recipient_tokens.size() == 2);   // one per normalized address
    std::string ta = token_of(a, "a@example.org"), tb = token_of(a, "b@example.org");
    REQUIRE(ta.size() == 32);
    REQUIRE(tb.size() == 32);
    CHECK(ta != tb);
    CHECK(ta != a.token);
    CHECK(recipient_url(a.url, ta) == a.url.substr(0, a.url.size() - 32) + ta);
    CHECK(s.authorize(a.id, ta)->recipient == "a@example.org");
    CHECK(s.authorize(a.id, tb)->recipient == "b@example.org");
    CHECK(s.authorize(a.id, a.token)->recipient.empty());
    // Another item's recipient token is no token for this one.
    auto w2 = s.create();
    w2->write("y", 1);
    NewItem b = w2->commit(m);
    CHECK_FALSE(s.authorize(a.id, token_of(b, "a@example.org")));
    CHECK_FALSE(s.authorize(b.id, ta));
}

TEST_CASE("lifecycle: revoke_recipient cuts one recipient's token only")
{
    TempStore t;
    Config cfg = t.cfg({"gateway.after_delivery=delete"});
    Store s(cfg);
    Lifecycle life(cfg);
    NewItem a = put(s, "revoke one");
    std::string ta = token_of(a, "a@example.org"), tb = token_of(a, "b@example.org");
    CHECK(life.revoke_recipient(a.id.substr(0, 8), "B@example.org"));
    CHECK_FALSE(life.revoke_recipient(a.id, "b@example.org"));   // already
    CHECK_THROWS_AS(life.revoke_recipient(a.id, "c@example.org"), StoreError);
    CHECK_THROWS_AS(life.revoke_recipient(a.id, "not an address"), StoreError);
    CHECK_THROWS_AS(life.revoke_recipient("000000", "a@example.org"), StoreError);
    CHECK_FALSE(s.authorize(a.id, tb));
    REQUIRE(s.authorize(a.id, ta));
    CHECK(s.authorize(a.id, a.token));
    ItemDetail d = life.show(a.id);
    CHECK(d.recipients.at(1).revoked);
    CHECK_FALSE(d.recipients.at(0).revoked);
    // The revoked recipient is no longer waited for: a's receipt finishes the item.
    REQUIRE(life.receipt(*s.authorize(a.id, ta), "a@example.org", a.sha256));
    CHECK(life.show(a.id).item.state == "deleted");
}

TEST_CASE("lifecycle: after_delivery keep, delete and archive")
{
    for (std::string policy : {"keep", "delete", "archive"}) {
        CAPTURE(policy);
        TempStore t;
        Config cfg = t.cfg({"gateway.after_delivery=" + policy, "gateway.archive_dir=" + t.dir + "/archive"});
        Store s(cfg);
        Lifecycle life(cfg);
        NewItem a = put(s, "delivered media");
        NewItem shared = put(s, "delivered media");   // same bytes, another mail
        auto item = s.authorize(a.id, token_of(a, "a@example.org"));
        REQUIRE(item);
        REQUIRE(life.receipt(*item, "a@example.org", a.sha256));
        CHECK(s.authorize(a.id, a.token));
        auto item_b = s.authorize(a.id, token_of(a, "b@example.org"));
        REQUIRE(item_b);
        REQUIRE(life.receipt(*item_b, "b@example.org", a.sha256));
        bool gone = policy != "keep";
        CHECK(s.authorize(a.id, a.token).has_value() == !gone);
        CHECK(life.show(a.id).item.state == (policy == "keep" ? "active" : policy == "delete" ? "deleted" : "archived"));
        CHECK(object_exists(t, a.sha256));   // the other item still needs it
        CHECK(s.authorize(shared.id, shared.token));
        auto other = s.authorize(shared.id, token_of(shared, "a@example.org"));
        REQUIRE(other);
        REQUIRE(life.receipt(*other, "a@example.org", a.sha256));
        auto other_b = s.authorize(shared.id, token_of(shared, "b@example.org"));
        REQUIRE(other_b);
        REQUIRE(life.receipt(*other_b, "b@example.org", a.sha256));
        CHECK(object_exists(t, a.sha256) == !gone);
        struct stat st;
        CHECK((stat((t.dir + "/archive/" + a.sha256).c_str(), &st) == 0) == (policy == "archive"));
        if (policy == "archive")
            CHECK(slurp(t.dir + "/archive/" + a.sha256) == "delivered media");
    }
}

TEST_CASE("lifecycle: an item without recipients is never delivered by receipts")
{
    TempStore t;
    Config cfg = t.cfg({"gateway.after_delivery=delete"});
    Store s(cfg);
    Lifecycle life(cfg);
    auto w = s.create();
    w->write("x", 1);
    ItemMeta m;
    m.type = "video/mp4";
    NewItem a = w->commit(m);
    auto item = s.authorize(a.id, a.token);
    REQUIRE(item);
    // The item token's uniform answer; nothing counted.
    CHECK(life.receipt(*item, "anyone@example.org", a.sha256));
    CHECK(life.show(a.id).item.receipts == 0);
    CHECK(life.gc().delivered_items == 0);
    CHECK(s.authorize(a.id, a.token));
}

TEST_CASE("lifecycle: revoke by id or unique prefix; bad ids are errors")
{
    TempStore t;
    Config cfg = t.cfg();
    Store s(cfg);
    Lifecycle life(cfg);
    NewItem a = put(s, "revoke me");
    CHECK(life.revoke(a.id.substr(0, 8)));
    CHECK_FALSE(s.authorize(a.id, a.token));
    CHECK_FALSE(life.revoke(a.id));   // already revoked
    for (const std::string& bad : std::vector<std::string>{"", "abc", "../../etc/passwd", "ABCDEF12", "0000000000",
                                                           std::string(33, 'a'), "abcdeg"}) {
        CAPTURE(bad);
        CHECK_THROWS_AS(life.revoke(bad), StoreError);
        CHECK_THROWS_AS(life.show(bad), StoreError);
    }
}

TEST_CASE("lifecycle: gc removes expired and revoked items' media, keeps what is needed")
{
    TempStore t;
    Store live(t.cfg());
    Store dying(t.cfg({"gateway.retention=0s"}));
    Lifecycle life(t.cfg());
    NewItem keep = put(live, "shared bytes");
    NewItem gone = put(dying, "shared bytes");       // expired at once, shares keep's object
    NewItem alone = put(dying, "expired alone");
    NewItem revoked = put(live, "revoked bytes");
    REQUIRE(life.revoke(revoked.id));
    GcReport r = life.gc();
    CHECK(r.expired_items == 2);
    CHECK(r.objects_removed == 2);   // "expired alone" and "revoked bytes"
    CHECK(object_exists(t, keep.sha256));
    CHECK_FALSE(object_exists(t, alone.sha256));
    CHECK_FALSE(object_exists(t, revoked.sha256));
    CHECK(live.authorize(keep.id, keep.token));
    auto items = life.list();
    CHECK(items.size() == 2);   // keep and the revoked row
    StoreStats st = life.stats();
    CHECK(st.items_by_state["active"] == 1);
    CHECK(st.items_by_state["revoked"] == 1);
    CHECK(st.objects == 1);
    CHECK(life.gc().objects_removed == 0);   // idempotent
}

TEST_CASE("lifecycle: archive_dir inside the store is refused")
{
    TempStore t;
    Store s(t.cfg());
    CHECK_THROWS_AS(Lifecycle(t.cfg({"gateway.after_delivery=archive", "gateway.archive_dir=" + t.dir + "/store"})),
                    ConfigError);
    CHECK_THROWS_AS(
        Lifecycle(t.cfg({"gateway.after_delivery=archive", "gateway.archive_dir=" + t.dir + "/store/objects/ab"})),
        ConfigError);
}

TEST_CASE("Substituter: keys found whatever the chunking, same length out")
{
    Substitutions subs = {{"url*1=0123456789abcdef0123456789", "url*1=fedcba9876543210fedcba9876"},
                          {"Link: https://h/m/aaaaaaaaaaaa", "Link: https://h/m/bbbbbbbbbbbb"}};
    const std::string in = "x url*1=0123456789abcdef0123456789;\r\nLink: https://h/m/aaaaaaaaaaaa\r\n"
                           "url*1=0123456789abcdef012345678 (one short)\r\nurl*1=0123456789abcdef0123456789";
    const std::string want = "x url*1=fedcba9876543210fedcba9876;\r\nLink: https://h/m/bbbbbbbbbbbb\r\n"
                             "url*1=0123456789abcdef012345678 (one short)\r\nurl*1=fedcba9876543210fedcba9876";
    for (size_t chunk : {size_t(1), size_t(2), size_t(7), size_t(29), size_t(30), size_t(31), in.size()}) {
        CAPTURE(chunk);
        Substituter sub(subs);
        std::string out;
        for (size_t off = 0; off < in.size(); off += chunk)
            sub.feed(in.data() + off, std::min(chunk, in.size() - off), out);
        sub.finish(out);
        CHECK(out == want);
    }
}

TEST_CASE("RecipientCopies: each recipient's own URL swapped into the location part")
{
    TempStore t;
    Config cfg = t.cfg();
    Store s(cfg);
    auto w = s.create();
    w->write("media", 5);
    ItemMeta m;
    m.type = "video/mp4";
    m.recipients = {"a@example.org", "b@example.org"};
    NewItem a = w->commit(m);
    Handle h;
    h.url = a.url;
    h.sha256 = a.sha256;
    h.size = a.size;
    h.type = "video/mp4";
    h.name = "clip.mp4";
    h.pin = a.pin;
    h.expires = a.expires;
    RecipientCopies copies;
    CHECK_FALSE(copies.usable());   // nothing added yet
    copies.add(h, a);
    REQUIRE(copies.usable());
    CHECK(copies.for_address("c@example.org") == nullptr);
    std::string shared = build_location_part(h, "\r\n");
    for (const char* who : {"a@example.org", "b@example.org"}) {
        CAPTURE(who);
        const Substitutions* subs = copies.for_address(who);
        REQUIRE(subs);
        Substituter sub(*subs);
        std::string out;
        sub.feed(shared.data(), shared.size(), out);
        sub.finish(out);
        Handle own = h;
        own.url = recipient_url(a.url, token_of(a, who));
        CHECK(out == build_location_part(own, "\r\n"));
        CHECK(out.find(a.token) == std::string::npos);
    }
    // An item without recipient tokens: nobody can have a copy of their own.
    NewItem none = a;
    none.recipient_tokens.clear();
    copies.add(h, none);
    CHECK_FALSE(copies.usable());
}

// A program started as root gives what opening its store made to its user
// (drop_privileges): the list must name everything a fresh open creates.
TEST_CASE("store: layout::opened_paths names every entry a fresh open creates")
{
    TempStore t;
    {
        Store s(t.cfg());
    }
    const std::string dir = t.dir + "/store";
    std::vector<std::string> listed = layout::opened_paths(dir);
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
        CHECK_MESSAGE(std::find(listed.begin(), listed.end(), e.path().string()) != listed.end(), e.path().string());
    CHECK(std::find(listed.begin(), listed.end(), dir) != listed.end());
    const std::vector<std::string> root = layout::opened_paths("/");
    CHECK(std::find(root.begin(), root.end(), "/") == root.end());
}
