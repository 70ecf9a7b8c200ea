// find_handles.h - the location parts of a message file (X-Media-Handle, format
// v1, handle.h) in order of appearance: how a receiver learns what to fetch, and
// how detach_message checks that its rewrite can be undone.
//
// Errors: exceptions. find_handles throws std::runtime_error on I/O failure; a
// location part whose handle does not parse is returned with its error.
#pragma once

#include "mime/handle.h"

#include <string>
#include <vector>

namespace mm {

/// One location part found in a message.
struct FoundHandle {
    HandleParse parsed;   // parsed.error != none: the part is left as it is
};

/// The location parts of the message at path, in order of appearance.
std::vector<FoundHandle> find_handles(const std::string& path);

} // namespace mm
