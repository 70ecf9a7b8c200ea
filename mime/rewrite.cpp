// rewrite.cpp - detach media attachments into a sink, and re-insert them, while
// every byte of the message that is not replaced is copied as it was.
//
// GMime parses the message with a persistent stream: part bodies stay in the
// file and GMime only records their offsets, so memory does not grow with the
// message. We then copy byte ranges of the input and splice in new parts.
#include "mime/rewrite.h"

#include "mime/base64_body.h"
#include "mime/growing.h"
#include "mime/prescan.h"
#include "core/util.h"
#include "mime/gmime_init.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <gmime/gmime.h>
#include <mutex>
#include <openssl/evp.h>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace mm {

namespace {

constexpr size_t kIoBuffer = 64 * 1024;
constexpr size_t kSniffBytes = 8 * 1024;   // encoded bytes read to sniff a part

[[noreturn]] void io_fail(const std::string& what, const std::string& path)
{
    throw std::runtime_error(what + " " + path + ": " + strerror(errno));
}


/// An input file with positioned reads.
class InFile {
public:
    explicit InFile(const std::string& path) : path_(path)
    {
        fd_ = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_ < 0)
            io_fail("cannot open", path);
        struct stat st;
        if (fstat(fd_, &st) != 0)
            io_fail("cannot stat", path);
        size_ = static_cast<uint64_t>(st.st_size);
    }
    ~InFile() { close(fd_); }
    InFile(const InFile&) = delete;
    InFile& operator=(const InFile&) = delete;

    size_t pread_some(void* buf, size_t len, uint64_t off) const
    {
        for (;;) {
            ssize_t n = ::pread(fd_, buf, len, static_cast<off_t>(off));
            if (n >= 0)
                return static_cast<size_t>(n);
            if (errno != EINTR)
                io_fail("cannot read", path_);
        }
    }
    uint64_t size() const { return size_; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    int fd_ = -1;
    uint64_t size_ = 0;
};

/// A buffered output file, created exclusively by the caller's choice of name.
class OutFile {
public:
    explicit OutFile(const std::string& path) : path_(path)
    {
        fd_ = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd_ < 0)
            io_fail("cannot create", path);
        buf_.reserve(kIoBuffer);
    }
    ~OutFile()
    {
        if (fd_ >= 0)
            close(fd_);
    }
    OutFile(const OutFile&) = delete;
    OutFile& operator=(const OutFile&) = delete;

    void write(const void* data, size_t len)
    {
        const char* p = static_cast<const char*>(data);
        if (buf_.size() + len > kIoBuffer)
            flush();
        if (len >= kIoBuffer) {
            write_all(p, len);
            return;
        }
        buf_.append(p, len);
    }
    void write(std::string_view s) { write(s.data(), s.size()); }
    void flush()
    {
        write_all(buf_.data(), buf_.size());
        buf_.clear();
    }
    void close_checked()
    {
        flush();
        if (::close(fd_) != 0) {
            fd_ = -1;
            io_fail("cannot close", path_);
        }
        fd_ = -1;
    }
    uint64_t written() const { return written_ + buf_.size(); }

private:
    void write_all(const char* p, size_t len)
    {
        while (len > 0) {
            ssize_t n = ::write(fd_, p, len);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                io_fail("cannot write", path_);
            }
            p += n;
            len -= static_cast<size_t>(n);
            written_ += static_cast<uint64_t>(n);
        }
    }
    std::string path_;
    int fd_ = -1;
    std::string buf_;
    uint64_t written_ = 0;
};

void copy_range(const InFile& in, uint64_t from, uint64_t to, OutFile& out)
{
    char buf[kIoBuffer];
    while (from < to) {
        size_t want = static_cast<size_t>(std::min<uint64_t>(sizeof buf, to - from));
        size_t n = in.pread_some(buf, want, from);
        if (n == 0)
            throw std::runtime_error("unexpected end of " + in.path());
        out.write(buf, n);
        from += n;
    }
}

/// The parsed message, owning GMime's objects.
struct Parsed {
    GMimeStream* stream = nullptr;
    GMimeParser* parser = nullptr;
    GMimeMessage* message = nullptr;
    ~Parsed()
    {
        if (message)
            g_object_unref(message);
        if (parser)
            g_object_unref(parser);
        if (stream)
            g_object_unref(stream);   // closes its fd (owner)
    }
};

std::unique_ptr<Parsed> parse_stream(GMimeStream* stream)
{
    auto p = std::make_unique<Parsed>();
    p->stream = stream;
    p->parser = g_mime_parser_new_with_stream(p->stream);
    // Persistent: part contents stay in the file as offsets, never copied to memory.
    g_mime_parser_set_persist_stream(p->parser, TRUE);
    p->message = g_mime_parser_construct_message(p->parser, nullptr);
    return p;
}

std::unique_ptr<Parsed> parse_file(const std::string& path)
{
    gmime_init_once();
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        io_fail("cannot open", path);
    return parse_stream(g_mime_stream_fs_new(fd));   // the stream owns fd
}

/// A leaf part directly inside a multipart, with its byte range in the file:
/// [hdr_start, body_start) is its header block including the empty line,
/// [body_start, body_end) its body without the line break that belongs to the
/// next boundary delimiter.
struct Leaf {
    GMimePart* part;
    uint64_t hdr_start, body_start, body_end;
};

struct Walk {
    std::vector<Leaf> leaves;
    unsigned parts = 0;
    bool over_cap = false;
    std::string protected_why;   // signed/encrypted content seen and left alone
};

bool leaf_range(const InFile& in, GMimePart* part, Leaf& leaf)
{
    GMimeHeaderList* headers = g_mime_object_get_header_list(GMIME_OBJECT(part));
    if (!headers || g_mime_header_list_get_count(headers) == 0)
        return false;
    GMimeHeader* first = g_mime_header_list_get_header_at(headers, 0);
    gint64 hoff = g_mime_header_get_offset(first);
    GMimeDataWrapper* content = g_mime_part_get_content(part);
    if (!content)
        return false;
    GMimeStream* s = g_mime_data_wrapper_get_stream(content);
    if (!s || hoff < 0 || s->bound_start <= hoff || s->bound_end < s->bound_start ||
        static_cast<uint64_t>(s->bound_end) > in.size())
        return false;
    // The header block must really start with this part's first header field:
    // offsets we cannot confirm are never used to cut the message.
    const char* name = g_mime_header_get_name(first);
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > 200)
        return false;
    char buf[256];
    if (in.pread_some(buf, nlen + 1, static_cast<uint64_t>(hoff)) != nlen + 1 ||
        g_ascii_strncasecmp(buf, name, nlen) != 0 || buf[nlen] != ':')
        return false;
    // ...and end with an empty line.
    uint64_t bs = static_cast<uint64_t>(s->bound_start);
    if (bs < 2 || in.pread_some(buf, 2, bs - 2) != 2 || buf[1] != '\n')
        return false;
    leaf = Leaf{part, static_cast<uint64_t>(hoff), bs, static_cast<uint64_t>(s->bound_end)};
    return true;
}

/// Whether the raw body of a text part carries an inline PGP block: the
/// signature covers the text as it is, so the message must stay as it is.
bool has_inline_pgp(const InFile& in, GMimePart* part)
{
    GMimeDataWrapper* content = g_mime_part_get_content(part);
    GMimeStream* s = content ? g_mime_data_wrapper_get_stream(content) : nullptr;
    if (!s || s->bound_start < 0)
        return false;
    uint64_t from = static_cast<uint64_t>(s->bound_start);
    uint64_t to = s->bound_end < 0 ? in.size() : std::min<uint64_t>(static_cast<uint64_t>(s->bound_end), in.size());
    static constexpr std::string_view kArmor = "-----BEGIN PGP";
    // Fixed buffer; keep the last few bytes of each read so a marker split
    // across two reads is still found.
    char buf[kIoBuffer];
    size_t keep = 0;
    while (from < to) {
        size_t want = static_cast<size_t>(std::min<uint64_t>(sizeof buf - keep, to - from));
        size_t n = in.pread_some(buf + keep, want, from);
        if (n == 0)
            break;
        from += n;
        std::string_view view(buf, keep + n);
        if (view.find(kArmor) != std::string_view::npos)
            return true;
        keep = std::min(view.size(), kArmor.size() - 1);
        memmove(buf, buf + view.size() - keep, keep);
    }
    return false;
}

void walk(const InFile& in, GMimeObject* obj, bool in_multipart, unsigned depth, Walk& w)
{
    if (!obj || w.over_cap)
        return;
    if (depth > kMaxMimeDepth || ++w.parts > kMaxMimeParts) {
        w.over_cap = true;
        return;
    }
    if (GMIME_IS_MULTIPART_SIGNED(obj) || GMIME_IS_MULTIPART_ENCRYPTED(obj)) {
        // A signature covers these bytes; changing them would break it.
        w.protected_why = GMIME_IS_MULTIPART_SIGNED(obj) ? "multipart/signed" : "multipart/encrypted";
        return;
    }
    if (GMIME_IS_MULTIPART(obj)) {
        GMimeMultipart* mp = GMIME_MULTIPART(obj);
        int n = g_mime_multipart_get_count(mp);
        for (int i = 0; i < n && !w.over_cap; ++i)
            walk(in, g_mime_multipart_get_part(mp, i), true, depth + 1, w);
        return;
    }
    if (GMIME_IS_MESSAGE_PART(obj)) {
        GMimeMessage* inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
        if (inner)
            walk(in, g_mime_message_get_mime_part(inner), false, depth + 1, w);
        return;
    }
    if (GMIME_IS_PART(obj)) {
        GMimeContentType* ct = g_mime_object_get_content_type(obj);
        if (ct && (g_mime_content_type_is_type(ct, "application", "pkcs7-mime") ||
                   g_mime_content_type_is_type(ct, "application", "x-pkcs7-mime"))) {
            w.protected_why = "application/pkcs7-mime";
            return;
        }
        // A location part of ours may quote an armor line in a file name; it is
        // not a PGP message, and the receiver must still find it.
        if (ct && g_mime_content_type_is_type(ct, "text", "*") &&
            !g_mime_object_get_header(obj, "X-Media-Handle") && has_inline_pgp(in, GMIME_PART(obj))) {
            w.protected_why = "inline PGP";
            return;
        }
    }
    // A single part that is a whole message's body shares its header block with
    // the message headers; only parts inside a multipart have a block of their own.
    if (GMIME_IS_PART(obj) && in_multipart) {
        Leaf leaf;
        if (leaf_range(in, GMIME_PART(obj), leaf))
            w.leaves.push_back(leaf);
    }
}

Walk walk_message(const InFile& in, Parsed& p)
{
    Walk w;
    if (p.message) {
        GMimeObject* top = g_mime_message_get_mime_part(p.message);
        if (top && GMIME_IS_PART(top)) {
            const char* ct = g_mime_object_get_content_type(top)
                                 ? g_mime_content_type_get_media_type(g_mime_object_get_content_type(top))
                                 : nullptr;
            if (ct && g_ascii_strcasecmp(ct, "application") == 0) {
                char* t = g_mime_content_type_get_mime_type(g_mime_object_get_content_type(top));
                if (t && g_ascii_strcasecmp(t, "application/pkcs7-mime") == 0)
                    w.protected_why = "application/pkcs7-mime";
                g_free(t);
            }
        }
        walk(in, top, false, 0, w);
    }
    return w;
}

std::string lower(std::string s)
{
    for (auto& c : s)
        c = static_cast<char>(g_ascii_tolower(c));
    return s;
}

std::string part_type(GMimePart* part)
{
    GMimeContentType* ct = g_mime_object_get_content_type(GMIME_OBJECT(part));
    if (!ct)
        return "application/octet-stream";
    char* t = g_mime_content_type_get_mime_type(ct);
    std::string s = t ? lower(t) : "application/octet-stream";
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
    std::unique_ptr<Parsed> parsed;
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
        io_fail("cannot open", path);
    ParsedMessagePtr pm(new ParsedMessage);
    pm->parsed = parse_stream(growing_stream_new(fd, std::move(file)));
    return pm;
}

bool type_matches(const std::string& type, const std::vector<std::string>& patterns)
{
    for (const auto& pat : patterns) {
        std::string p = lower(pat);
        if (p == "*/*" || p == "*")
            return true;
        if (p.size() >= 2 && p.compare(p.size() - 2, 2, "/*") == 0) {
            if (type.compare(0, p.size() - 1, p, 0, p.size() - 1) == 0)
                return true;
        } else if (p == type) {
            return true;
        }
    }
    return false;
}

uint64_t base64_encoded_size(uint64_t size, unsigned line_len, size_t eol_len, bool final_eol)
{
    uint64_t chars = 4 * ((size + 2) / 3);
    if (chars == 0)
        return 0;
    uint64_t lines = (chars + line_len - 1) / line_len;
    return chars + eol_len * (final_eol ? lines : lines - 1);
}

DetachResult detach_message(const std::string& in_path, const std::string& out_path, const DetachPolicy& policy,
                            MediaSink& sink, std::vector<Predecoded>* predecoded, ParsedMessagePtr pre_parsed)
{
    DetachResult r;
    InFile in(in_path);
    r.in_size = in.size();
    std::unique_ptr<Parsed> parsed = pre_parsed ? std::move(pre_parsed->parsed) : parse_file(in_path);
    if (!parsed->message) {
        r.skipped_why = "not a parseable message";
        return r;
    }
    Walk w = walk_message(in, *parsed);
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
        copy_range(in, pos, c->leaf.hdr_start, out);
        out.write(text);
        pos = c->leaf.body_end;
    }
    copy_range(in, pos, in.size(), out);
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

namespace {

/// Location parts in message order, with their parsed handles.
struct Located {
    Leaf leaf;
    HandleParse parsed;
};

std::vector<Located> locate(const InFile& in, Parsed& p)
{
    std::vector<Located> found;
    if (!p.message)
        return found;
    Walk w = walk_message(in, p);
    for (const Leaf& leaf : w.leaves) {
        GMimeHeaderList* hl = g_mime_object_get_header_list(GMIME_OBJECT(leaf.part));
        int n = g_mime_header_list_get_count(hl);
        for (int i = 0; i < n; ++i) {
            GMimeHeader* hdr = g_mime_header_list_get_header_at(hl, i);
            if (g_ascii_strcasecmp(g_mime_header_get_name(hdr), "X-Media-Handle") != 0)
                continue;
            const char* raw = g_mime_header_get_raw_value(hdr);
            found.push_back(Located{leaf, parse_handle(raw ? raw : "")});
            break;
        }
    }
    return found;
}

/// A finished media file, read front to back.
class FileMediaInput : public MediaInput {
public:
    explicit FileMediaInput(const std::string& path) : in_(path) {}
    size_t read(char* buf, size_t n) override
    {
        size_t got = in_.pread_some(buf, n, pos_);
        if (got == 0)
            throw std::runtime_error("media file " + in_.path() + " is shorter than its handle says");
        pos_ += got;
        return got;
    }
    void finish() override
    {
        if (pos_ != in_.size())
            throw std::runtime_error("media file " + in_.path() + " is longer than its handle says");
    }

private:
    InFile in_;
    uint64_t pos_ = 0;
};

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

} // namespace

std::vector<FoundHandle> find_handles(const std::string& path)
{
    InFile in(path);
    auto parsed = parse_file(path);
    std::vector<FoundHandle> out;
    for (auto& l : locate(in, *parsed))
        out.push_back(FoundHandle{std::move(l.parsed)});
    return out;
}

std::unique_ptr<MediaInput> open_media_file(const std::string& path)
{
    return std::make_unique<FileMediaInput>(path);
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

namespace {

/// The one walk behind reinsert_media and reinsert_layout: copies the message,
/// replacing location part i when replace[i], with its media from media[i]
/// into `out`; with `out` null it only works out the layout.
bool reinsert(const std::string& in_path, const std::vector<bool>& replace, const std::vector<MediaInput*>& media,
              OutFile* out, ReinsertLayout& layout, std::string& err)
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
    uint64_t pos = 0;
    for (size_t i = 0; i < found.size(); ++i) {
        if (!replace[i])
            continue;
        const Located& l = found[i];
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

bool reinsert_media(const std::string& in_path, const std::vector<MediaInput*>& media, const std::string& out_path,
                    std::string& err, bool* crlf_clean)
{
    try {
        std::vector<bool> replace;
        for (MediaInput* m : media)
            replace.push_back(m != nullptr);
        OutFile out(out_path);
        ReinsertLayout layout;
        if (!reinsert(in_path, replace, media, &out, layout, err))
            return false;
        if (crlf_clean)
            *crlf_clean = layout.crlf_clean;
        return true;
    } catch (const std::exception& e) {
        err = e.what();
        return false;
    }
}

bool reinsert_layout(const std::string& in_path, const std::vector<bool>& replace, ReinsertLayout& layout,
                     std::string& err)
{
    try {
        return reinsert(in_path, replace, {}, nullptr, layout, err);
    } catch (const std::exception& e) {
        err = e.what();
        return false;
    }
}

} // namespace mm
