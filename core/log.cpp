// log.cpp - stderr logging with a program name and a UTC timestamp.
#include "core/log.h"

#include <cstdio>
#include <ctime>
#include <mutex>
#include <sys/time.h>

namespace mm {

namespace {
std::string g_program = "mediamail";
LogLevel g_level = LogLevel::info;
std::mutex g_mutex;
const char* const kNames[] = {"error", "warning", "info", "debug"};
} // namespace

void log_init(const std::string& program, const std::string& level)
{
    g_program = program;
    for (int i = 0; i < 4; ++i)
        if (level == kNames[i])
            g_level = static_cast<LogLevel>(i);
}

void log(LogLevel level, const std::string& msg)
{
    if (level > g_level)
        return;
    struct timeval tv;
    gettimeofday(&tv, nullptr);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    std::lock_guard<std::mutex> lock(g_mutex);
    fprintf(stderr, "%s.%03dZ %s %s: %s\n", ts, static_cast<int>(tv.tv_usec / 1000), g_program.c_str(),
            kNames[static_cast<int>(level)], msg.c_str());
    fflush(stderr);
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
