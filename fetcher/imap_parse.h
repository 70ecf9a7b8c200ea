// imap_parse.h - the pure parsers of mm-fetcher's IMAP client (imap_client.h):
// bytes in, no sockets (RFC 9051 / RFC 3501 section 7 and the formal syntax,
// RFC 4315 UIDPLUS codes, RFC 7889 APPENDLIMIT). ImapAssembler cuts the server's
// octets into responses, counting literals rather than buffering them whole: a
// small literal stays in the response, a large one (a message body) goes to a
// LiteralSink as it comes. parse_imap_response() turns one response into its
// tag, status, response code and data values. fuzz/fuzz_imap.cpp drives them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mm {

/// Caps on what the server may send us. One response's text with its small
/// literals inline (a UID SEARCH answer of 100,000 UIDs is about 700 KB);
/// literals above kMaxImapInlineLiteral go to a sink or fail the response;
/// parenthesised lists nest at most kMaxImapDepth deep.
constexpr size_t kMaxImapResponse = 2u << 20;
constexpr size_t kMaxImapInlineLiteral = 64 * 1024;
constexpr unsigned kMaxImapDepth = 16;

/// Where a large literal's octets go (a message fetched with BODY.PEEK[]).
class LiteralSink {
public:
    virtual ~LiteralSink() = default;
    /// A literal of `size` octets starts; false refuses it (the response fails).
    virtual bool begin(uint64_t size) = 0;
    virtual bool write(const char* p, size_t n) = 0;
};

/// One response as it came: its text without the final CRLF, small literals
/// in place after their "{N}\r\n", a large one's octets left out.
struct ImapRaw {
    struct Literal {
        size_t at = 0;        // offset in text just after "{N}\r\n"
        uint64_t size = 0;
        bool streamed = false;   // its octets went to the sink, not into text
    };
    std::string text;
    std::vector<Literal> literals;
};

/// Cuts the server's octets into responses. Lines must end in CRLF; a line
/// ending "{N}" or "{N+}" announces N octets of literal, then the response
/// goes on. Anything over the caps, a bare LF, or a refused literal fails
/// the response: the caller hangs up (an IMAP dialogue cannot be resynchronised
/// past an unread literal).
class ImapAssembler {
public:
    /// `inline_max`: literals up to this size stay in the response (tests and
    /// the fuzzer make it small to reach the sink with small inputs).
    explicit ImapAssembler(size_t inline_max = kMaxImapInlineLiteral) : inline_max_(inline_max) {}
    /// Takes octets of `in` up to the end of one response and returns how many
    /// it took. `sink` (may be null) gets literals over kMaxImapInlineLiteral.
    size_t feed(std::string_view in, LiteralSink* sink);
    bool done() const { return state_ == State::done; }
    bool failed() const { return state_ == State::failed; }
    const std::string& error() const { return error_; }
    const ImapRaw& raw() const { return raw_; }
    /// Ready for the next response.
    void reset();

private:
    enum class State { line, cr, literal, done, failed };
    bool fail(std::string why);
    bool end_of_line();
    State state_ = State::line;
    ImapRaw raw_;
    size_t seg_start_ = 0;     // where the current line (after a literal) starts in text
    uint64_t left_ = 0;        // literal octets still to come
    bool streaming_ = false;   // the current literal goes to the sink
    LiteralSink* sink_ = nullptr;
    std::string error_;
    size_t inline_max_;
};

/// A data value: an atom (also numbers, flags such as "\Seen", and
/// "BODY[HEADER.FIELDS (MESSAGE-ID)]"), a string (quoted or literal), NIL,
/// a parenthesised list, or a literal that went to the sink (its size only).
struct ImapValue {
    enum class Kind { atom, string, nil, list, streamed };
    Kind kind = Kind::nil;
    std::string text;
    std::vector<ImapValue> items;
    uint64_t size = 0;
};

/// One response, parsed.
struct ImapResponse {
    enum class Kind { tagged, untagged, continuation };
    enum class Status { none, ok, no, bad, bye, preauth };
    Kind kind = Kind::untagged;
    std::string tag;                 // tagged only
    Status status = Status::none;    // OK/NO/BAD (and BYE/PREAUTH untagged); none for data
    std::string code;                // response code name, upper case ("APPENDUID"); "" none
    std::vector<std::string> code_args;   // its arguments, split at spaces
    std::string text;                // human-readable text (status and continuation)
    /// Untagged data: the name in upper case ("CAPABILITY", "SEARCH",
    /// "EXISTS", "EXPUNGE", "FETCH", "FLAGS", "LIST", ...), the message
    /// number before EXISTS/EXPUNGE/FETCH/RECENT, and the values after the name.
    std::string name;
    uint64_t number = 0;
    std::vector<ImapValue> data;
};

/// Parses one assembled response. False with `err` set when it does not follow
/// the grammar (a broken or hostile server).
bool parse_imap_response(const ImapRaw& raw, ImapResponse& out, std::string& err);

/// What a FETCH response says about one message (RFC 9051 7.5.2).
struct ImapFetch {
    uint32_t uid = 0;                 // 0: not given
    bool has_flags = false;
    std::vector<std::string> flags;   // as the server spelt them
    std::string internal_date;        // "" unless a valid date-time (imap_date_time_ok)
    uint64_t size = 0;                // RFC822.SIZE
    bool has_size = false;
    std::string header;               // a BODY[HEADER.FIELDS ...] value (small)
    bool body_streamed = false;       // BODY[] went to the sink
    bool has_body = false;            // BODY[] was given (streamed, or inline in `body`)
    std::string body;                 // BODY[] when small enough to stay in the response
    uint64_t body_size = 0;
};

/// The message attributes of a parsed "* N FETCH (...)". False when the
/// response is not one, or an attribute we read is malformed.
bool parse_imap_fetch(const ImapResponse& r, ImapFetch& out);

/// The UIDs of "* SEARCH n n ...": each a number from 1 to 2^32-1. False on
/// anything else, or more than `max` of them.
bool parse_imap_search(const ImapResponse& r, std::vector<uint32_t>& uids, size_t max);

/// RFC 4315 "[APPENDUID uidvalidity uid]" of a tagged OK: false if not one.
bool parse_appenduid(const ImapResponse& r, uint32_t& uidvalidity, uint32_t& uid);

/// The capabilities of "* CAPABILITY ..." or "[CAPABILITY ...]", upper case.
std::vector<std::string> imap_capabilities(const ImapResponse& r);

/// Whether `caps` has `name` (upper case).
bool imap_has(const std::vector<std::string>& caps, std::string_view name);

/// RFC 7889 "APPENDLIMIT=N" (0: none given or not a number; a bare APPENDLIMIT
/// means per-mailbox limits, which we do not ask for: also 0).
uint64_t imap_appendlimit(const std::vector<std::string>& caps);

/// Whether `s` is an IMAP date-time as INTERNALDATE gives it and APPEND takes
/// it: "dd-Mon-yyyy hh:mm:ss +hhmm" (day may be space-padded), nothing else.
bool imap_date_time_ok(std::string_view s);

/// Whether a flag may be given to APPEND: a system flag other than \Recent,
/// or a keyword atom (RFC 9051 flag-keyword).
bool imap_flag_ok(std::string_view flag);

/// `s` as a quoted string, or "" when it cannot be one (CR, LF, NUL, or 8-bit:
/// the caller then sends a literal).
std::string imap_quote(std::string_view s);

} // namespace mm
