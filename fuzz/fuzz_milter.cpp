// fuzz_milter.cpp - libFuzzer target for mm-milter's rewrite path: the input is
// cut into header fields and a body the way libmilter hands them over, spooled
// exactly as milter/milter.cpp spools them (Name: value CRLF, CRLF, body), then
// detached into a sink that hashes and discards. The milter keeps Postfix's
// headers and replaces only the body from out_body_offset, so the engine must
// leave the header block alone: that is checked.
#include "fuzz_common.h"

#include "mime/prescan.h"

#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace {

/// The spool file's bytes for a raw message: header fields unfolded into
/// (name, value) as the MTA sends them, each value's LF turned into CRLF.
std::string spool_of(std::string_view raw, size_t& header_block)
{
    size_t end = raw.find("\n\n");
    size_t end_crlf = raw.find("\r\n\r\n");
    size_t hdr_len, body_at;
    if (end_crlf != std::string_view::npos && (end == std::string_view::npos || end_crlf < end)) {
        hdr_len = end_crlf;
        body_at = end_crlf + 4;
    } else if (end != std::string_view::npos) {
        hdr_len = end;
        body_at = end + 2;
    } else {
        hdr_len = raw.size();
        body_at = raw.size();
    }
    std::string spool;
    std::string_view hdr = raw.substr(0, hdr_len);
    std::string name, value;
    bool have = false;
    auto flush = [&] {
        if (!have)
            return;
        std::string line = name + ": ";
        for (size_t i = 0; i < value.size(); ++i) {
            if (value[i] == '\n' && (i == 0 || value[i - 1] != '\r'))
                line += '\r';
            line += value[i];
        }
        spool += line + "\r\n";
        have = false;
    };
    while (!hdr.empty()) {
        size_t nl = hdr.find('\n');
        std::string_view line = hdr.substr(0, nl);
        hdr = nl == std::string_view::npos ? std::string_view() : hdr.substr(nl + 1);
        if (!line.empty() && line.back() == '\r')
            line.remove_suffix(1);
        if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
            if (have)
                value += "\n" + std::string(line);
            continue;
        }
        flush();
        size_t colon = line.find(':');
        if (colon == 0 || colon == std::string_view::npos)
            continue;   // Postfix would not pass this on as a header
        name = std::string(line.substr(0, colon));
        std::string_view v = line.substr(colon + 1);
        if (!v.empty() && v[0] == ' ')
            v.remove_prefix(1);
        value = std::string(v);
        have = true;
    }
    flush();
    spool += "\r\n";
    header_block = spool.size();
    spool.append(raw.substr(body_at));
    return spool;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    size_t header_block = 0;
    std::string spool = spool_of(std::string_view(reinterpret_cast<const char*>(data), size), header_block);
    const std::string& dir = mmfuzz::scratch();
    const std::string in = dir + "/spool", out = dir + "/spool.out";
    mmfuzz::write_bytes(in, reinterpret_cast<const uint8_t*>(spool.data()), spool.size());
    unlink(out.c_str());

    mm::DetachPolicy policy;   // the milter's defaults, but small enough for fuzz inputs
    policy.min_size = 1;
    mmfuzz::HashSink sink;
    mm::DetachResult r;
    try {
        r = mm::detach_message(in, out, policy, sink);
    } catch (const std::runtime_error&) {
        return 0;   // the milter tempfails: fine
    }
    // The milter also decodes while the body arrives (mime/prescan.h): fed in
    // pieces of a size taken from the input, that must change nothing at all.
    {
        std::string first = r.detached ? mmfuzz::read_bytes(out) : std::string();
        const std::string out2 = dir + "/spool.out2";
        unlink(out2.c_str());
        mmfuzz::HashSink sink2;
        std::vector<mm::Predecoded> pre;
        {
            mm::Prescanner scan(policy, sink2);
            size_t piece = 1 + (size ? data[0] % 97 : 0);
            for (size_t i = 0; i < spool.size(); i += piece)
                scan.feed(spool.data() + i, std::min(piece, spool.size() - i));
            pre = scan.finish();
        }
        mm::DetachResult r2;
        try {
            r2 = mm::detach_message(in, out2, policy, sink2, &pre);
        } catch (const std::runtime_error&) {
            abort();   // the same bytes decoded without prescan did not fail
        }
        if (r2.detached != r.detached || r2.skipped_why != r.skipped_why ||
            (r.detached && mmfuzz::read_bytes(out2) != first))
            abort();   // prescanning changed the result
    }
    if (r.detached == 0)
        return 0;
    std::string rewritten = mmfuzz::read_bytes(out);
    if (r.out_body_offset > rewritten.size() || r.out_size != rewritten.size())
        abort();   // replace_body would send garbage or nothing
    std::string prefix = "X-Media-Handles: " + std::to_string(r.detached) + "\r\n";
    std::string headers = spool.substr(0, header_block);
    if (rewritten.compare(0, r.out_body_offset, prefix + headers) != 0)
        abort();   // the engine changed a header the milter cannot change
    return 0;
}
