// fuzz_pop3.cpp - libFuzzer target for mm-fetcher's POP3 pieces: the command
// parser (fetcher/pop3_parse.h, RFC 1939/2449), TOP's cut and the dot-stuffing
// of RETR (core/stream.h). Checks the promises the session relies on: an
// accepted line is within the caps, message numbers are in range, the cut and
// the stuffing do not depend on where the message is split into chunks, and
// stuffing is undone by removing one dot at each line start.
#include "fetcher/pop3_parse.h"
#include "core/stream.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

/// TOP's answer for `lines` body lines, with the message fed in chunks of `step`.
std::string top(std::string_view m, uint64_t lines, size_t step)
{
    mm::pop3::TopCut cut(lines);
    std::string out;
    for (size_t i = 0; i < m.size() && !cut.done(); i += step) {
        size_t n = std::min(step, m.size() - i);
        size_t k = cut.take(m.data() + i, n);
        if (k > n || (k < n && !cut.done()))
            abort();
        out.append(m.substr(i, k));
    }
    return out;
}

void check_retr(std::string_view m, size_t step)
{
    mm::DotEncoder whole, chunked;
    std::string a, b;
    whole.feed(m.data(), m.size(), a);
    whole.finish(a);
    for (size_t i = 0; i < m.size(); i += step)
        chunked.feed(m.data() + i, std::min(step, m.size() - i), b);
    chunked.finish(b);
    if (a != b)
        abort();
    // Undo: the terminating line, the CRLF added before it, one dot per line start.
    if (a.size() < 3 || a.compare(a.size() - 3, 3, ".\r\n") != 0)
        abort();
    a.resize(a.size() - 3);
    if (!m.empty() && m.back() != '\n') {
        if (a.size() < 2 || a.compare(a.size() - 2, 2, "\r\n") != 0)
            abort();
        a.resize(a.size() - 2);
    }
    std::string back;
    for (size_t i = 0; i < a.size(); ++i) {
        if ((i == 0 || a[i - 1] == '\n') && a[i] == '.') {
            if (i + 1 >= a.size() || a[i + 1] != '.')
                abort();   // a line-start dot that was not doubled
            ++i;
        }
        back += a[i];
    }
    if (back != m)
        abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    std::string_view in(reinterpret_cast<const char*>(data), size);
    mm::pop3::Command c = mm::pop3::parse_command(in);
    if (c.error == mm::pop3::ParseError::none) {
        if (in.size() > mm::pop3::kMaxCommandLine)
            abort();
        (void)mm::pop3::verb_name(c.verb);
    }
    (void)mm::pop3::parse_error_text(c.error);
    // The first byte picks the mailbox size, so numbers near the bound get tried.
    uint64_t count = size ? data[0] : 0, n = 0;
    std::string_view rest = size ? in.substr(1) : in;
    if (mm::pop3::parse_msgnum(rest, count, n) && (n < 1 || n > count))
        abort();
    (void)mm::pop3::parse_count(rest, n);

    // The rest as a message: the first byte picks the chunk size and TOP's line count.
    const size_t step = count % 13 + 1;
    const uint64_t lines = count % 5;
    std::string whole = top(rest, lines, rest.size() + 1);
    if (top(rest, lines, step) != whole || rest.substr(0, whole.size()) != whole)
        abort();
    check_retr(rest, step);
    return 0;
}
