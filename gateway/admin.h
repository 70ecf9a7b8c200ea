// admin.h - mm-gateway's admin commands on the store: list, show ID, revoke ID,
// gc, stats; a readable table by default, --json for scripts.
#pragma once

#include "core/config.h"

#include <ctime>
#include <string>
#include <string_view>
#include <vector>

namespace mm {

/// `list --since DATE`: YYYY-MM-DD (midnight UTC) or ISO 8601 date and time,
/// YYYY-MM-DDTHH:MM[:SS] with Z or +HH:MM / -HH:MM (no zone: UTC). Sets the
/// instant in unix seconds; false for anything else (every field range-checked).
bool parse_since(std::string_view text, time_t& out);

/// True if `command` is one of the admin commands.
bool is_admin_command(const std::string& command);
/// Runs args[0] with its arguments; prints to stdout, returns the exit status
/// (0 done, 1 not found or failed, 2 usage). Throws on store errors.
int run_admin(const Config& cfg, const std::vector<std::string>& args);

} // namespace mm
