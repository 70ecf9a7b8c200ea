// prescan.cpp - decoding media while the message arrives (see prescan.h).
#include "mime/prescan.h"

#include "mime/base64_body.h"
#include "mime/sniff.h"
#include "core/util.h"

#include <cstring>
#include <strings.h>

namespace mm {

namespace {

constexpr size_t kMaxLine = 4096;             // a longer header line makes its block unusable
constexpr size_t kMaxBlock = 64 * 1024;       // header block bytes kept
constexpr uint64_t kMaxPending = 1 << 20;     // decoded bytes held before a part is begun
constexpr uint64_t kSniffDecoded = 6 * 1024;  // decoded bytes looked at to sniff (as the engine)

/// Finds "\n-" -- the end of a line whose successor starts with '-' -- in [p, p+n).
/// Looks for the '-' first: base64 has none, so in a media body memchr runs
/// straight to the boundary (memmem, byte by byte, cost more than decoding).
const char* next_dash_line(const char* p, size_t n)
{
    const char* end = p + n;
    for (const char* q = p; q < end;) {
        const char* d = static_cast<const char*>(memchr(q, '-', static_cast<size_t>(end - q)));
        if (!d)
            return nullptr;
        if (d > p && d[-1] == '\n')
            return d - 1;
        q = d + 1;
    }
    return nullptr;
}

} // namespace

struct Prescanner::Body {
    uint64_t start = 0;
    std::string type;
    bool declared_media = false;
    Base64Body b64;
    std::string dec;         // scratch for one decoded run
    std::string pending;     // decoded bytes before the part is begun
    std::unique_ptr<MediaSink::Part> part;
    Sha256 sha;
    bool hash = false;       // the sink does not hash: we do
    bool abandoned = false;  // not media, or too small to matter: decoded no further
    uint64_t size = 0;
    std::string tail;        // the last up to 3 decoded bytes
};

Prescanner::Prescanner(const DetachPolicy& policy, MediaSink& sink) : policy_(policy), sink_(sink) {}

Prescanner::~Prescanner() = default;

void Prescanner::feed(const char* p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        switch (state_) {
        case State::top_headers:
        case State::part_headers: {
            const char* nl = static_cast<const char*>(memchr(p + i, '\n', n - i));
            size_t take = nl ? static_cast<size_t>(nl - (p + i)) + 1 : n - i;
            if (line_.size() + take > kMaxLine) {
                line_over_ = true;
                line_.clear();
            } else if (!line_over_) {
                line_.append(p + i, take);
            }
            i += take;
            if (nl) {
                uint64_t next = off_ + i;
                bool blank = !line_over_ && (line_ == "\n" || line_ == "\r\n");
                if (blank) {
                    line_.clear();
                    end_of_headers(next);
                } else {
                    if (line_over_)
                        block_.assign(kMaxBlock + 1, ' ');   // never parsed
                    else
                        line_in_headers(line_.data(), line_.size());
                    line_.clear();
                    line_over_ = false;
                }
            }
            break;
        }
        case State::other:
            scan_other(p, n, i);
            break;
        case State::base64:
            scan_base64(p, n, i);
            break;
        }
    }
    off_ += n;
}

void Prescanner::line_in_headers(const char* p, size_t n)
{
    if (block_.size() + n > kMaxBlock) {
        block_.assign(kMaxBlock + 1, ' ');   // over the cap: never parsed
        return;
    }
    block_.append(p, n);
}

void Prescanner::end_of_headers(uint64_t body_start)
{
    bool top = state_ == State::top_headers;
    state_ = State::other;
    line_start_ = true;
    std::string block;
    block.swap(block_);
    // Only parts inside a multipart are detached, as in the engine.
    if (top || block.size() > kMaxBlock)
        return;
    // Unfold, then find the two fields; a repeated one is left to the engine.
    std::vector<std::string> types, encodings;
    size_t pos = 0;
    std::string field;
    auto take = [&] {
        size_t colon = field.find(':');
        if (colon != std::string::npos) {
            std::string name = field.substr(0, colon);
            while (!name.empty() && (name.back() == ' ' || name.back() == '\t'))
                name.pop_back();
            if (strcasecmp(name.c_str(), "Content-Type") == 0)
                types.push_back(field.substr(colon + 1));
            else if (strcasecmp(name.c_str(), "Content-Transfer-Encoding") == 0)
                encodings.push_back(field.substr(colon + 1));
        }
        field.clear();
    };
    while (pos < block.size()) {
        size_t nl = block.find('\n', pos);
        size_t end = nl == std::string::npos ? block.size() : nl;
        std::string line = block.substr(pos, end - pos);
        pos = end + 1;
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
            field += line;
        } else {
            take();
            field = line;
        }
    }
    take();
    if (types.size() > 1 || encodings.size() != 1 || mime_token(encodings[0]) != "base64")
        return;
    std::string type = types.empty() ? "text/plain" : mime_token(types[0]);
    if (type.compare(0, 10, "multipart/") == 0 || type.compare(0, 8, "message/") == 0)
        return;
    body_ = std::make_unique<Body>();
    body_->start = body_start;
    body_->type = type;
    body_->declared_media = type_matches(type, policy_.types);
    held_.clear();
    state_ = State::base64;
}

void Prescanner::scan_other(const char* p, size_t n, size_t& i)
{
    while (i < n) {
        if (line_start_ && (collecting_ || p[i] == '-')) {
            // A line starting with '-' may be a boundary: read it whole.
            collecting_ = true;
            const char* nl = static_cast<const char*>(memchr(p + i, '\n', n - i));
            size_t take = nl ? static_cast<size_t>(nl - (p + i)) + 1 : n - i;
            if (line_.size() + take <= kMaxLine)
                line_.append(p + i, take);
            i += take;
            if (!nl)
                return;
            collecting_ = false;
            bool dashes = line_.size() >= 2 && line_[0] == '-' && line_[1] == '-';
            line_.clear();
            if (dashes) {
                // A boundary (or what looks like one): a part's header block follows.
                state_ = State::part_headers;
                block_.clear();
                return;
            }
            continue;
        }
        const char* hit = next_dash_line(p + i, n - i);
        if (hit) {
            i = static_cast<size_t>(hit - p) + 1;
            line_start_ = true;
            continue;
        }
        line_start_ = p[n - 1] == '\n';
        i = n;
    }
}

void Prescanner::scan_base64(const char* p, size_t n, size_t& i)
{
    while (i < n) {
        if (!held_.empty()) {
            if (held_ == "\r") {
                if (p[i] != '\n') {
                    body_data(held_.data(), held_.size());
                    held_.clear();
                    continue;
                }
                held_ += '\n';
                ++i;
                continue;
            }
            // A held line break: the next line's first byte says whose it is.
            if (p[i] == '-') {
                end_body(held_off_);
                held_.clear();
                state_ = State::other;
                line_start_ = true;
                return;
            }
            body_data(held_.data(), held_.size());
            held_.clear();
        }
        const char* hit = next_dash_line(p + i, n - i);
        if (hit) {
            size_t nl = static_cast<size_t>(hit - p);
            size_t eol = (nl > i && p[nl - 1] == '\r') ? nl - 1 : nl;
            body_data(p + i, eol - i);
            end_body(off_ + eol);
            state_ = State::other;
            line_start_ = true;
            i = nl + 1;
            return;
        }
        // No line starting with '-' here: everything but a trailing line
        // break (or its first half) is body.
        size_t end = n;
        if (p[n - 1] == '\n')
            end = (n - 1 > i && p[n - 2] == '\r') ? n - 2 : n - 1;
        else if (p[n - 1] == '\r')
            end = n - 1;
        body_data(p + i, end - i);
        held_.clear();
        for (size_t k = end; k < n; ++k)   // at most "\r\n"
            held_ += p[k];
        held_off_ = off_ + end;
        i = n;
    }
}

void Prescanner::body_data(const char* p, size_t n)
{
    Body& b = *body_;
    if (b.abandoned || n == 0)
        return;
    b.dec.clear();
    b.b64.feed(p, n, b.dec);
    b.size += b.dec.size();
    b.tail.append(b.dec.size() > 3 ? b.dec.substr(b.dec.size() - 3) : b.dec);
    if (b.tail.size() > 3)
        b.tail.erase(0, b.tail.size() - 3);
    if (!b.part) {
        b.pending.append(b.dec);
        // Enough to sniff (as much as the engine looks at) and to know the part
        // is not too small -- but never more than kMaxPending in memory.
        uint64_t need = std::max(std::min<uint64_t>(kSniffDecoded, policy_.min_size),
                                 std::min<uint64_t>(policy_.min_size, kMaxPending));
        if (b.pending.size() < need)
            return;
        bool media = b.declared_media ||
                     (policy_.sniff && !sniff_media(reinterpret_cast<const unsigned char*>(b.pending.data()),
                                                    b.pending.size())
                                            .empty());
        if (!media) {
            b.abandoned = true;
            b.pending.clear();
            b.pending.shrink_to_fit();
            return;
        }
        b.part = sink_.begin(b.type, "");
        b.hash = !b.part->hashes_itself();
        b.dec.swap(b.pending);
        b.pending.clear();
        b.pending.shrink_to_fit();
    }
    if (b.hash)
        b.sha.update(b.dec.data(), b.dec.size());
    b.part->write(b.dec.data(), b.dec.size());
}

void Prescanner::end_body(uint64_t end)
{
    std::unique_ptr<Body> b = std::move(body_);
    if (!b->part || b->abandoned)
        return;
    b->b64.finish(b->size, b->tail.substr(b->tail.size() - std::min<size_t>(b->tail.size(), b->size % 3)));
    Predecoded d;
    d.body_start = b->start;
    d.body_end = end;
    d.decoded.size = b->size;
    if (b->hash)
        d.decoded.sha256 = b->sha.hex_digest();
    d.decoded.regular = b->b64.regular();
    d.decoded.line_len = b->b64.line_len();
    d.decoded.eol = b->b64.eol();
    d.decoded.final_eol = b->b64.final_eol();
    d.part = std::move(b->part);
    done_.push_back(std::move(d));
}

std::vector<Predecoded> Prescanner::finish()
{
    body_.reset();   // a body still open at the end has no boundary after it: not a part
    state_ = State::other;
    return std::move(done_);
}

} // namespace mm
