// test_mmsend.cpp - mmsend's parsers and helpers without a network: argument
// parsing, header blocks and RFC 5322 address lists (mostly bad input), the
// mmsend.smtp value, RFC 2231 names, quoted-printable, progress text, JSON, and
// the store's linked items and removal that mmsend relies on.
#include <doctest/doctest.h>

#include "store/store.h"
#include "core/text.h"
#include "mmsend/address.h"
#include "mmsend/compose.h"
#include "mmsend/mmsend.h"
#include "mmsend/options.h"
#include "mmsend/progress.h"
#include "mmsend/submit.h"

#include <filesystem>
#include <fstream>
#include <unistd.h>

using namespace mm;
using namespace mm::send;

namespace {

int usage_code(const std::vector<std::string>& args)
{
    try {
        parse_options(args);
        return 0;
    } catch (const Failure& f) {
        return f.code;
    }
}

int data_code(std::string_view block, bool at_eof)
{
    try {
        parse_header_block(block, at_eof);
        return 0;
    } catch (const Failure& f) {
        return f.code;
    }
}

} // namespace

TEST_CASE("mmsend options: bad command lines are usage errors (64)")
{
    const std::vector<std::vector<std::string>> bad = {
        {},
        {"--bogus"},
        {"--from"},
        {"--from", "a@x", "--subject", "s"},                                   // no recipient
        {"--from", "a@x", "--to", "b@x"},                                      // no subject
        {"--to", "b@x", "--subject", "s"},                                     // no sender
        {"--title", "t", "--from", "a@x", "--to", "b@x", "--subject", "s"},   // --title before --attach
        {"--from", "a@x", "--to", "b@x", "--subject", "s", "--attach", "f", "--title", "a", "--title", "b"},
        {"--from", "a@x", "--to", "b@x", "--subject", "s", "--body", "x", "--body-file", "y"},
        {"--from", "a@x", "--to", "b@x", "--subject", "line\r\nBcc: evil@x"},   // header injection
        {"--from", "a@x\nX: y", "--to", "b@x", "--subject", "s"},
        {"--from", "a@x", "--to", "", "--subject", "s"},
        {"--from", "a@x", "--to", "b@x", "--subject", "s", "--attach", ""},
        {"--from", "a@x", "--to", "b@x", "--subject", "s", "--json=yes"},
        {"-t", "--attach", "f"},                                               // modes mixed
        {"-t", "--link"},
        {"-f"},
        {"-f", "a@x", "-f", "b@x", "-t"},
        {"-oi"},                                                               // sendmail mode, no recipients
        {"--from", "a@x", "--to", "b@x", "--subject", "s", "bob@x"},           // stray recipient
        {"--from", "a@x", "--from", "c@x", "--to", "b@x", "--subject", "s"},
        {"-t", "-"},
        {"--from", "a@x", "--to", "b@x", "--subject", std::string(kMaxArgLength + 1, 'x')},
    };
    for (const auto& args : bad) {
        CAPTURE(args.size());
        CHECK(usage_code(args) == ex_usage);
    }
}

TEST_CASE("mmsend options: good command lines")
{
    Options o = parse_options({"--from", "a@x", "--to", "b@x", "--to=c@x", "--cc", "d@x", "--subject", "s",
                               "--attach", "v.mp4", "--title", "T", "--note", "N", "--attach", "w.mp4",
                               "--copyright", "C", "--detach-all", "--link", "--json"});
    CHECK(o.mode == Mode::compose);
    REQUIRE(o.attachments.size() == 2);
    CHECK(o.attachments[0].title == "T");
    CHECK(o.attachments[0].note == "N");
    CHECK(o.attachments[0].copyright.empty());
    CHECK(o.attachments[1].copyright == "C");
    CHECK(o.to == std::vector<std::string>{"b@x", "c@x"});
    CHECK((o.detach_all && o.link && o.json));

    Options s = parse_options({"-t", "-fsender@x", "-oi", "-oem", "--", "-weird@x", "r@x"});
    CHECK(s.mode == Mode::sendmail);
    CHECK(s.read_recipients);
    CHECK(s.envelope_from == "sender@x");
    CHECK(s.recipients == std::vector<std::string>{"-weird@x", "r@x"});

    CHECK(parse_options({"--help"}).help);
}

TEST_CASE("header blocks: malformed input is a data error (65)")
{
    const std::vector<std::pair<std::string, bool>> bad = {
        {" continuation first\n\n", true},
        {"no colon here\n\n", true},
        {": empty name\n\n", true},
        {"Bad Name: x\n\n", true},
        {"Subject: no line break at the end", true},
        {"Subject: x\n", false},   // not at EOF and no end of header: over the cap
        {std::string("Na\x01me: x\n\n"), true},
    };
    for (const auto& [block, eof] : bad) {
        CAPTURE(block);
        CHECK(data_code(block, eof) == ex_dataerr);
    }
    std::string huge = "X: " + std::string(kMaxHeaderBytes, 'a') + "\n\n";
    CHECK(data_code(huge, true) == ex_dataerr);
}

TEST_CASE("header blocks: fields, folding, CRLF, and where the body starts")
{
    std::string msg = "From: a@x\r\nTo: b@x,\r\n  c@x\r\nBcc: d@x\r\n\r\nbody\r\n";
    HeaderBlock hb = parse_header_block(msg, true);
    REQUIRE(hb.fields.size() == 3);
    CHECK(hb.fields[1].name == "To");
    CHECK(hb.fields[1].value == "b@x,  c@x");
    CHECK(msg.substr(hb.fields[2].begin, hb.fields[2].end - hb.fields[2].begin) == "Bcc: d@x\r\n");
    CHECK(msg.substr(hb.size) == "body\r\n");
    HeaderBlock only = parse_header_block("Subject: x\n", true);   // headers, no body
    CHECK(only.fields.size() == 1);
}

TEST_CASE("address lists: RFC 5322 forms and bad input")
{
    CHECK(parse_address_list("Bob <bob@example.test>, \"Doe, Jane\" <jane@example.test>", "To") ==
          std::vector<std::string>{"bob@example.test", "jane@example.test"});
    CHECK(parse_address_list("friends: a@x.test, b@x.test;, c@x.test", "To") ==
          std::vector<std::string>{"a@x.test", "b@x.test", "c@x.test"});
    CHECK(parse_address_list("   ", "To").empty());
    const std::vector<std::string> bad = {
        "not an address", "<>", "@x.test", "bob@", "a b@x.test",
    };
    for (const auto& v : bad) {
        CAPTURE(v);
        CHECK_THROWS_AS(parse_address_list(v, "To"), Failure);
    }
    CHECK_THROWS_AS(parse_one_address("a@x.test, b@x.test", "-f", ex_usage), Failure);
    std::string many;
    for (size_t i = 0; i <= kMaxRecipients; ++i)
        many += "u" + std::to_string(i) + "@x.test,";
    CHECK_THROWS_AS(parse_address_list(many, "To"), Failure);
    std::vector<std::string> list = {"A@x.test"};
    add_recipients(list, {"a@X.TEST", "b@x.test"});
    CHECK(list == std::vector<std::string>{"A@x.test", "b@x.test"});
}

TEST_CASE("mmsend.smtp values")
{
    CHECK(parse_submit_target("sendmail").kind == SubmitTarget::Kind::sendmail);
    SubmitTarget t = parse_submit_target("smtp://mail.example.test");
    CHECK((t.kind == SubmitTarget::Kind::smtp && t.port == 587 && t.host == "mail.example.test"));
    t = parse_submit_target("smtps://mail.example.test:2465/");
    CHECK((t.kind == SubmitTarget::Kind::smtps && t.port == 2465));
    const std::vector<std::string> bad = {
        "", "smtp://", "smtp://:25", "ftp://x", "smtp://u:p@host:25", "smtp://host:0", "smtp://host:99999",
        "smtp://host:25/path", "smtp://host:2x5", "SENDMAIL", "smtp://host:25?x",
    };
    for (const auto& v : bad) {
        CAPTURE(v);
        try {
            parse_submit_target(v);
            FAIL("accepted");
        } catch (const Failure& f) {
            CHECK(f.code == ex_config);
        }
    }
    CHECK(exit_for_smtp_reply(451) == ex_tempfail);
    CHECK(exit_for_smtp_reply(554) == ex_unavailable);
}

TEST_CASE("attachment names and RFC 2231 parameters")
{
    CHECK(attachment_name("/a/b/clip.mp4") == "clip.mp4");
    CHECK(attachment_name("dir/") == "dir");
    CHECK(attachment_name("a/\x01x") == "_x");
    CHECK(attachment_name("/") == "attachment");
    CHECK(attachment_name(std::string(300, 'a')).size() == 255);
    CHECK(filename_param("clip.mp4", "\r\n") == "filename=\"clip.mp4\"");
    CHECK(filename_param("Grüße.mp4", "\r\n") == "filename*0*=utf-8''Gr%C3%BC%C3%9Fe.mp4");
    CHECK(filename_param("a\"b", "\r\n") == "filename*0*=utf-8''a%22b");
    std::string longp = filename_param(std::string(100, 'x'), "\r\n");
    CHECK(longp.find("filename*1*=") != std::string::npos);
    for (size_t pos = 0, nl; (nl = longp.find("\r\n", pos)) != std::string::npos; pos = nl + 2)
        CHECK(nl - pos <= 78);
    unsigned char mp4[] = {0, 0, 0, 0x18, 'f', 't', 'y', 'p', 'i', 's', 'o', 'm', 0, 0, 0, 0};
    CHECK(guess_type("x.bin", mp4, sizeof mp4).rfind("video/", 0) == 0);
    CHECK(guess_type("x.PDF", nullptr, 0) == "application/pdf");
    CHECK(guess_type("noext", nullptr, 0) == "application/octet-stream");
}

TEST_CASE("quoted-printable body")
{
    struct Case {
        std::string in, want;
    };
    const std::vector<Case> cases = {
        {"plain\n", "plain\r\n"},
        {"trailing space \n", "trailing space=20\r\n"},
        {"tab\t\r\n", "tab=09\r\n"},
        {"a=b\n", "a=3Db\r\n"},
        {"Grü\n", "Gr=C3=BC\r\n"},
        {".dot\n", "=2Edot\r\n"},
        {"no newline", "no newline\r\n"},
        {"bare\rcr", "bare=0Dcr\r\n"},
        {std::string(80, 'x'), std::string(75, 'x') + "=\r\n" + std::string(5, 'x') + "\r\n"},
    };
    for (const auto& c : cases) {
        // Fed whole and byte by byte: the same output.
        for (int split = 0; split < 2; ++split) {
            std::string out;
            QpEncoder qp([&](std::string_view s) { out.append(s); });
            if (split)
                for (char ch : c.in)
                    qp.feed(std::string_view(&ch, 1));
            else
                qp.feed(c.in);
            qp.finish();
            CAPTURE(c.in);
            CHECK(out == c.want);
        }
    }
}

TEST_CASE("progress text and JSON strings")
{
    std::string half = Progress::render("storing clip.mp4", 50'000'000, 100'000'000, 10.0);
    CHECK(half.find(" 50%") != std::string::npos);
    CHECK(half.find("5.0 MB/s") != std::string::npos);
    CHECK(half.find("ETA 0:10") != std::string::npos);
    CHECK(Progress::render("x", 5, 0, 1.0).find("MB/s") != std::string::npos);   // size unknown
    CHECK(Progress::render("x", 200, 100, 1.0).find("100%") != std::string::npos);
    CHECK(json_quote("a\"b\\c\n\x01") == "\"a\\\"b\\\\c\\u000a\\u0001\"");
}

TEST_CASE("store: linked items, change detection, removal")
{
    char tmpl[] = "/tmp/mm-mmsend-test-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    std::string dir = tmpl;
    {
        Config cfg = Config::load("", {"store.dir=" + dir + "/store"});
        Store store(cfg);
        std::string file = dir + "/video.bin";
        std::ofstream(file) << std::string(100000, 'v');
        ItemMeta meta;
        meta.type = "video/mp4";
        meta.name = "video.bin";
        uint64_t seen = 0;
        NewItem it = store.link_file(file, meta, [&](uint64_t done, uint64_t) { seen = done; });
        CHECK(seen == 100000);
        CHECK(it.size == 100000);
        std::string token = it.url.substr(it.url.rfind('/') + 1);
        auto item = store.authorize(it.id, token);
        REQUIRE(item.has_value());
        CHECK(item->link_path == file);
        CHECK(store.item_path(*item) == file);
        std::string why;
        CHECK(store.linked_file_intact(*item, why));
        // Same size, new content and mtime: refused.
        std::ofstream(file) << std::string(100000, 'w');
        CHECK_FALSE(store.linked_file_intact(*item, why));
        CHECK(!why.empty());
        unlink(file.c_str());
        CHECK_FALSE(store.linked_file_intact(*item, why));
        CHECK_THROWS_AS(store.link_file(dir + "/missing", meta), StoreError);
        CHECK_THROWS_AS(store.link_file(dir, meta), StoreError);   // a directory

        // Removal: the row goes; a shared object stays until its last item goes.
        auto put = [&] {
            auto w = store.create();
            w->write("same bytes", 10);
            return w->commit(meta);
        };
        NewItem a = put(), b = put();
        std::string obj = store.object_path(a.sha256);
        CHECK(store.remove_item(a.id));
        CHECK(access(obj.c_str(), F_OK) == 0);
        CHECK(store.remove_item(b.id));
        CHECK(access(obj.c_str(), F_OK) != 0);
        CHECK_FALSE(store.remove_item(b.id));
        CHECK_FALSE(store.remove_item("../../etc"));
        CHECK(store.remove_item(it.id));   // a linked item: the user's file is never deleted
    }
    {
        // Reopening an index that already has the link columns is fine.
        Config cfg = Config::load("", {"store.dir=" + dir + "/store"});
        CHECK_NOTHROW(Store{cfg});
    }
    std::filesystem::remove_all(dir);
}
