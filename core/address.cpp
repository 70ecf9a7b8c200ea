// address.cpp - the one address normaliser (address.h).
#include "core/address.h"

namespace mm {

namespace {

std::string_view trim_blanks(std::string_view v)
{
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
        v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t'))
        v.remove_suffix(1);
    return v;
}

} // namespace

std::string normalize_address(std::string_view v)
{
    size_t lt = v.rfind('<');
    if (lt != std::string_view::npos) {
        size_t gt = v.find('>', lt);
        if (gt == std::string_view::npos)
            return "";
        // Only "Name <addr>" or "<addr>": no second bracket before, nothing after.
        if (v.substr(0, lt).find_first_of("<>") != std::string_view::npos || !trim_blanks(v.substr(gt + 1)).empty())
            return "";
        v = v.substr(lt + 1, gt - lt - 1);
    }
    v = trim_blanks(v);
    size_t at = v.rfind('@');
    if (v.empty() || v.size() > kMaxAddress || at == std::string_view::npos || at == 0 || at + 1 == v.size())
        return "";
    std::string out;
    out.reserve(v.size());
    for (unsigned char c : v) {
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '<' || c == '>' || c == '(' || c == ')' || c == ',' ||
            c == ';' || c == '\\')
            return "";
        out.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
    }
    return out;
}

} // namespace mm
