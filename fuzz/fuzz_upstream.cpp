// fuzz_upstream.cpp - libFuzzer target for what mm-fetcher reads from the real
// POP3 server (fetcher/upstream_parse.h): status and SASL reply lines, the lines
// of a multi-line answer (LIST, UIDL, CAPA) with their terminator and
// dot-stuffing, LIST/UIDL listing lines, and RETR/TOP bodies. The first byte
// picks the piece size (every split of the input into reads is tried) and the
// line cap of the multi-line reader. What must hold:
//  - a status line is ok/err exactly when it starts +OK/-ERR, and its text is
//    the line's own tail; a SASL line is "more" exactly for "+ ..." and "+";
//  - the multi-line reader keeps at most its cap, each kept line is its input
//    with one leading dot less, and it stops at the first lone ".";
//  - an accepted listing line has a number from 1 and a non-empty value that
//    is the line's tail;
//  - the RETR decoder gives the same octets and stops at the same place whatever
//    the pieces, and the same as a byte-at-a-time reference (the earlier
//    getc/peek loop of upstream.cpp); its output has CRLF line ends only, and
//    keeping the stuffing then removing it gives the unstuffed output.
#include "fetcher/upstream_parse.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

using namespace mm;

namespace {

struct Decoded {
    std::string out;
    size_t used = 0;
    bool done = false, eof_ok = false;
};

Decoded decode(std::string_view in, size_t step, bool keep)
{
    RetrDecoder d(keep);
    Decoded r;
    auto emit = [&r](const char* p, size_t n) { r.out.append(p, n); };
    while (r.used < in.size() && !d.done()) {
        size_t n = std::min(step, in.size() - r.used);
        size_t k = d.feed(in.substr(r.used, n), emit);
        if (k > n || (k < n && !d.done()))
            abort();   // a piece is taken whole unless the answer ended in it
        r.used += k;
    }
    r.done = d.done();
    r.eof_ok = d.complete_at_eof();
    return r;
}

/// The reference: one octet at a time with one octet of look-ahead.
Decoded reference(std::string_view in, bool keep)
{
    Decoded r;
    size_t i = 0;
    auto get = [&]() -> int { return i < in.size() ? static_cast<unsigned char>(in[i++]) : -1; };
    auto peek = [&]() -> int { return i < in.size() ? static_cast<unsigned char>(in[i]) : -1; };
    bool line_start = true;
    for (;;) {
        int c = get();
        if (c < 0)
            break;
        if (line_start && c == '.') {
            int d = peek();
            if (d < 0)
                break;   // what the dot is depends on the next octet: nothing passed on yet
            if (d == '\r' || d == '\n') {
                get();
                // "." CR LF, "." LF, or "." CR and something else: the end. "." CR
                // at the end of the input is an end only if nothing more comes.
                r.eof_ok = true;
                if (d == '\r' && peek() == '\n')
                    get();
                r.done = d == '\n' || in[i - 1] == '\n' || i < in.size();
                break;
            }
            line_start = false;
            if (!keep)
                continue;
        }
        line_start = false;
        if (c == '\n' || (c == '\r' && peek() == '\n')) {
            if (c == '\r')
                get();
            r.out += "\r\n";
            line_start = true;
        } else {
            r.out.push_back(static_cast<char>(c));
        }
    }
    r.used = i;
    return r;
}

void check_retr(std::string_view in, size_t step)
{
    Decoded whole = decode(in, in.size() ? in.size() : 1, false);
    Decoded piece = decode(in, step, false);
    if (whole.out != piece.out || whole.used != piece.used || whole.done != piece.done)
        abort();
    Decoded ref = reference(in, false);
    if (ref.out != whole.out || ref.used != whole.used || ref.done != whole.done || ref.eof_ok != whole.eof_ok)
        abort();
    for (size_t k = 0; k < whole.out.size(); ++k)
        if (whole.out[k] == '\n' && (k == 0 || whole.out[k - 1] != '\r'))
            abort();   // a bare LF got through
    Decoded kept = decode(in, step, true);
    if (kept.used != whole.used || kept.done != whole.done || kept.out.size() < whole.out.size())
        abort();
    Decoded kept_ref = reference(in, true);
    if (kept_ref.out != kept.out)
        abort();
    if (whole.done) {
        // The stuffed copy, terminated, decodes to the unstuffed one.
        Decoded again = decode(kept.out + ".\r\n", step, false);
        if (!again.done || again.out != whole.out)
            abort();
    }
}

std::vector<std::string> split_lines(std::string_view in)
{
    std::vector<std::string> lines;
    size_t pos = 0;
    while (pos < in.size()) {
        size_t nl = in.find('\n', pos);
        size_t end = nl == std::string_view::npos ? in.size() : nl;
        std::string l(in.substr(pos, end - pos));
        if (!l.empty() && l.back() == '\r')
            l.pop_back();
        lines.push_back(std::move(l));
        pos = end + 1;
    }
    return lines;
}

void check_lines(const std::vector<std::string>& lines, size_t cap)
{
    for (const auto& l : lines) {
        std::string text = "unset";
        Reply r = parse_status_line(l, text);
        bool ok = l.rfind("+OK", 0) == 0, err = l.rfind("-ERR", 0) == 0;
        if ((r == Reply::ok) != ok || (r == Reply::err) != err || r == Reply::more)
            abort();
        if ((ok || err) && (text.size() >= l.size() || l.compare(l.size() - text.size(), text.size(), text) != 0))
            abort();   // the text is the line's own tail
        Reply s = parse_sasl_line(l, text);
        bool more = l == "+" || l.rfind("+ ", 0) == 0;
        if ((s == Reply::more) != more || (!more && s != r))
            abort();
        uint64_t num = 0;
        std::string value;
        if (parse_listing(l, num, value)) {
            size_t sp = l.find(' ');
            if (num == 0 || value.empty() || sp == std::string::npos || l.substr(sp + 1) != value ||
                std::to_string(num).size() > sp)
                abort();
        }
    }
    MultilineReader reader(cap);
    std::vector<std::string> kept;
    size_t i = 0;
    for (; i < lines.size(); ++i) {
        if (!reader.take(lines[i], kept))
            break;
        if (reader.over())
            break;
    }
    if (kept.size() > cap || (i < lines.size() && !reader.over() && lines[i] != "."))
        abort();
    for (size_t k = 0; k < kept.size(); ++k) {
        const std::string& l = lines[k];
        std::string want = !l.empty() && l[0] == '.' ? l.substr(1) : l;
        if (kept[k] != want || l == ".")
            abort();
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = 1 + data[0] % 64;
    size_t cap = data[0] >> 4;
    std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
    check_retr(in, step);
    check_lines(split_lines(in), cap);
    return 0;
}
