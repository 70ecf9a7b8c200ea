// test_auth_results.cpp - Authentication-Results read to decide whether the
// receiving server vouches for From: (fetcher/auth_results.h): values good and
// malformed, and header blocks where a sender forged one.
#include "fetcher/auth_results.h"

#include <doctest/doctest.h>

#include <string>

using namespace mm;

TEST_CASE("parse_auth_results: the grammar of RFC 8601, strictly")
{
    struct Case {
        const char* value;
        bool ok;
        const char* id;
        size_t results;
    };
    const Case cases[] = {
        {"mx.example.org; dmarc=pass header.from=example.com", true, "mx.example.org", 1},
        {" mx.example.org 1; dkim=pass (good sig) header.d=example.com header.s=sel;\r\n spf=fail smtp.mailfrom=x@y.z",
         true, "mx.example.org", 2},
        {"mx.example.org; none", true, "mx.example.org", 0},
        {"\"mx.example.org\"; dmarc=pass", true, "mx.example.org", 1},
        {"mx (comment (nested)) ; dkim/1=pass reason=\"ok\" header.d=a.b", true, "mx", 1},
        {"mx; dmarc=pass;", true, "mx", 1},
        {"", false, "", 0},
        {"mx.example.org", false, "", 0},                    // no result at all
        {"; dmarc=pass", false, "", 0},                      // no authserv-id
        {"mx; dmarc", false, "", 0},                         // no result
        {"mx; dmarc=", false, "", 0},
        {"mx; =pass", false, "", 0},
        {"mx; dmarc=pass header.from", false, "", 0},        // property without value
        {"mx; dmarc=pass header=x", false, "", 0},
        {"mx; dmarc=pass (unclosed comment", false, "", 0},
        {"mx; dmarc=pass header.from=\"unclosed", false, "", 0},
        {"mx; none; dmarc=pass", false, "", 0},
        {"mx dmarc=pass", false, "", 0},
        {"mx; dmarc=pass ((((((((((deep))))))))))", false, "", 0},
    };
    for (const auto& c : cases) {
        CAPTURE(c.value);
        AuthResults ar;
        REQUIRE(parse_auth_results(c.value, ar) == c.ok);
        if (c.ok) {
            CHECK(ar.authserv_id == c.id);
            CHECK(ar.results.size() == c.results);
        }
    }
}

TEST_CASE("auth_results_vouch: dmarc=pass, or dkim=pass for the From domain or a parent")
{
    struct Case {
        const char* value;
        const char* domain;
        bool want;
    };
    const Case cases[] = {
        {"mx; dmarc=pass", "example.com", true},
        {"mx; dmarc=pass header.from=example.com", "Example.COM", true},
        {"mx; dmarc=pass header.from=evil.test", "example.com", false},
        {"mx; dmarc=fail header.from=example.com", "example.com", false},
        {"mx; dmarc=none", "example.com", false},
        {"mx; dkim=pass header.d=example.com", "example.com", true},
        {"mx; dkim=pass header.d=example.com", "mail.example.com", true},
        {"mx; dkim=pass header.d=@example.com.", "example.com", true},
        {"mx; dkim=pass header.d=ample.com", "example.com", false},     // not a parent: a suffix
        {"mx; dkim=pass header.d=evil.test", "example.com", false},
        {"mx; dkim=pass header.d=com", "example.com", false},           // a bare TLD vouches for nothing
        {"mx; dkim=pass header.i=@example.com", "example.com", false},  // only header.d counts
        {"mx; dkim=fail header.d=example.com", "example.com", false},
        {"mx; spf=pass smtp.mailfrom=a@example.com", "example.com", false},
        {"mx; dkim=pass header.d=sub.example.com", "example.com", false},
        {"mx; none", "example.com", false},
        {"mx; dmarc=pass", "", false},
    };
    for (const auto& c : cases) {
        CAPTURE(c.value);
        CAPTURE(c.domain);
        AuthResults ar;
        REQUIRE(parse_auth_results(c.value, ar));
        CHECK(auth_results_vouch(ar, c.domain) == c.want);
    }
}

TEST_CASE("sender_vouched: only the topmost Authentication-Results with our id counts")
{
    const std::string from = "From: Boss <boss@example.com>\r\n";
    struct Case {
        const char* what;
        std::string headers;
        const char* id;
        bool want;
    };
    const Case cases[] = {
        {"ours, pass", "Authentication-Results: mx.test; dmarc=pass\r\n" + from + "\r\n", "mx.test", true},
        {"id compared without case", "Authentication-Results: MX.Test; dmarc=pass\r\n" + from + "\r\n", "mx.test", true},
        {"folded", "Authentication-Results: mx.test;\r\n dkim=pass\r\n header.d=example.com\r\n" + from + "\r\n",
         "mx.test", true},
        {"no authserv_id configured", "Authentication-Results: mx.test; dmarc=pass\r\n" + from + "\r\n", "", false},
        {"none at all", from + "\r\n", "mx.test", false},
        {"another server's", "Authentication-Results: other.test; dmarc=pass\r\n" + from + "\r\n", "mx.test", false},
        {"ours fails, a forged pass below",
         "Authentication-Results: mx.test; dmarc=fail\r\nReceived: x\r\nAuthentication-Results: mx.test; dmarc=pass\r\n" +
             from + "\r\n",
         "mx.test", false},
        {"ours malformed, a forged pass below",
         "Authentication-Results: mx.test; dmarc\r\nAuthentication-Results: mx.test; dmarc=pass\r\n" + from + "\r\n",
         "mx.test", false},
        {"unreadable on top, a forged pass below",
         "Authentication-Results: ;;;\r\nAuthentication-Results: mx.test; dmarc=pass\r\n" + from + "\r\n", "mx.test",
         false},
        {"another's on top, ours below", "Authentication-Results: spam.test; x=y\r\nAuthentication-Results: mx.test; dmarc=pass\r\n" +
                                             from + "\r\n",
         "mx.test", true},
        {"pass for another domain", "Authentication-Results: mx.test; dkim=pass header.d=evil.test\r\n" + from + "\r\n",
         "mx.test", false},
        {"two From fields", "Authentication-Results: mx.test; dmarc=pass\r\n" + from + "From: x@evil.test\r\n\r\n",
         "mx.test", false},
        {"two addresses in From", "Authentication-Results: mx.test; dmarc=pass\r\nFrom: a@example.com, b@evil.test\r\n\r\n",
         "mx.test", false},
        {"no From", "Authentication-Results: mx.test; dmarc=pass\r\n\r\n", "mx.test", false},
        {"id only as a prefix", "Authentication-Results: mx.test.evil; dmarc=pass\r\n" + from + "\r\n", "mx.test", false},
    };
    for (const auto& c : cases) {
        CAPTURE(c.what);
        CHECK(sender_vouched(c.headers, c.id) == c.want);
    }
}
