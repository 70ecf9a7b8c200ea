// upstream_parse.h - the pure parsers of mm-fetcher's POP3 client (upstream.h):
// bytes in, no sockets (RFC 1939 3 and 4, RFC 2449, RFC 5034 for SASL steps).
// The status line (+OK/-ERR), the lines of a multi-line answer (LIST, UIDL,
// CAPA) with their terminator and dot-stuffing, LIST/UIDL listing lines, and the
// octets of a RETR/TOP answer fed in chunks of any size. fuzz/fuzz_upstream.cpp
// drives them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mm {

/// more: a SASL continuation ("+ ...") during AUTH (RFC 5034).
enum class Reply { ok, err, io, more };

/// A status line (without its line end): Reply::ok for "+OK...", Reply::err for
/// "-ERR...", with `text` what follows after one space; Reply::io for anything
/// else (a broken or hostile server). `text` is only set for ok and err.
Reply parse_status_line(std::string_view line, std::string& text);

/// A reply line during AUTH: as parse_status_line, and Reply::more for a
/// continuation "+ challenge" (or a bare "+"), `text` the challenge.
Reply parse_sasl_line(std::string_view line, std::string& text);

/// The lines of one multi-line answer, given one by one without their line ends:
/// take() returns false at the terminating "." (the line is not kept) and
/// otherwise keeps the line with one leading dot removed. At most `max_lines`
/// lines are kept; over() says the answer had more (the caller gives up).
class MultilineReader {
public:
    explicit MultilineReader(size_t max_lines) : max_(max_lines) {}
    bool take(std::string line, std::vector<std::string>& lines);
    bool over() const { return over_; }

private:
    size_t max_;
    bool over_ = false;
};

/// A LIST or UIDL line "NUM VALUE": NUM a message number from 1, VALUE the
/// non-empty rest after the first space.
bool parse_listing(std::string_view line, uint64_t& num, std::string& value);

/// The body of a RETR/TOP answer after its status line, in chunks as they come,
/// up to and with the terminating ".". Out comes the message with every line end
/// made CRLF (CRLF and bare LF alike; a lone CR is an octet like any other) and,
/// unless keep_stuffing, one dot removed from each line that starts with one.
/// The terminator is "." then CRLF, LF, or a CR not followed by LF.
class RetrDecoder {
public:
    explicit RetrDecoder(bool keep_stuffing = false) : keep_stuffing_(keep_stuffing) {}
    /// Takes octets of `in` up to the end of the answer and returns how many it
    /// took (all of them unless done() turns true within `in`); emit(p, n) gets
    /// the output in order.
    template <class Emit>
    size_t feed(std::string_view in, Emit&& emit);
    /// The terminator was read.
    bool done() const { return state_ == State::done; }
    /// The input ended here: whether that completes the answer (".\r" then end
    /// of input does; anything else broke off).
    bool complete_at_eof() const { return state_ == State::done || state_ == State::dot_cr; }

private:
    enum class State { line_start, mid_line, dot, dot_cr, done };
    State state_ = State::line_start;
    bool prev_cr_ = false;   // the last octet passed on was a CR
    bool keep_stuffing_;
};

template <class Emit>
size_t RetrDecoder::feed(std::string_view in, Emit&& emit)
{
    size_t i = 0;
    const size_t n = in.size();
    while (i < n && state_ != State::done) {
        switch (state_) {
        case State::dot_cr:
            if (in[i] == '\n')
                ++i;
            state_ = State::done;
            break;
        case State::dot:
            if (in[i] == '\r') {
                ++i;
                state_ = State::dot_cr;
            } else if (in[i] == '\n') {
                ++i;
                state_ = State::done;
            } else {
                // A stuffed dot: removed, or passed on as it came.
                if (keep_stuffing_) {
                    emit(".", 1);
                    prev_cr_ = false;
                }
                state_ = State::mid_line;
            }
            break;
        case State::line_start:
            if (in[i] == '.') {
                ++i;
                state_ = State::dot;
                break;
            }
            state_ = State::mid_line;
            [[fallthrough]];
        case State::mid_line: {
            size_t end = in.find('\n', i);
            size_t stop = end == std::string_view::npos ? n : end;
            if (stop > i) {
                emit(in.data() + i, stop - i);
                prev_cr_ = in[stop - 1] == '\r';
            }
            if (end == std::string_view::npos) {
                i = n;
                break;
            }
            if (prev_cr_)
                emit("\n", 1);
            else
                emit("\r\n", 2);   // bare LF: made CRLF
            prev_cr_ = false;
            state_ = State::line_start;
            i = end + 1;
            break;
        }
        case State::done:
            break;
        }
    }
    return i;
}

} // namespace mm
