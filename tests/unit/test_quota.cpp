// test_quota.cpp - the store's quotas (store/quota.h): the arithmetic of
// quota_refusal, the sender window, reservations shared by concurrent Writers,
// store.min_free with an injected statvfs, and what a refused Writer leaves.
#include <doctest/doctest.h>

#include "store/index.h"
#include "store/layout.h"
#include "store/quota.h"
#include "store/store.h"

#include <filesystem>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace mm;

namespace {

constexpr uint64_t MiB = 1ULL << 20;

struct QuotaStore {
    std::string dir;
    QuotaStore()
    {
        char tmpl[] = "/tmp/mm-quota-test-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        dir = tmpl;
    }
    ~QuotaStore() { std::filesystem::remove_all(dir); }
    Config cfg(const std::vector<std::string>& extra) const
    {
        std::vector<std::string> o = {"store.dir=" + dir + "/store", "gateway.public_url=https://media.example:8443/",
                                      "store.min_free=0", "milter.sender_quota=0"};
        o.insert(o.end(), extra.begin(), extra.end());
        return Config::load("", o);
    }
    std::string tmp() const { return dir + "/store/tmp"; }
    std::string index() const { return dir + "/store/index.sqlite"; }
};

size_t entries(const std::string& d)
{
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(d)) {
        (void)e;
        ++n;
    }
    return n;
}

void write_n(Store::Writer& w, uint64_t n)
{
    std::string chunk(MiB, 'x');
    for (uint64_t done = 0; done < n; done += chunk.size())
        w.write(chunk.data(), std::min<uint64_t>(chunk.size(), n - done));
}

NewItem store_bytes(Store& s, const std::string& sender, uint64_t n, char fill = 'a')
{
    auto w = s.create(sender);
    std::string chunk(n, fill);
    w->write(chunk.data(), chunk.size());
    ItemMeta m;
    m.type = "video/mp4";
    m.name = "clip.mp4";
    return w->commit(m);
}

void sql(const std::string& db_path, const std::string& statement)
{
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(db_path.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, statement.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
}

} // namespace

TEST_CASE("quota_refusal: each limit, its boundary, and no wrap-around")
{
    const uint64_t big = UINT64_MAX - 5;
    struct Case {
        const char* what;
        QuotaLimits lim;
        QuotaUsage use;
        std::string sender;
        uint64_t total, written;
        const char* refused;   // substring of the reason, or nullptr for allowed
    } cases[] = {
        {"no limits", {}, {big, big, big, 0}, "from:a", big, 0, nullptr},
        {"max_bytes exactly reached", {100, 0, 0, 60}, {60, 0, 0, 0}, "", 40, 0, nullptr},
        {"max_bytes one over", {100, 0, 0, 60}, {60, 0, 0, 0}, "", 41, 0, "store.max_bytes"},
        {"max_bytes, sums saturate", {100, 0, 0, 60}, {big, 0, 0, 0}, "", big, 0, "store.max_bytes"},
        {"sender quota exactly", {0, 0, 50, 60}, {0, 30, 0, 0}, "sasl:bob", 20, 0, nullptr},
        {"sender quota one over", {0, 0, 50, 60}, {0, 30, 0, 0}, "sasl:bob", 21, 0, "milter.sender_quota"},
        {"no sender: no sender quota", {0, 0, 50, 60}, {0, 30, 0, 0}, "", 21, 0, nullptr},
        {"min_free kept", {0, 10, 0, 60}, {0, 0, 0, 30}, "", 20, 0, nullptr},
        {"min_free one short", {0, 10, 0, 60}, {0, 0, 0, 30}, "", 21, 0, "store.min_free"},
        {"min_free: written bytes are on disk already", {0, 10, 0, 60}, {0, 0, 0, 30}, "", 25, 5, nullptr},
        {"min_free: others' pending bytes count", {0, 10, 0, 60}, {0, 0, 5, 30}, "", 20, 0, "store.min_free"},
        {"min_free: fs full", {0, 10, 0, 60}, {0, 0, 0, 0}, "", 1, 0, "store.min_free"},
        {"min_free: saturating pending", {0, 10, 0, 60}, {0, 0, big, big}, "", big, 0, "store.min_free"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.what);
        std::string why = quota_refusal(c.lim, c.use, c.sender, c.total, c.written);
        if (c.refused)
            CHECK(why.find(c.refused) != std::string::npos);
        else
            CHECK(why.empty());
    }
}

TEST_CASE("quota: keys have defaults and bounds")
{
    QuotaLimits d = QuotaLimits::from(Config::load("", {}));
    CHECK(d.max_bytes == 0);
    CHECK(d.min_free == (1ULL << 30));
    CHECK(d.sender_quota == 20 * (1ULL << 30));
    CHECK(d.window == 86400);
    CHECK_THROWS_AS(Config::load("", {"milter.sender_quota_window=0"}), ConfigError);
    CHECK_THROWS_AS(Config::load("", {"store.max_bytes=lots"}), ConfigError);
}

TEST_CASE("quota: store.max_bytes refuses the writer that would cross it and leaves nothing")
{
    QuotaStore t;
    Store s(t.cfg({"store.max_bytes=10M"}));
    store_bytes(s, "from:a@x", 6 * MiB);
    auto w = s.create("from:b@x");
    CHECK_THROWS_AS(write_n(*w, 5 * MiB), QuotaError);
    CHECK(entries(t.tmp()) == 0);   // the partial file is gone at once
    CHECK_THROWS_AS(write_n(*w, 1), StoreError);   // and the writer is finished
    w.reset();
    CHECK(entries(t.tmp()) == 0);
    // A refused writer's reservation is released: 4 MiB still fit.
    store_bytes(s, "from:b@x", 4 * MiB, 'b');
    // expected size up front: refused before a temp file exists.
    CHECK_THROWS_AS(s.create("from:b@x", 1), QuotaError);
    CHECK_THROWS_AS(s.check_room("from:c@x", 1), QuotaError);
    CHECK(entries(t.tmp()) == 0);
}

TEST_CASE("quota: two writers at once cannot both squeeze under the limit")
{
    QuotaStore t;
    Store a(t.cfg({"store.max_bytes=10M"}));
    Store b(t.cfg({"store.max_bytes=10M"}));   // another process's view of the same index
    auto wa = a.create("from:a@x");
    auto wb = b.create("from:b@x");
    write_n(*wa, 6 * MiB);
    // 6 + 6 > 10 although neither is committed: b sees a's reservation.
    CHECK_THROWS_AS(write_n(*wb, 6 * MiB), QuotaError);
    CHECK(entries(t.tmp()) == 1);   // only a's temp file
    ItemMeta m;
    m.type = "video/mp4";
    m.name = "a.mp4";
    wa->commit(m);
    CHECK(entries(t.tmp()) == 0);
    // a's slack reservation went with its commit: 4 MiB is all that is left.
    auto wc = b.create("from:b@x");
    write_n(*wc, 4 * MiB);
    auto wd = a.create("from:a@x");
    CHECK_THROWS_AS(write_n(*wd, 1), QuotaError);
}

TEST_CASE("quota: the sender quota counts one sender within the window only")
{
    QuotaStore t;
    Store s(t.cfg({"milter.sender_quota=5M", "milter.sender_quota_window=1h"}));
    NewItem first = store_bytes(s, "sasl:alice", 3 * MiB, 'a');
    {
        Index ix(t.index(), Index::Open::existing);
        CHECK(ix.item_sender(first.id) == "sasl:alice");
    }
    auto w = s.create("sasl:alice");
    CHECK_THROWS_AS(write_n(*w, 3 * MiB), QuotaError);
    w.reset();
    // Another sender is not affected, nor is a writer with no sender.
    store_bytes(s, "sasl:bob", 3 * MiB, 'b');
    store_bytes(s, "", 3 * MiB, 'c');
    // Once alice's item is older than the window, its bytes no longer count.
    sql(t.index(), "UPDATE items SET created_unix = created_unix - 3601 WHERE sender = 'sasl:alice'");
    store_bytes(s, "sasl:alice", 3 * MiB, 'd');
}

TEST_CASE("quota: store.min_free with an injected statvfs")
{
    QuotaStore t;
    uint64_t free_bytes = 100 * MiB;
    bool fail = false;
    auto fake = [&](const std::string&) -> std::optional<uint64_t> {
        if (fail)
            return std::nullopt;
        return free_bytes;
    };
    Store s(t.cfg({"store.min_free=90M"}), fake);
    store_bytes(s, "from:a@x", 9 * MiB);
    // Two writers at once: the second sees the first's bytes still to come.
    auto w1 = s.create("from:a@x", 6 * MiB);
    CHECK_THROWS_AS(s.create("from:b@x", 5 * MiB), QuotaError);
    w1.reset();
    s.create("from:b@x", 5 * MiB).reset();
    free_bytes = 90 * MiB;
    CHECK_THROWS_AS(store_bytes(s, "from:a@x", 1, 'z'), QuotaError);
    CHECK(entries(t.tmp()) == 0);
    // statvfs failing is an error, not a pass.
    fail = true;
    free_bytes = 100 * MiB;
    CHECK_THROWS_AS(store_bytes(s, "from:a@x", 1, 'y'), StoreError);
}

TEST_CASE("quota: a dead writer's reservation does not hold the store for ever")
{
    QuotaStore t;
    Store s(t.cfg({"store.max_bytes=10M"}));
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0)
        _exit(0);
    REQUIRE(waitpid(child, nullptr, 0) == child);
    // A process that died holding 9 MiB; a live one (us) holding nothing old.
    sql(t.index(), "INSERT INTO reservations VALUES ('dead', 'from:x', " + std::to_string(9 * MiB) + ", 0, " +
                       std::to_string(child) + ", strftime('%s','now'))");
    store_bytes(s, "from:a@x", 5 * MiB);
    // A live process's reservation not renewed for more than a day also goes.
    sql(t.index(), "INSERT INTO reservations VALUES ('old', 'from:x', " + std::to_string(9 * MiB) + ", 0, " +
                       std::to_string(getpid()) + ", 0)");
    store_bytes(s, "from:a@x", 4 * MiB, 'q');
}
