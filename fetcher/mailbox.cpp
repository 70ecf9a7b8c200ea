// mailbox.cpp - upstream mailbox to presented files: the cache (cache_dir/msg/<key>.eml,
// cache_dir/media/<sha256>), handle resolution and the held-back rule. RFC 1939 UIDL/LIST.
// Config keys: fetcher.cache_dir, fetcher.max_size (through SyncOptions).
#include "mailbox.h"

#include "config.h"
#include "log.h"
#include "rewrite.h"
#include "util.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <sys/stat.h>
#include <unistd.h>

namespace mm {

namespace {

// Two sessions resolving the same handle must not append to one .part file.
std::mutex g_download_mutex;

bool file_size(const std::string& path, uint64_t& out)
{
    struct stat st;
    if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    out = static_cast<uint64_t>(st.st_size);
    return true;
}

/// Copies in -> out converting bare LF to CRLF, so that the presented file is
/// exactly what RETR sends (before dot-stuffing) and its size is what LIST says.
bool normalise_crlf(const std::string& in, const std::string& out)
{
    FILE* f = fopen(in.c_str(), "rb");
    if (!f)
        return false;
    int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fclose(f);
        return false;
    }
    std::string buf;
    bool ok = true;
    int prev = -1, c;
    while ((c = getc(f)) != EOF) {
        if (c == '\n' && prev != '\r')
            buf.push_back('\r');
        buf.push_back(static_cast<char>(c));
        prev = c;
        if (buf.size() >= 65536) {
            ok = ok && ::write(fd, buf.data(), buf.size()) == static_cast<ssize_t>(buf.size());
            buf.clear();
        }
    }
    ok = ok && !ferror(f);
    if (ok && !buf.empty())
        ok = ::write(fd, buf.data(), buf.size()) == static_cast<ssize_t>(buf.size());
    // A POP3 message ends with CRLF before the terminating dot; keep that true here.
    if (ok && prev != '\n' && prev != -1)
        ok = ::write(fd, "\r\n", 2) == 2;
    ok = ok && fsync(fd) == 0;
    fclose(f);
    ::close(fd);
    if (!ok)
        unlink(out.c_str());
    return ok;
}

enum class Outcome { shown, held, io };

/// Makes sure the presented file for one message exists. `raw` is the cache path
/// for the RETR'd bytes, `presented` the file the client will see.
Outcome present_one(Upstream& up, uint64_t num, const std::string& base, const SyncOptions& opt,
                    SyncStats& stats, std::string& why)
{
    const std::string presented = base + ".eml";
    const std::string raw = base + ".raw";
    uint64_t sz = 0;
    if (file_size(presented, sz))
        return Outcome::shown;

    if (!file_size(raw, sz)) {
        const std::string tmp = raw + ".tmp" + random_hex(4);
        uint64_t written = 0;
        std::string err;
        auto r = up.retr_to_file(num, tmp, opt.max_size, written, err);
        stats.fetched_bytes += written;
        if (r == Upstream::Fetch::io) {
            why = err;
            return Outcome::io;
        }
        if (r != Upstream::Fetch::ok) {
            why = err;
            return Outcome::held;
        }
        if (rename(tmp.c_str(), raw.c_str()) != 0) {
            unlink(tmp.c_str());
            why = std::string("rename: ") + std::strerror(errno);
            return Outcome::held;
        }
    }

    std::vector<FoundHandle> found;
    try {
        found = find_handles(raw);
    } catch (const std::exception& e) {
        // A message GMime cannot walk is still a message: show it as it came
        // rather than hide mail from its recipient.
        log_warning("find_handles failed, presenting as is: " + printable(e.what()));
        found.clear();
    }
    std::vector<std::string> media(found.size());
    bool any = false;
    for (size_t i = 0; i < found.size(); ++i) {
        const auto& f = found[i];
        if (f.parsed.error != HandleError::none) {
            // An unparsable location part stays in the mail as the sender's note.
            log_warning(std::string("bad handle left in place: ") + handle_error_name(f.parsed.error) +
                        " " + printable(f.parsed.detail));
            continue;
        }
        std::string err;
        std::string path;
        {
            std::lock_guard<std::mutex> lock(g_download_mutex);
            path = download_media(f.parsed.handle, opt.download, err);
        }
        if (path.empty()) {
            why = "media " + f.parsed.handle.sha256.substr(0, 16) + ": " + err;
            return Outcome::held;
        }
        media[i] = path;
        any = true;
    }

    const std::string tmp = presented + ".tmp" + random_hex(4);
    if (!any) {
        // No media: the presented file is the raw message, byte for byte (already CRLF).
        if (rename(raw.c_str(), presented.c_str()) != 0) {
            why = std::string("rename: ") + std::strerror(errno);
            return Outcome::held;
        }
        fsync_dir_of(presented);
        return Outcome::shown;
    }
    const std::string rebuilt = presented + ".rebuilt" + random_hex(4);
    std::string err;
    bool ok = false;
    try {
        ok = reinsert_media(raw, media, rebuilt, err);
    } catch (const std::exception& e) {
        err = e.what();
    }
    if (!ok) {
        unlink(rebuilt.c_str());
        why = "reinsert failed: " + printable(err);
        return Outcome::held;
    }
    bool norm = normalise_crlf(rebuilt, tmp);
    unlink(rebuilt.c_str());
    if (!norm || rename(tmp.c_str(), presented.c_str()) != 0) {
        unlink(tmp.c_str());
        why = "cannot write presented file";
        return Outcome::held;
    }
    fsync_dir_of(presented);
    unlink(raw.c_str());
    return Outcome::shown;
}

bool parse_listing(const std::string& line, uint64_t& num, std::string& value)
{
    size_t sp = line.find(' ');
    if (sp == std::string::npos || !parse_u64(std::string_view(line).substr(0, sp), num) || num == 0)
        return false;
    value = line.substr(sp + 1);
    return !value.empty();
}

} // namespace

std::string cache_key(const std::string& upstream_id, const std::string& user, const std::string& uidl)
{
    // NUL separators: no (user, uidl) pair can be made to collide with another.
    std::string in = upstream_id;
    in.push_back('\0');
    in += user;
    in.push_back('\0');
    in += uidl;
    return sha256_hex(in);
}

bool valid_uidl(const std::string& s)
{
    if (s.empty() || s.size() > 70)
        return false;
    for (unsigned char c : s)
        if (c < 0x21 || c > 0x7e)
            return false;
    return true;
}

bool prepare_cache(const std::string& cache_dir, std::string& err)
{
    for (const std::string& d : {cache_dir, cache_dir + "/msg", cache_dir + "/media"}) {
        if (mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) {
            err = "cannot create " + d + ": " + std::strerror(errno);
            return false;
        }
        struct stat st;
        if (stat(d.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
            err = d + " is not a directory";
            return false;
        }
    }
    return true;
}

bool synchronise(Upstream& up, const std::string& user, const SyncOptions& opt,
                 std::vector<ShownMessage>& shown, SyncStats& stats, std::string& err)
{
    shown.clear();
    std::vector<std::string> lines;
    std::string text;
    Reply r = up.multiline("UIDL", lines, text);
    if (r != Reply::ok) {
        // Without stable ids there is no cache key: refuse rather than guess.
        err = r == Reply::err ? "upstream does not support UIDL" : "upstream connection lost";
        return false;
    }
    std::map<uint64_t, std::string> uidls;
    for (const auto& l : lines) {
        uint64_t n;
        std::string v;
        if (!parse_listing(l, n, v) || !valid_uidl(v)) {
            err = "bad UIDL line from upstream: " + printable(l);
            return false;
        }
        uidls[n] = v;
    }
    r = up.multiline("LIST", lines, text);
    if (r != Reply::ok) {
        err = "upstream LIST failed";
        return false;
    }
    std::vector<uint64_t> nums;
    for (const auto& l : lines) {
        uint64_t n, size;
        std::string v;
        if (!parse_listing(l, n, v) || !parse_u64(v, size)) {
            err = "bad LIST line from upstream: " + printable(l);
            return false;
        }
        nums.push_back(n);
    }
    for (uint64_t n : nums) {
        if (opt.stop && opt.stop->load()) {
            err = "shutting down";
            return false;
        }
        auto it = uidls.find(n);
        if (it == uidls.end()) {
            ++stats.held;
            log_warning("message " + std::to_string(n) + " has no UIDL; held back");
            continue;
        }
        std::string base = opt.cache_dir + "/msg/" + cache_key(opt.upstream_id, user, it->second);
        std::string why;
        Outcome o = present_one(up, n, base, opt, stats, why);
        if (o == Outcome::io) {
            err = why;
            return false;
        }
        if (o == Outcome::held) {
            ++stats.held;
            log_info("held back uidl=" + printable(it->second) + ": " + why);
            continue;
        }
        ShownMessage m;
        m.upstream_num = n;
        m.uidl = it->second;
        m.path = base + ".eml";
        if (!file_size(m.path, m.size)) {
            ++stats.held;
            continue;
        }
        shown.push_back(std::move(m));
        ++stats.shown;
    }
    return true;
}

} // namespace mm
