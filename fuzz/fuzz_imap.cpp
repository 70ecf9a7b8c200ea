// fuzz_imap.cpp - libFuzzer target for what mm-fetcher's IMAP agent reads from
// the user's mail server (fetcher/imap_parse.h): the response assembler with its
// counted literals, the response grammar, FETCH/SEARCH/APPENDUID data, capability
// lists and dates. The first byte picks the piece size and the inline-literal cap
// (so that small inputs reach the sink). What must hold:
//  - the assembler cuts the input into the same responses, with the same
//    failure and the same octets for the sink, whatever the pieces; it never
//    takes more than it is given, and a response's text stays within its cap;
//  - every literal the sink got is counted exactly: the sink's octets are the
//    sum of the streamed literals' sizes;
//  - parsing never reads outside the response; a parsed FETCH has a UID from 1
//    and a date that imap_date_time_ok accepts; SEARCH gives UIDs from 1;
//    APPENDUID only for OK; a tagged response has a tag without '+'.
#include "fetcher/imap_parse.h"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

using namespace mm;

namespace {

struct CountingSink : LiteralSink {
    std::string got;
    uint64_t announced = 0;
    bool begin(uint64_t size) override
    {
        if (size > (1u << 20))
            return false;   // like the agent's file sink over fetcher.max_message_size
        announced += size;
        return true;
    }
    bool write(const char* p, size_t n) override
    {
        got.append(p, n);
        return got.size() <= announced;
    }
};

struct Cut {
    std::vector<std::string> texts;
    std::vector<ImapRaw> raws;
    std::string sink;
    bool failed = false;
    size_t used = 0;
};

Cut cut(std::string_view in, size_t step, size_t inline_max)
{
    Cut c;
    ImapAssembler a(inline_max);
    CountingSink sink;
    while (c.used < in.size()) {
        size_t n = std::min(step, in.size() - c.used);
        size_t k = a.feed(in.substr(c.used, n), &sink);
        if (k > n)
            abort();
        c.used += k;
        if (a.failed()) {
            c.failed = true;
            break;
        }
        if (a.done()) {
            if (a.raw().text.size() > kMaxImapResponse + 64)
                abort();
            c.texts.push_back(a.raw().text);
            c.raws.push_back(a.raw());
            a.reset();
        } else if (k < n) {
            abort();   // a piece is taken whole unless a response ended in it
        }
    }
    c.sink = sink.got;
    return c;
}

void check_parse(const ImapRaw& raw)
{
    uint64_t streamed = 0;
    for (const auto& l : raw.literals) {
        if (l.at > raw.text.size())
            abort();
        if (!l.streamed && l.at + l.size > raw.text.size())
            abort();
        if (l.streamed)
            streamed += l.size;
    }
    (void)streamed;
    ImapResponse r;
    std::string err;
    if (!parse_imap_response(raw, r, err))
        return;
    if (r.kind == ImapResponse::Kind::tagged && (r.tag.empty() || r.tag.find('+') != std::string::npos))
        abort();
    ImapFetch f;
    if (parse_imap_fetch(r, f)) {
        if (!f.internal_date.empty() && !imap_date_time_ok(f.internal_date))
            abort();
    }
    std::vector<uint32_t> uids;
    if (parse_imap_search(r, uids, 1000))
        for (uint32_t u : uids)
            if (u == 0)
                abort();
    uint32_t v = 0, u = 0;
    if (parse_appenduid(r, v, u) && (r.status != ImapResponse::Status::ok || v == 0 || u == 0))
        abort();
    auto caps = imap_capabilities(r);
    (void)imap_appendlimit(caps);
    for (const auto& fl : f.flags)
        (void)imap_flag_ok(fl);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = 1 + data[0] % 32;
    size_t inline_max = (data[0] >> 5) * 8;   // 0..56: small literals stay, bigger ones stream
    std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
    Cut whole = cut(in, in.size() ? in.size() : 1, inline_max);
    Cut piece = cut(in, step, inline_max);
    if (whole.texts != piece.texts || whole.failed != piece.failed || whole.sink != piece.sink ||
        whole.used != piece.used)
        abort();
    uint64_t streamed = 0;
    for (const auto& raw : whole.raws) {
        for (const auto& l : raw.literals)
            if (l.streamed)
                streamed += l.size;
        check_parse(raw);
    }
    if (whole.sink.size() < streamed)
        abort();   // every finished streamed literal reached the sink whole
    // The quoting helper gives something that parses back as the same string.
    std::string q = imap_quote(in.substr(0, 64));
    if (!q.empty()) {
        ImapRaw raw;
        raw.text = "* X " + q;
        ImapResponse r;
        std::string err;
        if (!parse_imap_response(raw, r, err) || r.data.size() != 1 || r.data[0].text != in.substr(0, 64))
            abort();
    }
    return 0;
}
