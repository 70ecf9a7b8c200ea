// test_part_header.cpp - the strict check of the header block mm-fetcher puts back
// for a location part (mime/part_header.h): hostile blocks a sender could put in a
// handle's hdr, each refused with its reason; and the few shapes a real mail
// program writes, accepted.
#include "mime/part_header.h"

#include <doctest/doctest.h>

#include <string>

using namespace mm;

namespace {

const std::string kOk = "Content-Type: video/mp4; name=\"a.mp4\"\r\n"
                        "Content-Transfer-Encoding: base64\r\n"
                        "Content-Disposition: attachment; filename=\"a.mp4\"\r\n\r\n";

} // namespace

TEST_CASE("check_part_header: hostile header blocks are refused with their reason")
{
    using E = PartHeaderError;
    const std::string cte = "Content-Transfer-Encoding: base64\r\n";
    struct Case {
        const char* what;
        std::string block;
        std::string type;
        E want;
    };
    const Case cases[] = {
        {"plain", kOk, "video/mp4", E::none},
        {"LF only", "Content-Type: video/mp4\nContent-Transfer-Encoding: base64\n\n", "video/mp4", E::none},
        {"type case differs (MIME types ignore case)", "Content-Type: Video/MP4\r\n" + cte + "\r\n", "video/mp4",
         E::none},
        {"folded disposition", "Content-Type: video/mp4\r\n" + cte + "Content-Disposition: attachment;\r\n\tfilename=\"a.mp4\"\r\n\r\n",
         "video/mp4", E::none},
        {"encoded word in a description", "Content-Type: video/mp4\r\n" + cte + "Content-Description: =?utf-8?B?aMOpbGxv?=\r\n\r\n",
         "video/mp4", E::none},
        {"empty", "", "video/mp4", E::no_blank_line},
        {"only a blank line", "\r\n", "video/mp4", E::no_blank_line},
        {"no blank line", "Content-Type: video/mp4\r\n" + cte, "video/mp4", E::no_blank_line},
        {"no line end at all", "Content-Type: video/mp4", "video/mp4", E::no_blank_line},
        {"two blank lines", kOk + "\r\n", "video/mp4", E::blank_line_inside},
        {"blank line then a second header block",
         "Content-Type: video/mp4\r\n" + cte + "\r\nContent-Type: text/html\r\n\r\n", "video/mp4", E::blank_line_inside},
        {"white space only line", "Content-Type: video/mp4\r\n \r\n" + cte + "\r\n", "video/mp4", E::blank_line_inside},
        {"CR alone", "Content-Type: video/mp4\r" + cte + "\r\n", "video/mp4", E::bad_byte},
        {"CR alone at the end", kOk + "\r", "video/mp4", E::bad_byte},
        {"NUL", std::string("Content-Type: video/mp4\0\r\n", 26) + cte + "\r\n", "video/mp4", E::bad_byte},
        {"8-bit", "Content-Type: video/mp4\r\n" + cte + "Content-Description: caf\xc3\xa9\r\n\r\n", "video/mp4",
         E::bad_byte},
        {"DEL", "Content-Type: video/mp4\x7f\r\n" + cte + "\r\n", "video/mp4", E::bad_byte},
        {"form feed", "Content-Type: video/mp4\f\r\n" + cte + "\r\n", "video/mp4", E::bad_byte},
        {"mixed line ends", "Content-Type: video/mp4\n" + cte + "\r\n", "video/mp4", E::mixed_line_ends},
        {"very long line", "Content-Type: video/mp4; x=\"" + std::string(1000, 'a') + "\"\r\n" + cte + "\r\n",
         "video/mp4", E::too_long},
        {"huge block", "Content-Type: video/mp4\r\n" + cte + std::string(9000, 'X') + ": y\r\n\r\n", "video/mp4",
         E::too_long},
        {"too many fields", [] {
             std::string b = "Content-Type: video/mp4\r\nContent-Transfer-Encoding: base64\r\n";
             for (int i = 0; i < 40; ++i)
                 b += "X-F" + std::to_string(i) + ": y\r\n";
             return b + "\r\n";
         }(),
         "video/mp4", E::too_long},
        {"boundary line", "Content-Type: video/mp4\r\n" + cte + "--b1\r\n\r\n", "video/mp4", E::boundary_line},
        {"boundary line first", "--b1\r\nContent-Type: video/mp4\r\n" + cte + "\r\n", "video/mp4", E::boundary_line},
        {"field name starting --", "--X: y\r\nContent-Type: video/mp4\r\n" + cte + "\r\n", "video/mp4",
         E::boundary_line},
        {"continuation first", " Content-Type: video/mp4\r\n" + cte + "\r\n", "video/mp4", E::continuation_first},
        {"tab continuation first", "\tx\r\nContent-Type: video/mp4\r\n" + cte + "\r\n", "video/mp4",
         E::continuation_first},
        {"no colon", "Content-Type video/mp4\r\n" + cte + "\r\n", "video/mp4", E::bad_name},
        {"space before colon", "Content-Type : video/mp4\r\n" + cte + "\r\n", "video/mp4", E::bad_name},
        {"empty name", ": x\r\nContent-Type: video/mp4\r\n" + cte + "\r\n", "video/mp4", E::bad_name},
        {"duplicated Content-Type", "Content-Type: video/mp4\r\nContent-Type: text/html\r\n" + cte + "\r\n",
         "video/mp4", E::duplicate_field},
        {"duplicated Content-Type other case", "Content-Type: video/mp4\r\ncontent-TYPE: video/mp4\r\n" + cte + "\r\n",
         "video/mp4", E::duplicate_field},
        {"duplicated encoding", "Content-Type: video/mp4\r\n" + cte + "Content-Transfer-Encoding: 7bit\r\n\r\n",
         "video/mp4", E::duplicate_field},
        {"duplicated disposition",
         "Content-Type: video/mp4\r\n" + cte +
             "Content-Disposition: attachment\r\nContent-Disposition: inline; filename=x.exe\r\n\r\n",
         "video/mp4", E::duplicate_field},
        {"no Content-Type", cte + "\r\n", "video/mp4", E::no_content_type},
        {"Content-Type hidden in a continuation", "X-A: b\r\n Content-Type: video/mp4\r\n" + cte + "\r\n",
         "video/mp4", E::no_content_type},
        {"type mismatch", "Content-Type: text/html\r\n" + cte + "\r\n", "video/mp4", E::type_mismatch},
        {"type mismatch subtype", "Content-Type: video/mp4x\r\n" + cte + "\r\n", "video/mp4", E::type_mismatch},
        {"exe as video", "Content-Type: application/x-msdownload; name=\"invoice.pdf.exe\"\r\n" + cte + "\r\n",
         "video/mp4", E::type_mismatch},
        {"type with params in the handle", "Content-Type: video/mp4\r\n" + cte + "\r\n", "video/mp4; x=y",
         E::bad_content_type},
        {"empty handle type", kOk, "", E::bad_content_type},
        {"multipart", "Content-Type: multipart/mixed; boundary=x\r\n" + cte + "\r\n", "video/mp4", E::composite_type},
        {"multipart in the handle too", "Content-Type: multipart/mixed; boundary=x\r\n" + cte + "\r\n",
         "multipart/mixed", E::composite_type},
        {"message/rfc822", "Content-Type: message/rfc822\r\n" + cte + "\r\n", "message/rfc822", E::composite_type},
        {"message/rfc822 declared", "Content-Type: message/rfc822\r\n" + cte + "\r\n", "video/mp4",
         E::composite_type},
        {"encoded word as the type", "Content-Type: =?us-ascii?Q?video/mp4?=\r\n" + cte + "\r\n", "video/mp4",
         E::bad_content_type},
        {"comment in the type", "Content-Type: video/mp4 (text/html)\r\n" + cte + "\r\n", "video/mp4",
         E::bad_content_type},
        {"no subtype", "Content-Type: video/\r\n" + cte + "\r\n", "video/mp4", E::bad_content_type},
        {"junk after the type", "Content-Type: video/mp4 text/html\r\n" + cte + "\r\n", "video/mp4",
         E::bad_content_type},
        {"unterminated quote", "Content-Type: video/mp4; name=\"a\r\n" + cte + "\r\n", "video/mp4",
         E::bad_content_type},
        {"param without value", "Content-Type: video/mp4; name\r\n" + cte + "\r\n", "video/mp4",
         E::bad_content_type},
        {"empty Content-Type", "Content-Type:\r\n" + cte + "\r\n", "video/mp4", E::bad_content_type},
        {"no encoding", "Content-Type: video/mp4\r\n\r\n", "video/mp4", E::no_encoding},
        {"quoted-printable", "Content-Type: video/mp4\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
         "video/mp4", E::not_base64},
        {"base64 with junk", "Content-Type: video/mp4\r\nContent-Transfer-Encoding: base64 x\r\n\r\n", "video/mp4",
         E::not_base64},
        {"encoded word hiding CRLF (Q)", "Content-Type: video/mp4\r\n" + cte + "Content-Description: =?us-ascii?Q?a=0D=0A--b1?=\r\n\r\n",
         "video/mp4", E::bad_encoded_word},
        {"encoded word hiding CRLF (B)", "Content-Type: video/mp4\r\n" + cte + "Content-Description: =?us-ascii?B?YQ0KLS1iMQ==?=\r\n\r\n",
         "video/mp4", E::bad_encoded_word},
        {"encoded word hiding NUL", "Content-Type: video/mp4\r\n" + cte + "Content-Description: =?us-ascii?Q?a=00b?=\r\n\r\n",
         "video/mp4", E::bad_encoded_word},
        {"unclosed encoded word", "Content-Type: video/mp4\r\n" + cte + "Content-Description: =?utf-8?B?aGVsbG8\r\n\r\n",
         "video/mp4", E::bad_encoded_word},
        {"unknown encoding letter", "Content-Type: video/mp4\r\n" + cte + "Content-Description: =?utf-8?X?abc?=\r\n\r\n",
         "video/mp4", E::bad_encoded_word},
        {"encoded word in the encoding", "Content-Type: video/mp4\r\nContent-Transfer-Encoding: =?us-ascii?Q?base64?=\r\n\r\n",
         "video/mp4", E::not_base64},
    };
    for (const auto& c : cases) {
        CAPTURE(c.what);
        std::string detail;
        E got = check_part_header(c.block, c.type, detail);
        CHECK(part_header_error_name(got) == std::string(part_header_error_name(c.want)));
        CHECK(detail.size() < 64);
        if (c.want != E::none)
            CHECK_FALSE(detail.empty());
    }
}

TEST_CASE("check_part_header: every cut of a good block is refused, never crashes")
{
    for (size_t n = 0; n < kOk.size(); ++n) {
        std::string detail;
        CAPTURE(n);
        CHECK(check_part_header(kOk.substr(0, n), "video/mp4", detail) != PartHeaderError::none);
    }
}
