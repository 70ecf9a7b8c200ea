// auth_results.cpp - Authentication-Results (RFC 8601 section 2.2) read strictly
// enough to trust: a value that does not follow the grammar vouches for nothing.
#include "fetcher/auth_results.h"

#include "core/address.h"
#include "mime/header_block.h"

namespace mm {

namespace {

char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string lowered(std::string_view s)
{
    std::string out(s);
    for (char& c : out)
        c = lower(c);
    return out;
}

bool token_char(char c)
{
    auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f && std::string_view("()<>@,;:\\\"/[]?=").find(c) == std::string_view::npos;
}

bool keyword_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/// A cursor over the value with RFC 5322 CFWS skipping (nested comments, bounded).
struct Cursor {
    std::string_view s;
    size_t i = 0;
    bool bad = false;

    bool end() const { return i >= s.size(); }
    char peek() const { return end() ? '\0' : s[i]; }

    void cfws()
    {
        for (;;) {
            while (!end() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
                ++i;
            if (peek() != '(')
                return;
            int depth = 0;
            while (!end()) {
                char c = s[i++];
                if (c == '\\') {
                    if (end()) {
                        bad = true;
                        return;
                    }
                    ++i;
                } else if (c == '(') {
                    if (++depth > 8) {
                        bad = true;
                        return;
                    }
                } else if (c == ')') {
                    if (--depth == 0)
                        break;
                }
            }
            if (depth != 0) {
                bad = true;
                return;
            }
        }
    }

    bool eat(char c)
    {
        if (peek() != c)
            return false;
        ++i;
        return true;
    }

    std::string keyword()
    {
        size_t a = i;
        while (!end() && keyword_char(s[i]))
            ++i;
        return std::string(s.substr(a, i - a));
    }

    /// token / quoted-string; empty and `bad` when neither.
    std::string value()
    {
        std::string out;
        if (eat('"')) {
            for (;;) {
                if (end()) {
                    bad = true;
                    return "";
                }
                char c = s[i++];
                if (c == '"')
                    return out;
                if (c == '\\') {
                    if (end()) {
                        bad = true;
                        return "";
                    }
                    c = s[i++];
                }
                if (static_cast<unsigned char>(c) < 0x20 && c != '\t') {
                    bad = true;
                    return "";
                }
                out.push_back(c);
            }
        }
        size_t a = i;
        while (!end() && token_char(s[i]))
            ++i;
        if (a == i)
            bad = true;
        return std::string(s.substr(a, i - a));
    }

    /// pvalue: a value, or [local-part] "@" domain (RFC 8601 2.2).
    std::string pvalue()
    {
        if (peek() == '"')
            return value();
        size_t a = i;
        while (!end() && (token_char(s[i]) || s[i] == '@'))
            ++i;
        if (a == i)
            bad = true;
        return std::string(s.substr(a, i - a));
    }
};

std::string strip_dot(std::string d)
{
    if (!d.empty() && d.back() == '.')
        d.pop_back();
    return lowered(d);
}

/// The domain of a header.d / header.from / header.i value ("@b.org", "a@b.org", "b.org").
std::string domain_of(std::string_view v)
{
    size_t at = v.rfind('@');
    return strip_dot(std::string(at == std::string_view::npos ? v : v.substr(at + 1)));
}

} // namespace

bool parse_auth_results(std::string_view value, AuthResults& out)
{
    out = {};
    if (value.size() > 16 * 1024)
        return false;
    Cursor c{value};
    c.cfws();
    out.authserv_id = c.value();
    if (c.bad || out.authserv_id.empty())
        return false;
    c.cfws();
    if (!c.end() && c.peek() >= '0' && c.peek() <= '9') {
        while (!c.end() && c.peek() >= '0' && c.peek() <= '9')
            ++c.i;
        c.cfws();
    }
    bool none = false;
    while (!c.bad && !c.end()) {
        if (!c.eat(';') || none)
            return false;
        c.cfws();
        if (c.end())
            break;   // a final ";" is seen in the wild; harmless
        AuthResult r;
        r.method = lowered(c.keyword());
        if (r.method.empty())
            return false;
        c.cfws();
        if (r.method == "none" && out.results.empty() && (c.end() || c.peek() == ';')) {
            none = true;
            continue;
        }
        if (c.eat('/')) {
            c.cfws();
            if (c.keyword().empty())
                return false;
            c.cfws();
        }
        if (!c.eat('='))
            return false;
        c.cfws();
        r.result = lowered(c.keyword());
        if (r.result.empty())
            return false;
        for (;;) {
            c.cfws();
            if (c.bad)
                return false;
            if (c.end() || c.peek() == ';')
                break;
            std::string k = lowered(c.keyword());
            if (k.empty())
                return false;
            c.cfws();
            if (k == "reason" && c.eat('=')) {
                c.cfws();
                c.value();
                continue;
            }
            if (!c.eat('.'))
                return false;
            c.cfws();
            std::string prop = lowered(c.keyword());
            if (prop.empty())
                return false;
            c.cfws();
            if (!c.eat('='))
                return false;
            c.cfws();
            std::string v = c.pvalue();
            if (c.bad)
                return false;
            r.props.emplace_back(k + "." + prop, v);
        }
        out.results.push_back(std::move(r));
    }
    return !c.bad && (none || !out.results.empty());
}

bool auth_results_vouch(const AuthResults& ar, std::string_view from_domain)
{
    const std::string from = strip_dot(std::string(from_domain));
    if (from.empty() || from.find('.') == std::string::npos)
        return false;
    for (const AuthResult& r : ar.results) {
        if (r.result != "pass")
            continue;
        if (r.method == "dmarc") {
            bool ok = true;
            for (const auto& [k, v] : r.props)
                if (k == "header.from" && domain_of(v) != from)
                    ok = false;
            if (ok)
                return true;
        } else if (r.method == "dkim") {
            for (const auto& [k, v] : r.props) {
                if (k != "header.d")
                    continue;
                const std::string d = domain_of(v);
                if (d.empty() || d.find('.') == std::string::npos)
                    continue;
                if (d == from ||
                    (from.size() > d.size() && from.compare(from.size() - d.size(), d.size(), d) == 0 &&
                     from[from.size() - d.size() - 1] == '.'))
                    return true;
            }
        }
    }
    return false;
}

bool sender_vouched(std::string_view headers, std::string_view authserv_id)
{
    if (authserv_id.empty())
        return false;
    HeaderBlock hb = parse_header_block(headers, true, headers.size() + 1);
    const HeaderField* from = nullptr;
    const HeaderField* ar_field = nullptr;
    AuthResults ar;
    for (const HeaderField& f : hb.fields) {
        const std::string name = lowered(f.name);
        if (name == "from") {
            if (from)
                return false;   // two From: fields: whose?
            from = &f;
        } else if (name == "authentication-results" && !ar_field) {
            AuthResults a;
            if (!parse_auth_results(f.value, a)) {
                // Malformed. If its id is ours (or cannot be read), it is the
                // topmost one of ours and vouches for nothing: a later one,
                // perhaps the sender's, must not be taken instead.
                Cursor c{f.value};
                c.cfws();
                std::string id = c.value();
                if (c.bad || id.empty() || lowered(id) == lowered(authserv_id))
                    return false;
                continue;
            }
            if (lowered(a.authserv_id) == lowered(authserv_id)) {
                ar_field = &f;
                ar = std::move(a);
            }
        }
    }
    if (!from || !ar_field)
        return false;
    // One address only: a list or a group leaves it open which one passed.
    size_t ats = 0;
    for (char ch : from->value)
        ats += ch == '@';
    if (ats != 1)
        return false;
    const std::string addr = normalize_address(from->value);
    size_t at = addr.rfind('@');
    if (at == std::string::npos)
        return false;
    return auth_results_vouch(ar, addr.substr(at + 1));
}

} // namespace mm
