// compose.cpp - the message of mmsend's compose mode (see compose.h). Every
// line ends with CRLF, as on the wire; attachments are base64 in 76-character
// lines, so the detach engine sees a regular layout it can rebuild exactly.
#include "mmsend/compose.h"

#include "mime/sniff.h"
#include "core/fileio.h"
#include "core/util.h"
#include "mime/gmime_init.h"

#include <gmime/gmime.h>
#include <openssl/evp.h>

#include <cerrno>
#include <clocale>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <mutex>
#include <sys/stat.h>
#include <unistd.h>

namespace mm::send {

namespace {

constexpr const char* kEol = "\r\n";
constexpr size_t kLineBytes = 57;               // 76 base64 characters
constexpr size_t kReadChunk = kLineBytes * 1024;



// Output file with checked writes.
class Out {
public:
    explicit Out(const std::string& path) : path_(path)
    {
        f_.reset(open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
        if (f_.get() < 0)
            throw Failure(ex_cantcreat, "cannot create " + path + ": " + std::strerror(errno));
    }
    void write(std::string_view s)
    {
        if (!write_all(f_.get(), s.data(), s.size()))
            throw Failure(ex_ioerr, "cannot write " + path_ + ": " + std::strerror(errno));
    }
    void close_checked()
    {
        int fd = f_.release();
        if (fsync(fd) != 0 || close(fd) != 0) {
            throw Failure(ex_ioerr, "cannot write " + path_ + ": " + std::strerror(errno));
        }
    }

private:
    std::string path_;
    UniqueFd f_;
};

// An address list option made into a header value: parsed as RFC 5322 and
// written back by GMime, which RFC 2047-encodes non-ASCII display names.
std::string header_addresses(const std::vector<std::string>& values, const std::string& what)
{
    gmime_init_once();
    std::string out;
    for (const auto& v : values) {
        InternetAddressList* list = internet_address_list_parse(nullptr, v.c_str());
        if (!list || internet_address_list_length(list) == 0) {
            if (list)
                g_object_unref(list);
            throw UsageError(what + ": not an address: " + v.substr(0, 80));
        }
        char* text = internet_address_list_to_string(list, nullptr, TRUE);
        g_object_unref(list);
        if (!out.empty())
            out += ", ";
        out += text ? text : "";
        g_free(text);
    }
    return out;
}

std::string encode_text(const std::string& s)
{
    gmime_init_once();
    char* enc = g_mime_utils_header_encode_text(nullptr, s.c_str(), "utf-8");
    std::string out = enc ? enc : "";
    g_free(enc);
    return out;
}

std::string rfc5322_date(time_t t)
{
    // Day and month names must be English whatever the locale.
    static const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    localtime_r(&t, &tm);
    long off = tm.tm_gmtoff / 60;
    char sign = off < 0 ? '-' : '+';
    if (off < 0)
        off = -off;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d %c%02ld%02ld", days[tm.tm_wday], tm.tm_mday,
                  months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, sign, off / 60, off % 60);
    return buf;
}

bool is_ascii_text(std::string_view s)
{
    for (unsigned char c : s)
        if (c < 0x20 || c > 0x7e)
            return false;
    return true;
}

// Reads up to n bytes from the start of a file (for sniffing).
size_t read_head(int fd, unsigned char* buf, size_t n)
{
    size_t have = 0;
    while (have < n) {
        ssize_t r = pread(fd, buf + have, n - have, static_cast<off_t>(have));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        have += static_cast<size_t>(r);
    }
    return have;
}

void write_base64_file(const ComposedPart& p, Out& out, const std::function<void(uint64_t)>& progress)
{
    UniqueFd f(open(p.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (f.get() < 0)
        throw Failure(ex_noinput, "cannot open " + p.path + ": " + std::strerror(errno));
    std::string buf(kReadChunk, '\0');
    std::string enc;
    enc.reserve(kReadChunk / kLineBytes * 78 + 8);
    char line[80];
    uint64_t done = 0;
    bool first = true;
    size_t have = 0;
    for (;;) {
        ssize_t n = read(f.get(), buf.data() + have, buf.size() - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            throw Failure(ex_ioerr, "cannot read " + p.path + ": " + std::strerror(errno));
        have += static_cast<size_t>(n);
        bool eof = n == 0;
        size_t off = 0;
        enc.clear();
        while (have - off >= kLineBytes || (eof && have > off)) {
            size_t len = std::min(kLineBytes, have - off);
            int m = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(line),
                                    reinterpret_cast<const unsigned char*>(buf.data() + off), static_cast<int>(len));
            if (!first)
                enc += kEol;
            first = false;
            enc.append(line, static_cast<size_t>(m));
            off += len;
        }
        out.write(enc);
        done += off;
        std::memmove(buf.data(), buf.data() + off, have - off);
        have -= off;
        if (progress)
            progress(done);
        if (eof)
            break;
    }
    if (done != p.size)
        throw Failure(ex_dataerr, p.path + " changed size while it was read");
    // The delimiter's own CRLF follows; the encoded body does not end with one.
}

const struct {
    const char* ext;
    const char* type;
} kTypes[] = {
    {"mp4", "video/mp4"},        {"m4v", "video/mp4"},        {"mov", "video/quicktime"},
    {"mkv", "video/x-matroska"}, {"webm", "video/webm"},      {"avi", "video/x-msvideo"},
    {"mpg", "video/mpeg"},       {"mpeg", "video/mpeg"},      {"ts", "video/mp2t"},
    {"mp3", "audio/mpeg"},       {"m4a", "audio/mp4"},        {"ogg", "audio/ogg"},
    {"oga", "audio/ogg"},        {"opus", "audio/ogg"},       {"flac", "audio/flac"},
    {"wav", "audio/wav"},        {"jpg", "image/jpeg"},       {"jpeg", "image/jpeg"},
    {"png", "image/png"},        {"gif", "image/gif"},        {"pdf", "application/pdf"},
    {"txt", "text/plain"},       {"zip", "application/zip"},
};

} // namespace

std::string attachment_name(const std::string& path)
{
    std::string base = path;
    while (base.size() > 1 && base.back() == '/')
        base.pop_back();
    size_t slash = base.rfind('/');
    if (slash != std::string::npos)
        base = base.substr(slash + 1);
    gchar* valid = g_utf8_make_valid(base.c_str(), -1);
    std::string name;
    for (const char* p = valid; *p; ++p)
        name += (static_cast<unsigned char>(*p) < 0x20 || *p == 0x7f) ? '_' : *p;
    g_free(valid);
    // Cut at 255 bytes on a character boundary, as the engine would keep it.
    if (name.size() > 255) {
        size_t cut = 255;
        while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xc0) == 0x80)
            --cut;
        name.resize(cut);
    }
    if (name.empty() || name == "." || name == "..")
        name = "attachment";
    return name;
}

std::string guess_type(const std::string& name, const unsigned char* head, size_t n)
{
    std::string sniffed = mm::sniff_media(head, n);
    if (!sniffed.empty())
        return sniffed;
    size_t dot = name.rfind('.');
    if (dot != std::string::npos) {
        std::string ext = name.substr(dot + 1);
        for (char& c : ext)
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        for (const auto& t : kTypes)
            if (ext == t.ext)
                return t.type;
    }
    return "application/octet-stream";
}

std::string filename_param(const std::string& name, std::string_view eol)
{
    bool plain = name.size() <= 60 && is_ascii_text(name) && name.find_first_of("\"\\") == std::string::npos;
    if (plain)
        return "filename=\"" + name + "\"";
    // RFC 2231: attribute-char is ASCII printable minus specials, '*', '\'' and '%'.
    auto keep = [](unsigned char c) {
        return std::isalnum(c) || std::strchr("!#$&+-.^_`|~", c) != nullptr;
    };
    std::vector<std::string> sections;
    std::string cur = "utf-8''";
    static const char* hex = "0123456789ABCDEF";
    for (unsigned char c : name) {
        std::string tok = keep(c) ? std::string(1, static_cast<char>(c))
                                  : std::string{'%', hex[c >> 4], hex[c & 15]};
        if (cur.size() + tok.size() > 60) {
            sections.push_back(cur);
            cur.clear();
        }
        cur += tok;
    }
    sections.push_back(cur);
    std::string out;
    for (size_t i = 0; i < sections.size(); ++i) {
        if (i > 0)
            out += std::string(";") + std::string(eol) + " ";
        out += "filename*" + std::to_string(i) + "*=" + sections[i];
    }
    return out;
}

void QpEncoder::put(std::string_view token)
{
    // Soft line break so no encoded line exceeds 76 characters ("=" included).
    if (col_ + token.size() > 75) {
        out_("=\r\n");
        col_ = 0;
    }
    out_(token);
    col_ += token.size();
}

void QpEncoder::flush_ws(bool encode)
{
    if (!ws_)
        return;
    char c = ws_;
    ws_ = 0;
    if (encode)
        put(c == ' ' ? "=20" : "=09");
    else
        put(std::string_view(&c, 1));
}

void QpEncoder::feed(std::string_view in)
{
    static const char* hex = "0123456789ABCDEF";
    for (char ch : in) {
        unsigned char c = static_cast<unsigned char>(ch);
        if (cr_) {
            cr_ = false;
            if (c == '\n') {
                flush_ws(true);
                out_("\r\n");
                col_ = 0;
                continue;
            }
            flush_ws(false);
            put("=0D");
        }
        if (c == '\r') {
            cr_ = true;
            continue;
        }
        if (c == '\n') {
            // Whitespace at the end of a line would be lost in transport: encode it.
            flush_ws(true);
            out_("\r\n");
            col_ = 0;
            continue;
        }
        flush_ws(false);
        if (c == ' ' || c == '\t') {
            ws_ = static_cast<char>(c);
            continue;
        }
        if (c >= 33 && c <= 126 && c != '=' && !(c == '.' && col_ == 0)) {
            char s = static_cast<char>(c);
            put(std::string_view(&s, 1));
        } else {
            // A dot at a line start is encoded too, for relays that mishandle it.
            char t[3] = {'=', hex[c >> 4], hex[c & 15]};
            put(std::string_view(t, 3));
        }
    }
}

void QpEncoder::finish()
{
    if (cr_) {
        cr_ = false;
        flush_ws(false);
        put("=0D");
    }
    flush_ws(true);
    if (col_ > 0) {
        out_("\r\n");
        col_ = 0;
    }
}

std::vector<ComposedPart> check_inputs(const Options& o)
{
    if (!o.body_file.empty()) {
        struct stat st;
        if (stat(o.body_file.c_str(), &st) != 0)
            throw Failure(ex_noinput, "cannot open body file " + o.body_file + ": " + std::strerror(errno));
        if (!S_ISREG(st.st_mode))
            throw Failure(ex_noinput, "body file " + o.body_file + " is not a regular file");
    }
    std::vector<ComposedPart> parts;
    for (const auto& a : o.attachments) {
        UniqueFd f(open(a.path.c_str(), O_RDONLY | O_CLOEXEC));
        if (f.get() < 0)
            throw Failure(ex_noinput, "cannot open " + a.path + ": " + std::strerror(errno));
        struct stat st;
        if (fstat(f.get(), &st) != 0 || !S_ISREG(st.st_mode))
            throw Failure(ex_noinput, a.path + " is not a regular file");
        unsigned char head[8192];
        size_t n = read_head(f.get(), head, sizeof head);
        ComposedPart p;
        p.path = a.path;
        p.name = attachment_name(a.path);
        p.type = guess_type(p.name, head, n);
        p.size = static_cast<uint64_t>(st.st_size);
        parts.push_back(std::move(p));
    }
    return parts;
}

void compose_message(const Options& o, const std::vector<ComposedPart>& parts, const std::string& out_path,
                     const std::function<void(size_t, uint64_t)>& progress)
{
    std::string from = header_addresses({o.from}, "--from");
    std::string domain = o.from.substr(o.from.rfind('@') + 1);
    while (!domain.empty() && (domain.back() == '>' || domain.back() == ' '))
        domain.pop_back();
    if (domain.empty() || !is_ascii_text(domain) || domain.find_first_of("<>@ ") != std::string::npos)
        domain = "mmsend.invalid";

    Out out(out_path);
    std::string h;
    h += "From: " + from + kEol;
    if (!o.to.empty())
        h += "To: " + header_addresses(o.to, "--to") + kEol;
    if (!o.cc.empty())
        h += "Cc: " + header_addresses(o.cc, "--cc") + kEol;
    // Bcc recipients get the mail by envelope only: no header names them.
    h += "Subject: " + encode_text(o.subject) + kEol;
    h += "Date: " + rfc5322_date(time(nullptr)) + kEol;
    h += "Message-ID: <" + mm::random_hex(16) + "@" + domain + ">" + kEol;
    h += "MIME-Version: 1.0" + std::string(kEol);
    h += "User-Agent: mmsend (MediaMail)" + std::string(kEol);
    std::string boundary = "=_mmsend_" + mm::random_hex(12);
    if (!parts.empty())
        h += "Content-Type: multipart/mixed; boundary=\"" + boundary + "\"" + kEol + kEol +
             "This is a message in MIME format." + kEol + kEol + "--" + boundary + kEol;
    h += "Content-Type: text/plain; charset=utf-8" + std::string(kEol);
    h += "Content-Transfer-Encoding: quoted-printable" + std::string(kEol) + kEol;
    out.write(h);

    QpEncoder qp([&](std::string_view s) { out.write(s); });
    if (!o.body_file.empty()) {
        UniqueFd f(open(o.body_file.c_str(), O_RDONLY | O_CLOEXEC));
        if (f.get() < 0)
            throw Failure(ex_noinput, "cannot open body file " + o.body_file + ": " + std::strerror(errno));
        char buf[16384];
        for (;;) {
            ssize_t n = read(f.get(), buf, sizeof buf);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                throw Failure(ex_ioerr, "cannot read body file " + o.body_file + ": " + std::strerror(errno));
            if (n == 0)
                break;
            qp.feed(std::string_view(buf, static_cast<size_t>(n)));
        }
    } else {
        qp.feed(o.body);
    }
    qp.finish();

    for (size_t i = 0; i < parts.size(); ++i) {
        const ComposedPart& p = parts[i];
        std::string ph = std::string(kEol) + "--" + boundary + kEol;
        ph += "Content-Type: " + p.type + kEol;
        ph += "Content-Disposition: attachment; " + filename_param(p.name, kEol) + kEol;
        ph += "Content-Transfer-Encoding: base64" + std::string(kEol) + kEol;
        out.write(ph);
        write_base64_file(p, out, [&](uint64_t done) {
            if (progress)
                progress(i, done);
        });
    }
    if (!parts.empty())
        out.write(std::string(kEol) + "--" + boundary + "--" + kEol);
    out.close_checked();
}

} // namespace mm::send
