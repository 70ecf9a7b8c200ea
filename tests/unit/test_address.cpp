// test_address.cpp - core/address.h: the one normaliser both ends of a receipt
// use (envelope recipients at the sender, the mailbox address at the receiver).
#include <doctest/doctest.h>

#include "core/address.h"

#include <string>

using namespace mm;

TEST_CASE("normalize_address: envelope and header forms, mostly refused")
{
    struct Case {
        std::string in, want;
    };
    const Case cases[] = {
        // envelope forms (the sender's side)
        {"bob@example.org", "bob@example.org"},
        {"Bob@Example.ORG", "bob@example.org"},
        {"<bob@example.org>", "bob@example.org"},
        {"  <Bob@x>\t", "bob@x"},
        {"", ""},
        {"<>", ""},
        {"no-at-sign", ""},
        {"bob @x", ""},
        {"bob@x\n", ""},        // only blanks are trimmed; a newline makes it no address
        {"<<bob@x>>", ""},
        {"<bob@x> trailing", ""},
        {std::string(321, 'a') + "@x", ""},
        // header forms (the receiver's mailbox address)
        {"Alice <Alice@Example.TEST>", "alice@example.test"},
        {"bob@example.test", "bob@example.test"},
        {"  bob@example.test  ", "bob@example.test"},
        {"\"Doe, J\" <j@x.org>", "j@x.org"},
        {"", ""},
        {"no address", ""},
        {"<>", ""},
        {"@example.test", ""},
        {"bob@", ""},
        {"Bob <bob@example.test", ""},
        {"two words@x", ""},
        {"a@b, c@d", ""},
        {"bob\x01@example.test", ""},
        {"b\xc3\xa9@example.test", ""},
        {"bob@exa\"mple", ""},
    };
    for (const auto& c : cases) {
        CAPTURE(c.in);
        CHECK(normalize_address(c.in) == c.want);
    }
    CHECK(normalize_address(std::string(248, 'a') + "@b.cd") == std::string(248, 'a') + "@b.cd");   // 254
    CHECK(normalize_address(std::string(250, 'a') + "@b.cd") == "");                                // over 254
}
