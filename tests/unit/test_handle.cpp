// test_handle.cpp - the X-Media-Handle format v1 (docs/handle-format.md): round
// trips through format_handle_field/parse_handle, line lengths, RFC 2231 forms
// written by hand, and a table of bad input that must be refused, not crash.
#include <doctest/doctest.h>

#include "mime/handle.h"
#include "core/util.h"

#include <string>
#include <utility>
#include <vector>

using namespace mm;

namespace {

Handle sample()
{
    Handle h;
    h.url = "https://gw.example.org:8443/m/0123abcd?t=AbC-xyz_123";
    h.sha256 = sha256_hex("hello");
    h.size = 24536123;
    h.type = "video/mp4";
    h.name = "Vid\xc3\xa9o \xc3\xa9t\xc3\xa9 \xe2\x82\xac.mp4"; // "Vidéo été €.mp4"
    h.pin = "sha256//" + base64_encode(std::string(32, '\x5a'));
    h.expires = "2026-12-25T10:00:00Z";
    h.title = "Summer \"2026\" at the lake";
    h.date = "2026-08-01";
    h.note = "From the lake; with love \\ and backslash";
    h.copyright = "\xc2\xa9 2026 Ana";
    h.headers = "Content-Type: video/mp4; name=\"x.mp4\"\r\nContent-Transfer-Encoding: base64\r\n"
                "Content-Disposition: attachment;\r\n filename=\"x.mp4\"\r\n\r\n";
    h.line_len = 76;
    h.eol = "\r\n";
    h.final_eol = true;
    h.part_size = 33161234;
    return h;
}

void check_same(const Handle& a, const Handle& b)
{
    CHECK(a.v == b.v);
    CHECK(a.url == b.url);
    CHECK(a.sha256 == b.sha256);
    CHECK(a.size == b.size);
    CHECK(a.type == b.type);
    CHECK(a.name == b.name);
    CHECK(a.pin == b.pin);
    CHECK(a.expires == b.expires);
    CHECK(a.title == b.title);
    CHECK(a.date == b.date);
    CHECK(a.note == b.note);
    CHECK(a.copyright == b.copyright);
    CHECK(a.headers == b.headers);
    CHECK(a.encoding == b.encoding);
    CHECK(a.line_len == b.line_len);
    CHECK(a.eol == b.eol);
    CHECK(a.final_eol == b.final_eol);
    CHECK(a.part_size == b.part_size);
}

std::vector<std::string> split_lines(const std::string& text, const std::string& eol)
{
    std::vector<std::string> lines;
    size_t pos = 0;
    while (pos <= text.size()) {
        size_t e = text.find(eol, pos);
        if (e == std::string::npos) {
            lines.push_back(text.substr(pos));
            break;
        }
        lines.push_back(text.substr(pos, e - pos));
        pos = e + eol.size();
    }
    return lines;
}

// Every line (eol excluded) at most 78 octets and, with CRLF, at most 78 too;
// no stray CR or LF inside a line.
void check_lines(const std::string& text, const std::string& eol)
{
    for (const auto& line : split_lines(text, eol)) {
        CHECK(line.size() + 2 <= 78);
        CHECK(line.find('\r') == std::string::npos);
        CHECK(line.find('\n') == std::string::npos);
    }
}

// The value of "X-Media-Handle: ...eol" (folded, as a header parser hands it over).
std::string value_of(const std::string& field)
{
    const std::string prefix = "X-Media-Handle:";
    REQUIRE(field.compare(0, prefix.size(), prefix) == 0);
    return field.substr(prefix.size());
}

// A minimal valid value, parameter by parameter, for the table of bad input.
using Params = std::vector<std::pair<std::string, std::string>>;

Params base_params()
{
    return {
        {"v", "1"},
        {"url", "\"https://h.example/x?t=1\""},
        {"sha256", sha256_hex("x")},
        {"size", "10"},
        {"type", "\"video/mp4\""},
        {"name", "a.mp4"},
        {"pin", "\"sha256//" + base64_encode(std::string(32, 'k')) + "\""},
        {"expires", "\"2026-12-25T10:00:00Z\""},
        {"hdr", "\"" + base64_encode("Content-Type: video/mp4\r\n\r\n") + "\""},
        {"enc", "base64"},
        {"linelen", "76"},
        {"eol", "crlf"},
        {"final", "1"},
        {"psize", "100"},
    };
}

std::string join(const Params& ps)
{
    std::string out;
    for (const auto& [k, v] : ps) {
        if (!out.empty())
            out += "; ";
        out += k + "=" + v;
    }
    return out;
}

std::string with(const std::string& key, const std::string& raw)
{
    Params ps = base_params();
    bool replaced = false;
    std::string bare = key.substr(0, key.find('*'));
    for (auto& [k, v] : ps)
        if (k == bare) {
            k = key;
            v = raw;
            replaced = true;
        }
    if (!replaced)
        ps.emplace_back(key, raw);
    return join(ps);
}

std::string without(const std::string& key)
{
    Params ps;
    for (const auto& p : base_params())
        if (p.first != key)
            ps.push_back(p);
    return join(ps);
}

// Replace a parameter by raw text (e.g. its RFC 2231 sections).
std::string replacing(const std::string& key, const std::string& raw_params)
{
    Params ps;
    std::string out;
    for (const auto& [k, v] : base_params()) {
        if (!out.empty())
            out += "; ";
        out += k == key ? raw_params : k + "=" + v;
    }
    return out;
}

} // namespace

TEST_CASE("handle: base parameters parse")
{
    HandleParse r = parse_handle(join(base_params()));
    REQUIRE(r.error == HandleError::none);
    CHECK(r.handle.url == "https://h.example/x?t=1");
    CHECK(r.handle.size == 10);
    CHECK(r.handle.type == "video/mp4");
    CHECK(r.handle.name == "a.mp4");
    CHECK(r.handle.headers == "Content-Type: video/mp4\r\n\r\n");
    CHECK(r.handle.eol == "\r\n");
    CHECK(r.handle.final_eol);
    CHECK(r.handle.part_size == 100);
    CHECK(r.handle.title.empty());
}

TEST_CASE("handle: round trip of every field, both line endings")
{
    for (std::string eol : {"\r\n", "\n"}) {
        CAPTURE(eol.size());
        Handle h = sample();
        h.eol = eol;
        h.final_eol = eol == "\n";
        std::string field = format_handle_field(h, eol);
        CHECK(field.compare(0, 19, "X-Media-Handle: v=1") == 0);
        CHECK(field.size() >= eol.size());
        CHECK(field.compare(field.size() - eol.size(), eol.size(), eol) == 0);
        check_lines(field, eol);
        for (const auto& line : split_lines(field.substr(0, field.size() - eol.size()), eol))
            if (line.compare(0, 14, "X-Media-Handle") != 0) {
                REQUIRE(!line.empty());
                CHECK((line[0] == ' ' || line[0] == '\t'));
                CHECK(line.size() > 1);
                CHECK(line[1] != ' ');
            }
        HandleParse r = parse_handle(value_of(field));
        REQUIRE_MESSAGE(r.error == HandleError::none, r.detail);
        check_same(r.handle, h);
        std::string detail;
        CHECK(validate_handle(h, detail) == HandleError::none);
    }
}

TEST_CASE("handle: round trip of long and awkward values")
{
    struct Case {
        const char* what;
        void (*change)(Handle&);
    };
    const Case cases[] = {
        {"3000-char url", [](Handle& h) { h.url = "https://gw.example.org/m/" + std::string(3000 - 25, 'a'); }},
        {"2000-char url with query", [](Handle& h) { h.url = "https://g.example/?t=" + std::string(1979, 'Z'); }},
        {"long non-ASCII name", [](Handle& h) {
             h.name.clear();
             for (int i = 0; i < 60; ++i)
                 h.name += "\xc3\xa9\xe2\x82\xac\xf0\x9f\x8e\xac";
         }},
        {"long token name", [](Handle& h) { h.name = std::string(300, 'n') + ".mp4"; }},
        {"long quoted note", [](Handle& h) {
             h.note.clear();
             for (int i = 0; i < 80; ++i)
                 h.note += "say \"hi\"; \\ ";
             h.note += "end";
         }},
        {"big header block", [](Handle& h) {
             h.headers = "Content-Type: video/mp4\r\n";
             for (int i = 0; i < 20; ++i)
                 h.headers += "X-Extra-" + std::to_string(i) + ": some value here\r\n";
             h.headers += "\r\n";
         }},
        {"LF header block", [](Handle& h) { h.headers = "Content-Type: video/mp4\n\n"; }},
        {"no optional fields", [](Handle& h) { h.title = h.date = h.note = h.copyright = ""; }},
        {"empty name", [](Handle& h) { h.name.clear(); }},
        {"http url", [](Handle& h) { h.url = "http://192.0.2.1/x"; }},
        {"huge numbers", [](Handle& h) {
             h.size = UINT64_MAX;
             h.part_size = UINT64_MAX;
         }},
        {"line length limits", [](Handle& h) { h.line_len = 4; }},
        {"line length 996", [](Handle& h) { h.line_len = 996; }},
    };
    for (const auto& c : cases) {
        std::string what = c.what;
        CAPTURE(what);
        Handle h = sample();
        c.change(h);
        for (std::string eol : {"\r\n", "\n"}) {
            std::string field = format_handle_field(h, eol);
            check_lines(field, eol);
            HandleParse r = parse_handle(value_of(field));
            REQUIRE_MESSAGE(r.error == HandleError::none, r.detail);
            check_same(r.handle, h);
        }
    }
}

TEST_CASE("handle: values that cannot be sent are caught by validate_handle")
{
    struct Case {
        const char* what;
        void (*change)(Handle&);
        const char* detail;
    };
    const Case cases[] = {
        {"ftp url", [](Handle& h) { h.url = "ftp://x/y"; }, "url"},
        {"url with space", [](Handle& h) { h.url = "https://x/a b"; }, "url"},
        {"upper-case digest", [](Handle& h) { h.sha256 = std::string(64, 'A'); }, "sha256"},
        {"name with newline", [](Handle& h) { h.name = "a\nb.mp4"; }, "name"},
        {"name not UTF-8", [](Handle& h) { h.name = "\xff.mp4"; }, "name"},
        {"eol CR", [](Handle& h) { h.eol = "\r"; }, "eol"},
        {"line length 77", [](Handle& h) { h.line_len = 77; }, "linelen"},
        {"encoding qp", [](Handle& h) { h.encoding = "quoted-printable"; }, "enc"},
        {"empty headers", [](Handle& h) { h.headers.clear(); }, "hdr"},
        {"version 2", [](Handle& h) { h.v = 2; }, "v"},
        {"url too long for 100 sections", [](Handle& h) { h.url = "https://x/" + std::string(9000, 'a'); }, "url"},
    };
    for (const auto& c : cases) {
        std::string what = c.what;
        CAPTURE(what);
        Handle h = sample();
        c.change(h);
        std::string detail;
        CHECK(validate_handle(h, detail) != HandleError::none);
        CHECK(detail.find(c.detail) != std::string::npos);
    }
}

TEST_CASE("handle: bad input is refused with the parameter named")
{
    const std::string b64_31 = base64_encode(std::string(31, 'k'));
    struct Case {
        const char* what;
        std::string value;
        HandleError want;
        const char* detail; // must appear in HandleParse::detail
    };
    const std::vector<Case> cases = {
        {"empty", "", HandleError::missing, "v"},
        {"only spaces", "   ", HandleError::missing, "v"},
        {"only semicolon", ";", HandleError::syntax, ""},
        {"v missing", without("v"), HandleError::missing, "v"},
        {"url missing", without("url"), HandleError::missing, "url"},
        {"sha256 missing", without("sha256"), HandleError::missing, "sha256"},
        {"size missing", without("size"), HandleError::missing, "size"},
        {"type missing", without("type"), HandleError::missing, "type"},
        {"name missing", without("name"), HandleError::missing, "name"},
        {"pin missing", without("pin"), HandleError::missing, "pin"},
        {"expires missing", without("expires"), HandleError::missing, "expires"},
        {"hdr missing", without("hdr"), HandleError::missing, "hdr"},
        {"enc missing", without("enc"), HandleError::missing, "enc"},
        {"linelen missing", without("linelen"), HandleError::missing, "linelen"},
        {"eol missing", without("eol"), HandleError::missing, "eol"},
        {"final missing", without("final"), HandleError::missing, "final"},
        {"psize missing", without("psize"), HandleError::missing, "psize"},
        {"v=2", with("v", "2"), HandleError::unknown_version, "v"},
        {"v=0", with("v", "0"), HandleError::unknown_version, "v"},
        {"v=2 wins over missing fields", "v=2; url=\"https://x/\"", HandleError::unknown_version, "v"},
        {"v=1.0", with("v", "1.0"), HandleError::bad_value, "v"},
        {"v=+1", with("v", "+1"), HandleError::bad_value, "v"},
        {"v huge", with("v", "99999999999999999999999"), HandleError::bad_value, "v"},
        {"url ftp", with("url", "\"ftp://h/x\""), HandleError::bad_value, "url"},
        {"url scheme only", with("url", "\"https://\""), HandleError::bad_value, "url"},
        {"url with space", with("url", "\"https://h/a b\""), HandleError::bad_value, "url"},
        {"url with tab", with("url", "\"https://h/a\tb\""), HandleError::bad_value, "url"},
        {"url with control", with("url*", "utf-8''https%3A%2F%2Fh%2F%01"), HandleError::bad_value, "url"},
        {"url non-ASCII", with("url*", "utf-8''https%3A%2F%2Fh%2F%C3%A9"), HandleError::bad_value, "url"},
        {"sha256 short", with("sha256", std::string(63, 'a')), HandleError::bad_value, "sha256"},
        {"sha256 long", with("sha256", std::string(65, 'a')), HandleError::bad_value, "sha256"},
        {"sha256 upper", with("sha256", std::string(64, 'A')), HandleError::bad_value, "sha256"},
        {"sha256 not hex", with("sha256", std::string(63, 'a') + "g"), HandleError::bad_value, "sha256"},
        {"size 12a", with("size", "12a"), HandleError::bad_value, "size"},
        {"size -1", with("size", "-1"), HandleError::bad_value, "size"},
        {"size +1", with("size", "+1"), HandleError::bad_value, "size"},
        {"size overflow", with("size", "18446744073709551616"), HandleError::bad_value, "size"},
        {"size empty", with("size", "\"\""), HandleError::bad_value, "size"},
        {"size spaces", with("size", "\" 12\""), HandleError::bad_value, "size"},
        {"type no slash", with("type", "video"), HandleError::bad_value, "type"},
        {"type empty subtype", with("type", "\"video/\""), HandleError::bad_value, "type"},
        {"type two slashes", with("type", "\"video/mp4/x\""), HandleError::bad_value, "type"},
        {"type with space", with("type", "\"video/mp 4\""), HandleError::bad_value, "type"},
        {"name with control", with("name*", "utf-8''a%0Ab"), HandleError::bad_value, "name"},
        {"name bad UTF-8", with("name*", "utf-8''%FF.mp4"), HandleError::bad_value, "name"},
        {"name overlong UTF-8", with("name*", "utf-8''%C0%AF.mp4"), HandleError::bad_value, "name"},
        {"name surrogate", with("name*", "utf-8''%ED%A0%80.mp4"), HandleError::bad_value, "name"},
        {"name truncated UTF-8", with("name*", "utf-8''a%E2%82"), HandleError::bad_value, "name"},
        {"name 8-bit in us-ascii", with("name*", "us-ascii''%C3%A9"), HandleError::bad_value, "name"},
        {"pin no prefix", with("pin", "\"" + base64_encode(std::string(32, 'k')) + "\""), HandleError::bad_value,
         "pin"},
        {"pin sha1", with("pin", "\"sha1//" + base64_encode(std::string(32, 'k')) + "\""), HandleError::bad_value,
         "pin"},
        {"pin 31 bytes", with("pin", "\"sha256//" + b64_31 + "\""), HandleError::bad_value, "pin"},
        {"pin not base64", with("pin", "\"sha256//" + std::string(44, '!') + "\""), HandleError::bad_value, "pin"},
        {"pin empty", with("pin", "\"sha256//\""), HandleError::bad_value, "pin"},
        {"expires date only", with("expires", "2026-12-25"), HandleError::bad_value, "expires"},
        {"expires month 13", with("expires", "\"2026-13-25T10:00:00Z\""), HandleError::bad_value, "expires"},
        {"expires offset", with("expires", "\"2026-12-25T10:00:00+01:00\""), HandleError::bad_value, "expires"},
        {"expires text", with("expires", "tomorrow"), HandleError::bad_value, "expires"},
        {"title control", with("title*", "utf-8''a%7Fb"), HandleError::bad_value, "title"},
        {"note bad UTF-8", with("note*", "utf-8''%80"), HandleError::bad_value, "note"},
        {"hdr not base64", with("hdr", "\"!!!!\""), HandleError::bad_value, "hdr"},
        {"hdr empty", with("hdr", "\"\""), HandleError::bad_value, "hdr"},
        {"hdr no final line break", with("hdr", "\"" + base64_encode("A: b") + "\""), HandleError::bad_value, "hdr"},
        {"hdr non-canonical base64", with("hdr", "\"QR==\""), HandleError::bad_value, "hdr"},
        {"enc 7bit", with("enc", "7bit"), HandleError::bad_value, "enc"},
        {"linelen 0", with("linelen", "0"), HandleError::bad_value, "linelen"},
        {"linelen 3", with("linelen", "3"), HandleError::bad_value, "linelen"},
        {"linelen 77", with("linelen", "77"), HandleError::bad_value, "linelen"},
        {"linelen 1000", with("linelen", "1000"), HandleError::bad_value, "linelen"},
        {"linelen 076", with("linelen", "076x"), HandleError::bad_value, "linelen"},
        {"eol cr", with("eol", "cr"), HandleError::bad_value, "eol"},
        {"final yes", with("final", "yes"), HandleError::bad_value, "final"},
        {"final 2", with("final", "2"), HandleError::bad_value, "final"},
        {"psize -5", with("psize", "-5"), HandleError::bad_value, "psize"},
        {"psize overflow", with("psize", "99999999999999999999"), HandleError::bad_value, "psize"},

        // Syntax.
        {"duplicate url", with("url", "\"https://a/\"; url=\"https://b/\""), HandleError::syntax, "url"},
        {"duplicate, other case", join(base_params()) + "; SIZE=10", HandleError::syntax, "size"},
        {"duplicate plain and extended", join(base_params()) + "; name*=utf-8''b", HandleError::syntax, "name"},
        {"duplicate plain and section", join(base_params()) + "; name*0=b", HandleError::syntax, "name"},
        {"duplicate section", replacing("name", "name*0=a; name*1=b; name*0=c"), HandleError::syntax, "name"},
        {"duplicate unknown", join(base_params()) + "; x-a=1; x-a=2", HandleError::syntax, "(unknown)"},
        {"section gap", replacing("name", "name*0=a; name*2=b"), HandleError::syntax, "name"},
        {"sections without 0", replacing("name", "name*1=a; name*2=b"), HandleError::syntax, "name"},
        {"section leading zero", replacing("name", "name*00=a"), HandleError::syntax, ""},
        {"section 100", replacing("name", "name*100=a"), HandleError::too_long, "name"},
        {"section huge", replacing("name", "name*99999999999999999999=a"), HandleError::too_long, "name"},
        {"no equals", join(base_params()) + "; flag", HandleError::syntax, ""},
        {"no value", join(base_params()) + "; x=", HandleError::syntax, ""},
        {"missing semicolon", "v=1 url=\"https://a/\"", HandleError::syntax, ""},
        {"comma separator", "v=1, url=\"https://a/\"", HandleError::syntax, ""},
        {"unterminated quote", join(base_params()) + "; note=\"abc", HandleError::syntax, "note"},
        {"quote ends in backslash", join(base_params()) + "; note=\"abc\\", HandleError::syntax, "note"},
        {"raw 8-bit in quotes", with("name", "\"\xc3\xa9.mp4\""), HandleError::syntax, "name"},
        {"raw 8-bit token", with("name", "\xc3\xa9.mp4"), HandleError::syntax, ""},
        {"NUL in value", with("name", std::string("a\0b", 3)), HandleError::syntax, ""},
        {"control in quotes", with("name", "\"a\x01\""), HandleError::syntax, "name"},
        {"comment", join(base_params()) + " (comment)", HandleError::syntax, ""},
        {"bare CR", with("name", "a") + "\r; x=1", HandleError::syntax, ""},
        {"bare LF mid-value", "v=1;\nurl=\"https://a/\"", HandleError::syntax, ""},
        {"CRLF not followed by space", "v=1;\r\nurl=\"https://a/\"", HandleError::syntax, ""},
        {"extended without quotes", with("name*", "utf-8%41"), HandleError::syntax, "name"},
        {"extended one quote", with("name*", "utf-8'%41"), HandleError::syntax, "name"},
        {"extended extra quote", with("name*", "utf-8''a'b"), HandleError::syntax, "name"},
        {"quote in later section", replacing("name", "name*0*=utf-8''a; name*1*=utf-8''b"), HandleError::syntax,
         "name"},

        // %-escapes and charsets.
        {"bad escape %G1", with("name*", "utf-8''a%G1"), HandleError::bad_value, "name"},
        {"escape cut %4", with("name*", "utf-8''a%4"), HandleError::bad_value, "name"},
        {"escape cut %", with("name*", "utf-8''a%"), HandleError::bad_value, "name"},
        {"bad escape in section", replacing("name", "name*0*=utf-8''a; name*1*=%zz"), HandleError::bad_value, "name"},
        {"charset latin1", with("name*", "iso-8859-1''caf%E9"), HandleError::bad_value, "name"},
        {"charset empty", with("name*", "''a"), HandleError::bad_value, "name"},
        {"charset in section 0 latin1", replacing("name", "name*0*=iso-8859-1''a; name*1=b"), HandleError::bad_value,
         "name"},
        {"8-bit after plain section 0", replacing("name", "name*0=a; name*1*=%C3%A9"), HandleError::bad_value, "name"},
    };
    for (const auto& c : cases) {
        std::string what = c.what;
        CAPTURE(what);
        HandleParse r = parse_handle(c.value);
        CHECK_MESSAGE(r.error == c.want, handle_error_name(r.error), " ", r.detail);
        CHECK_MESSAGE(r.detail.find(c.detail) != std::string::npos, r.detail);
        if (r.error != HandleError::none) {
            CHECK(!r.detail.empty());
            CHECK(r.handle.url.empty());
        }
    }
}

TEST_CASE("handle: details never echo the input")
{
    const std::string secret = "SeCrEtToKeN";
    const std::vector<std::string> inputs = {
        with(secret, "1") + "; " + secret + "=2",
        with("url", "\"https://h/" + secret + " x\""),
        with("name*", "x-" + secret + "''a"),
        "v=1; " + secret + "*0=a; " + secret + "*0=b",
        "v=1; " + secret + "*100=a",
        secret + " garbage",
    };
    for (const auto& in : inputs) {
        HandleParse r = parse_handle(in);
        CHECK(r.error != HandleError::none);
        CHECK(r.detail.find(secret) == std::string::npos);
        CHECK(r.detail.find("secrettoken") == std::string::npos);
    }
}

TEST_CASE("handle: unknown parameters are ignored, names are case-insensitive")
{
    const std::vector<std::string> inputs = {
        join(base_params()) + "; x-future=1",
        "x-first=\"a b\"; " + join(base_params()),
        join(base_params()) + "; x-long*0=a; x-long*1=b; x-ext*=iso-8859-1''%E9; x-gap*0=a; x-gap*5=b",
        join(base_params()) + "; x-bad-escape*=utf-8''%ZZ",
        "V=1; URL=\"https://h.example/x?t=1\"; SHA256=" + sha256_hex("x") +
            "; Size=10; Type=\"video/mp4\"; NAME=a.mp4; Pin=\"sha256//" + base64_encode(std::string(32, 'k')) +
            "\"; EXPIRES=\"2026-12-25T10:00:00Z\"; HDR=\"" + base64_encode("Content-Type: video/mp4\r\n\r\n") +
            "\"; ENC=BASE64; LineLen=76; EOL=CRLF; Final=1; PSize=100",
        join(base_params()) + ";",
        "  " + join(base_params()) + " ;  ",
        "v = 1 ;url= \"https://h.example/x?t=1\"\t; " + without("v").substr(without("v").find("sha256")),
    };
    for (const auto& in : inputs) {
        CAPTURE(in);
        HandleParse r = parse_handle(in);
        CHECK_MESSAGE(r.error == HandleError::none, handle_error_name(r.error), " ", r.detail);
        CHECK(r.handle.url == "https://h.example/x?t=1");
        CHECK(r.handle.name == "a.mp4");
        CHECK(r.handle.encoding == "base64");
    }
}

TEST_CASE("handle: RFC 2231 forms written by hand")
{
    const std::string euro_name = "Vid\xc3\xa9o \xc3\xa9t\xc3\xa9 \xe2\x82\xac.mp4";
    struct Case {
        const char* what;
        std::string raw;
        std::string want;
    };
    const std::vector<Case> cases = {
        {"encoded", "name*=utf-8''Vid%C3%A9o%20%C3%A9t%C3%A9%20%E2%82%AC.mp4", euro_name},
        {"encoded, upper-case charset and language", "name*=UTF-8'fr'Vid%c3%a9o%20%c3%a9t%c3%a9%20%e2%82%ac.mp4",
         euro_name},
        {"encoded continuation", "name*0*=utf-8''Vid%C3%A9o%20; name*1*=%C3%A9t%C3%A9%20%E2; name*2*=%82%AC.mp4",
         euro_name},
        {"mixed sections", "name*0*=utf-8''Vid%C3%A9o%20; name*1=\"x y\"; name*2*=%E2%82%AC", "Vid\xc3\xa9o x y\xe2\x82\xac"},
        {"plain continuation", "name*0=\"my long \"; name*1=file; name*2=\".mp4\"", "my long file.mp4"},
        {"sections out of order", "name*1=b.mp4; name*0=a", "ab.mp4"},
        {"us-ascii", "name*=us-ascii'en'a%20b.mp4", "a b.mp4"},
        {"empty extended", "name*=utf-8''", ""},
        {"quoted escapes", "name=\"a\\\"b\\\\c\"", "a\"b\\c"},
        {"ten sections", "name*0=a; name*1=b; name*2=c; name*3=d; name*4=e; name*5=f; name*6=g; name*7=h; "
                         "name*8=i; name*9=j; name*10=k", "abcdefghijk"},
    };
    for (const auto& c : cases) {
        std::string what = c.what;
        CAPTURE(what);
        HandleParse r = parse_handle(replacing("name", c.raw));
        REQUIRE_MESSAGE(r.error == HandleError::none, handle_error_name(r.error), " ", r.detail);
        CHECK(r.handle.name == c.want);
    }

    // Sections of the url, folded by hand with CRLF and with LF.
    for (std::string fold : {"\r\n ", "\n\t", "\r\n  "}) {
        std::string v = replacing("url", "url*0=\"https://h.exa\";" + fold + "url*1=\"mple/x?t=1\"");
        HandleParse r = parse_handle(v);
        REQUIRE_MESSAGE(r.error == HandleError::none, r.detail);
        CHECK(r.handle.url == "https://h.example/x?t=1");
    }
    // 100 sections are allowed, 101 are not.
    std::string hundred, hundred_one;
    for (int i = 0; i < 100; ++i)
        hundred += "; x-y*" + std::to_string(i) + "=a";
    std::string url100 = "url*0=\"https://h/\"";
    for (int i = 1; i < 100; ++i)
        url100 += "; url*" + std::to_string(i) + "=a";
    CHECK(parse_handle(replacing("url", url100)).error == HandleError::none);
    CHECK(parse_handle(replacing("url", url100 + "; url*100=a")).error == HandleError::too_long);
}

TEST_CASE("handle: caps")
{
    // Whole value over kHandleMaxLength, folded or not.
    std::string big = join(base_params()) + "; x-pad=\"" + std::string(kHandleMaxLength, 'p') + "\"";
    CHECK(parse_handle(big).error == HandleError::too_long);
    CHECK(parse_handle(std::string(3 * kHandleMaxLength, 'a')).error == HandleError::too_long);
    std::string folded;
    for (size_t i = 0; i < kHandleMaxLength / 10; ++i)
        folded += "x-a" + std::to_string(i) + "=1;\r\n ";
    CHECK(parse_handle(folded + join(base_params())).error != HandleError::none);

    // Exactly at the cap is fine (padding in an unknown parameter).
    std::string base = join(base_params()) + "; x-pad=\"\"";
    std::string at_cap = join(base_params()) + "; x-pad=\"" + std::string(kHandleMaxLength - base.size(), 'p') + "\"";
    REQUIRE(at_cap.size() == kHandleMaxLength);
    CHECK(parse_handle(at_cap).error == HandleError::none);
    CHECK(parse_handle(at_cap + " ").error == HandleError::too_long);

    // Too many parameters: kHandleMaxParams distinct names in all.
    std::string many = join(base_params());
    for (size_t i = 0; i + base_params().size() < kHandleMaxParams; ++i)
        many += "; x-" + std::to_string(i) + "=1";
    CHECK(parse_handle(many).error == HandleError::none);
    HandleParse r = parse_handle(many + "; x-one-more=1");
    CHECK(r.error == HandleError::too_long);
    CHECK(r.detail.find("parameters") != std::string::npos);

    // One decoded value over kHandleMaxValue.
    std::string note = "\"" + std::string(kHandleMaxValue + 1, 'n') + "\"";
    r = parse_handle(with("note", note));
    CHECK(r.error == HandleError::too_long);
    CHECK(r.detail.find("note") != std::string::npos);
    note = "\"" + std::string(kHandleMaxValue, 'n') + "\"";
    CHECK(parse_handle(with("note", note)).error == HandleError::none);
}

TEST_CASE("handle: every prefix of a valid field parses or fails cleanly")
{
    Handle h = sample();
    h.url = "https://gw.example.org/m/" + std::string(300, 'u');
    for (std::string eol : {"\r\n", "\n"}) {
        std::string value = value_of(format_handle_field(h, eol));
        size_t ok = 0;
        for (size_t cut = 0; cut <= value.size(); ++cut) {
            HandleParse r = parse_handle(std::string_view(value).substr(0, cut));
            if (r.error == HandleError::none) {
                ++ok;
                std::string detail;
                CHECK(validate_handle(r.handle, detail) == HandleError::none);
            } else {
                CHECK(!r.detail.empty());
            }
        }
        CHECK(ok >= 1); // at least the whole value
        // Every single octet flipped to a few awkward bytes: no crash.
        for (size_t pos = 0; pos < value.size(); pos += 3)
            for (char c : {'\0', '\r', '\n', '"', '\\', '%', '*', ';', '=', '\'', '\xff'}) {
                std::string v = value;
                v[pos] = c;
                (void)parse_handle(v);
            }
    }
}

TEST_CASE("handle: the location part")
{
    for (std::string eol : {"\r\n", "\n"}) {
        CAPTURE(eol.size());
        Handle h = sample();
        h.url = "https://gw.example.org/m/" + std::string(200, 'q') + "?t=abc";
        std::string part = build_location_part(h, eol);
        CHECK(part.size() >= eol.size());
        CHECK(part.compare(part.size() - eol.size(), eol.size(), eol) != 0);
        size_t sep = part.find(eol + eol);
        REQUIRE(sep != std::string::npos);
        std::string head = part.substr(0, sep + eol.size());
        std::string body = part.substr(sep + 2 * eol.size());
        check_lines(head, eol);
        CHECK(head.find("Content-Type: text/plain; charset=utf-8" + eol) == 0);
        CHECK(head.find("Content-Disposition: inline" + eol) != std::string::npos);
        CHECK(head.find("Content-Transfer-Encoding: quoted-printable" + eol) != std::string::npos);
        CHECK(head.find("X-Mozilla-Cloud-Part: cloudFile;") != std::string::npos);
        CHECK(head.find("name*=utf-8''Vid%C3%A9o%20%C3%A9t%C3%A9%20%E2%82%AC.mp4") != std::string::npos);

        std::string field = format_handle_field(h, eol);
        size_t at = head.find(field);
        REQUIRE(at != std::string::npos);
        // Unfold the field as a reader would and parse it.
        std::string value = head.substr(at + 15, field.size() - 15 - eol.size());
        std::string flat;
        for (size_t i = 0; i < value.size(); ++i) {
            if (value.compare(i, eol.size(), eol) == 0) {
                i += eol.size() - 1;
                continue;
            }
            flat += value[i];
        }
        HandleParse r = parse_handle(flat);
        REQUIRE_MESSAGE(r.error == HandleError::none, r.detail);
        check_same(r.handle, h);

        // Quoted-printable body: short lines, only printable ASCII, the facts there.
        for (const auto& line : split_lines(body, eol)) {
            CHECK(line.size() <= 76);
            for (char c : line)
                CHECK((c >= 0x20 && c < 0x7f));
            CHECK((line.empty() || (line.back() != ' ' && line.back() != '\t')));
        }
        CHECK(body.find("Vid=C3=A9o =C3=A9t=C3=A9 =E2=82=AC.mp4") != std::string::npos);
        CHECK(body.find("23.4 MiB (24536123 bytes)") != std::string::npos);
        CHECK(body.find("2026-12-25T10:00:00Z") != std::string::npos);
        CHECK(body.find("Summer \"2026\" at the lake") != std::string::npos);
        CHECK(body.find("From the lake; with love") != std::string::npos);
        CHECK(body.find("https://gw.example.org/m/qqqq") != std::string::npos);
        CHECK(body.find("MediaMail fetcher") != std::string::npos);
        CHECK(body.find("browser") != std::string::npos);
    }

    // Pure ASCII with short lines goes as 7bit, unchanged.
    Handle h = sample();
    h.name = "clip.mp4";
    h.title = h.note = h.copyright = "";
    h.url = "https://g.example/m/1?t=x";
    h.size = 1000;
    std::string part = build_location_part(h, "\r\n");
    CHECK(part.find("Content-Transfer-Encoding: 7bit\r\n") != std::string::npos);
    CHECK(part.find("Link:    https://g.example/m/1?t=x\r\n") != std::string::npos);
    CHECK(part.find("1000 bytes") != std::string::npos);
    CHECK(part.find("X-Mozilla-Cloud-Part: cloudFile; url=\"https://g.example/m/1?t=x\";\r\n name=clip.mp4\r\n") !=
          std::string::npos);
}
