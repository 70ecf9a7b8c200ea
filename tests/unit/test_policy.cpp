// test_policy.cpp - whose mail and which mail mm-milter rewrites (milter/policy.h):
// milter.trusted_networks as CIDR prefixes, the top-level headers that rule out
// media at end of headers (checked against the engine on the whole corpus), and
// the protocol flags asked of Postfix.
#include <doctest/doctest.h>

#include "milter/policy.h"
#include "mime/detach.h"
#include "mime_fixtures.h"

#include <strings.h>

using namespace mm;
using namespace mm::fixtures;

TEST_CASE("milter.trusted_networks: CIDR parsing and matching")
{
    struct Case {
        const char* text;
        bool ok;
    } parse[] = {
        {"127.0.0.0/8", true}, {"::1/128", true}, {"10.1.2.3", true}, {"fd00::/8", true}, {"0.0.0.0/0", true},
        {"127.0.0.0/33", false}, {"::/129", false}, {"127.0.0.0/", false}, {"127.0.0.0/+8", false},
        {"127.0.0.0/08x", false}, {"127.0.0/8", false}, {"", false}, {"/8", false}, {" 127.0.0.1", false},
        {"127.0.0.1/8/8", false}, {"localhost", false}, {"127.0.0.1/99999999999999999999", false},
    };
    for (const auto& c : parse) {
        CAPTURE(c.text);
        mm::Cidr n;
        CHECK(mm::parse_cidr(c.text, n) == c.ok);
    }
    std::vector<mm::Cidr> nets;
    for (const char* s : {"127.0.0.1/32", "10.0.0.0/9", "2001:db8::/32"}) {
        mm::Cidr n;
        REQUIRE(mm::parse_cidr(s, n));
        nets.push_back(n);
    }
    struct Addr {
        const char* ip;
        bool in;
    } addrs[] = {
        {"127.0.0.1", true}, {"127.0.0.2", false}, {"10.127.255.255", true}, {"10.128.0.0", false},
        {"2001:db8:ffff::1", true}, {"2001:db9::1", false}, {"::ffff:127.0.0.1", true}, {"::1", false},
    };
    for (const auto& a : addrs) {
        CAPTURE(a.ip);
        sockaddr_storage ss{};
        if (strchr(a.ip, ':')) {
            auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
            s6->sin6_family = AF_INET6;
            REQUIRE(inet_pton(AF_INET6, a.ip, &s6->sin6_addr) == 1);
        } else {
            auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
            s4->sin_family = AF_INET;
            REQUIRE(inet_pton(AF_INET, a.ip, &s4->sin_addr) == 1);
        }
        CHECK(mm::address_in(reinterpret_cast<sockaddr*>(&ss), nets) == a.in);
    }
    CHECK_FALSE(mm::address_in(nullptr, nets));
}

TEST_CASE("milter: top-level headers that rule out media, and nothing else")
{
    using V = std::vector<std::string>;
    CHECK(mm::headers_rule_out_media({}, {}));                                 // RFC 2045 default text/plain
    CHECK(mm::headers_rule_out_media({"text/plain; charset=utf-8"}, {}));
    CHECK(mm::headers_rule_out_media({" TEXT/HTML"}, {"quoted-printable"}));
    CHECK(mm::headers_rule_out_media({"text/plain"}, {"7bit (comment)"}));
    CHECK_FALSE(mm::headers_rule_out_media({"text/plain"}, {"BASE64"}));      // decoded bytes could sniff as video
    CHECK_FALSE(mm::headers_rule_out_media({}, {" base64 "}));
    CHECK_FALSE(mm::headers_rule_out_media({"multipart/mixed; boundary=x"}, {}));
    CHECK_FALSE(mm::headers_rule_out_media({"message/rfc822"}, {}));
    CHECK_FALSE(mm::headers_rule_out_media({"video/mp4"}, {}));
    CHECK_FALSE(mm::headers_rule_out_media({"application/octet-stream"}, {}));
    CHECK_FALSE(mm::headers_rule_out_media({"text/plain", "multipart/mixed; boundary=x"}, {}));   // which one wins is the parser's
    CHECK_FALSE(mm::headers_rule_out_media({"text/plain"}, {"7bit", "base64"}));
    CHECK_FALSE(mm::headers_rule_out_media({""}, {}));
    CHECK_FALSE(mm::headers_rule_out_media({"text"}, {}));
    CHECK_FALSE(mm::headers_rule_out_media({"text/"}, {}));
    CHECK_FALSE(mm::headers_rule_out_media({"text/plain/x"}, {}));
    CHECK_FALSE(mm::headers_rule_out_media({"textual/plain"}, {}));
    CHECK_FALSE(mm::headers_rule_out_media({"multipart/mixed"}, V{}));

    // Over TCP every event Postfix may send unanswered gets a reply (Nagle and
    // delayed ACK); on a unix socket replies are saved where possible.
    auto tcp = mm::protocol_flags("inet:8891@127.0.0.1");
    CHECK((tcp.no_reply & (SMFIP_NR_CONN | SMFIP_NR_RCPT | SMFIP_NR_EOH)) == 0);
    CHECK((tcp.skip & SMFIP_NODATA) == 0);
    CHECK((mm::protocol_flags("inet6:8891@[::1]").skip & SMFIP_NODATA) == 0);
    auto local = mm::protocol_flags("unix:/run/mm.sock");
    CHECK((local.no_reply & SMFIP_NR_RCPT) != 0);
    CHECK((local.skip & SMFIP_NODATA) != 0);
    CHECK((local.no_reply & SMFIP_NR_EOH) == 0);   // end of headers is where plain mail is accepted
}

TEST_CASE("corpus: a message whose top-level headers rule out media never has any detached")
{
    std::vector<std::string> files = corpus_files();
    if (files.empty())
        return;
    unsigned ruled_out = 0;
    for (const auto& f : files) {
        CAPTURE(f);
        // The top-level header fields, unfolded, as Postfix hands them to the milter.
        std::string text = read_file(f);
        std::vector<std::string> types, encodings;
        std::string field;
        auto take = [&] {
            size_t colon = field.find(':');
            if (colon != std::string::npos) {
                std::string name = field.substr(0, colon);
                if (strcasecmp(name.c_str(), "Content-Type") == 0)
                    types.push_back(field.substr(colon + 1));
                else if (strcasecmp(name.c_str(), "Content-Transfer-Encoding") == 0)
                    encodings.push_back(field.substr(colon + 1));
            }
            field.clear();
        };
        size_t pos = 0;
        while (pos < text.size()) {
            size_t nl = text.find('\n', pos);
            std::string line = text.substr(pos, (nl == std::string::npos ? text.size() : nl) - pos);
            pos = nl == std::string::npos ? text.size() : nl + 1;
            if (!line.empty() && line.back() == '\r')
                line.pop_back();
            if (line.empty())
                break;
            if (line[0] == ' ' || line[0] == '\t')
                field += line;
            else {
                take();
                field = line;
            }
        }
        take();
        if (!mm::headers_rule_out_media(types, encodings))
            continue;
        ++ruled_out;
        mm::DetachPolicy all;
        all.min_size = 1;
        all.types = {"*/*"};
        TempDir t;
        FileSink sink(t.path);
        CHECK(detach_message(f, t.path + "/out.eml", all, sink).detached == 0);
    }
    MESSAGE("corpus: " << ruled_out << " of " << files.size() << " messages accepted at end of headers");
    CHECK(ruled_out > 0);
}
