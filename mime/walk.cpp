// walk.cpp - the message file as mime/ reads it: positioned reads, buffered
// writes, GMime's persistent parse and the walk over its leaf parts (walk.h).
#include "mime/walk.h"

#include "core/fileio.h"
#include "mime/gmime_init.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace mm::walk {

void io_fail(const std::string& what, const std::string& path)
{
    throw std::runtime_error(what + " " + path + ": " + strerror(errno));
}

InFile::InFile(const std::string& path) : path_(path)
{
    fd_ = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0)
        io_fail("cannot open", path);
    struct stat st;
    if (fstat(fd_, &st) != 0) {
        int e = errno;
        close(fd_);
        errno = e;
        io_fail("cannot stat", path);
    }
    size_ = static_cast<uint64_t>(st.st_size);
}

InFile::~InFile()
{
    close(fd_);
}

size_t InFile::pread_some(void* buf, size_t len, uint64_t off) const
{
    for (;;) {
        ssize_t n = ::pread(fd_, buf, len, static_cast<off_t>(off));
        if (n >= 0)
            return static_cast<size_t>(n);
        if (errno != EINTR)
            io_fail("cannot read", path_);
    }
}

OutFile::OutFile(const std::string& path) : path_(path)
{
    fd_ = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd_ < 0)
        io_fail("cannot create", path);
    buf_.reserve(kIoBuffer);
}

OutFile::~OutFile()
{
    if (fd_ >= 0)
        close(fd_);
}

void OutFile::write(const void* data, size_t len)
{
    const char* p = static_cast<const char*>(data);
    if (buf_.size() + len > kIoBuffer)
        flush();
    if (len >= kIoBuffer) {
        write_through(p, len);
        return;
    }
    buf_.append(p, len);
}

void OutFile::flush()
{
    write_through(buf_.data(), buf_.size());
    buf_.clear();
}

void OutFile::close_checked()
{
    flush();
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0)
        io_fail("cannot close", path_);
}

void OutFile::write_through(const char* p, size_t len)
{
    if (!write_all(fd_, p, len))
        io_fail("cannot write", path_);
    written_ += len;
}

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

Parsed::~Parsed()
{
    if (message)
        g_object_unref(message);
    if (parser)
        g_object_unref(parser);
    if (stream)
        g_object_unref(stream);   // closes its fd (owner)
}

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

namespace {

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

void walk(const InFile& in, GMimeObject* obj, bool in_multipart, unsigned depth, MessageWalk& w)
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

} // namespace

MessageWalk walk_message(const InFile& in, Parsed& p)
{
    MessageWalk w;
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

std::vector<Located> locate(const InFile& in, Parsed& p)
{
    std::vector<Located> found;
    if (!p.message)
        return found;
    MessageWalk w = walk_message(in, p);
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

} // namespace mm::walk
