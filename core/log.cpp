// log.cpp - one-line log records with a program name and a UTC timestamp, on
// standard error, to syslog (facility log.facility, mail by default as Postfix
// and OpenDKIM do) or appended to log.file, which SIGHUP reopens.
#include "core/log.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <mutex>
#include <sys/time.h>
#include <syslog.h>
#include <unistd.h>

namespace mm {

namespace {
std::mutex g_mutex;   // guards everything below
std::string g_program = "mediamail";
LogLevel g_level = LogLevel::info;
LogTarget g_target = LogTarget::standard_error;
std::string g_file;
int g_fd = STDERR_FILENO;   // standard error or log.file
const char* const kNames[] = {"error", "warning", "info", "debug"};

struct Facility {
    const char* name;
    int value;
};
const Facility kFacilities[] = {
    {"mail", LOG_MAIL},     {"daemon", LOG_DAEMON}, {"user", LOG_USER},     {"local0", LOG_LOCAL0},
    {"local1", LOG_LOCAL1}, {"local2", LOG_LOCAL2}, {"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4},
    {"local5", LOG_LOCAL5}, {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7},
};

int open_log_file(const std::string& path, std::string& err)
{
    // 0640: mail logs name senders and recipients.
    int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    if (fd < 0)
        err = "cannot open log.file " + path + ": " + std::strerror(errno);
    return fd;
}

void set_level_locked(const std::string& level)
{
    for (int i = 0; i < 4; ++i)
        if (level == kNames[i])
            g_level = static_cast<LogLevel>(i);
}

/// Writes all of `line`; a log line is never worth more than one retry on EINTR.
void write_all(int fd, const std::string& line)
{
    size_t off = 0;
    while (off < line.size()) {
        ssize_t n = write(fd, line.data() + off, line.size() - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        off += static_cast<size_t>(n);
    }
}
} // namespace

void log_init(const std::string& program, const std::string& level)
{
    std::lock_guard<std::mutex> lock(g_mutex);
    g_program = program;
    set_level_locked(level);
}

bool log_open(const LogOptions& o, std::string& err)
{
    int fd = STDERR_FILENO;
    if (o.target == LogTarget::file && (fd = open_log_file(o.file, err)) < 0)
        return false;
    std::lock_guard<std::mutex> lock(g_mutex);
    g_program = o.program;
    set_level_locked(o.level);
    if (g_fd != STDERR_FILENO)
        close(g_fd);
    g_fd = fd;
    g_file = o.file;
    g_target = o.target;
    if (g_target == LogTarget::syslog) {
        int facility = LOG_MAIL;
        for (const auto& f : kFacilities)
            if (o.facility == f.name)
                facility = f.value;
        // openlog keeps the pointer: g_program lives as long as the process.
        openlog(g_program.c_str(), LOG_PID | LOG_NDELAY, facility);
    }
    return true;
}

bool log_reopen(std::string& err)
{
    std::string path;
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        if (g_target != LogTarget::file)
            return true;
        path = g_file;
    }
    int fd = open_log_file(path, err);
    if (fd < 0)
        return false;
    std::lock_guard<std::mutex> lock(g_mutex);
    close(g_fd);
    g_fd = fd;
    return true;
}

void log_set_level(const std::string& level)
{
    std::lock_guard<std::mutex> lock(g_mutex);
    set_level_locked(level);
}

void log(LogLevel level, const std::string& msg)
{
    std::lock_guard<std::mutex> lock(g_mutex);
    if (level > g_level)
        return;
    if (g_target == LogTarget::syslog) {
        static const int kPriority[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
        syslog(kPriority[static_cast<int>(level)], "%s: %s", kNames[static_cast<int>(level)], msg.c_str());
        return;
    }
    struct timeval tv;
    gettimeofday(&tv, nullptr);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    char ms[8];
    snprintf(ms, sizeof ms, ".%03dZ ", static_cast<int>(tv.tv_usec / 1000));
    // One write() per line, so lines from several threads or processes never interleave.
    write_all(g_fd, ts + std::string(ms) + g_program + " " + kNames[static_cast<int>(level)] + ": " + msg + "\n");
}

std::string printable(std::string_view s, size_t max)
{
    std::string out;
    size_t n = s.size() < max ? s.size() : max;
    for (size_t i = 0; i < n; ++i) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            out += static_cast<char>(c);
        } else {
            char buf[8];
            snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        }
    }
    if (s.size() > max)
        out += "...";
    return out;
}

namespace {
std::string field_key(std::string_view key)
{
    std::string out = " ";
    for (char c : key) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '.' || c == '-';
        out += ok ? c : '_';
    }
    out += '=';
    return out;
}
} // namespace

std::string kv(std::string_view key, std::string_view value, size_t max)
{
    // printable() already escapes '\\', so the only byte left to escape inside
    // quotes is the quote itself.
    std::string safe = printable(value, max);
    bool quote = safe.empty() || safe.find_first_of(" \"=") != std::string::npos;
    std::string out = field_key(key);
    if (!quote)
        return out + safe;
    out += '"';
    for (char c : safe) {
        if (c == '"')
            out += '\\';
        out += c;
    }
    out += '"';
    return out;
}

std::string kv(std::string_view key, long long value) { return field_key(key) + std::to_string(value); }
std::string kv(std::string_view key, unsigned long long value) { return field_key(key) + std::to_string(value); }

} // namespace mm
