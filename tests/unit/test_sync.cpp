// test_sync.cpp - a login's synchronisation against a scripted upstream
// (fetcher/sync.h): plain mail into one pack then served from the index, messages
// over fetcher.max_size shown as they are, and a damaged copy fetched again at
// RETR (fetcher/retrieve.h).
#include "fetcher/cache.h"
#include "fetcher/retrieve.h"
#include "fetcher/sync.h"
#include "fetcher_fixtures.h"

#include <fcntl.h>
#include <memory>
#include <sys/stat.h>

#include <doctest/doctest.h>

#include <string>

using namespace mm;
using namespace mm::fetch_fixtures;

TEST_CASE("synchronise: plain mail into one pack, then from the index; a message over fetcher.max_size shown as it is")
{
    TempCache c;
    const SyncOptions opt = options(c, 1000);
    const std::string list = "+OK\r\n1 30\r\n2 5000\r\n3 20\r\n4 25\r\n.\r\n";
    {
        // 2 is over max_size by LIST and never RETR'd; 4 says 25 in LIST but is
        // bigger: cut off at max_size, shown as it is too.
        ScriptedPop3 up({"+OK\r\n1 u1\r\n2 u2\r\n3 u3\r\n4 u4\r\n.\r\n", list, "+OK\r\nPIPELINING\r\n.\r\n",
                         "+OK\r\nSubject: one\r\n\r\n..dot\r\n.\r\n", "+OK\r\nSubject: three\r\n\r\nhi\r\n.\r\n",
                         "+OK\r\n" + std::string(3000, 'z') + "\r\n.\r\n", "+OK bye\r\n"});
        Upstream u;
        std::string err, text;
        REQUIRE(u.connect(up.config(), err));
        std::vector<ShownMessage> shown;
        SyncStats stats;
        REQUIRE(synchronise(u, "bob", opt, shown, stats, err));
        REQUIRE(shown.size() == 4);
        CHECK(stats.held == 0);
        CHECK(shown[0].source == ShownMessage::Source::copy);
        CHECK(shown[0].size == 22);
        CHECK(shown[1].source == ShownMessage::Source::as_is);
        CHECK(shown[1].size == 5000);
        CHECK(shown[2].source == ShownMessage::Source::copy);
        CHECK(shown[2].path == shown[0].path);   // one pack for the login
        CHECK(shown[3].source == ShownMessage::Source::as_is);
        CHECK(shown[3].size == 25);
        std::string why;
        int fd = open_copy(u, shown[0], "bob", opt, why);
        REQUIRE(fd >= 0);
        CHECK(read_fd(fd).substr(0, 22) == "Subject: one\r\n\r\n.dot\r\n");
        close(fd);
        CHECK(u.command("QUIT", text) == Reply::ok);
        u.close();   // the script ends when we hang up
        up.wait();
        CHECK_FALSE(has(up.commands, "RETR 2"));
        CHECK(has(up.commands, "RETR 4"));
    }
    {
        // The next login: the index answers for the plain ones; 2 is still shown
        // as it is unread, 4 (whose LIST understates it) is read and cut off again.
        ScriptedPop3 up({"+OK\r\n1 u1\r\n2 u2\r\n3 u3\r\n4 u4\r\n.\r\n", list,
                         "+OK\r\n" + std::string(3000, 'z') + "\r\n.\r\n", "+OK bye\r\n"});
        Upstream u;
        std::string err, text;
        REQUIRE(u.connect(up.config(), err));
        std::vector<ShownMessage> shown;
        SyncStats stats;
        REQUIRE(synchronise(u, "bob", opt, shown, stats, err));
        REQUIRE(shown.size() == 4);
        CHECK(shown[1].source == ShownMessage::Source::as_is);
        CHECK(shown[2].source == ShownMessage::Source::copy);
        CHECK(shown[2].size == 22);
        CHECK(shown[3].source == ShownMessage::Source::as_is);
        CHECK(u.command("QUIT", text) == Reply::ok);
        u.close();   // the script ends when we hang up
        up.wait();
        CHECK(up.commands == std::vector<std::string>{"UIDL", "LIST", "RETR 4", "QUIT"});
    }
}

TEST_CASE("a cache copy found damaged at RETR is fetched again; a message gone upstream takes its pack along")
{
    TempCache c;
    const SyncOptions opt = options(c, 100000);
    std::vector<ShownMessage> shown;
    {
        ScriptedPop3 up({"+OK\r\n1 u1\r\n.\r\n", "+OK\r\n1 20\r\n.\r\n", "+OK\r\nSubject: one\r\n\r\nbody\r\n.\r\n"});
        Upstream u;
        std::string err;
        REQUIRE(u.connect(up.config(), err));
        SyncStats stats;
        REQUIRE(synchronise(u, "bob", opt, shown, stats, err));
        REQUIRE(shown.size() == 1);
    }
    const std::string first_pack = shown[0].path;
    REQUIRE(truncate(first_pack.c_str(), 100) == 0);   // what a crash can leave
    std::vector<ShownMessage> again;
    {
        ScriptedPop3 up({"+OK\r\n1 u1\r\n.\r\n", "+OK\r\n1 20\r\n.\r\n",
                         "+OK\r\nSubject: one\r\n\r\nbody\r\n.\r\n", "+OK\r\n"});
        Upstream u;
        std::string err, text;
        REQUIRE(u.connect(up.config(), err));
        SyncStats stats;
        REQUIRE(synchronise(u, "bob", opt, again, stats, err));
        REQUIRE(again.size() == 1);
        CHECK(again[0].size == 22);   // from the index, before any check
        std::string why;
        int fd = open_copy(u, again[0], "bob", opt, why);
        REQUIRE(fd >= 0);
        CHECK(read_fd(fd).substr(0, 22) == "Subject: one\r\n\r\nbody\r\n");
        close(fd);
        CHECK(u.command("NOOP", text) == Reply::ok);   // in step with upstream
        u.close();   // the script ends when we hang up
        up.wait();
        CHECK(up.commands.at(2) == "RETR 1");
    }
    struct stat st;
    CHECK(stat(first_pack.c_str(), &st) != 0);   // no entry left in it: removed
    {
        // Message 1 deleted upstream: its entry and the pack it was in go.
        ScriptedPop3 up({"+OK\r\n.\r\n", "+OK\r\n.\r\n"});
        Upstream u;
        std::string err;
        REQUIRE(u.connect(up.config(), err));
        SyncStats stats;
        std::vector<ShownMessage> none;
        REQUIRE(synchronise(u, "bob", opt, none, stats, err));
        CHECK(none.empty());
    }
    std::string why;
    CHECK(open_copy(*std::make_unique<Upstream>(), again[0], "bob", opt, why) < 0);   // pack gone, no upstream
}
