// test_append_file.cpp - store/append_file.h: every byte lands where it
// belongs whatever the piece sizes, with O_DIRECT and without, from an
// unaligned start (a resumed upload), with flushes in between (an upload
// between two requests); the file's size is size() after each flush.
#include <doctest/doctest.h>

#include "store/append_file.h"
#include "store/store.h"

#include <csignal>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace mm;

namespace {

struct TempFile {
    std::string dir, path;
    TempFile()
    {
        char tmpl[] = "/tmp/mm-append-test-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        dir = tmpl;
        path = dir + "/f";
    }
    ~TempFile() { std::filesystem::remove_all(dir); }
    int open_rw() const
    {
        int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        REQUIRE(fd >= 0);
        return fd;
    }
    std::string contents() const
    {
        std::ifstream in(path, std::ios::binary);
        std::ostringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }
    uint64_t size_on_disk() const
    {
        struct stat st;
        REQUIRE(stat(path.c_str(), &st) == 0);
        return static_cast<uint64_t>(st.st_size);
    }
    // Whether this file system takes O_DIRECT at all (the checks of direct()
    // only hold where it does).
    bool takes_direct() const
    {
        int fd = open((dir + "/probe").c_str(), O_WRONLY | O_CREAT | O_DIRECT | O_CLOEXEC, 0600);
        if (fd < 0)
            return false;
        close(fd);
        return true;
    }
};

std::string pattern(size_t n, unsigned seed)
{
    std::string s(n, '\0');
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; ++i) {
        x = x * 1103515245u + 12345u;
        s[i] = static_cast<char>(x >> 24);
    }
    return s;
}

// Appends `data` in pieces cycling through `sizes`, flushing after every
// `flush_every` pieces (0: never) and checking the file then holds size().
void append_in_pieces(AppendFile& f, const TempFile& t, const std::string& data, std::vector<size_t> sizes,
                      size_t flush_every = 0)
{
    size_t at = 0, k = 0;
    while (at < data.size()) {
        size_t n = std::min(sizes[k % sizes.size()], data.size() - at);
        f.append(data.data() + at, n);
        at += n;
        ++k;
        if (flush_every && k % flush_every == 0) {
            f.flush();
            CHECK(t.size_on_disk() == f.size());
        }
    }
}

} // namespace

TEST_CASE("append file: odd pieces come out whole, with O_DIRECT and without")
{
    for (bool direct : {true, false}) {
        CAPTURE(direct);
        TempFile t;
        std::string data = pattern(5 * AppendFile::kStage + 12345, 1);
        AppendFile f(t.open_rw(), t.path, 0, direct);
        CHECK(f.direct() == (direct && t.takes_direct()));
        append_in_pieces(f, t, data, {1, 4095, 4096, 4097, AppendFile::kStage + 3, 65536, 7});
        CHECK(f.size() == data.size());
        f.sync();
        f.close();
        CHECK(t.contents() == data);
    }
}

TEST_CASE("append file: a resumed file that ends inside a block, flushed between requests")
{
    for (uint64_t start : {0ULL, 1ULL, 5000ULL, 4096ULL, 4095ULL, 1048577ULL}) {
        CAPTURE(start);
        TempFile t;
        std::string head = pattern(start, 2);
        {
            std::ofstream(t.path, std::ios::binary) << head;
        }
        std::string more = pattern(3 * AppendFile::kStage + 999, 3);
        AppendFile f(t.open_rw(), t.path, start, true);
        CHECK(f.size() == start);
        // Flushing every few pieces leaves the file at unaligned sizes again
        // and again; each time the blocks after it go direct again.
        append_in_pieces(f, t, more, {7777, 300000, 1}, 3);
        f.flush();
        CHECK(t.size_on_disk() == start + more.size());
        if (t.takes_direct())
            CHECK(f.direct());   // never fell back: every direct write was aligned
        f.close();
        CHECK(t.contents() == head + more);
    }
}

TEST_CASE("append file: flush frees the staging buffer and an empty flush is harmless")
{
    TempFile t;
    AppendFile f(t.open_rw(), t.path, 0, true);
    f.flush();
    f.flush();
    CHECK(t.size_on_disk() == 0);
    std::string data = pattern(100, 4);
    f.append(data.data(), data.size());
    CHECK(t.size_on_disk() == 0);   // staged, not written: a crash now loses them, and size() says so only in memory
    f.flush();
    CHECK(t.size_on_disk() == 100);
    f.sync();
    f.close();
    CHECK(t.contents() == data);
}

TEST_CASE("append file: after close every write is refused")
{
    TempFile t;
    AppendFile f(t.open_rw(), t.path, 0, true);
    f.close();
    char c = 'x';
    CHECK_THROWS_AS(f.append(&c, 1), StoreError);
    CHECK(t.size_on_disk() == 0);
}

TEST_CASE("append file: a write the disk refuses is an error, from the writing thread too")
{
    // RLIMIT_FSIZE stands in for a full disk: writes past it fail with EFBIG
    // (SIGXFSZ ignored), whichever descriptor and thread make them.
    struct rlimit old;
    REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
    auto old_handler = signal(SIGXFSZ, SIG_IGN);
    for (bool direct : {true, false}) {
        CAPTURE(direct);
        TempFile t;
        struct rlimit lim = old;
        lim.rlim_cur = 3 * AppendFile::kStage + 100;
        REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
        std::string data = pattern(8 * AppendFile::kStage, 5);
        bool refused = false;
        try {
            AppendFile f(t.open_rw(), t.path, 0, direct);
            for (size_t at = 0; at < data.size(); at += 65536)
                f.append(data.data() + at, 65536);
            f.sync();
        } catch (const StoreError& e) {
            refused = true;
            CHECK(std::string(e.what()).find("cannot write") != std::string::npos);
        }
        REQUIRE(setrlimit(RLIMIT_FSIZE, &old) == 0);
        CHECK(refused);
        CHECK(t.size_on_disk() <= 3 * AppendFile::kStage + 100);
    }
    signal(SIGXFSZ, old_handler);
}
