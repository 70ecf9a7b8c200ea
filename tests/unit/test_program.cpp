// test_program.cpp - core/program.h and the parsers behind the service keys:
// octal modes, user[:group], the exit-code table, --check's listing, reload report.
#include <doctest/doctest.h>

#include "core/config.h"
#include "core/exit_codes.h"
#include "core/program.h"

#include <cerrno>
#include <set>
#include <string>

using namespace mm;

TEST_CASE("parse_mode: octal, at most 0777")
{
    struct Case {
        const char* in;
        bool ok;
        unsigned want;
    };
    const Case cases[] = {
        {"0660", true, 0660}, {"660", true, 0660}, {"0", true, 0},      {"0777", true, 0777},
        {"", false, 0},       {"0888", false, 0},  {"1777", false, 0},  {"4755", false, 0},
        {"00660", false, 0},  {"-660", false, 0},  {"0x1ff", false, 0}, {" 660", false, 0},
        {"660 ", false, 0},   {"rw-rw", false, 0}, {"07777", false, 0},
    };
    for (const auto& c : cases) {
        CAPTURE(c.in);
        unsigned m = 12345;
        CHECK(parse_mode(c.in, m) == c.ok);
        if (c.ok)
            CHECK(m == c.want);
    }
}

TEST_CASE("parse_user_group: names and numbers, nothing else")
{
    std::string u, g;
    CHECK(parse_user_group("mediamail", u, g));
    CHECK(u == "mediamail");
    CHECK(g.empty());
    CHECK(parse_user_group("mediamail:postfix", u, g));
    CHECK(u == "mediamail");
    CHECK(g == "postfix");
    CHECK(parse_user_group("1000:1000", u, g));
    for (const char* bad : {"", ":", "user:", ":group", "a b", "-rf", "user:gr oup", "us;er", "a:b:c", "user\n",
                            "0123456789012345678901234567890123"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_user_group(bad, u, g));
    }
}

TEST_CASE("the user and mode keys are checked at load")
{
    CHECK_NOTHROW(Config::load("", {"milter.socket_mode=0600", "gateway.user=nobody:nogroup"}));
    CHECK_THROWS_WITH_AS(Config::load("", {"milter.socket_mode=4755"}),
                         "--set: bad value for milter.socket_mode = '4755': expected an octal mode from 0000 to "
                         "0777, such as 0660",
                         ConfigError);
    CHECK_THROWS_AS(Config::load("", {"gateway.user=a b"}), ConfigError);
    CHECK(Config::load("", {}).mode("milter.socket_mode") == 0660);
}

TEST_CASE("verify: a TLS pair is both or neither; a file target needs its file")
{
    Config half = Config::load("", {"gateway.tls_cert=/etc/ssl/c.pem"});
    CHECK_THROWS_WITH_AS(half.verify("gateway"),
                         "--set: bad value for gateway.tls_cert = '/etc/ssl/c.pem': gateway.tls_key is empty: set "
                         "both or neither",
                         ConfigError);
    CHECK_THROWS_AS(half.verify("milter"), ConfigError);
    CHECK_THROWS_AS(Config::load("", {"log.target=file"}).verify("gateway"), ConfigError);
    CHECK_THROWS_AS(Config::load("", {"log.target=file", "log.file=relative.log"}).verify("fetcher"), ConfigError);
    CHECK_NOTHROW(Config::load("", {"log.target=file", "log.file=/var/log/mm.log"}).verify("fetcher"));
}

TEST_CASE("the exit-code table: sysexits values, each once, all in --help")
{
    std::set<int> seen;
    for (const auto& e : kExitCodes)
        CHECK(seen.insert(code(e.exit)).second);
    CHECK(code(Exit::usage) == 64);
    CHECK(code(Exit::data) == 65);
    CHECK(code(Exit::no_input) == 66);
    CHECK(code(Exit::unavailable) == 69);
    CHECK(code(Exit::software) == 70);
    CHECK(code(Exit::cant_create) == 73);
    CHECK(code(Exit::io) == 74);
    CHECK(code(Exit::temp_fail) == 75);
    CHECK(code(Exit::permission) == 77);
    CHECK(code(Exit::config) == 78);
    std::string help = exit_code_help();
    for (const auto& e : kExitCodes) {
        CAPTURE(e.name);
        CHECK(help.find(std::to_string(code(e.exit)) + "  " + e.name) != std::string::npos);
    }
}

TEST_CASE("listen_failure names the key and picks the code")
{
    ExitError inuse = listen_failure("gateway.listen", "127.0.0.1:8443", EADDRINUSE);
    CHECK(inuse.exit == Exit::unavailable);
    CHECK(std::string(inuse.what()) == "gateway.listen: 127.0.0.1:8443 is in use");
    CHECK(listen_failure("fetcher.listen", "10.9.9.9:1110", EADDRNOTAVAIL).exit == Exit::unavailable);
    CHECK(listen_failure("fetcher.listen", "0.0.0.0:110", EACCES).exit == Exit::permission);
}

TEST_CASE("public_url_problem: localhost in handles while serving others")
{
    CHECK(!public_url_problem(Config::load("", {})).empty());   // the defaults: 0.0.0.0 and localhost
    CHECK(public_url_problem(Config::load("", {"gateway.listen=127.0.0.1:8443"})).empty());
    CHECK(public_url_problem(Config::load("", {"gateway.public_url=https://media.example.org"})).empty());
    CHECK(!public_url_problem(Config::load("", {"gateway.public_url=https://127.0.0.1:8443/x"})).empty());
    CHECK(!public_url_problem(Config::load("", {"gateway.public_url=https://[::1]:8443"})).empty());
    CHECK(public_url_problem(Config::load("", {"gateway.public_url=https://localhost.example.org:8443"})).empty());
}

TEST_CASE("non_default_settings: the program's keys set away from the default, sorted")
{
    ProgramSpec spec{"mm-gateway", "gateway", {"store.dir", "gateway.", "log."}, "gateway.user"};
    Config cfg = Config::load("", {"log.level=debug", "gateway.threads=4", "fetcher.parallel=8",
                                   "store.dir=/srv/mm"});
    CHECK(non_default_settings(cfg, spec) == "gateway.threads = 4\nlog.level = debug\nstore.dir = /srv/mm\n");
    CHECK(non_default_settings(Config::load("", {}), spec).empty());
}

TEST_CASE("reload_report splits applied keys from those needing a restart")
{
    ProgramSpec spec{"mm-fetcher", "fetcher", {"fetcher.", "log."}, ""};
    Config a = Config::load("", {});
    Config b = Config::load("", {"log.level=debug", "fetcher.parallel=8", "gateway.threads=2"});
    CHECK(reload_report(a, b, spec, {"log.level"}) ==
          "reloaded configuration applied=log.level restart_needed=fetcher.parallel");
    CHECK(reload_report(a, a, spec, {"log.level"}) == "reloaded configuration applied=none restart_needed=none");
}

TEST_CASE("version_line and default_config_path")
{
    CHECK(version_line("mm-gateway").rfind("mm-gateway (MediaMail) ", 0) == 0);
    CHECK(default_config_path().size() > std::string("/mediamail/mediamail.conf").size());
    CHECK(default_config_path().find("/mediamail/mediamail.conf") != std::string::npos);
}
