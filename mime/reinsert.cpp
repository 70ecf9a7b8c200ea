// reinsert.cpp - rebuild attachments from media files in place of their location
// parts (reinsert.h): the message's own bytes are copied as they are, each media
// is base64-encoded in the layout its handle records, so the result is the
// original message byte for byte.
#include "mime/reinsert.h"

#include "mime/header_block.h"
#include "mime/walk.h"

#include <algorithm>
#include <cstring>
#include <openssl/evp.h>
#include <stdexcept>

namespace mm {

using walk::InFile;
using walk::kIoBuffer;
using walk::Located;
using walk::OutFile;
using walk::locate;
using walk::parse_file;

namespace {

/// Base64 of n bytes into out, 4 * ceil(n / 3) characters: whole groups of three
/// bytes through a table of character pairs (12 bits each, half the lookups of
/// one per character), the padded tail by OpenSSL, which also writes a NUL after
/// it (out must have room for one more byte).
size_t encode_base64(const unsigned char* p, size_t n, char* out)
{
    static const std::vector<char> pairs = [] {
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        std::vector<char> t(2 * 4096);
        for (size_t i = 0; i < 4096; ++i) {
            t[2 * i] = alphabet[i >> 6];
            t[2 * i + 1] = alphabet[i & 63];
        }
        return t;
    }();
    const size_t whole = n / 3 * 3;
    char* o = out;
    for (size_t i = 0; i < whole; i += 3) {
        uint32_t v = static_cast<uint32_t>(p[i]) << 16 | static_cast<uint32_t>(p[i + 1]) << 8 | p[i + 2];
        memcpy(o, &pairs[2 * (v >> 12)], 2);
        memcpy(o + 2, &pairs[2 * (v & 0xfff)], 2);
        o += 4;
    }
    if (whole < n)
        o += EVP_EncodeBlock(reinterpret_cast<unsigned char*>(o), p + whole, static_cast<int>(n - whole));
    return static_cast<size_t>(o - out);
}

/// Writes h.size bytes of media as base64 in the handle's layout. Whole lines are
/// encoded into one buffer and written at once: this runs while a login waits.
void encode_media(MediaInput& media, const Handle& h, OutFile& out)
{
    if (h.line_len < 4 || h.line_len % 4 != 0)
        throw std::runtime_error("handle line length " + std::to_string(h.line_len) + " is not a multiple of 4");
    const size_t line_bytes = h.line_len / 4 * 3;
    constexpr size_t kLines = 1024;
    std::string buf(line_bytes * kLines, '\0');
    std::string enc(kLines * (h.line_len + h.eol.size()) + 8, '\0');
    uint64_t left = h.size;
    bool first = true;
    while (left > 0) {
        size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), left));
        size_t have = 0;
        while (have < want)
            have += media.read(buf.data() + have, want - have);
        left -= have;
        size_t o = 0;
        for (size_t off = 0; off < have; off += line_bytes) {
            if (!first) {
                memcpy(&enc[o], h.eol.data(), h.eol.size());
                o += h.eol.size();
            }
            first = false;
            o += encode_base64(reinterpret_cast<const unsigned char*>(buf.data() + off), std::min(line_bytes, have - off),
                               &enc[o]);
        }
        out.write(enc.data(), o);
    }
    media.finish();
    if (!first && h.final_eol)
        out.write(h.eol);
}

/// Whether bytes written so far have a bare LF, and the last one: for crlf_clean.
struct LineEnds {
    bool bare = false;
    int last = -1;
    void see(std::string_view s)
    {
        for (size_t i = 0; !bare && (i = s.find('\n', i)) != std::string_view::npos; ++i)
            bare = (i == 0 ? last : static_cast<unsigned char>(s[i - 1])) != '\r';
        if (!s.empty())
            last = static_cast<unsigned char>(s.back());
    }
};

constexpr size_t kMaxTopHeader = 256 * 1024;   // a longer top-level header block is copied as it is

bool starts_ci(std::string_view s, std::string_view p)
{
    if (s.size() < p.size())
        return false;
    for (size_t i = 0; i < p.size(); ++i) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
        if (c != p[i])
            return false;
    }
    return true;
}

/// The top of a rebuilt message (docs/handle-format.md, "After re-insertion"):
/// "X-Media-Restored: N; sha256=H1,H2" first, in the message's own line end,
/// and the sender side's top-level "X-Media-Handles: N" field (with any
/// continuation lines) left out, or, while some location parts stay, made
/// the number of those. Writes through `copy` up to the end of the dropped
/// field and returns where copying goes on (0 when nothing was replaced).
template <class Copy>
uint64_t restored_header(const InFile& in, const std::vector<Located>& found, const std::vector<bool>& replace,
                         Copy& copy, OutFile* out, ReinsertLayout& layout, LineEnds& ends)
{
    std::string hashes;
    size_t restored = 0;
    for (size_t i = 0; i < found.size(); ++i)
        if (replace[i]) {
            ++restored;
            hashes += (hashes.empty() ? "" : ",") + found[i].parsed.handle.sha256;
        }
    if (restored == 0)
        return 0;
    std::string head(static_cast<size_t>(std::min<uint64_t>(in.size(), kMaxTopHeader)), '\0');
    head.resize(in.pread_some(head.data(), head.size(), 0));
    size_t first_nl = head.find('\n');
    const std::string eol = first_nl != std::string::npos && first_nl > 0 && head[first_nl - 1] == '\r' ? "\r\n" : "\n";
    auto emit = [&](const std::string& text) {
        if (out)
            out->write(text);
        layout.size += text.size();
        ends.see(text);
    };
    emit("X-Media-Restored: " + std::to_string(restored) + "; sha256=" + hashes + eol);
    // The header block ends at the first empty line; only fields inside it count.
    size_t end = std::min(head.find("\n\r\n"), head.find("\n\n"));
    if (end == std::string::npos && head.size() < in.size())
        return 0;   // a header block over kMaxTopHeader: copied as it is
    end = end == std::string::npos ? head.size() : end + 1;
    uint64_t pos = 0;
    for (size_t i = 0; i < end;) {
        size_t nl = head.find('\n', i);
        size_t next = nl == std::string::npos || nl + 1 > end ? end : nl + 1;
        if (starts_ci(std::string_view(head).substr(i), "x-media-handles:")) {
            copy(pos, i);
            while (next < end && (head[next] == ' ' || head[next] == '\t')) {
                nl = head.find('\n', next);
                next = nl == std::string::npos || nl + 1 > end ? end : nl + 1;
            }
            pos = next;
            if (restored < found.size())
                emit("X-Media-Handles: " + std::to_string(found.size() - restored) + eol);
        }
        i = next;
    }
    return pos;
}

/// The one walk behind reinsert_media and reinsert_layout: copies the message,
/// replacing location part i when replace[i], with its media from media[i]
/// into `out`; with `out` null it only works out the layout.
bool reinsert(const std::string& in_path, const std::vector<bool>& replace, const std::vector<MediaInput*>& media,
              const std::vector<std::string>& notes, OutFile* out, ReinsertLayout& layout, std::string& err)
{
    InFile in(in_path);
    auto parsed = parse_file(in_path);
    std::vector<Located> found = locate(in, *parsed);
    if (replace.size() != found.size()) {
        err = "message has " + std::to_string(found.size()) + " location parts, " +
              std::to_string(replace.size()) + " media files given";
        return false;
    }
    LineEnds ends;
    layout = {};
    // The message's own bytes are scanned as they are copied; the media's
    // line ends are the handle's.
    auto copy = [&](uint64_t from, uint64_t to) {
        char buf[kIoBuffer];
        layout.size += to - from;
        while (from < to) {
            size_t n = in.pread_some(buf, static_cast<size_t>(std::min<uint64_t>(sizeof buf, to - from)), from);
            if (n == 0)
                throw std::runtime_error("unexpected end of " + in.path());
            if (out)
                out->write(buf, n);
            ends.see(std::string_view(buf, n));
            from += n;
        }
    };
    if (!notes.empty() && notes.size() != found.size()) {
        err = "message has " + std::to_string(found.size()) + " location parts, " + std::to_string(notes.size()) +
              " notes given";
        return false;
    }
    uint64_t pos = restored_header(in, found, replace, copy, out, layout, ends);
    for (size_t i = 0; i < found.size(); ++i) {
        const Located& l = found[i];
        if (!replace[i]) {
            if (notes.empty() || notes[i].empty())
                continue;
            // The note goes at the top of the part's text, in the part's own
            // line ends; a base64 body (re-encoded by some relay) gets none.
            std::string hdr(static_cast<size_t>(l.leaf.body_start - l.leaf.hdr_start), '\0');
            if (in.pread_some(hdr.data(), hdr.size(), l.leaf.hdr_start) != hdr.size())
                throw std::runtime_error("short read of a location part in " + in.path());
            std::string cte = header_value(hdr, "Content-Transfer-Encoding");
            for (char& c : cte)
                c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
            if (cte != "" && cte != "7bit" && cte != "8bit" && cte != "quoted-printable")
                continue;
            const std::string note = format_note(notes[i], hdr.find("\r\n") != std::string::npos ? "\r\n" : "\n");
            copy(pos, l.leaf.body_start);
            if (out)
                out->write(note);
            layout.size += note.size();
            ends.see(note);
            pos = l.leaf.body_start;
            continue;
        }
        if (l.parsed.error != HandleError::none) {
            err = "location part " + std::to_string(i + 1) + " has a bad handle";
            return false;
        }
        const Handle& h = l.parsed.handle;
        copy(pos, l.leaf.hdr_start);
        layout.first_media = std::min(layout.first_media, layout.size + h.headers.size());
        if (out) {
            uint64_t before = out->written();
            out->write(h.headers);
            if (!media[i])
                throw std::runtime_error("no media given for location part " + std::to_string(i + 1));
            encode_media(*media[i], h, *out);
            if (out->written() - before != h.part_size) {
                err = "rebuilt part " + std::to_string(i + 1) + " is not the size the handle promises";
                return false;
            }
        } else if (h.part_size != h.headers.size() + base64_encoded_size(h.size, h.line_len, h.eol.size(),
                                                                          h.final_eol)) {
            err = "location part " + std::to_string(i + 1) + " promises a size its layout does not give";
            return false;
        }
        layout.size += h.part_size;
        ends.see(h.headers);
        if (h.size > 0) {
            ends.see(h.eol);
            if (!h.final_eol)
                ends.last = 'A';   // a base64 character ends the part
        }
        pos = l.leaf.body_end;
    }
    copy(pos, in.size());
    if (out)
        out->close_checked();
    layout.crlf_clean = !ends.bare && (ends.last == '\n' || ends.last == -1);
    return true;
}

} // namespace

std::string format_note(std::string_view text, std::string_view eol)
{
    std::string clean;
    for (char c : text.substr(0, kNoteMax)) {
        auto u = static_cast<unsigned char>(c);
        if (c == '=')
            c = '-';
        else if (u < 0x20 || u >= 0x7f)
            c = u == '\t' || u == '\n' || u == '\r' ? ' ' : '?';
        clean.push_back(c);
    }
    std::string out, line;
    size_t i = 0;
    while (i < clean.size()) {
        while (i < clean.size() && clean[i] == ' ')
            ++i;
        size_t j = clean.find(' ', i);
        if (j == std::string::npos)
            j = clean.size();
        std::string word = clean.substr(i, std::min<size_t>(j - i, 72));
        i = j;
        if (word.empty())
            break;
        if (!line.empty() && line.size() + 1 + word.size() > 72) {
            out += line;
            out += eol;
            line.clear();
        }
        line += line.empty() ? word : " " + word;
    }
    if (!line.empty()) {
        out += line;
        out += eol;
    }
    if (!out.empty())
        out += eol;
    return out;
}

bool reinsert_media(const std::string& in_path, const std::vector<MediaInput*>& media, const std::string& out_path,
                    std::string& err, bool* crlf_clean)
{
    return reinsert_media(in_path, media, {}, out_path, err, crlf_clean);
}

bool reinsert_media(const std::string& in_path, const std::vector<MediaInput*>& media,
                    const std::vector<std::string>& notes, const std::string& out_path, std::string& err,
                    bool* crlf_clean)
{
    try {
        std::vector<bool> replace;
        for (MediaInput* m : media)
            replace.push_back(m != nullptr);
        OutFile out(out_path);
        ReinsertLayout layout;
        if (!reinsert(in_path, replace, media, notes, &out, layout, err))
            return false;
        if (crlf_clean)
            *crlf_clean = layout.crlf_clean;
        return true;
    } catch (const std::exception& e) {
        err = e.what();
        return false;
    }
}

bool reinsert_media(const std::string& in_path, const std::vector<std::string>& media, const std::string& out_path,
                    std::string& err)
{
    std::vector<std::unique_ptr<MediaInput>> files;
    std::vector<MediaInput*> inputs;
    try {
        for (const auto& m : media) {
            files.push_back(m.empty() ? nullptr : open_media_file(m));
            inputs.push_back(files.back().get());
        }
    } catch (const std::exception& e) {
        err = e.what();
        return false;
    }
    return reinsert_media(in_path, inputs, out_path, err);
}

bool reinsert_layout(const std::string& in_path, const std::vector<bool>& replace, ReinsertLayout& layout,
                     std::string& err)
{
    return reinsert_layout(in_path, replace, {}, layout, err);
}

bool reinsert_layout(const std::string& in_path, const std::vector<bool>& replace,
                     const std::vector<std::string>& notes, ReinsertLayout& layout, std::string& err)
{
    try {
        return reinsert(in_path, replace, {}, notes, nullptr, layout, err);
    } catch (const std::exception& e) {
        err = e.what();
        return false;
    }
}

} // namespace mm
