// fuzz_smtp.cpp - libFuzzer target for the SMTP pieces of mm-milter's
// before-queue filter (milter/smtp.h): DATA framing, dot-stuffing, the top
// header block and replies. The first byte picks the piece size, so every
// split of the input into reads is tried; what must hold:
//  - the decoder gives the same bytes and stops at the same place whatever
//    the pieces;
//  - stuffing a message and unstuffing it gives the message back;
//  - the header splitter keeps every byte: its fields' raw bytes and the blank
//    line are the input it took, and the fields do not depend on the pieces;
//  - a reply that reads as valid writes back as a reply that reads the same.
#include "milter/smtp.h"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <sys/socket.h>
#include <unistd.h>

using namespace mm::smtp;

namespace {

std::string decode(std::string_view in, size_t step, size_t& used, bool& done)
{
    DotDecoder d;
    std::string out;
    used = 0;
    while (used < in.size() && !d.done())
        used += d.feed(in.data() + used, std::min(step, in.size() - used), out);
    done = d.done();
    return out;
}

struct Split {
    std::vector<HeaderSplitter::Field> fields;
    size_t used = 0;
    bool done = false;
    std::string end;
};

Split split(std::string_view in, size_t step)
{
    HeaderSplitter h;
    Split s;
    while (s.used < in.size() && !h.done())
        s.used += h.feed(in.data() + s.used, std::min(step, in.size() - s.used), s.fields);
    if (!h.done())
        h.finish(s.fields);
    s.done = h.done();
    s.end = h.end();
    return s;
}

void check_reply(std::string_view in)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        abort();
    // Inputs are at most a few KiB (run.sh's max_len): they fit the socket buffer.
    if (!in.empty() && write(sv[1], in.data(), in.size()) != static_cast<ssize_t>(in.size()))
        abort();
    close(sv[1]);
    mm::Stream s(sv[0]);
    Reply r;
    while (read_reply(s, r) == ReadResult::ok) {
        if (r.code < 200 || r.code > 599 || r.lines.empty())
            abort();
        std::string wire = r.wire();
        int sv2[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv2) != 0)
            abort();
        if (write(sv2[1], wire.data(), wire.size()) != static_cast<ssize_t>(wire.size()))
            abort();
        close(sv2[1]);
        mm::Stream s2(sv2[0]);
        Reply again;
        if (read_reply(s2, again) != ReadResult::ok || again.code != r.code || again.lines != r.lines)
            abort();
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    if (size == 0)
        return 0;
    size_t step = data[0] % 64 + 1;
    std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);

    size_t used_whole = 0, used_step = 0;
    bool done_whole = false, done_step = false;
    std::string whole = decode(in, in.size() + 1, used_whole, done_whole);
    std::string stepped = decode(in, step, used_step, done_step);
    if (whole != stepped || used_whole != used_step || done_whole != done_step)
        abort();

    mm::DotEncoder enc;
    std::string wire;
    for (size_t i = 0; i < in.size(); i += step)
        enc.feed(in.data() + i, std::min(step, in.size() - i), wire);
    enc.finish(wire);
    size_t used = 0;
    bool done = false;
    std::string back = decode(wire, step, used, done);
    bool ends_in_break = !in.empty() && in.back() == '\n';
    if (!done || used != wire.size() || back != (in.empty() || ends_in_break ? std::string(in) : std::string(in) + "\r\n"))
        abort();

    Split a = split(in, step), b = split(in, in.size() + 1);
    std::string raw;
    for (const auto& f : a.fields)
        raw += f.raw;
    if (raw + a.end != in.substr(0, a.used) || a.used != b.used || a.done != b.done)
        abort();
    // Field boundaries and names may differ only where a field was too long to look at.
    if (in.size() < kMaxHeaderLine) {
        if (a.fields.size() != b.fields.size())
            abort();
        for (size_t i = 0; i < a.fields.size(); ++i)
            if (a.fields[i].raw != b.fields[i].raw || a.fields[i].name != b.fields[i].name ||
                a.fields[i].value != b.fields[i].value)
                abort();
    }

    check_reply(in);
    return 0;
}
