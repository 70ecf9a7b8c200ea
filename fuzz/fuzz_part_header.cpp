// fuzz_part_header.cpp - libFuzzer target for mm::check_part_header, the strict
// check of the header block mm-fetcher puts back in place of a location part
// (mime/part_header.h). The first line of the input is the handle's type, the
// rest the block. Whatever passes must hold the promises the fetcher relies on:
// one empty line (at the end), no line starting "--", only printable US-ASCII.
#include "mime/part_header.h"

#include <cstdint>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    std::string_view in(reinterpret_cast<const char*>(data), size);
    size_t nl = in.find('\n');
    std::string_view type = nl == std::string_view::npos ? std::string_view("video/mp4") : in.substr(0, nl);
    std::string_view block = nl == std::string_view::npos ? in : in.substr(nl + 1);
    std::string detail;
    mm::PartHeaderError e = mm::check_part_header(block, type, detail);
    if (detail.size() > 64)
        abort();   // detail goes to logs: it must stay short and never carry input
    (void)mm::part_header_error_name(e);
    if (e != mm::PartHeaderError::none)
        return 0;
    const bool crlf = block.find("\r\n") != std::string_view::npos;
    const std::string_view eol = crlf ? "\r\n" : "\n";
    const std::string twice = std::string(eol) + std::string(eol);
    // Exactly one empty line, at the end.
    if (block.size() < twice.size() || block.substr(block.size() - twice.size()) != twice ||
        block.find(twice) != block.size() - twice.size())
        abort();
    if (block.substr(0, 2) == "--" || block.find(std::string(eol) + "--") < block.size() - twice.size())
        abort();
    for (char c : block) {
        auto u = static_cast<unsigned char>(c);
        if (u >= 0x7f || (u < 0x20 && u != '\t' && u != '\r' && u != '\n'))
            abort();
    }
    return 0;
}
