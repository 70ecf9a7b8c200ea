// smtp.h - the SMTP pieces of mm-milter's before-queue filter (RFC 5321): replies
// read with bounds and checked, the end of DATA and dot-unstuffing as a state
// machine over chunks of any size (dot-stuffing on the way out is mime/stream.h's
// DotEncoder, shared with mm-fetcher's RETR), and the top
// header block of a message split into lines as it streams by. No sockets here
// but through Stream, so the unit tests drive all of it with bad input.
#pragma once

#include "core/stream.h"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace mm::smtp {

constexpr size_t kMaxCommandLine = 4096;  // RFC 5321 says 512; Postfix's XFORWARD lines run longer
constexpr size_t kMaxReplyLine = 4096;
constexpr size_t kMaxReplyLines = 200;
constexpr size_t kMaxHeaderLine = 64 * 1024;  // one (folded) header field kept to look at

/// A reply: its code and the text of each line (after "NNN-" / "NNN ").
struct Reply {
    int code = 0;
    std::vector<std::string> lines;
    /// The reply as sent: every line but the last with "NNN-", the last "NNN ".
    std::string wire() const;
    bool positive() const { return code >= 200 && code < 400; }
};

enum class ReadResult { ok, bad, io };
/// Reads one reply. `bad`: a line that is not "NNN", "NNN text" or "NNN-text",
/// codes that differ between lines, a line over kMaxReplyLine or more than
/// kMaxReplyLines lines. `io`: the connection ended or timed out.
ReadResult read_reply(Stream& s, Reply& out);

/// The command's verb, upper-cased: "MAIL" for "mail FROM:<a>" (empty if none).
std::string verb(std::string_view line);

/// The address of "MAIL FROM:<a> ..." / "RCPT TO:<a> ...", without the brackets;
/// false when the line has no bracketed address after the colon.
bool path_argument(std::string_view line, std::string& address);

/// Drops the EHLO keywords the filter does not relay: CHUNKING (BDAT is not
/// implemented) and STARTTLS (TLS cannot pass a line-by-line relay).
void filter_ehlo(Reply& r);

/// DATA content in, message bytes out: stops at the line holding a single dot
/// (CRLF or bare LF), and removes the dot RFC 5321 4.5.2 adds to lines that
/// start with one.
class DotDecoder {
public:
    /// Appends the message bytes of [p, p+n) to out, up to the end-of-data
    /// line. Returns how many input bytes it used (all of them unless done()).
    size_t feed(const char* p, size_t n, std::string& out);
    bool done() const { return state_ == State::done; }

private:
    enum class State { line_start, dot, dot_cr, mid, done } state_ = State::line_start;
};

/// Splits the top header block of a message, as its bytes stream by, into
/// header fields (folded lines joined). Each field comes out with its raw
/// bytes; the blank line ends the block. A field over kMaxHeaderLine bytes is
/// reported with an empty name (too long to look at, still kept as is).
/// Not mm::parse_header_block (mime/header_block.h), on purpose: that one needs
/// the whole block in memory and leaves malformed lines out, while this one
/// sees the block in chunks as Postfix streams it and must pass every byte on
/// (the mail goes on to its recipients whatever its headers look like).
class HeaderSplitter {
public:
    struct Field {
        std::string name, value, raw;
    };
    /// Takes bytes until the end of the header block; returns how many it used.
    /// Complete fields are appended to `fields`, and the blank line's raw bytes
    /// (or the empty string, if the message has no body) to `end` once done().
    size_t feed(const char* p, size_t n, std::vector<Field>& fields);
    /// The input ended: whatever field is pending becomes the last.
    void finish(std::vector<Field>& fields);
    bool done() const { return done_; }
    const std::string& end() const { return end_; }

private:
    void emit(std::vector<Field>& fields);
    std::string field_;   // the field being collected (raw, folded lines included)
    bool overlong_ = false;
    std::string line_;    // the current physical line
    bool done_ = false;
    std::string end_;
};

} // namespace mm::smtp
