// pop3_parse.h - the client side of the POP3 dialogue as pure functions over bytes:
// a command line split into verb and arguments, strict message numbers, and
// where TOP cuts a message.
// RFC 1939 (POP3), RFC 2449 (CAPA, 255-octet command lines). No sockets here.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mm::pop3 {

/// RFC 2449 4: a command line is at most 255 octets including the CRLF.
constexpr size_t kMaxCommandLine = 253;
/// RFC 1939 3: each argument may be up to 40 characters (PASS excepted).
constexpr size_t kMaxArgument = 40;

enum class Verb { user, pass, apop, auth, capa, quit, stat, list, uidl, retr, top, dele, rset, noop, stls };

enum class ParseError {
    none,
    empty,         // nothing on the line
    too_long,      // over kMaxCommandLine
    bad_bytes,     // control or non-ASCII bytes
    unknown_verb,
    bad_syntax,    // leading/double spaces, wrong number of arguments, argument too long
};

struct Command {
    ParseError error = ParseError::none;
    Verb verb = Verb::noop;
    std::vector<std::string> args;   // PASS: exactly one, the rest of the line verbatim
};

/// Splits one command line (without its CRLF). Verbs are case-insensitive;
/// each verb's argument count is checked against the command table.
Command parse_command(std::string_view line);

/// A message number as the client wrote it: digits only, no sign or spaces,
/// no overflow, 1..count. Returns false otherwise.
bool parse_msgnum(std::string_view s, uint64_t count, uint64_t& out);

/// A non-negative line count for TOP: digits only, no overflow.
bool parse_count(std::string_view s, uint64_t& out);

/// TOP's cut (RFC 1939 7) of a message as it streams by in chunks of any
/// size: the header block, the blank line ending it, then `body_lines` lines.
class TopCut {
public:
    explicit TopCut(uint64_t body_lines) : limit_(body_lines) {}
    /// How many bytes of [p, p+n) belong to the answer: all of them until the
    /// cut, then fewer, and done() is true.
    size_t take(const char* p, size_t n);
    bool done() const { return done_; }

private:
    uint64_t limit_, lines_ = 0;
    bool line_start_ = true, in_body_ = false, blank_ = false, done_ = false;
};

const char* verb_name(Verb v);
const char* parse_error_text(ParseError e);

} // namespace mm::pop3
