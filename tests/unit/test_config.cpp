// test_config.cpp - mediamail.conf loading: defaults, overrides, and bad input
// that must be refused with the key and value named.
#include <doctest/doctest.h>

#include "core/config.h"

#include <cstdio>
#include <fstream>
#include <map>
#include <unistd.h>

using namespace mm;

namespace {
std::string write_temp(const std::string& text)
{
    char path[] = "/tmp/mm-config-test-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    close(fd);
    return path;
}

std::string load_error(const std::string& text, const std::vector<std::string>& overrides = {})
{
    std::string path = write_temp(text);
    std::string msg;
    try {
        Config::load(path, overrides);
    } catch (const ConfigError& e) {
        msg = e.what();
    }
    unlink(path.c_str());
    return msg;
}
} // namespace

TEST_CASE("defaults load without a file")
{
    Config c = Config::load("", {});
    CHECK(c.size("milter.min_size") == 1024 * 1024);
    CHECK(c.boolean("fetcher.allow_private") == false);
    CHECK(c.hostport("fetcher.listen").port == 1110);
    CHECK(c.list("milter.types") == std::vector<std::string>{"video/*", "audio/*"});
    CHECK(c.duration("gateway.retention").count() == 30 * 86400);
}

TEST_CASE("file values and --set overrides")
{
    std::string path = write_temp("# comment\n[store]\ndir = /tmp/x\n\n[milter]\nmin_size = 20K\n");
    Config c = Config::load(path, {"milter.min_size=3M", "fetcher.allow_private = true"});
    unlink(path.c_str());
    CHECK(c.str("store.dir") == "/tmp/x");
    CHECK(c.size("milter.min_size") == 3 * 1024 * 1024);
    CHECK(c.boolean("fetcher.allow_private"));
    CHECK(c.origin("store.dir").find(":3") != std::string::npos);
}

TEST_CASE("bad configuration is refused naming key and value")
{
    struct Case {
        const char* text;
        const char* want;
    } cases[] = {
        {"[milter]\nmin_size = 12Q\n", "milter.min_size = '12Q'"},
        {"[milter]\nmin_size = -1\n", "milter.min_size"},
        {"[milter]\nmin_size = 99999999999999999999\n", "milter.min_size"},
        {"[fetcher]\nlisten = 127.0.0.1:70000\n", "fetcher.listen = '127.0.0.1:70000'"},
        {"[fetcher]\nlisten = nocolon\n", "fetcher.listen"},
        {"[fetcher]\nallow_private = maybe\n", "fetcher.allow_private = 'maybe'"},
        {"[fetcher]\nupstream = http://x:1\n", "fetcher.upstream"},
        {"[gateway]\npublic_url = http://x\n", "gateway.public_url"},
        {"[store]\ndir = relative/path\n", "store.dir"},
        {"[store]\nspeling = 1\n", "unknown key 'store.speling'"},
        {"dir = /x\n", "outside of a [section]"},
        {"[store\n", "bad section"},
        {"[store]\njust words\n", "expected 'key = value'"},
        {"[store]\ndir = /a\ndir = /b\n", "set twice"},
        {"[milter]\non_error = drop\n", "milter.on_error = 'drop'"},
        {"[gateway]\nretention = 3 weeks\n", "gateway.retention"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        std::string msg = load_error(c.text);
        CHECK(msg.find(c.want) != std::string::npos);
    }
    CHECK(load_error("", {"nodot"}).find("section.key=value") != std::string::npos);
    CHECK(load_error("", {"milter.min_size=abc"}).find("--set") != std::string::npos);
}

TEST_CASE("strict number parsing")
{
    uint64_t v;
    CHECK(parse_u64("0", v));
    CHECK(!parse_u64("", v));
    CHECK(!parse_u64("+1", v));
    CHECK(!parse_u64(" 1", v));
    CHECK(!parse_u64("1 ", v));
    CHECK(!parse_u64("18446744073709551616", v));
    CHECK(parse_size("16G", v));
    CHECK(v == 16ULL << 30);
    CHECK(!parse_size("17179869184T", v));
}

TEST_CASE("the sample config documents every key with its default, and loads")
{
    std::string path = std::string(MM_SOURCE_DIR) + "/conf/mediamail.conf";
    std::ifstream in(path);
    REQUIRE(in);
    std::map<std::string, std::string> documented;
    std::string line, section;
    while (std::getline(in, line)) {
        if (line.size() > 2 && line[0] == '[' && line.back() == ']')
            section = line.substr(1, line.size() - 2);
        else if (line.size() > 1 && line[0] == '#' && line[1] != ' ' && line.find(" =") != std::string::npos) {
            size_t eq = line.find(" =");
            std::string value = eq + 2 < line.size() ? line.substr(eq + 3) : "";
            documented[section + "." + line.substr(1, eq - 1)] = value;
        }
    }
    for (const auto& k : config_keys()) {
        CAPTURE(k.key);
        REQUIRE(documented.count(k.key) == 1);
        CHECK(documented[k.key] == k.default_value);
    }
    CHECK(documented.size() == config_keys().size());
    CHECK_NOTHROW(Config::load(path, {}));
}
