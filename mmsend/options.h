// options.h - mmsend's command line: compose mode (--from/--to/--attach ...) and
// the sendmail-compatible mode (-t, -f, recipients on argv), parsed strictly.
// Exit codes follow sysexits.h; a UsageError always means exit 64.
#pragma once

#include "core/exit_codes.h"

#include <stdexcept>
#include <string>
#include <vector>

namespace mm::send {

// Short names for core/exit_codes.h's table, the one all programs share.
constexpr int ex_ok = code(Exit::ok);
constexpr int ex_usage = code(Exit::usage);
constexpr int ex_dataerr = code(Exit::data);
constexpr int ex_noinput = code(Exit::no_input);
constexpr int ex_unavailable = code(Exit::unavailable);
constexpr int ex_software = code(Exit::software);
constexpr int ex_cantcreat = code(Exit::cant_create);
constexpr int ex_ioerr = code(Exit::io);
constexpr int ex_tempfail = code(Exit::temp_fail);
constexpr int ex_noperm = code(Exit::permission);
constexpr int ex_config = code(Exit::config);

/// An error that ends mmsend with a sysexits code; the message names the file,
/// the option or the server's reply.
struct Failure : std::runtime_error {
    Failure(int code, const std::string& msg) : std::runtime_error(msg), code(code) {}
    int code;
};

struct UsageError : Failure {
    explicit UsageError(const std::string& msg) : Failure(ex_usage, msg) {}
};

struct Attachment {
    std::string path;
    std::string title, note, copyright;   // descriptive fields for its handle
};

enum class Mode { compose, sendmail };

struct Options {
    Mode mode = Mode::compose;
    // Compose mode.
    std::string from, subject, body, body_file;
    bool has_body = false;
    std::vector<std::string> to, cc, bcc;
    std::vector<Attachment> attachments;
    // Sendmail mode.
    bool read_recipients = false;           // -t
    std::string envelope_from;              // -f
    std::vector<std::string> recipients;    // argv
    // Both.
    bool detach_all = false, link = false, insecure = false, json = false, quiet = false;
    bool gateway = false;                   // --gateway URL (put into overrides as mmsend.gateway)
    bool help = false, version = false, check = false;
    std::string config_path;
    std::vector<std::string> overrides;
};

/// Parses argv[1..]. Throws UsageError naming the offending argument.
Options parse_options(const std::vector<std::string>& args);

/// Caps on what the command line may carry (a subject or body is not a file).
constexpr size_t kMaxArgLength = 64 * 1024;
constexpr size_t kMaxAttachments = 100;

const char* usage_text();

} // namespace mm::send
