// smtp.cpp - SMTP replies, DATA framing and top headers (see smtp.h).
#include "milter/smtp.h"

#include <cctype>
#include <cstring>

namespace mm::smtp {

std::string Reply::wire() const
{
    std::string out;
    std::string code_text = std::to_string(code);
    for (size_t i = 0; i < lines.size(); ++i) {
        out += code_text;
        out += i + 1 < lines.size() ? '-' : ' ';
        out += lines[i];
        out += "\r\n";
    }
    if (lines.empty())
        out = code_text + "\r\n";
    return out;
}

ReadResult read_reply(Stream& s, Reply& out)
{
    out = Reply{};
    std::string line;
    for (;;) {
        LineResult r = s.read_line(line, kMaxReplyLine);
        if (r == LineResult::eof || r == LineResult::error)
            return ReadResult::io;
        if (r == LineResult::too_long || out.lines.size() >= kMaxReplyLines)
            return ReadResult::bad;
        // "NNN", "NNN text" or "NNN-text" (RFC 5321 4.2); the first digit 2..5.
        if (line.size() < 3 || line[0] < '2' || line[0] > '5' || !isdigit(static_cast<unsigned char>(line[1])) ||
            !isdigit(static_cast<unsigned char>(line[2])))
            return ReadResult::bad;
        int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        if (!out.lines.empty() && code != out.code)
            return ReadResult::bad;
        out.code = code;
        char sep = line.size() > 3 ? line[3] : ' ';
        if (sep != ' ' && sep != '-')
            return ReadResult::bad;
        out.lines.push_back(line.size() > 4 ? line.substr(4) : "");
        if (sep == ' ')
            return ReadResult::ok;
    }
}

std::string verb(std::string_view line)
{
    std::string v;
    for (char c : line) {
        if (c == ' ')
            break;
        v += static_cast<char>(toupper(static_cast<unsigned char>(c)));
    }
    return v;
}

bool path_argument(std::string_view line, std::string& address)
{
    size_t colon = line.find(':');
    if (colon == std::string_view::npos)
        return false;
    size_t i = colon + 1;
    while (i < line.size() && line[i] == ' ')   // "MAIL FROM: <a>" is common enough
        ++i;
    if (i >= line.size() || line[i] != '<')
        return false;
    size_t close = line.find('>', i + 1);
    if (close == std::string_view::npos)
        return false;
    address.assign(line.substr(i + 1, close - i - 1));
    return true;
}

void filter_ehlo(Reply& r)
{
    if (r.code != 250 || r.lines.empty())
        return;
    std::vector<std::string> kept{r.lines[0]};   // the greeting line names the server
    for (size_t i = 1; i < r.lines.size(); ++i) {
        std::string kw = verb(r.lines[i]);
        if (kw != "CHUNKING" && kw != "STARTTLS")
            kept.push_back(r.lines[i]);
    }
    r.lines = std::move(kept);
}

size_t DotDecoder::feed(const char* p, size_t n, std::string& out)
{
    size_t i = 0;
    while (i < n && state_ != State::done) {
        char c = p[i];
        switch (state_) {
        case State::line_start:
            ++i;
            if (c == '.') {
                state_ = State::dot;
            } else {
                out += c;
                state_ = c == '\n' ? State::line_start : State::mid;
            }
            break;
        case State::dot:
            // A line that starts with a dot: the dot goes (RFC 5321 4.5.2), the
            // rest stays; a dot alone on its line ends the data.
            ++i;
            if (c == '\r') {
                state_ = State::dot_cr;
            } else if (c == '\n') {
                state_ = State::done;
            } else {
                out += c;
                state_ = State::mid;
            }
            break;
        case State::dot_cr:
            if (c == '\n') {
                ++i;
                state_ = State::done;
            } else {
                out += '\r';   // ".\rX": the CR was content; X is looked at as mid-line
                state_ = State::mid;
            }
            break;
        case State::mid: {
            // The bulk of the bytes: copy up to and including the next LF at once.
            const void* nl = memchr(p + i, '\n', n - i);
            size_t take = nl ? static_cast<size_t>(static_cast<const char*>(nl) - (p + i)) + 1 : n - i;
            out.append(p + i, take);
            i += take;
            if (nl)
                state_ = State::line_start;
            break;
        }
        case State::done:
            break;
        }
    }
    return i;
}

namespace {

/// Name and value of a field's raw bytes; the name empty if there is no colon
/// or the name is not printable ASCII without spaces (RFC 5322 2.2).
void split_field(const std::string& raw, std::string& name, std::string& value)
{
    name.clear();
    value.clear();
    size_t colon = raw.find(':');
    if (colon == std::string::npos)
        return;
    size_t end = colon;
    while (end > 0 && (raw[end - 1] == ' ' || raw[end - 1] == '\t'))   // obsolete "Name :" (RFC 5322 4.5)
        --end;
    for (size_t i = 0; i < end; ++i)
        if (raw[i] <= 32 || raw[i] >= 127)
            return;
    size_t v = colon + 1;
    while (v < raw.size() && (raw[v] == ' ' || raw[v] == '\t'))
        ++v;
    size_t vend = raw.size();
    while (vend > v && (raw[vend - 1] == '\n' || raw[vend - 1] == '\r'))
        --vend;
    name = raw.substr(0, end);
    value = raw.substr(v, vend - v);
}

} // namespace

void HeaderSplitter::emit(std::vector<Field>& fields)
{
    if (field_.empty())
        return;
    Field f;
    if (!overlong_)
        split_field(field_, f.name, f.value);
    f.raw = std::move(field_);
    fields.push_back(std::move(f));
    field_.clear();
}

size_t HeaderSplitter::feed(const char* p, size_t n, std::vector<Field>& fields)
{
    size_t i = 0;
    while (i < n && !done_) {
        const void* nl = memchr(p + i, '\n', n - i);
        size_t take = nl ? static_cast<size_t>(static_cast<const char*>(nl) - (p + i)) + 1 : n - i;
        line_.append(p + i, take);
        i += take;
        if (overlong_) {
            // The rest of a line too long to look at: passed on raw, with no name.
            field_ = std::move(line_);
            line_.clear();
            emit(fields);
            overlong_ = nl == nullptr;
            continue;
        }
        bool continuation = !line_.empty() && (line_[0] == ' ' || line_[0] == '\t') && !field_.empty();
        if (field_.size() + line_.size() > kMaxHeaderLine) {
            if (!continuation)
                emit(fields);   // the field before it, named as usual
            overlong_ = true;
            field_ += line_;
            line_.clear();
            emit(fields);
            overlong_ = nl == nullptr;
            continue;
        }
        if (!nl)
            break;   // the line goes on in the next chunk
        if (line_ == "\r\n" || line_ == "\n") {
            emit(fields);
            end_ = std::move(line_);
            line_.clear();
            done_ = true;
            break;
        }
        if (!continuation)
            emit(fields);
        field_ += line_;
        line_.clear();
    }
    return i;
}

void HeaderSplitter::finish(std::vector<Field>& fields)
{
    if (!line_.empty()) {   // a last line without its line break
        bool continuation = (line_[0] == ' ' || line_[0] == '\t') && !field_.empty();
        if (!continuation)
            emit(fields);
        field_ += line_;
        line_.clear();
    }
    emit(fields);
}

} // namespace mm::smtp
