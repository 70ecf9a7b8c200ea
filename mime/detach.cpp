// detach.cpp - take media attachments out of a message file into a sink and put
// location parts in their place (detach.h). Parts are chosen from the walk's
// leaves (walk.h); the output is the input's byte ranges with the location parts
// spliced in, checked by finding every handle again before it is used.
#include "mime/detach.h"

#include "mime/base64_body.h"
#include "mime/find_handles.h"
#include "mime/gmime_init.h"
#include "mime/growing.h"
#include "mime/prescan.h"
#include "mime/sniff.h"
#include "mime/walk.h"
#include "core/util.h"

#include <algorithm>
#include <cstring>
#include <fcntl.h>
#include <gmime/gmime.h>
#include <stdexcept>
#include <unistd.h>

namespace mm {

using walk::InFile;
using walk::kIoBuffer;
using walk::Leaf;
using walk::OutFile;

namespace {

constexpr size_t kSniffBytes = 8 * 1024;   // encoded bytes read to sniff a part

std::string part_type(GMimePart* part)
{
    GMimeContentType* ct = g_mime_object_get_content_type(GMIME_OBJECT(part));
    if (!ct)
        return "application/octet-stream";
    char* t = g_mime_content_type_get_mime_type(ct);
    if (!t)
        return "application/octet-stream";
    char* l = g_ascii_strdown(t, -1);
    std::string s = l;
    g_free(l);
    g_free(t);
    return s;
}

/// The line ending a file uses, from its first line.
std::string detect_eol(const InFile& in)
{
    char buf[4096];
    size_t n = in.pread_some(buf, sizeof buf, 0);
    for (size_t i = 0; i < n; ++i)
        if (buf[i] == '\n')
            return (i > 0 && buf[i - 1] == '\r') ? "\r\n" : "\n";
    return "\r\n";
}

/// Where the top-level body starts: after the empty line that ends the header
/// block. Returns the file size when there is no body.
uint64_t body_offset(const InFile& in)
{
    // (GMime's headers_end describes the last header block it parsed, which is
    // an inner part's, so we look for the empty line ourselves.)
    uint64_t pos = 0;
    char buf[kIoBuffer];
    int newlines = 0;
    while (pos < in.size()) {
        size_t n = in.pread_some(buf, sizeof buf, pos);
        if (n == 0)
            break;
        for (size_t i = 0; i < n; ++i) {
            char c = buf[i];
            if (c == '\n') {
                if (++newlines == 2)
                    return pos + i + 1;
            } else if (c != '\r') {
                newlines = 0;
            }
        }
        pos += n;
    }
    return in.size();
}

/// Streams the raw bytes of a range of the input.
class RangeReader {
public:
    RangeReader(const InFile& in, uint64_t from, uint64_t to) : in_(in), pos_(from), end_(to) {}
    /// The next chunk, empty at the end of the range.
    std::string_view next()
    {
        if (pos_ >= end_)
            return {};
        size_t want = static_cast<size_t>(std::min<uint64_t>(sizeof buf_, end_ - pos_));
        size_t n = in_.pread_some(buf_, want, pos_);
        if (n == 0)
            throw std::runtime_error("unexpected end of " + in_.path());
        pos_ += n;
        return std::string_view(buf_, n);
    }

private:
    const InFile& in_;
    uint64_t pos_, end_;
    char buf_[kIoBuffer];
};

/// Decoded size of a base64 body: its alphabet characters (padding excluded)
/// times 6 bits, without decoding it.
uint64_t base64_decoded_size(const InFile& in, uint64_t from, uint64_t to)
{
    char buf[kIoBuffer];
    uint64_t chars = 0;
    while (from < to) {
        size_t n = in.pread_some(buf, static_cast<size_t>(std::min<uint64_t>(sizeof buf, to - from)), from);
        if (n == 0)
            break;
        for (size_t i = 0; i < n; ++i) {
            char c = buf[i];
            chars += (g_ascii_isalnum(c) || c == '+' || c == '/') ? 1 : 0;
        }
        from += n;
    }
    return chars * 6 / 8;
}

std::string part_filename(GMimePart* part, const std::string& type)
{
    const char* fn = g_mime_part_get_filename(part);
    if (fn && *fn) {
        // Names from mail are whatever the sender's program wrote: make them
        // valid UTF-8 without control characters, and bounded, before they go
        // into a handle. (Nobody uses them as a path; see the fetcher.)
        gchar* valid = g_utf8_make_valid(fn, -1);
        std::string name;
        for (const char* p = valid; *p && name.size() < 255; ++p)
            name += (static_cast<unsigned char>(*p) < 0x20 || *p == 0x7f) ? '_' : *p;
        g_free(valid);
        if (g_utf8_validate(name.data(), static_cast<gssize>(name.size()), nullptr) && !name.empty())
            return name;
    }
    // No name given: make one from the type, so the receiver's file is usable.
    size_t slash = type.find('/');
    std::string sub = slash == std::string::npos ? "bin" : type.substr(slash + 1);
    return "attachment." + sub;
}

/// Decodes [from, to) of `in` into `out`: the bytes, their SHA-256 (unless
/// the sink hashes itself) and the layout.
DecodedBody decode_body(const InFile& in, uint64_t from, uint64_t to, MediaSink::Part& out)
{
    bool hash = !out.hashes_itself();
    Sha256 sha;
    Base64Body b64;
    RangeReader rd(in, from, to);
    std::string dec, tail;
    DecodedBody d;
    for (std::string_view raw = rd.next(); !raw.empty(); raw = rd.next()) {
        dec.clear();
        b64.feed(raw.data(), raw.size(), dec);
        if (hash)
            sha.update(dec.data(), dec.size());
        out.write(dec.data(), dec.size());
        d.size += dec.size();
        tail.append(dec.size() > 3 ? dec.substr(dec.size() - 3) : dec);
        if (tail.size() > 3)
            tail.erase(0, tail.size() - 3);
    }
    b64.finish(d.size, tail.substr(tail.size() - std::min<size_t>(tail.size(), d.size % 3)));
    if (hash)
        d.sha256 = sha.hex_digest();
    d.regular = b64.regular();
    d.line_len = b64.line_len();
    d.eol = b64.eol();
    d.final_eol = b64.final_eol();
    return d;
}

struct Chosen {
    Leaf leaf;
    std::string type;
};

} // namespace

struct ParsedMessage {
    std::unique_ptr<walk::Parsed> parsed;
};

void ParsedMessageDeleter::operator()(ParsedMessage* p) const
{
    delete p;
}

ParsedMessagePtr parse_growing(const std::string& path, std::shared_ptr<GrowingFile> file)
{
    gmime_init_once();
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        walk::io_fail("cannot open", path);
    ParsedMessagePtr pm(new ParsedMessage);
    pm->parsed = walk::parse_stream(growing_stream_new(fd, std::move(file)));
    return pm;
}

DetachResult detach_message(const std::string& in_path, const std::string& out_path, const DetachPolicy& policy,
                            MediaSink& sink, std::vector<Predecoded>* predecoded, ParsedMessagePtr pre_parsed)
{
    DetachResult r;
    InFile in(in_path);
    r.in_size = in.size();
    std::unique_ptr<walk::Parsed> parsed = pre_parsed ? std::move(pre_parsed->parsed) : walk::parse_file(in_path);
    if (!parsed->message) {
        r.skipped_why = "not a parseable message";
        return r;
    }
    walk::MessageWalk w = walk::walk_message(in, *parsed);
    if (w.over_cap) {
        r.skipped_why = "MIME structure over the depth or part cap";
        return r;
    }
    if (!w.protected_why.empty()) {
        // Conservative: anything signed or encrypted anywhere keeps the whole
        // message as it is, so no signature can break.
        r.protected_why = w.protected_why;
        r.skipped_why = "signed or encrypted content (" + w.protected_why + ")";
        return r;
    }

    // Choose the parts: base64 (v1), declared or sniffed media, large enough.
    std::vector<Chosen> chosen;
    for (const Leaf& leaf : w.leaves) {
        if (g_mime_part_get_content_encoding(leaf.part) != GMIME_CONTENT_ENCODING_BASE64)
            continue;
        // Encoded length bounds the decoded length from above: skip small parts early.
        if ((leaf.body_end - leaf.body_start) / 4 * 3 < policy.min_size)
            continue;
        std::string type = part_type(leaf.part);
        bool match = type_matches(type, policy.types);
        if (!match && policy.sniff) {
            RangeReader rd(in, leaf.body_start, std::min(leaf.body_end, leaf.body_start + kSniffBytes));
            std::string dec;
            Base64Body b64;
            std::string_view raw = rd.next();
            b64.feed(raw.data(), raw.size(), dec);
            match = !sniff_media(reinterpret_cast<const unsigned char*>(dec.data()), dec.size()).empty();
        }
        if (!match)
            continue;
        // The encoded length over-estimates; count exactly only when it matters.
        if ((leaf.body_end - leaf.body_start) / 4 * 3 > policy.max_size) {
            uint64_t decoded = base64_decoded_size(in, leaf.body_start, leaf.body_end);
            if (decoded > policy.max_size) {
                ++r.over_max;
                r.largest_over_max = std::max(r.largest_over_max, decoded);
                continue;
            }
        }
        chosen.push_back(Chosen{leaf, type});
    }
    if (r.over_max > 0 && policy.reject_over_max) {
        // Decided before the sink sees a byte: a refused message stores nothing.
        r.rejected = true;
        r.skipped_why = "media over max_size";
        return r;
    }
    if (chosen.empty()) {
        r.skipped_why = r.over_max > 0 ? "media over max_size left in place" : "no media";
        return r;
    }

    std::string msg_eol = detect_eol(in);
    std::vector<std::pair<const Chosen*, std::string>> replacements;   // part and its location part
    for (const Chosen& c : chosen) {
        const Leaf& leaf = c.leaf;
        Handle h;
        h.type = c.type;
        h.name = part_filename(leaf.part, c.type);
        h.encoding = "base64";
        h.headers.resize(leaf.body_start - leaf.hdr_start);
        if (in.pread_some(h.headers.data(), h.headers.size(), leaf.hdr_start) != h.headers.size())
            throw std::runtime_error("short read of part headers in " + in_path);

        DecodedBody d;
        std::unique_ptr<MediaSink::Part> out;
        Predecoded* pre = nullptr;
        if (predecoded)
            for (auto& p : *predecoded)
                if (p.part && p.body_start == leaf.body_start && p.body_end == leaf.body_end)
                    pre = &p;
        if (pre) {
            // Decoded while the message arrived, from exactly these bytes.
            d = pre->decoded;
            out = std::move(pre->part);
        } else {
            out = sink.begin(h.type, h.name);
            d = decode_body(in, leaf.body_start, leaf.body_end, *out);
        }
        if (d.size < policy.min_size)
            continue;   // smaller than the estimate; `out` is dropped, nothing stored
        h.size = d.size;
        h.sha256 = d.sha256;
        if (d.regular) {
            h.line_len = d.line_len;
            h.eol = d.eol.empty() ? msg_eol : d.eol;
            h.final_eol = d.final_eol;
        } else {
            // The sender's encoder was irregular: the receiver re-encodes in the
            // standard layout. The decoded attachment is still byte-identical.
            h.line_len = 76;
            h.eol = msg_eol;
            h.final_eol = false;
            r.skipped_why = "irregular base64 layout re-encoded";
        }
        h.part_size = h.headers.size() + base64_encoded_size(h.size, h.line_len, h.eol.size(), h.final_eol);
        out->finish(h);   // durable in the store before any handle exists
        std::string why;
        if (validate_handle(h, why) != HandleError::none)
            throw std::runtime_error("cannot write a valid handle for " + h.name + ": " + why);
        r.handles.push_back(h);
        replacements.emplace_back(&c, build_location_part(h, msg_eol));
    }
    r.detached = static_cast<unsigned>(replacements.size());
    if (r.detached == 0) {
        r.skipped_why = "no media";
        return r;
    }

    OutFile out(out_path);
    std::string top = "X-Media-Handles: " + std::to_string(r.detached) + msg_eol;
    out.write(top);
    r.out_body_offset = top.size() + body_offset(in);
    uint64_t pos = 0;
    for (const auto& [c, text] : replacements) {
        walk::copy_range(in, pos, c->leaf.hdr_start, out);
        out.write(text);
        pos = c->leaf.body_end;
    }
    walk::copy_range(in, pos, in.size(), out);
    out.close_checked();
    r.out_size = out.written();

    // The receiver finds location parts by parsing the rewritten message. GMime's
    // reading of a malformed header block (NUL bytes in it) can depend on where
    // its read buffer happens to split the input, so a part that parsed as a
    // multipart here may read as text once earlier bytes have moved. A rewrite the
    // receiver could not undo is not sent: the message goes on as it came. What
    // the sink stored for it is then referenced by nothing and expires unused.
    auto back = find_handles(out_path);
    bool same = back.size() == r.handles.size();
    for (size_t i = 0; same && i < back.size(); ++i)
        same = back[i].parsed.error == HandleError::none && back[i].parsed.handle.sha256 == r.handles[i].sha256;
    if (!same) {
        unlink(out_path.c_str());
        DetachResult left;
        left.in_size = r.in_size;
        left.over_max = r.over_max;
        left.largest_over_max = r.largest_over_max;
        left.skipped_why = "the rewritten message would not parse the same (" + std::to_string(back.size()) + " of " +
                           std::to_string(r.detached) + " location parts found); left as it is";
        return left;
    }
    return r;
}

} // namespace mm
