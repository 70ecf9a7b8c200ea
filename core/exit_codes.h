// exit_codes.h - the one table of exit codes every MediaMail program uses (the
// sysexits.h values), so a cause means the same number in all four programs.
// docs/exit-codes.md lists the causes per program; --help prints exit_code_help().
#pragma once

#include <stdexcept>
#include <string>

namespace mm {

enum class Exit : int {
    ok = 0,
    usage = 64,         // a bad command line
    data = 65,          // bad input data (a message that cannot be read as mail)
    no_input = 66,      // a named input (file, store, configuration) does not exist
    unavailable = 69,   // a service or port is not available (port in use, server refused)
    software = 70,      // an internal error
    cant_create = 73,   // an output (store, cache, spool) cannot be created
    io = 74,            // a read or write failed
    temp_fail = 75,     // try again later (store full, server busy)
    permission = 77,    // not allowed (file modes, privileged port, user switch)
    config = 78,        // a bad configuration
};

constexpr int code(Exit e) { return static_cast<int>(e); }

struct ExitInfo {
    Exit exit;
    const char* name;      // as in sysexits.h
    const char* meaning;   // one line
};

inline constexpr ExitInfo kExitCodes[] = {
    {Exit::ok, "EX_OK", "success"},
    {Exit::usage, "EX_USAGE", "bad command line"},
    {Exit::data, "EX_DATAERR", "bad input data"},
    {Exit::no_input, "EX_NOINPUT", "a named file, store or configuration does not exist"},
    {Exit::unavailable, "EX_UNAVAILABLE", "a port is in use or a service is unavailable"},
    {Exit::software, "EX_SOFTWARE", "internal error"},
    {Exit::cant_create, "EX_CANTCREAT", "the store, cache or spool cannot be created"},
    {Exit::io, "EX_IOERR", "a read or write failed"},
    {Exit::temp_fail, "EX_TEMPFAIL", "temporary failure, try again later"},
    {Exit::permission, "EX_NOPERM", "permission denied"},
    {Exit::config, "EX_CONFIG", "bad configuration"},
};

/// An error that ends a program at start-up with `exit` and a message that
/// names the key, path or argument at fault.
struct ExitError : std::runtime_error {
    ExitError(Exit e, const std::string& msg) : std::runtime_error(msg), exit(e) {}
    Exit exit;
};

} // namespace mm
