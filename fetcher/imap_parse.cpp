// imap_parse.cpp - pure parsers of the IMAP client towards the user's mail server
// (imap_parse.h): the response assembler with counted literals, the response
// grammar, FETCH/SEARCH/APPENDUID/CAPABILITY pieces. RFC 9051 section 9 (formal
// syntax), RFC 4315, RFC 7889.
#include "fetcher/imap_parse.h"

#include "core/config.h"

#include <algorithm>
#include <cstring>

namespace mm {

// ---- the assembler ------------------------------------------------------

void ImapAssembler::reset()
{
    state_ = State::line;
    raw_ = ImapRaw{};
    seg_start_ = 0;
    left_ = 0;
    streaming_ = false;
    error_.clear();
}

bool ImapAssembler::fail(std::string why)
{
    state_ = State::failed;
    error_ = std::move(why);
    return false;
}

/// At a CRLF (not yet in text): either the response ends, or the line ends
/// with a literal announcement and the literal follows.
bool ImapAssembler::end_of_line()
{
    std::string& t = raw_.text;
    std::string_view seg(t.data() + seg_start_, t.size() - seg_start_);
    if (seg.empty() || seg.back() != '}') {
        state_ = State::done;
        return true;
    }
    size_t open = seg.rfind('{');
    if (open == std::string_view::npos)
        return fail("'}' at a line end without '{'");
    std::string_view num = seg.substr(open + 1, seg.size() - open - 2);
    if (!num.empty() && num.back() == '+')
        num.remove_suffix(1);   // LITERAL+ spelling: the same for what we read
    uint64_t n = 0;
    if (num.empty() || num.size() > 20 || !parse_u64(num, n))
        return fail("bad literal length");
    t += "\r\n";
    ImapRaw::Literal lit;
    lit.at = t.size();
    lit.size = n;
    if (n <= inline_max_ && t.size() + n <= kMaxImapResponse) {
        streaming_ = false;
    } else if (sink_ && raw_.literals.size() < 64) {
        if (!sink_->begin(n))
            return fail("literal of " + std::to_string(n) + " octets refused");
        streaming_ = true;
        lit.streamed = true;
    } else {
        return fail("literal of " + std::to_string(n) + " octets over the cap");
    }
    if (raw_.literals.size() >= 1024)
        return fail("too many literals in one response");
    raw_.literals.push_back(lit);
    left_ = n;
    state_ = State::literal;
    if (n == 0) {
        state_ = State::line;
        seg_start_ = t.size();
    }
    return true;
}

size_t ImapAssembler::feed(std::string_view in, LiteralSink* sink)
{
    sink_ = sink;
    size_t i = 0;
    const size_t n = in.size();
    while (i < n && state_ != State::done && state_ != State::failed) {
        switch (state_) {
        case State::line: {
            size_t stop = i;
            while (stop < n && in[stop] != '\r' && in[stop] != '\n')
                ++stop;
            if (raw_.text.size() + (stop - i) > kMaxImapResponse) {
                fail("response longer than " + std::to_string(kMaxImapResponse) + " octets");
                return stop;
            }
            raw_.text.append(in.data() + i, stop - i);
            i = stop;
            if (i == n)
                break;
            if (in[i] == '\n') {
                fail("bare LF in a response");
                return i + 1;
            }
            ++i;
            state_ = State::cr;
            break;
        }
        case State::cr:
            if (in[i] != '\n') {
                fail("bare CR in a response");
                return i;
            }
            ++i;
            end_of_line();
            break;
        case State::literal: {
            size_t k = static_cast<size_t>(std::min<uint64_t>(left_, n - i));
            if (streaming_) {
                if (!sink_->write(in.data() + i, k)) {
                    fail("literal could not be stored");
                    return i + k;
                }
            } else {
                raw_.text.append(in.data() + i, k);
            }
            i += k;
            left_ -= k;
            if (left_ == 0) {
                state_ = State::line;
                seg_start_ = raw_.text.size();
            }
            break;
        }
        case State::done:
        case State::failed:
            break;
        }
    }
    return i;
}

// ---- the response grammar -----------------------------------------------

namespace {

std::string upper(std::string_view s)
{
    std::string out(s);
    for (char& c : out)
        c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
    return out;
}

/// ATOM-CHAR of RFC 9051, plus '\' (flags), '%' and '*' (list wildcards,
/// "\*"), which appear where atoms do; ']' ends an atom (response codes).
bool atom_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '"' && c != ']';
}

class Reader {
public:
    Reader(const ImapRaw& raw) : raw_(raw), s_(raw.text) {}
    bool at_end() const { return pos_ >= s_.size(); }
    char peek() const { return at_end() ? '\0' : s_[pos_]; }
    size_t pos() const { return pos_; }
    bool eat(char c)
    {
        if (peek() != c)
            return false;
        ++pos_;
        return true;
    }
    std::string_view rest() const { return s_.substr(std::min(pos_, s_.size())); }
    void skip_all() { pos_ = s_.size(); }

    /// An atom, with "[...]" sections inside it read whole (they may hold
    /// spaces and parentheses: BODY[HEADER.FIELDS (MESSAGE-ID)]<0>).
    bool atom(std::string& out)
    {
        size_t start = pos_;
        while (!at_end()) {
            unsigned char c = static_cast<unsigned char>(s_[pos_]);
            if (c == '[') {
                size_t close = s_.find(']', pos_);
                if (close == std::string_view::npos)
                    return false;
                for (size_t k = pos_; k < close; ++k)
                    if (static_cast<unsigned char>(s_[k]) < 0x20 || s_[k] == 0x7f)
                        return false;
                pos_ = close + 1;
                continue;
            }
            if (!atom_char(c))
                break;
            ++pos_;
        }
        if (pos_ == start)
            return false;
        out.assign(s_.substr(start, pos_ - start));
        return true;
    }

    bool quoted(std::string& out)
    {
        if (!eat('"'))
            return false;
        out.clear();
        while (!at_end()) {
            char c = s_[pos_++];
            if (c == '"')
                return true;
            if (c == '\\') {
                if (at_end() || (s_[pos_] != '"' && s_[pos_] != '\\'))
                    return false;
                c = s_[pos_++];
            } else if (c == '\0' || c == '\r' || c == '\n') {
                return false;
            }
            out.push_back(c);
        }
        return false;   // unterminated
    }

    /// "{N}\r\n" and its octets (or, streamed, none of them).
    bool literal(ImapValue& v)
    {
        size_t start = pos_;
        size_t crlf = s_.find("}\r\n", pos_);
        if (crlf == std::string_view::npos || next_lit_ >= raw_.literals.size())
            return false;
        const ImapRaw::Literal& lit = raw_.literals[next_lit_];
        if (lit.at != crlf + 3)
            return false;   // not the literal the assembler saw here
        std::string_view num = s_.substr(start + 1, crlf - start - 1);
        if (!num.empty() && num.back() == '+')
            num.remove_suffix(1);
        if (num.empty() || num.find_first_not_of("0123456789") != std::string_view::npos)
            return false;
        ++next_lit_;
        pos_ = lit.at;
        if (lit.streamed) {
            v.kind = ImapValue::Kind::streamed;
            v.size = lit.size;
            return true;
        }
        if (lit.size > s_.size() - pos_)
            return false;
        v.kind = ImapValue::Kind::string;
        v.text.assign(s_.substr(pos_, static_cast<size_t>(lit.size)));
        pos_ += static_cast<size_t>(lit.size);
        return true;
    }

    bool value(ImapValue& v, unsigned depth)
    {
        char c = peek();
        if (c == '(') {
            if (depth >= kMaxImapDepth)
                return false;
            ++pos_;
            v.kind = ImapValue::Kind::list;
            if (eat(')'))
                return true;
            for (;;) {
                ImapValue item;
                if (!value(item, depth + 1))
                    return false;
                v.items.push_back(std::move(item));
                if (eat(')'))
                    return true;
                if (!eat(' '))
                    return false;
            }
        }
        if (c == '"') {
            v.kind = ImapValue::Kind::string;
            return quoted(v.text);
        }
        if (c == '{')
            return literal(v);
        if (c == '~' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '{')
            return false;   // literal8 (BINARY): never asked for
        if (!atom(v.text))
            return false;
        v.kind = upper(v.text) == "NIL" ? ImapValue::Kind::nil : ImapValue::Kind::atom;
        return true;
    }

    /// Values separated by single spaces up to the end.
    bool values(std::vector<ImapValue>& out)
    {
        while (!at_end()) {
            if (!out.empty() && !eat(' '))
                return false;
            ImapValue v;
            if (!value(v, 0))
                return false;
            out.push_back(std::move(v));
        }
        return true;
    }

    /// resp-text: ["[" code [SP args] "]" SP] text. Lenient about the text
    /// (it is for people), strict about the code's brackets.
    bool resp_text(ImapResponse& out)
    {
        if (eat('[')) {
            size_t close = s_.find(']', pos_);
            if (close == std::string_view::npos)
                return false;
            std::string_view inner = s_.substr(pos_, close - pos_);
            if (inner.empty())
                return false;
            for (char ch : inner)
                if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f)
                    return false;
            size_t sp = inner.find(' ');
            out.code = upper(inner.substr(0, sp));
            for (char ch : out.code)
                if (!atom_char(static_cast<unsigned char>(ch)))
                    return false;
            while (sp != std::string_view::npos) {
                size_t from = sp + 1;
                sp = inner.find(' ', from);
                std::string_view a = inner.substr(from, sp == std::string_view::npos ? std::string_view::npos
                                                                                       : sp - from);
                if (!a.empty())
                    out.code_args.emplace_back(a);
            }
            pos_ = close + 1;
            eat(' ');
        }
        out.text.assign(rest());
        skip_all();
        return out.text.find('\0') == std::string::npos;
    }

private:
    const ImapRaw& raw_;
    std::string_view s_;
    size_t pos_ = 0;
    size_t next_lit_ = 0;
};

ImapResponse::Status status_word(std::string_view w)
{
    std::string u = upper(w);
    if (u == "OK")
        return ImapResponse::Status::ok;
    if (u == "NO")
        return ImapResponse::Status::no;
    if (u == "BAD")
        return ImapResponse::Status::bad;
    if (u == "BYE")
        return ImapResponse::Status::bye;
    if (u == "PREAUTH")
        return ImapResponse::Status::preauth;
    return ImapResponse::Status::none;
}

bool parse_u32_nz(std::string_view s, uint32_t& out)
{
    uint64_t v = 0;
    if (!parse_u64(s, v) || v == 0 || v > 0xffffffffu)
        return false;
    out = static_cast<uint32_t>(v);
    return true;
}

} // namespace

bool parse_imap_response(const ImapRaw& raw, ImapResponse& out, std::string& err)
{
    out = ImapResponse{};
    Reader r(raw);
    auto bad = [&err](const char* why) {
        err = why;
        return false;
    };
    if (r.eat('+')) {
        out.kind = ImapResponse::Kind::continuation;
        if (r.at_end())
            return true;
        if (!r.eat(' '))
            return bad("continuation without a space");
        out.text.assign(r.rest());
        return true;
    }
    if (r.eat('*')) {
        out.kind = ImapResponse::Kind::untagged;
        if (!r.eat(' '))
            return bad("untagged response without a space");
    } else {
        out.kind = ImapResponse::Kind::tagged;
        if (!r.atom(out.tag) || out.tag.find_first_of("+[]") != std::string::npos)
            return bad("bad tag");
        if (!r.eat(' '))
            return bad("tag without a space");
    }
    std::string word;
    if (!r.atom(word))
        return bad("no response word");
    // "* N EXISTS" and the like: a number, then the name.
    if (out.kind == ImapResponse::Kind::untagged && !word.empty() && word[0] >= '0' && word[0] <= '9') {
        if (!parse_u64(word, out.number) || out.number > 0xffffffffu)
            return bad("bad message number");
        if (!r.eat(' ') || !r.atom(word))
            return bad("message number without data");
        out.name = upper(word);
        if (out.name != "EXISTS" && out.name != "EXPUNGE" && out.name != "RECENT" && out.name != "FETCH")
            return bad("unknown message data");
        if (out.name == "FETCH") {
            if (!r.eat(' '))
                return bad("FETCH without attributes");
            ImapValue v;
            if (!r.value(v, 0) || v.kind != ImapValue::Kind::list || !r.at_end())
                return bad("bad FETCH attributes");
            out.data.push_back(std::move(v));
        } else if (!r.at_end()) {
            return bad("junk after message data");
        }
        return true;
    }
    out.status = status_word(word);
    if (out.kind == ImapResponse::Kind::tagged &&
        out.status != ImapResponse::Status::ok && out.status != ImapResponse::Status::no &&
        out.status != ImapResponse::Status::bad)
        return bad("tagged response is not OK, NO or BAD");
    if (out.status != ImapResponse::Status::none) {
        if (r.at_end())
            return true;   // no text: tolerated (RFC 9051 requires it, servers omit it)
        if (!r.eat(' '))
            return bad("status without a space");
        if (!r.resp_text(out))
            return bad("bad response code or text");
        return true;
    }
    out.name = upper(word);
    if (r.at_end())
        return true;
    if (!r.eat(' '))
        return bad("data name without a space");
    if (out.name == "CAPABILITY" || out.name == "SEARCH" || out.name == "ENABLED") {
        // Atoms only; SEARCH may end with a space before a modifier in some servers.
        while (!r.at_end()) {
            std::string a;
            if (!r.atom(a))
                return bad("bad atom in CAPABILITY/SEARCH");
            ImapValue v;
            v.kind = ImapValue::Kind::atom;
            v.text = std::move(a);
            out.data.push_back(std::move(v));
            if (!r.at_end() && !r.eat(' '))
                return bad("bad separator in CAPABILITY/SEARCH");
        }
        return true;
    }
    if (!r.values(out.data))
        return bad("bad data values");
    return true;
}

bool parse_imap_fetch(const ImapResponse& r, ImapFetch& out)
{
    out = ImapFetch{};
    if (r.kind != ImapResponse::Kind::untagged || r.name != "FETCH" || r.data.size() != 1 ||
        r.data[0].kind != ImapValue::Kind::list)
        return false;
    const auto& items = r.data[0].items;
    if (items.size() % 2 != 0)
        return false;
    for (size_t i = 0; i < items.size(); i += 2) {
        const ImapValue& name = items[i];
        const ImapValue& v = items[i + 1];
        if (name.kind != ImapValue::Kind::atom)
            return false;
        const std::string n = upper(name.text);
        if (n == "UID") {
            if (v.kind != ImapValue::Kind::atom || !parse_u32_nz(v.text, out.uid))
                return false;
        } else if (n == "FLAGS") {
            if (v.kind != ImapValue::Kind::list)
                return false;
            out.has_flags = true;
            for (const auto& f : v.items) {
                if (f.kind != ImapValue::Kind::atom)
                    return false;
                out.flags.push_back(f.text);
            }
        } else if (n == "INTERNALDATE") {
            if (v.kind != ImapValue::Kind::string || !imap_date_time_ok(v.text))
                return false;
            out.internal_date = v.text;
        } else if (n == "RFC822.SIZE") {
            if (v.kind != ImapValue::Kind::atom || !parse_u64(v.text, out.size))
                return false;
            out.has_size = true;
        } else if (n.rfind("BODY[", 0) == 0) {
            if (v.kind == ImapValue::Kind::streamed) {
                out.body_streamed = out.has_body = true;
                out.body_size = v.size;
            } else if (v.kind == ImapValue::Kind::string) {
                if (n == "BODY[]") {
                    out.has_body = true;
                    out.body = v.text;
                    out.body_size = v.text.size();
                } else {
                    out.header = v.text;
                }
            } else if (v.kind != ImapValue::Kind::nil) {
                return false;
            }
        }
        // Other attributes (MODSEQ, X-GM-*, ...) are the server's business.
    }
    return true;
}

bool parse_imap_search(const ImapResponse& r, std::vector<uint32_t>& uids, size_t max)
{
    uids.clear();
    if (r.kind != ImapResponse::Kind::untagged || r.name != "SEARCH")
        return false;
    for (const auto& v : r.data) {
        uint32_t u = 0;
        if (v.kind != ImapValue::Kind::atom || !parse_u32_nz(v.text, u) || uids.size() >= max)
            return false;
        uids.push_back(u);
    }
    return true;
}

bool parse_appenduid(const ImapResponse& r, uint32_t& uidvalidity, uint32_t& uid)
{
    return r.status == ImapResponse::Status::ok && r.code == "APPENDUID" && r.code_args.size() == 2 &&
           parse_u32_nz(r.code_args[0], uidvalidity) && parse_u32_nz(r.code_args[1], uid);
}

std::vector<std::string> imap_capabilities(const ImapResponse& r)
{
    std::vector<std::string> caps;
    if (r.kind == ImapResponse::Kind::untagged && r.name == "CAPABILITY") {
        for (const auto& v : r.data)
            caps.push_back(upper(v.text));
    } else if (r.code == "CAPABILITY") {
        for (const auto& a : r.code_args)
            caps.push_back(upper(a));
    }
    return caps;
}

bool imap_has(const std::vector<std::string>& caps, std::string_view name)
{
    return std::find(caps.begin(), caps.end(), name) != caps.end();
}

uint64_t imap_appendlimit(const std::vector<std::string>& caps)
{
    for (const auto& c : caps)
        if (c.rfind("APPENDLIMIT=", 0) == 0) {
            uint64_t v = 0;
            return parse_u64(std::string_view(c).substr(12), v) ? v : 0;
        }
    return 0;
}

bool imap_date_time_ok(std::string_view s)
{
    // "dd-Mon-yyyy hh:mm:ss +hhmm": 26 octets.
    static const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    auto digit = [](char c) { return c >= '0' && c <= '9'; };
    if (s.size() != 26)
        return false;
    if (!((s[0] == ' ' || digit(s[0])) && digit(s[1]) && s[2] == '-' && s[6] == '-' && s[11] == ' ' &&
          s[14] == ':' && s[17] == ':' && s[20] == ' ' && (s[21] == '+' || s[21] == '-')))
        return false;
    bool month = false;
    for (const char* m : kMonths)
        month |= s.substr(3, 3) == m;
    if (!month)
        return false;
    for (size_t i : {7u, 8u, 9u, 10u, 12u, 13u, 15u, 16u, 18u, 19u, 22u, 23u, 24u, 25u})
        if (!digit(s[i]))
            return false;
    int day = (s[0] == ' ' ? 0 : s[0] - '0') * 10 + (s[1] - '0');
    int hour = (s[12] - '0') * 10 + (s[13] - '0');
    int min = (s[15] - '0') * 10 + (s[16] - '0');
    int sec = (s[18] - '0') * 10 + (s[19] - '0');
    return day >= 1 && day <= 31 && hour <= 23 && min <= 59 && sec <= 60;
}

bool imap_flag_ok(std::string_view flag)
{
    if (flag.empty() || flag.size() > 200)
        return false;
    if (flag[0] == '\\') {
        std::string u = upper(flag);
        return u == "\\SEEN" || u == "\\ANSWERED" || u == "\\FLAGGED" || u == "\\DELETED" || u == "\\DRAFT";
    }
    for (char c : flag)
        if (!atom_char(static_cast<unsigned char>(c)) || c == '\\' || c == '%' || c == '*' || c == '[')
            return false;
    return true;
}

std::string imap_quote(std::string_view s)
{
    std::string out = "\"";
    for (char c : s) {
        auto u = static_cast<unsigned char>(c);
        if (u == 0 || c == '\r' || c == '\n' || u >= 0x80)
            return "";
        if (c == '"' || c == '\\')
            out.push_back('\\');
        out.push_back(c);
    }
    out.push_back('"');
    return out;
}

} // namespace mm
