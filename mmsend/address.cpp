// address.cpp - header block splitting and RFC 5322 address extraction for
// mmsend -t (see address.h). Address syntax is GMime's InternetAddressList
// parser; we only add the checks that make an address usable as an SMTP path.
#include "mmsend/address.h"

#include "mmsend/options.h"
#include "core/log.h"
#include "mime/gmime_init.h"

#include <gmime/gmime.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <unistd.h>

namespace mm::send {

namespace {


bool ieq(std::string_view a, std::string_view b)
{
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return std::tolower(x) == std::tolower(y); });
}

[[noreturn]] void data_error(const std::string& msg) { throw Failure(ex_dataerr, msg); }

// An addr-spec we are willing to put after MAIL FROM / RCPT TO: local@domain,
// printable ASCII or UTF-8, no spaces, angle brackets or control characters.
bool usable_addr_spec(const std::string& a)
{
    if (a.empty() || a.size() > kMaxAddressLength)
        return false;
    size_t at = a.rfind('@');
    if (at == 0 || at == std::string::npos || at + 1 == a.size())
        return false;
    for (unsigned char c : a)
        if (c <= 0x20 || c == 0x7f || c == '<' || c == '>')
            return false;
    return true;
}

void collect(InternetAddressList* list, std::vector<std::string>& out, const std::string& what)
{
    int n = internet_address_list_length(list);
    for (int i = 0; i < n; ++i) {
        InternetAddress* ia = internet_address_list_get_address(list, i);
        if (INTERNET_ADDRESS_IS_GROUP(ia)) {
            collect(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia)), out, what);
            continue;
        }
        const char* addr = internet_address_mailbox_get_idn_addr(INTERNET_ADDRESS_MAILBOX(ia));
        std::string a = addr ? addr : "";
        if (!usable_addr_spec(a))
            data_error(what + ": not a usable address: " + printable(a, 80));
        if (out.size() >= kMaxRecipients)
            data_error(what + ": more than " + std::to_string(kMaxRecipients) + " addresses");
        out.push_back(a);
    }
}

} // namespace

HeaderBlock parse_header_block(std::string_view data, bool at_eof)
{
    HeaderBlock hb = mm::parse_header_block(data, at_eof, kMaxHeaderBytes);
    const std::string line = "header line " + std::to_string(hb.error_line);
    switch (hb.error) {
    case HeaderError::none:
        return hb;
    case HeaderError::too_long:
        data_error("header block longer than " + std::to_string(kMaxHeaderBytes) + " bytes");
    case HeaderError::no_line_break:
        data_error(line + " does not end with a line break");
    case HeaderError::continuation_first:
        data_error(line + " is a continuation line");
    case HeaderError::not_a_field:
        data_error(line + " is not a header field");
    case HeaderError::bad_name:
        data_error(line + " has a bad field name");
    }
    data_error(line + " is malformed");
}

std::vector<std::string> parse_address_list(const std::string& value, const std::string& what)
{
    gmime_init_once();
    std::vector<std::string> out;
    std::string trimmed = value;
    trimmed.erase(0, trimmed.find_first_not_of(" \t"));
    if (trimmed.find_first_not_of(" \t") == std::string::npos)
        return out;   // "To:" with nothing: legal in practice, no recipients
    InternetAddressList* list = internet_address_list_parse(nullptr, value.c_str());
    if (!list)
        data_error(what + ": not an address list");
    try {
        collect(list, out, what);
    } catch (...) {
        g_object_unref(list);
        throw;
    }
    g_object_unref(list);
    if (out.empty())
        data_error(what + ": no address found");
    return out;
}

std::string parse_one_address(const std::string& value, const std::string& what, int code)
{
    try {
        std::vector<std::string> v = parse_address_list(value, what);
        if (v.size() != 1)
            throw Failure(code, what + ": exactly one address expected");
        return v[0];
    } catch (const Failure& f) {
        throw Failure(code, f.what());
    }
}

MessageHeaders read_message_headers(const std::string& path)
{
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        throw Failure(ex_ioerr, "cannot open " + path + ": " + std::strerror(errno));
    std::string buf(kMaxHeaderBytes + 1, '\0');
    size_t have = 0;
    while (have < buf.size()) {
        ssize_t n = pread(fd, buf.data() + have, buf.size() - have, static_cast<off_t>(have));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            throw Failure(ex_ioerr, "cannot read " + path + ": " + std::strerror(e));
        }
        if (n == 0)
            break;
        have += static_cast<size_t>(n);
    }
    close(fd);
    bool at_eof = have < buf.size();
    buf.resize(have);
    MessageHeaders m;
    m.block = parse_header_block(buf, at_eof);
    for (const auto& f : m.block.fields) {
        if (ieq(f.name, "To"))
            add_recipients(m.to, parse_address_list(f.value, "To header"));
        else if (ieq(f.name, "Cc"))
            add_recipients(m.cc, parse_address_list(f.value, "Cc header"));
        else if (ieq(f.name, "Bcc"))
            add_recipients(m.bcc, parse_address_list(f.value, "Bcc header"));
        else if (ieq(f.name, "From"))
            add_recipients(m.from, parse_address_list(f.value, "From header"));
        else if (ieq(f.name, "Date"))
            m.has_date = true;
        else if (ieq(f.name, "Message-ID"))
            m.has_message_id = true;
    }
    return m;
}

void copy_without_bcc(const std::string& in_path, const MessageHeaders& h, const std::string& out_path)
{
    int in = open(in_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (in < 0)
        throw Failure(ex_ioerr, "cannot open " + in_path + ": " + std::strerror(errno));
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        int e = errno;
        close(in);
        throw Failure(ex_cantcreat, "cannot create " + out_path + ": " + std::strerror(e));
    }
    std::string buf(1 << 16, '\0');
    auto fail = [&](const std::string& what) {
        int e = errno;
        close(in);
        close(out);
        throw Failure(ex_ioerr, what + ": " + std::strerror(e));
    };
    auto copy = [&](uint64_t from, uint64_t to) {
        while (from < to) {
            size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), to - from));
            ssize_t n = pread(in, buf.data(), want, static_cast<off_t>(from));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                fail("cannot read " + in_path);
            for (ssize_t done = 0; done < n;) {
                ssize_t w = write(out, buf.data() + done, static_cast<size_t>(n - done));
                if (w < 0 && errno == EINTR)
                    continue;
                if (w < 0)
                    fail("cannot write " + out_path);
                done += w;
            }
            from += static_cast<uint64_t>(n);
        }
    };
    uint64_t pos = 0;
    for (const auto& f : h.block.fields) {
        if (!ieq(f.name, "Bcc"))
            continue;
        copy(pos, f.begin);
        pos = f.end;
    }
    off_t total = lseek(in, 0, SEEK_END);
    if (total < 0)
        fail("cannot size " + in_path);
    copy(pos, static_cast<uint64_t>(total));
    if (fsync(out) != 0)
        fail("cannot sync " + out_path);
    close(in);
    if (close(out) != 0)
        throw Failure(ex_ioerr, "cannot close " + out_path + ": " + std::strerror(errno));
}

void add_recipients(std::vector<std::string>& list, const std::vector<std::string>& add)
{
    for (const auto& a : add) {
        bool dup = std::any_of(list.begin(), list.end(), [&](const std::string& x) { return ieq(x, a); });
        if (dup)
            continue;
        if (list.size() >= kMaxRecipients)
            throw Failure(ex_usage, "more than " + std::to_string(kMaxRecipients) + " recipients");
        list.push_back(a);
    }
}

} // namespace mm::send
