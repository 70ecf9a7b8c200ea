// fuzz_pop3.cpp - libFuzzer target for mm-fetcher's POP3 command parser
// (fetcher/pop3_parse.h, RFC 1939/2449). Checks the promises the session relies
// on: an accepted line is within the caps, and message numbers are in range.
#include "fetcher/pop3_parse.h"

#include <cstdint>
#include <cstdlib>
#include <string_view>

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
    return 0;
}
