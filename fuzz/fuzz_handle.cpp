// fuzz_handle.cpp - libFuzzer target for mm::parse_handle, the X-Media-Handle
// parser (docs/handle-format.md). Whatever it accepts must survive a round trip
// through format_handle_field, or a receiver could read a different handle.
#include "mime/handle.h"

#include <cstdint>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    std::string_view in(reinterpret_cast<const char*>(data), size);
    mm::HandleParse p = mm::parse_handle(in);
    if (p.error != mm::HandleError::none)
        return 0;
    // Only validated handles are ever sent, so only they must round-trip.
    std::string detail;
    if (mm::validate_handle(p.handle, detail) != mm::HandleError::none)
        return 0;
    std::string field = mm::format_handle_field(p.handle, "\r\n");
    std::string value = field.substr(field.find(':') + 1);
    mm::HandleParse again = mm::parse_handle(value);
    if (again.error != mm::HandleError::none || again.handle.url != p.handle.url ||
        again.handle.sha256 != p.handle.sha256 || again.handle.size != p.handle.size ||
        again.handle.name != p.handle.name || again.handle.headers != p.handle.headers ||
        again.handle.part_size != p.handle.part_size)
        abort();
    (void)mm::build_location_part(p.handle, "\n");
    return 0;
}
