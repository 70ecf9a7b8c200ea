// test_receipt.cpp - download receipts (fetcher/receipt.h): the request sent to
// the sender's gateway, and whose receipt it is.
#include "fetcher/receipt.h"

#include <doctest/doctest.h>

#include <string>

using namespace mm;

namespace {

const std::string kSha(64, 'a');

} // namespace

TEST_CASE("receipt requests")
{
    CHECK(receipt_url("https://h:1/m/id/tok") == "https://h:1/m/id/tok/receipt");
    CHECK(receipt_url("https://h:1/m/id/tok/") == "https://h:1/m/id/tok/receipt");
    CHECK(receipt_body("bob@example.test", kSha) == "recipient=bob%40example.test&sha256=" + kSha);
    CHECK(receipt_body("a+b&c=d@x", kSha) == "recipient=a%2Bb%26c%3Dd%40x&sha256=" + kSha);
    CHECK(receipt_body(std::string("\xc3\xa9@x"), kSha) == "recipient=%C3%A9%40x&sha256=" + kSha);
}

TEST_CASE("whose receipt: configured address, Delivered-To, X-Original-To, then the POP3 user")
{
    const std::string both = "Delivered-To: Bob@Example.test\r\nX-Original-To: alias@example.test\r\n\r\n";
    const std::string orig = "X-Original-To: alias@example.test\r\n\r\n";
    const std::string bad = "Delivered-To: not an address\r\n\r\n";
    CHECK(receipt_recipient("me@home.example", both, "bob") == "me@home.example");
    CHECK(receipt_recipient("", both, "bob") == "bob@example.test");
    CHECK(receipt_recipient("", orig, "bob") == "alias@example.test");
    CHECK(receipt_recipient("", bad, "bob@example.test") == "bob@example.test");
    CHECK(receipt_recipient("", bad, "bob") == "");
    CHECK(receipt_recipient("", "", "") == "");
}
