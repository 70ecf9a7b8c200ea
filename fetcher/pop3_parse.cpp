// pop3_parse.cpp - POP3 command-line parsing, RFC 1939 / RFC 2449, and TOP's cut
// of a message, pure and bounded so that unit tests and fuzzers can feed them any
// bytes. Reads no config keys.
#include "fetcher/pop3_parse.h"

#include "core/config.h"

#include <array>
#include <cstring>

namespace mm::pop3 {

namespace {

struct VerbInfo {
    const char* name;
    Verb verb;
    unsigned min_args, max_args;
};

// The syntax half of the command table; which state allows which verb lives in
// session.cpp next to the state machine.
constexpr std::array<VerbInfo, 15> kVerbs{{
    {"USER", Verb::user, 1, 1},
    {"PASS", Verb::pass, 1, 1},
    {"APOP", Verb::apop, 2, 2},
    {"AUTH", Verb::auth, 0, 2},
    {"CAPA", Verb::capa, 0, 0},
    {"QUIT", Verb::quit, 0, 0},
    {"STAT", Verb::stat, 0, 0},
    {"LIST", Verb::list, 0, 1},
    {"UIDL", Verb::uidl, 0, 1},
    {"RETR", Verb::retr, 1, 1},
    {"TOP", Verb::top, 2, 2},
    {"DELE", Verb::dele, 1, 1},
    {"RSET", Verb::rset, 0, 0},
    {"NOOP", Verb::noop, 0, 0},
    {"STLS", Verb::stls, 0, 0},
}};

char upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

bool iequal(std::string_view a, const char* b)
{
    std::string_view bv(b);
    if (a.size() != bv.size())
        return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (upper(a[i]) != bv[i])
            return false;
    return true;
}

} // namespace

Command parse_command(std::string_view line)
{
    Command c;
    if (line.empty()) {
        c.error = ParseError::empty;
        return c;
    }
    if (line.size() > kMaxCommandLine) {
        c.error = ParseError::too_long;
        return c;
    }
    // Printable ASCII and space only: a NUL or a stray CR would let a client smuggle
    // a second command to the upstream server through USER/PASS.
    for (unsigned char ch : line)
        if (ch < 0x20 || ch > 0x7e) {
            c.error = ParseError::bad_bytes;
            return c;
        }
    size_t sp = line.find(' ');
    std::string_view word = line.substr(0, sp);
    if (word.empty()) {
        c.error = ParseError::bad_syntax;   // leading space
        return c;
    }
    const VerbInfo* info = nullptr;
    for (const auto& v : kVerbs)
        if (iequal(word, v.name))
            info = &v;
    if (!info) {
        c.error = ParseError::unknown_verb;
        return c;
    }
    c.verb = info->verb;
    if (sp != std::string_view::npos) {
        std::string_view rest = line.substr(sp + 1);
        if (c.verb == Verb::pass) {
            // RFC 1939 7: PASS has one argument which may itself contain spaces.
            if (rest.empty()) {
                c.error = ParseError::bad_syntax;
                return c;
            }
            c.args.emplace_back(rest);
        } else {
            for (;;) {
                size_t next = rest.find(' ');
                std::string_view arg = rest.substr(0, next);
                // USER/APOP may carry a long mail address and AUTH a SASL initial
                // response; everything else is a number or a keyword.
                bool long_ok = c.verb == Verb::user || c.verb == Verb::apop || c.verb == Verb::auth;
                if (arg.empty() || (!long_ok && arg.size() > kMaxArgument) || c.args.size() >= info->max_args) {
                    c.error = ParseError::bad_syntax;
                    return c;
                }
                c.args.emplace_back(arg);
                if (next == std::string_view::npos)
                    break;
                rest = rest.substr(next + 1);
            }
        }
    }
    if (c.args.size() < info->min_args || c.args.size() > info->max_args)
        c.error = ParseError::bad_syntax;
    return c;
}

bool parse_msgnum(std::string_view s, uint64_t count, uint64_t& out)
{
    uint64_t n = 0;
    if (s.empty() || s.size() > 20 || !parse_u64(s, n))
        return false;
    if (n < 1 || n > count)
        return false;
    out = n;
    return true;
}

bool parse_count(std::string_view s, uint64_t& out)
{
    return !s.empty() && s.size() <= 20 && parse_u64(s, out);
}

size_t TopCut::take(const char* p, size_t n)
{
    if (done_)
        return 0;
    size_t i = 0;
    while (i < n) {
        if (line_start_) {
            if (in_body_ && lines_ >= limit_) {
                done_ = true;
                return i;
            }
            blank_ = true;   // until a byte other than CR shows up before the LF
            line_start_ = false;
        }
        const char* nl = static_cast<const char*>(std::memchr(p + i, '\n', n - i));
        const size_t end = nl ? static_cast<size_t>(nl - p) : n;
        for (size_t k = i; blank_ && k < end; ++k)
            blank_ = p[k] == '\r';
        if (!nl)
            return n;
        if (in_body_)
            ++lines_;
        else if (blank_)
            in_body_ = true;   // the empty line ending the header block
        line_start_ = true;
        i = end + 1;
    }
    return n;
}

const char* verb_name(Verb v)
{
    for (const auto& i : kVerbs)
        if (i.verb == v)
            return i.name;
    return "?";
}

const char* parse_error_text(ParseError e)
{
    switch (e) {
    case ParseError::none: return "ok";
    case ParseError::empty: return "empty command";
    case ParseError::too_long: return "line too long";
    case ParseError::bad_bytes: return "bad characters in command";
    case ParseError::unknown_verb: return "unknown command";
    case ParseError::bad_syntax: return "syntax error";
    }
    return "error";
}

} // namespace mm::pop3
