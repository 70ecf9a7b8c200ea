// log.h - one-line log records on stderr, and the escaping of peer input for them.
//
// Reads log.level. Peer bytes never reach the log raw: printable() cuts them to
// about 160 characters and escapes control characters first.
#pragma once

#include <string>
#include <string_view>

namespace mm {

enum class LogLevel { error = 0, warning = 1, info = 2, debug = 3 };

void log_init(const std::string& program, const std::string& level);
void log(LogLevel level, const std::string& msg);
inline void log_error(const std::string& m) { log(LogLevel::error, m); }
inline void log_warning(const std::string& m) { log(LogLevel::warning, m); }
inline void log_info(const std::string& m) { log(LogLevel::info, m); }
inline void log_debug(const std::string& m) { log(LogLevel::debug, m); }

/// Peer input made safe for a log line: at most `max` bytes, control and
/// non-ASCII bytes as \xNN.
std::string printable(std::string_view s, size_t max = 160);

} // namespace mm
