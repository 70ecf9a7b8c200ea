// fuzz_mime.cpp - libFuzzer target for the MIME engine: detach_message
// (mime/detach.h), find_handles (find_handles.h) and reinsert_media (reinsert.h)
// over a message file on tmpfs. Oracle: when the engine reports a regular
// layout, re-inserting gives back the original exactly; and reinsert_layout()
// foretells every re-insertion's size and line ends.
// MM_FUZZ_ROUNDTRIP=0 turns that check off (then only crashes count).
#include "fuzz_common.h"

#include "mime/find_handles.h"
#include "mime/reinsert.h"

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <stdexcept>

namespace {

/// reinsert_layout() of `in` must give the size (and, when known, the line
/// ends) of the re-insertion already written to `back`: mm-fetcher lists a
/// streamed message with that size before any media arrive.
void check_layout(const std::string& in, const std::vector<bool>& replace, const std::string& back, const bool* crlf)
{
    mm::ReinsertLayout lay;
    std::string err;
    if (!mm::reinsert_layout(in, replace, lay, err))
        abort();
    if (lay.size != mmfuzz::read_bytes(back).size() || (crlf && lay.crlf_clean != *crlf))
        abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    static const bool roundtrip = [] {
        const char* e = getenv("MM_FUZZ_ROUNDTRIP");
        return !e || std::string(e) != "0";
    }();
    if (size < 1)
        return 0;
    // The first byte picks the policy, the rest is the message.
    mm::DetachPolicy policy;
    policy.min_size = (data[0] & 1) ? 1 : 64;
    if (data[0] & 2)
        policy.types = {"*/*"};
    policy.sniff = (data[0] & 4) != 0;
    ++data;
    --size;

    const std::string& dir = mmfuzz::scratch();
    const std::string in = dir + "/in.eml", out = dir + "/out.eml", back = dir + "/back.eml";
    mmfuzz::write_bytes(in, data, size);
    unlink(out.c_str());

    // Location parts in arbitrary input (a hostile mail at the receiver).
    auto found_in = mm::find_handles(in);
    std::string err;
    std::vector<std::string> none(found_in.size());
    if (mm::reinsert_media(in, none, back, err))
        check_layout(in, std::vector<bool>(found_in.size(), false), back, nullptr);

    mmfuzz::FileSink sink;
    mm::DetachResult r;
    try {
        r = mm::detach_message(in, out, policy, sink);
    } catch (const std::runtime_error&) {
        return 0;   // an I/O or sink error is a tempfail, not a bug
    }
    if (r.detached == 0)
        return 0;
    if (r.detached != sink.files.size() || r.handles.size() != r.detached)
        abort();
    auto found = mm::find_handles(out);
    if (found.size() != sink.files.size())
        abort();   // the receiver would not find what the sender wrote
    for (const auto& f : found)
        if (f.parsed.error != mm::HandleError::none)
            abort();
    {
        std::vector<std::unique_ptr<mm::MediaInput>> files;
        std::vector<mm::MediaInput*> inputs;
        for (const auto& f : sink.files) {
            files.push_back(mm::open_media_file(f));
            inputs.push_back(files.back().get());
        }
        bool crlf = false;
        if (!mm::reinsert_media(out, inputs, back, err, &crlf))
            abort();
        check_layout(out, std::vector<bool>(found.size(), true), back, &crlf);
    }
    if (roundtrip && r.skipped_why.empty()) {
        std::string original(reinterpret_cast<const char*>(data), size);
        size_t nl = original.find('\n');
        std::string eol = (nl == std::string::npos || (nl > 0 && original[nl - 1] == '\r')) ? "\r\n" : "\n";
        if (mmfuzz::read_bytes(back) != "X-Media-Handles: " + std::to_string(r.detached) + eol + original)
            abort();   // "nothing altered" broken
    }
    return 0;
}
