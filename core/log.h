// log.h - one-line log records (stderr, syslog or a file), the escaping of peer
// input for them and the key=value fields that follow each message.
//
// Reads log.level, log.target, log.facility and log.file (through LogOptions).
// Peer bytes never reach the log raw: printable() cuts them to
// about 160 characters and escapes control characters first.
#pragma once

#include <string>
#include <string_view>

namespace mm {

enum class LogLevel { error = 0, warning = 1, info = 2, debug = 3 };

enum class LogTarget { standard_error, syslog, file };

struct LogOptions {
    std::string program;            // "mm-gateway": the syslog ident and the line's prefix
    std::string level = "info";     // log.level
    LogTarget target = LogTarget::standard_error;
    std::string facility = "mail";  // log.facility, for syslog
    std::string file;               // log.file, for LogTarget::file
};

/// Logging to standard error at `level` (the simple form, for tests and tools).
void log_init(const std::string& program, const std::string& level);
/// Logging as `o` says; false with `err` set when the log file cannot be opened.
bool log_open(const LogOptions& o, std::string& err);
/// SIGHUP's part: opens log.file again by name (after logrotate moved it away)
/// and swaps it in; on failure the old file stays in use and `err` says why.
/// A no-op for the other targets.
bool log_reopen(std::string& err);
/// Changes the level (a reloaded log.level).
void log_set_level(const std::string& level);
void log(LogLevel level, const std::string& msg);
inline void log_error(const std::string& m) { log(LogLevel::error, m); }
inline void log_warning(const std::string& m) { log(LogLevel::warning, m); }
inline void log_info(const std::string& m) { log(LogLevel::info, m); }
inline void log_debug(const std::string& m) { log(LogLevel::debug, m); }

/// Peer input made safe for a log line: at most `max` bytes, control and
/// non-ASCII bytes as \xNN.
std::string printable(std::string_view s, size_t max = 160);

/// One key=value field for a log line, with a leading space so fields chain:
///   log_info("sent" + kv("id", id) + kv("bytes", n));
/// The value is cut to `max` bytes (then "..." follows), control and non-ASCII
/// bytes (and '\\') become \xNN, and it is put in double quotes (a '"' inside
/// as \") when it is empty or holds a space, '"' or '=', so a reader can split a
/// line on spaces outside quotes. Key bytes other than [A-Za-z0-9_.-] become '_'.
std::string kv(std::string_view key, std::string_view value, size_t max = 160);
std::string kv(std::string_view key, long long value);
std::string kv(std::string_view key, unsigned long long value);
inline std::string kv(std::string_view key, int value) { return kv(key, static_cast<long long>(value)); }
inline std::string kv(std::string_view key, long value) { return kv(key, static_cast<long long>(value)); }
inline std::string kv(std::string_view key, unsigned value) { return kv(key, static_cast<unsigned long long>(value)); }
inline std::string kv(std::string_view key, unsigned long value)
{
    return kv(key, static_cast<unsigned long long>(value));
}
inline std::string kv(std::string_view key, const char* value) { return kv(key, std::string_view(value)); }
inline std::string kv(std::string_view key, const std::string& value) { return kv(key, std::string_view(value)); }

} // namespace mm
