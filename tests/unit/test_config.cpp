// test_config.cpp - mediamail.conf loading (core/config.cpp): defaults, overrides,
// inline comments, and bad input - every bound and every enum word - refused with
// origin, key, value and bound named; the sample config and --help against the table.
#include <doctest/doctest.h>

#include "core/config.h"

#include <cstdio>
#include <fstream>
#include <map>
#include <set>
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

std::string set_error(const std::string& override)
{
    try {
        Config::load("", {override});
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}

std::string verify_error(const std::vector<std::string>& overrides, const char* program)
{
    try {
        Config::load("", overrides).verify(program);
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
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

TEST_CASE("every bound in the key table is enforced, naming origin, key, value and bound")
{
    struct Case {
        const char* set;    // --set argument
        const char* want;   // text the error must contain
    } cases[] = {
        {"gateway.threads=0", "--set: bad value for gateway.threads = '0': must be from 1 to 1024"},
        {"gateway.threads=1025", "gateway.threads = '1025': must be from 1 to 1024"},
        {"gateway.min_rate=2G", "gateway.min_rate = '2G': must be at most 1073741824"},
        {"gateway.min_rate_window=2h", "gateway.min_rate_window = '2h': must be from 1s to 3600s"},
        {"gateway.max_connections=0", "gateway.max_connections = '0': must be from 1 to 1000000"},
        {"gateway.timeout=0", "gateway.timeout = '0': must be at least 1s"},
        {"gateway.header_timeout=0s", "gateway.header_timeout = '0s': must be at least 1s"},
        {"gateway.gc_interval=0m", "gateway.gc_interval = '0m': must be at least 1s"},
        {"milter.proxy_timeout=0", "milter.proxy_timeout = '0': must be at least 1s"},
        {"milter.proxy_max_clients=0", "milter.proxy_max_clients = '0': must be from 1 to 1000000"},
        {"fetcher.max_sessions=0", "fetcher.max_sessions = '0': must be from 1 to 10000"},
        {"fetcher.max_sessions=10001", "fetcher.max_sessions = '10001': must be from 1 to 10000"},
        {"fetcher.parallel=0", "fetcher.parallel = '0': must be from 1 to 64"},
        {"fetcher.parallel=65", "fetcher.parallel = '65': must be from 1 to 64"},
        {"fetcher.cache_quota=0", "fetcher.cache_quota = '0': must be at least 1"},
        {"fetcher.timeout=0", "fetcher.timeout = '0': must be at least 1s"},
        {"fetcher.login_wait=61", "fetcher.login_wait = '61': must be at most 60s"},
        {"fetcher.login_wait=2m", "fetcher.login_wait = '2m': must be at most 60s"},
        {"fetcher.retry_max=9s", "fetcher.retry_max = '9s': must be at least 10s"},
        {"fetcher.parallel=four", "fetcher.parallel = 'four': expected a whole number"},
        {"fetcher.parallel=-1", "fetcher.parallel = '-1': expected a whole number"},
        {"fetcher.upstream_pin=sha256//abc", "fetcher.upstream_pin = 'sha256//abc': expected sha256//BASE64"},
        {"fetcher.upstream_pin=md5//AAAA", "fetcher.upstream_pin = 'md5//AAAA'"},
        {"fetcher.address=Bob@Example.org", "fetcher.address = 'Bob@Example.org': expected a plain lowercase"},
        {"fetcher.address=nobody", "fetcher.address = 'nobody'"},
        {"fetcher.tls_listen=nocolon", "fetcher.tls_listen = 'nocolon': expected host:port"},
        {"milter.proxy_listen=127.0.0.1:0", "milter.proxy_listen = '127.0.0.1:0': expected host:port"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.set);
        CHECK(set_error(c.set).find(c.want) != std::string::npos);
    }
    // The bounds themselves are allowed.
    const std::vector<std::string> fine = {"gateway.threads=1", "gateway.threads=1024", "gateway.min_rate=0", "gateway.timeout=1", "fetcher.parallel=1",
                           "fetcher.parallel=64", "fetcher.max_sessions=10000", "fetcher.login_wait=60s",
                           "fetcher.login_wait=0", "fetcher.retry_max=10s", "fetcher.cache_quota=1",
                           "milter.proxy_max_clients=1", "fetcher.upstream_pin=sha256//" +
                               std::string(43, 'A') + "=",
                           "fetcher.address=you@example.org", "fetcher.tls_listen=[::1]:1995"};
    for (const std::string& ok : fine) {
        CAPTURE(ok);
        CHECK(set_error(ok) == "");
    }
    // A bound broken in a file names the file and line.
    CHECK(load_error("[fetcher]\n\nparallel = 100\n").find(":3: bad value for fetcher.parallel = '100': must be "
                                                          "from 1 to 64") != std::string::npos);
}

TEST_CASE("every enum-like key refuses a word it does not know, and lists the words it does")
{
    unsigned choices = 0;
    for (const auto& k : config_keys()) {
        if (k.syntax.rfind("one of ", 0) != 0)
            continue;
        ++choices;
        CAPTURE(k.key);
        std::string msg = set_error(k.key + "=bogus");
        CHECK(msg.find("bad value for " + k.key + " = 'bogus': expected " + k.syntax) != std::string::npos);
        CHECK(set_error(k.key + "=" + k.default_value) == "");
        Config c = Config::load("", {});
        CHECK(c.word(k.key) == k.default_value);
        CHECK(c.is(k.key, k.default_value));
    }
    CHECK(choices >= 8);
    Config c = Config::load("", {"milter.on_error=accept"});
    CHECK(c.is("milter.on_error", "accept"));
    CHECK(!c.is("milter.on_error", "tempfail"));
    // A program asking for a word the table does not have is a bug, not a "no".
    CHECK_THROWS_AS(c.is("milter.on_error", "acept"), std::logic_error);
    CHECK_THROWS_AS(c.word("milter.min_size"), std::logic_error);
    CHECK_THROWS_AS(c.word("milter.no_such_key"), std::logic_error);
}

TEST_CASE("verify: the checks between one program's keys")
{
    struct Case {
        std::vector<std::string> set;
        const char* program;
        const char* want;   // "" for a configuration that passes
    } cases[] = {
        {{}, "gateway", ""},
        {{}, "milter", ""},
        {{}, "fetcher", ""},
        {{}, "mmsend", ""},
        {{"milter.socket="}, "milter", "bad value for milter.socket = '': milter.proxy_listen is empty too"},
        {{"milter.socket=", "milter.proxy_listen=127.0.0.1:10025"}, "milter", ""},
        {{"milter.socket="}, "fetcher", ""},   // another program's keys are its own business
        {{"fetcher.tls_cert=/c.pem"}, "fetcher", "--set: bad value for fetcher.tls_cert = '/c.pem': fetcher.tls_key is empty"},
        {{"fetcher.tls_key=/k.pem"}, "fetcher", "bad value for fetcher.tls_key = '/k.pem': fetcher.tls_cert is empty"},
        {{"fetcher.tls_cert=/c.pem", "fetcher.tls_key=/k.pem"}, "fetcher", ""},
        {{"fetcher.tls_listen=127.0.0.1:1995"}, "fetcher", "fetcher.tls_listen = '127.0.0.1:1995': needs fetcher.tls_cert"},
        {{"fetcher.tls_listen=127.0.0.1:1995", "fetcher.tls_cert=/c.pem", "fetcher.tls_key=/k.pem"}, "fetcher", ""},
        {{"fetcher.prefetch_interval=5m"}, "fetcher", "fetcher.prefetch_interval = '5m': needs fetcher.prefetch_user"},
        {{"fetcher.prefetch_interval=5m", "fetcher.prefetch_user=me"}, "fetcher", ""},
        // A plain listener off loopback: passwords in clear, only when said explicitly.
        {{"fetcher.listen=0.0.0.0:1110"}, "fetcher", "bad value for fetcher.listen = '0.0.0.0:1110': not a loopback address"},
        {{"fetcher.listen=192.0.2.7:1110"}, "fetcher", "fetcher.listen = '192.0.2.7:1110': not a loopback"},
        {{"fetcher.listen=[::]:1110"}, "fetcher", "fetcher.listen = '[::]:1110': not a loopback"},
        {{"fetcher.listen=mail.example:1110"}, "fetcher", "fetcher.listen = 'mail.example:1110': not a loopback"},
        {{"fetcher.listen=0.0.0.0:1110", "fetcher.tls_listen=0.0.0.0:1995", "fetcher.tls_cert=/c.pem",
          "fetcher.tls_key=/k.pem"}, "fetcher", "fetcher.listen = '0.0.0.0:1110': not a loopback"},
        {{"fetcher.listen=0.0.0.0:1110", "fetcher.allow_plain_listen=true"}, "fetcher", ""},
        {{"fetcher.listen=127.1.2.3:1110"}, "fetcher", ""},
        {{"fetcher.listen=[::1]:1110"}, "fetcher", ""},
        {{"fetcher.listen=localhost:1110"}, "fetcher", ""},
        {{"fetcher.listen=127.0.0.1:1110", "fetcher.tls_listen=0.0.0.0:1995", "fetcher.tls_cert=/c.pem",
          "fetcher.tls_key=/k.pem"}, "fetcher", ""},
        {{"fetcher.listen=0.0.0.0:1110"}, "milter", ""},
    };
    for (const auto& c : cases) {
        CAPTURE(c.program);
        CAPTURE(c.want);
        std::string msg = verify_error(c.set, c.program);
        if (*c.want)
            CHECK(msg.find(c.want) != std::string::npos);
        else
            CHECK(msg == "");
    }
    CHECK_THROWS_AS(Config::load("", {}).verify("no-such-program"), std::logic_error);
}

TEST_CASE("invalid(): a program's own check in the same form as the table's")
{
    Config c = Config::load("", {"fetcher.upstream=pop3://a/b"});
    CHECK(std::string(c.invalid("fetcher.upstream", "expected pop3://HOST").what()) ==
          "--set: bad value for fetcher.upstream = 'pop3://a/b': expected pop3://HOST");
    CHECK(std::string(c.invalid("fetcher.mode", "x").what()) == "default: bad value for fetcher.mode = 'auto': x");
}

TEST_CASE("inline comments after a blank; ';' and '#' inside a value stay")
{
    std::string path = write_temp("[fetcher] ; the receiver\n"
                                  "upstream = pop3s://pop.example.org:995   ; your provider's POP3 server\n"
                                  "address = you@example.org\t# for download receipts\n"
                                  "tls_cert = ; none\n"
                                  "prefetch_user = a;b#c\n"
                                  "prefetch_password_file = /run/pass;word # the ; part stays\n"
                                  "[mmsend]\n"
                                  "user = me ;\n"
                                  "password_file =#x\n");
    Config c = Config::load(path, {"mmsend.ca_file=/x ; not a comment on the command line"});
    unlink(path.c_str());
    CHECK(c.str("fetcher.upstream") == "pop3s://pop.example.org:995");
    CHECK(c.str("fetcher.address") == "you@example.org");
    CHECK(c.str("fetcher.tls_cert") == "");
    CHECK(c.str("fetcher.prefetch_user") == "a;b#c");
    CHECK(c.str("fetcher.prefetch_password_file") == "/run/pass;word");
    CHECK(c.str("mmsend.user") == "me");
    CHECK(c.str("mmsend.password_file") == "#x");
    CHECK(c.str("mmsend.ca_file") == "/x ; not a comment on the command line");
    // A comment does not hide a bad value.
    CHECK(load_error("[fetcher]\nparallel = 0 ; none\n").find("fetcher.parallel = '0'") != std::string::npos);
}

TEST_CASE("config_help lists a program's keys from the table")
{
    std::string h = config_help({"fetcher.", "log."});
    CHECK(h.find("  fetcher.parallel (integer, from 1 to 64; default 4)\n      downloads at once\n") != std::string::npos);
    CHECK(h.find("  log.level (one of error|warning|info|debug; default info)") != std::string::npos);
    CHECK(h.find("gateway.") == std::string::npos);
    CHECK(h.find("milter.") == std::string::npos);
    CHECK(h.find("  fetcher.address (address or empty; default empty)\n") != std::string::npos);
    for (const auto& k : config_keys()) {
        CAPTURE(k.key);
        CHECK(!k.description.empty());
        CHECK((h.find("  " + k.key + " (") != std::string::npos) ==
              (k.key.rfind("fetcher.", 0) == 0 || k.key.rfind("log.", 0) == 0));
    }
    std::string one = config_help({"store.dir"});
    CHECK(one.find("  store.dir (absolute path; default /var/lib/mediamail/store)") != std::string::npos);
}

// The sample file's convention, for every key: comment lines describing it, then
// "# Syntax: SYNTAX." with the table's syntax, then "#key = DEFAULT" (the key
// commented out with its default, ready to uncomment).
TEST_CASE("the sample config documents every key with its syntax and default, names no other key, and loads")
{
    std::string path = std::string(MM_SOURCE_DIR) + "/conf/mediamail.conf";
    std::ifstream in(path);
    REQUIRE(in);
    struct Doc {
        std::string value, syntax;
        bool described = false;
    };
    std::map<std::string, Doc> documented;
    std::vector<std::string> lines;
    std::string line, section;
    while (std::getline(in, line))
        lines.push_back(line);
    for (size_t i = 0; i < lines.size(); ++i) {
        const std::string& l = lines[i];
        if (l.size() > 2 && l[0] == '[' && l.back() == ']') {
            section = l.substr(1, l.size() - 2);
            continue;
        }
        size_t eq = l.find(" =");
        if (l.size() < 2 || l[0] != '#' || l[1] == ' ' || eq == std::string::npos)
            continue;
        CAPTURE(l);
        std::string key = section + "." + l.substr(1, eq - 1);
        REQUIRE(documented.count(key) == 0);
        Doc& d = documented[key];
        d.value = eq + 2 < l.size() ? l.substr(eq + 3) : "";
        const std::string prefix = "# Syntax: ";
        if (i >= 2 && lines[i - 1].rfind(prefix, 0) == 0 && lines[i - 1].back() == '.') {
            d.syntax = lines[i - 1].substr(prefix.size(), lines[i - 1].size() - prefix.size() - 1);
            d.described = lines[i - 2].size() > 2 && lines[i - 2].rfind("# ", 0) == 0;
        }
    }
    for (const auto& k : config_keys()) {
        CAPTURE(k.key);
        REQUIRE(documented.count(k.key) == 1);
        const Doc& d = documented[k.key];
        CHECK(d.value == k.default_value);
        CHECK(d.syntax == k.syntax);
        CHECK(d.described);
    }
    std::set<std::string> table;
    for (const auto& k : config_keys())
        table.insert(k.key);
    for (const auto& [key, d] : documented) {
        CAPTURE(key);
        CHECK(table.count(key) == 1);
    }
    CHECK_NOTHROW(Config::load(path, {}));
}
