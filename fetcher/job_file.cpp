// job_file.cpp - the download queue's files under cache_dir/jobs (job_file.h):
// one "key=value" file per media, parsed strictly, and the .want markers of
// "mm-fetcher fetch". Reads no config keys.
#include "fetcher/job_file.h"

#include "core/util.h"

#include <charconv>
#include <cstdio>
#include <fcntl.h>
#include <unistd.h>

namespace mm {

namespace {

template <class T> bool parse_num(std::string_view s, T& out)
{
    if (s.empty())
        return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
}

bool write_small_durably(const std::string& path, const std::string& data)
{
    const std::string tmp = path + ".tmp";
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return false;
    bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) && fsync(fd) == 0;
    close(fd);
    ok = ok && rename(tmp.c_str(), path.c_str()) == 0;
    if (!ok)
        unlink(tmp.c_str());
    return ok;
}

bool read_small(const std::string& path, std::string& out, size_t cap)
{
    FILE* f = fopen(path.c_str(), "rb");
    if (!f)
        return false;
    out.assign(cap + 1, '\0');
    size_t n = fread(out.data(), 1, cap + 1, f);
    fclose(f);
    out.resize(n);
    return n <= cap;
}

/// "<64 hex><suffix>": the digest that names a file of the jobs directory.
bool digest_name(const std::string& name, const char* suffix, std::string& sha)
{
    const size_t n = std::char_traits<char>::length(suffix);
    if (name.size() != 64 + n || name.compare(64, n, suffix) != 0 || !is_hex_digest(name.substr(0, 64)))
        return false;
    sha = name.substr(0, 64);
    return true;
}

} // namespace

const char* job_state_name(Job::State s)
{
    switch (s) {
    case Job::State::asked: return "asked";
    case Job::State::download: return "download";
    case Job::State::receipt: return "receipt";
    case Job::State::refused: return "refused";
    }
    return "?";
}

bool job_value_clean(std::string_view v)
{
    for (unsigned char c : v)
        if (c < 0x20 || c == 0x7f)
            return false;
    return true;
}

std::string format_job(const Job& j)
{
    std::string s;
    s += "sha256=" + j.handle.sha256 + "\n";
    s += "size=" + std::to_string(j.handle.size) + "\n";
    s += "url=" + j.handle.url + "\n";
    s += "pin=" + j.handle.pin + "\n";
    s += std::string("state=") + job_state_name(j.state) + "\n";
    s += std::string("priority=") + (j.priority ? "1" : "0") + "\n";
    s += "attempts=" + std::to_string(j.attempts) + "\n";
    s += "next=" + std::to_string(j.next_try) + "\n";
    for (const auto& r : j.recipients)
        s += "rcpt=" + r + "\n";
    return s;
}

bool parse_job(std::string_view text, Job& out)
{
    Job j;
    bool have_sha = false, have_size = false, have_url = false, have_state = false;
    if (text.size() > kMaxJobFile || text.empty() || text.back() != '\n')
        return false;
    while (!text.empty()) {
        size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl + 1);
        size_t eq = line.find('=');
        if (eq == std::string_view::npos)
            return false;
        std::string_view k = line.substr(0, eq), v = line.substr(eq + 1);
        if (!job_value_clean(v))
            return false;
        if (k == "sha256") {
            if (!is_hex_digest(v))
                return false;
            j.handle.sha256 = v;
            have_sha = true;
        } else if (k == "size") {
            have_size = parse_num(v, j.handle.size);
            if (!have_size)
                return false;
        } else if (k == "url") {
            if (v.empty())
                return false;
            j.handle.url = v;
            have_url = true;
        } else if (k == "pin") {
            j.handle.pin = v;
        } else if (k == "state") {
            have_state = true;
            if (v == "asked") j.state = Job::State::asked;
            else if (v == "download") j.state = Job::State::download;
            else if (v == "receipt") j.state = Job::State::receipt;
            else if (v == "refused") j.state = Job::State::refused;
            else return false;
        } else if (k == "priority") {
            if (v != "0" && v != "1")
                return false;
            j.priority = v == "1";
        } else if (k == "attempts") {
            if (!parse_num(v, j.attempts))
                return false;
        } else if (k == "next") {
            if (!parse_num(v, j.next_try))
                return false;
        } else if (k == "rcpt") {
            if (v.empty() || v.size() > 254 || j.recipients.size() >= kMaxJobRecipients)
                return false;
            j.recipients.insert(std::string(v));
        } else {
            return false;
        }
    }
    if (!have_sha || !have_size || !have_url || !have_state)
        return false;
    out = std::move(j);
    return true;
}

std::string job_id(const Handle& h)
{
    std::string in = h.sha256;
    in.push_back('\0');
    in += h.url;
    in.push_back('\0');
    in += h.pin;
    return sha256_hex(in);
}

std::string job_path(const std::string& jobs_dir, const std::string& id)
{
    return jobs_dir + "/" + id + ".job";
}

std::string want_path(const std::string& jobs_dir, const std::string& id)
{
    return jobs_dir + "/" + id + ".want";
}

bool job_file_name(const std::string& name, std::string& id) { return digest_name(name, ".job", id); }

bool want_marker_name(const std::string& name, std::string& id) { return digest_name(name, ".want", id); }

JobFileName classify_job_file(const std::string& name_id, const Job& j)
{
    if (name_id == job_id(j.handle))
        return JobFileName::current;
    if (name_id == j.handle.sha256)
        return JobFileName::old_layout;
    return JobFileName::mismatch;
}

bool load_job(const std::string& path, Job& out)
{
    std::string text;
    return read_small(path, text, kMaxJobFile) && parse_job(text, out);
}

bool save_job(const std::string& jobs_dir, const Job& j)
{
    return write_small_durably(job_path(jobs_dir, job_id(j.handle)), format_job(j));
}

bool write_want_marker(const std::string& jobs_dir, const std::string& id)
{
    return write_small_durably(want_path(jobs_dir, id), "");
}

} // namespace mm
