// test_relay.cpp - gateway.relay: the strict ssh:// URL parser (core/config.cpp,
// parse_ssh_url) fed good and hostile values, the relay keys' cross-checks in
// Config::verify("gateway"), relay_settings(), and the relay's metrics and
// /healthz (gateway/metrics.cpp). The session itself is tested against a real
// sshd in tests/integration/relay.test.sh.
#include <doctest/doctest.h>

#include "core/config.h"
#include "gateway/metrics.h"
#include "gateway/relay.h"

#include <string>
#include <vector>

using namespace mm;

TEST_CASE("parse_ssh_url: good URLs")
{
    struct Case {
        const char* in;
        const char* user;
        const char* host;
        uint16_t port;
    };
    const Case cases[] = {
        {"ssh://relay@relay.example.org:2222", "relay", "relay.example.org", 2222},
        {"ssh://relay@relay.example.org", "relay", "relay.example.org", 22},
        {"ssh://mm-gw_1.x@203.0.113.7:22", "mm-gw_1.x", "203.0.113.7", 22},
        {"ssh://u@[2001:db8::1]:65535", "u", "2001:db8::1", 65535},
        {"ssh://u@[::1]", "u", "::1", 22},
        {"ssh://u@a", "u", "a", 22},
        {"ssh://u@xn--bcher-kva.example:1", "u", "xn--bcher-kva.example", 1},
    };
    for (const Case& c : cases) {
        CAPTURE(c.in);
        SshUrl u;
        std::string why;
        REQUIRE(parse_ssh_url(c.in, u, why));
        CHECK(why.empty());
        CHECK(u.user == c.user);
        CHECK(u.host == c.host);
        CHECK(u.port == c.port);
    }
}

TEST_CASE("parse_ssh_url: bad input is refused with a reason")
{
    const std::vector<std::string> bad = {
        "",
        "ssh://",
        "ssh:/u@h",
        "SSH://u@h",                     // the scheme is lowercase
        "sftp://u@h",
        "https://u@h:22",
        "ssh://h:22",                    // no user
        "ssh://@h",                      // empty user
        "ssh://u:secret@h",              // a password
        "ssh://u;fingerprint=SHA256-x@h",
        "ssh://-oProxyCommand=x@h",      // an option in disguise
        "ssh://u%40x@h",                 // no escapes
        "ssh://" + std::string(33, 'u') + "@h",
        "ssh://u@",                      // no host
        "ssh://u@:22",
        "ssh://u@h:",                    // empty port
        "ssh://u@h:0",
        "ssh://u@h:65536",
        "ssh://u@h:99999999999999999999",
        "ssh://u@h:+22",
        "ssh://u@h:22/",                 // no path
        "ssh://u@h:22/x",
        "ssh://u@h/x",
        "ssh://u@h:22 ",
        "ssh://u@h :22",
        "ssh://u@h\n:22",
        "ssh://u@h..example",
        "ssh://u@.h",
        "ssh://u@h.",
        "ssh://u@-h",
        "ssh://u@h-",
        "ssh://u@h_x",
        "ssh://u@" + std::string(64, 'a') + ".example",   // a label over 63
        "ssh://u@" + std::string(260, 'a'),
        "ssh://u@[2001:db8::1",          // no ']'
        "ssh://u@[not-v6]:22",
        "ssh://u@[2001:db8::1]x",
        "ssh://u@[2001:db8::1]:",
        "ssh://u@2001:db8::1",           // IPv6 without brackets
        "ssh://u@h@h2",
        std::string("ssh://u@h\0x", 11),
    };
    for (const std::string& in : bad) {
        CAPTURE(in);
        SshUrl u;
        std::string why;
        CHECK_FALSE(parse_ssh_url(in, u, why));
        CHECK(why.rfind("expected ssh://USER@HOST[:PORT]", 0) == 0);
    }
}

namespace {
std::string verify_error(const std::vector<std::string>& overrides)
{
    try {
        Config::load("", overrides).verify("gateway");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}
} // namespace

TEST_CASE("gateway.relay keys: the table and the cross-checks")
{
    // The table refuses a bad URL at load, naming the key and the value.
    try {
        Config::load("", {"gateway.relay=ssh://root:pw@relay.example"});
        FAIL("a password in gateway.relay was accepted");
    } catch (const ConfigError& e) {
        CHECK(std::string(e.what()).find("gateway.relay = 'ssh://root:pw@relay.example'") != std::string::npos);
    }
    CHECK_THROWS_AS(Config::load("", {"gateway.relay_port=0"}), ConfigError);
    CHECK_THROWS_AS(Config::load("", {"gateway.relay_port=65536"}), ConfigError);
    CHECK_THROWS_AS(Config::load("", {"gateway.relay_backoff_max=0s"}), ConfigError);

    const std::string relay = "gateway.relay=ssh://mm@relay.example:2222";
    CHECK(verify_error({}).empty());   // the defaults: a listener, no relay
    CHECK(verify_error({"gateway.listen="}).find("gateway.listen") != std::string::npos);
    CHECK(verify_error({relay, "gateway.relay_key=/k"}).find("gateway.relay_known_hosts") != std::string::npos);
    CHECK(verify_error({relay, "gateway.relay_known_hosts=/kh"}).find("gateway.relay_key") != std::string::npos);
    CHECK(verify_error({relay, "gateway.relay_key=k", "gateway.relay_known_hosts=/kh"}).find("absolute") !=
          std::string::npos);
    CHECK(verify_error({relay, "gateway.relay_key=/k", "gateway.relay_known_hosts=/kh",
                        "gateway.relay_bind=0.0.0.0 -R x"})
              .find("gateway.relay_bind") != std::string::npos);
    CHECK(verify_error({relay, "gateway.listen=", "gateway.relay_key=/k", "gateway.relay_known_hosts=/kh"}).empty());

    Config cfg = Config::load("", {relay, "gateway.listen=", "gateway.relay_key=/k", "gateway.relay_known_hosts=/kh",
                                   "gateway.relay_port=8443", "gateway.relay_bind=localhost",
                                   "gateway.relay_backoff_max=5s", "gateway.max_connections=10"});
    RelaySettings s = relay_settings(cfg);
    CHECK(s.url.user == "mm");
    CHECK(s.url.host == "relay.example");
    CHECK(s.url.port == 2222);
    CHECK(s.port == 8443);
    CHECK(s.bind == "localhost");
    CHECK(s.backoff_max == std::chrono::seconds(5));
    CHECK(s.max_channels == 10 + 64);
    CHECK(relay_problems(Config::load("", {})).empty());   // no relay, nothing to check
}

TEST_CASE("relay state in /metrics and /healthz")
{
    GatewayMetrics m;
    m.set_listening(true);
    auto healthy = [](std::string&) { return true; };
    auto figures = [] { return StoreFigures{}; };
    // No relay: no relay metrics, and health does not depend on it.
    CHECK(render_gateway_metrics(m, {}).find("mm_gateway_relay") == std::string::npos);
    CHECK(gateway_admin_reply("/healthz", m, healthy, figures).status == 200);

    for (RelayState s : {RelayState::connecting, RelayState::refused, RelayState::waiting, RelayState::stopped}) {
        CAPTURE(relay_state_name(s));
        m.set_relay_state(s);
        StatusReply r = gateway_admin_reply("/healthz", m, healthy, figures);
        CHECK(r.status == 503);
        CHECK(r.body.find(std::string("state ") + relay_state_name(s)) != std::string::npos);
        CHECK(render_gateway_metrics(m, {}).find("mm_gateway_relay_up 0\n") != std::string::npos);
    }
    m.set_relay_state(RelayState::up);
    m.relay_reconnect();
    m.relay_reconnect();
    m.relay_channel_opened();
    m.relay_channel_opened();
    m.relay_channel_closed();
    CHECK(gateway_admin_reply("/healthz", m, healthy, figures).status == 200);
    std::string text = render_gateway_metrics(m, {});
    CHECK(text.find("mm_gateway_relay_up 1\n") != std::string::npos);
    CHECK(text.find("mm_gateway_relay_reconnects_total 2\n") != std::string::npos);
    CHECK(text.find("mm_gateway_relay_channels 1\n") != std::string::npos);
    CHECK(text.find("mm_gateway_relay_channels_total 2\n") != std::string::npos);
}
