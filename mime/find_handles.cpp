// find_handles.cpp - the location parts of a message file (find_handles.h), found
// by the same walk that detach and reinsert use, so all three agree on them.
#include "mime/find_handles.h"

#include "mime/walk.h"

namespace mm {

std::vector<FoundHandle> find_handles(const std::string& path)
{
    walk::InFile in(path);
    auto parsed = walk::parse_file(path);
    std::vector<FoundHandle> out;
    for (auto& l : walk::locate(in, *parsed))
        out.push_back(FoundHandle{std::move(l.parsed)});
    return out;
}

} // namespace mm
