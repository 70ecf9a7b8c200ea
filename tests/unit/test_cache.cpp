// test_cache.cpp - cached copies of plain messages (fetcher/cache.h): entry headers,
// packs checked on every open, the X-Media-Handle split that sends a message to its
// raw file instead, and an index that survives damage from a crash.
#include "fetcher/cache.h"
#include "fetcher_fixtures.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <doctest/doctest.h>

#include <string>

using namespace mm;
using namespace mm::fetch_fixtures;

namespace {

const std::string kSha(64, 'a');
const std::string kKey(64, 'b');

} // namespace

TEST_CASE("cache entry headers: round trip, and anything else refused")
{
    CacheHeader h;
    h.size = 3500;
    h.sha256 = kSha;
    h.key = kKey;
    h.boot = std::string(32, 'c');
    const std::string good = format_cache_header(h);
    REQUIRE(good.size() == kCacheHeaderLen);
    CacheHeader back;
    REQUIRE(parse_cache_header(good, back));
    CHECK(back.size == 3500);
    CHECK(back.sha256 == kSha);
    CHECK(back.key == kKey);
    CHECK(back.boot == h.boot);
    h.boot.clear();   // boot unknown when written
    REQUIRE(parse_cache_header(format_cache_header(h), back));
    CHECK(back.boot.empty());

    auto at = [&](size_t pos, char c) {
        std::string s = good;
        s[pos] = c;
        return s;
    };
    struct Case {
        const char* why;
        std::string text;
    };
    const Case cases[] = {
        {"empty", ""},
        {"zeros, as an unwritten block reads", std::string(kCacheHeaderLen, '\0')},
        {"short", good.substr(0, kCacheHeaderLen - 1)},
        {"long", good + "x"},
        {"other magic", at(7, '2')},
        {"size not hex", at(9, 'g')},
        {"size upper case", at(24, 'A')},
        {"sha256 not hex", at(30, 'z')},
        {"key with a space", at(100, ' ')},
        {"boot half dashes", at(156, '-')},
        {"missing separator", at(25, 'x')},
        {"LF only", at(188, '\n')},
    };
    for (const auto& c : cases) {
        CAPTURE(c.why);
        CHECK_FALSE(parse_cache_header(c.text, back));
    }
}

TEST_CASE("pack entries: one after another, each checked on open; damage is found")
{
    TempCache c;
    const std::string path = c.dir + "/msg/p.pack", boot(32, 'd');
    const std::string key2(64, 'e');
    std::string big;
    for (int i = 0; i < 5000; ++i)
        big += "line " + std::to_string(i) + " of a big plain message\r\n";
    {
        PackWriter pack(path, "0000abcd", boot);
        PackSink a(pack, kKey, c.dir + "/msg/a.raw"), b(pack, key2, c.dir + "/msg/b.raw");
        REQUIRE(a.write("one\r\n", 5));
        REQUIRE(a.finish());
        for (size_t off = 0; off < big.size(); off += 65536)   // as read_retr hands it over
            REQUIRE(b.write(big.data() + off, std::min<size_t>(65536, big.size() - off)));
        REQUIRE(b.finish());
        CHECK_FALSE(a.handle_name());
        CHECK(a.entry().offset == 0);
        CHECK(a.entry().size == 5);
        CHECK(b.entry().offset == kCacheHeaderLen + 5);
        CHECK(b.entry().size == big.size());
        CHECK(pack.end == 2 * kCacheHeaderLen + 5 + big.size());
    }
    std::string why;
    int fd = open_entry(path, 0, kKey, 5, why, boot);
    REQUIRE(fd >= 0);
    CHECK(read_fd(fd).substr(0, 5) == "one\r\n");
    close(fd);
    // Checked by SHA-256 when written in another boot, and still good.
    fd = open_entry(path, kCacheHeaderLen + 5, key2, big.size(), why, std::string(32, 'f'));
    REQUIRE(fd >= 0);
    CHECK(read_fd(fd) == big);
    close(fd);

    CHECK(open_entry(path, 0, key2, 5, why, boot) < 0);                    // names another message
    CHECK(open_entry(path, 0, kKey, 6, why, boot) < 0);                    // another size
    CHECK(open_entry(path, 1, kKey, 5, why, boot) < 0);                    // not an entry's start
    CHECK(open_entry(c.dir + "/msg/none.pack", 0, kKey, 5, why, boot) < 0);

    // A crash in an earlier boot left a block of the second entry unwritten.
    int w = open(path.c_str(), O_WRONLY);
    REQUIRE(w >= 0);
    const std::string zeros(4096, '\0');
    REQUIRE(pwrite(w, zeros.data(), zeros.size(), kCacheHeaderLen * 2 + 5 + 8192) == 4096);
    fd = open_entry(path, kCacheHeaderLen + 5, key2, big.size(), why, std::string(32, 'f'));
    CHECK(fd < 0);
    CHECK(why.find("SHA-256") != std::string::npos);
    fd = open_entry(path, kCacheHeaderLen + 5, key2, big.size(), why, "");   // boot unknown: checked too
    CHECK(fd < 0);
    // ... or cut the pack short.
    REQUIRE(ftruncate(w, static_cast<off_t>(kCacheHeaderLen * 2 + 5 + 100)) == 0);
    close(w);
    CHECK(open_entry(path, kCacheHeaderLen + 5, key2, big.size(), why, boot) < 0);
    fd = open_entry(path, 0, kKey, 5, why, boot);   // the first entry is untouched
    CHECK(fd >= 0);
    close(fd);
}

TEST_CASE("a message naming X-Media-Handle goes to its raw file, even split across writes; the pack is left as it was")
{
    TempCache c;
    const std::string path = c.dir + "/msg/p.pack", raw = c.dir + "/msg/h.raw";
    PackWriter pack(path, "0000abcd", std::string(32, 'd'));
    PackSink plain(pack, kKey, c.dir + "/msg/x.raw");
    REQUIRE(plain.write("a: b\r\n\r\nx-media-handl\r\n", 23));   // one letter short
    REQUIRE(plain.finish());
    CHECK_FALSE(plain.handle_name());
    const uint64_t end = pack.end;

    const std::string first = "Subject: v\r\nX-Med", second = "IA-Handle: v=1\r\n\r\nbody\r\n";
    std::string tail(70000, 'y');   // big enough to have been written to the pack already
    PackSink h(pack, std::string(64, 'e'), raw);
    REQUIRE(h.write(first.data(), first.size()));
    REQUIRE(h.write(second.data(), second.size()));
    REQUIRE(h.write(tail.data(), tail.size()));
    REQUIRE(h.finish());
    CHECK(h.handle_name());
    CHECK(read_all(raw) == first + second + tail);
    CHECK(pack.end == end);

    PackSink small(pack, std::string(64, '1'), c.dir + "/msg/s.raw");
    REQUIRE(small.write("xx-MEDIA-HANDLE:", 16));
    REQUIRE(small.finish());
    CHECK(small.handle_name());
    CHECK(read_all(c.dir + "/msg/s.raw") == "xx-MEDIA-HANDLE:");
    CHECK(pack.end == end);
}

TEST_CASE("cache index: round trip; lines a crash damaged are skipped")
{
    TempCache c;
    const std::string path = c.dir + "/msg/u.idx";
    CacheIndex idx;
    idx[kKey] = {"0000abcd", 0, 5};
    idx[std::string(64, 'e')] = {"0000abce", 195, 123456};
    REQUIRE(write_index(path, idx));
    CacheIndex back = read_index(path);
    REQUIRE(back.size() == 2);
    CHECK(back[std::string(64, 'e')].pack == "0000abce");
    CHECK(back[std::string(64, 'e')].offset == 195);
    CHECK(back[std::string(64, 'e')].size == 123456);
    CHECK(read_index(c.dir + "/msg/none.idx").empty());

    const std::string good = read_all(path);
    auto index_of = [&](const std::string& text) {
        std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
        return read_index(path);
    };
    CHECK(index_of("").empty());
    CHECK(index_of(std::string(4096, '\0')).empty());
    CHECK(index_of(good.substr(0, good.size() - 1)).size() == 1);       // last line cut: not trusted
    CHECK(index_of("MMINDEX2\n" + good.substr(9)).empty());              // another format
    std::string bad = good;
    bad[9 + 3] = '\0';                                                   // a hole in the first line
    CHECK(index_of(bad).size() == 1);
    CHECK(index_of(good + kKey + " 0000abcd 12x 5\n").size() == 2);     // bad number: skipped
    CHECK(index_of(good + kKey + " 0000ABCD 1 5\n").size() == 2);
    CHECK(index_of(good + kKey + " 0000abcd 1\n").size() == 2);
}

TEST_CASE("X-Media-Handle is found in any letter case wherever the writes split it, and near misses are not")
{
    TempCache c;
    PackWriter pack(c.dir + "/msg/p.pack", "0000abcd", std::string(32, 'd'));
    const std::string yes = "a-b\r\nx-x-MEDIA-handle: v=1\r\n", no = "a-b\r\nx-media_handle x media-handle X-Media-Handl";
    for (const std::string* text : {&yes, &no}) {
        for (size_t i = 0; i <= text->size(); ++i) {
            for (size_t j = i; j <= text->size(); j += 3) {
                CAPTURE(*text);
                CAPTURE(i);
                CAPTURE(j);
                PackSink s(pack, kKey, c.dir + "/msg/r.raw");
                REQUIRE(s.write(text->data(), i));
                REQUIRE(s.write(text->data() + i, j - i));
                REQUIRE(s.write(text->data() + j, text->size() - j));
                CHECK(s.handle_name() == (text == &yes));
            }
        }
    }
}

TEST_CASE("per-user key list of raw copies: round trip; damaged lines skipped, other formats empty")
{
    TempCache c;
    const std::string path = c.dir + "/msg/u.own";
    const std::set<std::string> keys = {kKey, std::string(64, 'e')};
    REQUIRE(write_key_list(path, keys));
    CHECK(read_key_list(path) == keys);
    CHECK(read_key_list(c.dir + "/msg/none.own").empty());
    REQUIRE(write_key_list(path, {}));
    CHECK(read_key_list(path).empty());
    struct Case {
        const char* why;
        std::string text;
        size_t want;
    };
    const std::string good = "MMKEYS1\n" + kKey + "\n";
    const Case cases[] = {
        {"empty file", "", 0},
        {"another format", "MMKEYS2\n" + kKey + "\n", 0},
        {"no magic", kKey + "\n", 0},
        {"last line cut", good + std::string(64, 'e'), 1},
        {"upper case", good + std::string(64, 'E') + "\n", 1},
        {"short key", good + "abc\n", 1},
        {"long key", good + std::string(65, 'e') + "\n", 1},
        {"path in it", good + "../../etc/passwd\n", 1},
        {"NUL", good + std::string(64, '\0') + "\n", 1},
        {"two good", good + std::string(64, 'e') + "\n", 2},
    };
    for (const auto& k : cases) {
        CAPTURE(k.why);
        std::ofstream(path, std::ios::binary | std::ios::trunc) << k.text;
        CHECK(read_key_list(path).size() == k.want);
    }
}
