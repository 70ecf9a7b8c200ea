// upstream_parse.cpp - pure parsers of the POP3 client towards the real server
// (upstream_parse.h): status lines, multi-line answers, listing lines. RETR's
// decoder is a template in the header.
#include "fetcher/upstream_parse.h"

#include "core/config.h"

namespace mm {

namespace {

bool starts(std::string_view s, std::string_view p)
{
    return s.substr(0, p.size()) == p;
}

/// What follows the status word and one space ("+OK text" -> "text").
std::string after(std::string_view line, size_t word)
{
    return line.size() > word + 1 ? std::string(line.substr(word + 1)) : std::string();
}

} // namespace

Reply parse_status_line(std::string_view line, std::string& text)
{
    if (starts(line, "+OK")) {
        text = after(line, 3);
        return Reply::ok;
    }
    if (starts(line, "-ERR")) {
        text = after(line, 4);
        return Reply::err;
    }
    return Reply::io;
}

Reply parse_sasl_line(std::string_view line, std::string& text)
{
    if (starts(line, "+ ") || line == "+") {
        text = after(line, 1);
        return Reply::more;
    }
    return parse_status_line(line, text);
}

bool MultilineReader::take(std::string line, std::vector<std::string>& lines)
{
    if (line == ".")
        return false;
    if (lines.size() >= max_) {
        over_ = true;
        return true;   // not kept; the caller stops reading
    }
    if (!line.empty() && line[0] == '.')
        line.erase(0, 1);
    lines.push_back(std::move(line));
    return true;
}

bool parse_listing(std::string_view line, uint64_t& num, std::string& value)
{
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos || !parse_u64(line.substr(0, sp), num) || num == 0)
        return false;
    value = std::string(line.substr(sp + 1));
    return !value.empty();
}

} // namespace mm
