// config.h - the one mediamail.conf (INI) read by every MediaMail program.
//
// Every key is named once, with its type, default, bounds (or allowed words) and
// a one-line description, in the table in config.cpp; conf/mediamail.conf and
// each program's --help (config_help) document the same keys. Load() validates
// all of them, so a program that started has a configuration it can trust.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace mm {

/// A configuration error; the message names the key and the offending value.
struct ConfigError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct HostPort {
    std::string host;
    uint16_t port = 0;
};

/// gateway.relay: ssh://USER@HOST[:PORT] (port 22 when absent).
struct SshUrl {
    std::string user, host;   // host without the brackets of an IPv6 literal
    uint16_t port = 22;
};

class Config {
public:
    /// Defaults, then the file (if path is not empty), then each "section.key=value"
    /// override in order. Throws ConfigError on an unknown key, a syntax error or a
    /// value its type or bounds refuse.
    static Config load(const std::string& path, const std::vector<std::string>& overrides);

    const std::string& str(const std::string& key) const;
    uint64_t size(const std::string& key) const;           // bytes; K/M/G/T suffixes (1024-based)
    int64_t integer(const std::string& key) const;
    bool boolean(const std::string& key) const;
    std::chrono::seconds duration(const std::string& key) const; // 30d, 24h, 15m, 10s or bare seconds
    HostPort hostport(const std::string& key) const;       // also for "host:port or empty" keys (port 0: empty)
    std::vector<std::string> list(const std::string& key) const; // comma separated, trimmed
    unsigned mode(const std::string& key) const;             // an octal file mode

    /// The value of an enum-like key: always one of the words its table entry allows.
    const std::string& word(const std::string& key) const;
    /// True when the enum-like `key` is set to `w`. `w` must be one of the key's
    /// words: a misspelt word in a program is a std::logic_error, not a silent false.
    bool is(const std::string& key, std::string_view w) const;

    /// The source of a key's value ("default", "FILE:LINE" or "--set"), for messages.
    const std::string& origin(const std::string& key) const;

    /// The one form of a configuration error about `key`'s current value:
    /// "ORIGIN: bad value for KEY = 'VALUE': WHY". For the few checks a program
    /// makes itself (a value its own parser refuses, a file it cannot read).
    ConfigError invalid(const std::string& key, const std::string& why) const;

    /// The checks that relate one program's keys to each other (as Dovecot's
    /// settings verify): "gateway", "milter", "fetcher" or "mmsend". Each program
    /// calls it once after load(); throws ConfigError in the form of invalid().
    void verify(std::string_view program) const;

private:
    struct Value {
        std::string text;
        std::string origin;
    };
    std::map<std::string, Value> values_;
    const Value& get(const std::string& key) const;
    void verify_loopback(const std::string& key) const;
    void verify_imap() const;
    void set(const std::string& key, const std::string& value, const std::string& origin);
};

// Strict value parsers, shared by Config and by anything that parses numbers from
// peers: digits only, the whole input used, no overflow. They return false on error.
bool parse_u64(std::string_view s, uint64_t& out);
bool parse_size(std::string_view s, uint64_t& out);
bool parse_duration(std::string_view s, std::chrono::seconds& out);
bool parse_bool(std::string_view s, bool& out);
bool parse_hostport(std::string_view s, HostPort& out);
/// ssh://USER@HOST[:PORT], strictly (no password, path, parameters or escapes);
/// false with `why` saying what is wrong.
bool parse_ssh_url(std::string_view s, SshUrl& out, std::string& why);
/// An octal file mode "0660" / "660": at most 0777 (no setuid, setgid or sticky bit).
bool parse_mode(std::string_view s, unsigned& out);
/// "user" or "user:group" (names or numeric ids), split; no lookup.
bool parse_user_group(std::string_view s, std::string& user, std::string& group);
/// A host only this machine reaches: 127.0.0.0/8, ::1 (also v4-mapped) or "localhost".
bool loopback_host(const std::string& host);

/// The table of keys, for documentation checks and --help.
struct KeyInfo {
    std::string key, default_value;
    std::string syntax;        // "integer, 1 to 64", "one of auto|ask", ...
    std::string description;   // one line
};
std::vector<KeyInfo> config_keys();

/// --help text for the keys a program reads: every table key that starts with
/// one of `prefixes` ("fetcher." for a section, "store.dir" for one key), with
/// its syntax, default and description:
///   "  fetcher.parallel (integer, from 1 to 64; default 4)\n      downloads at once\n"
std::string config_help(std::initializer_list<std::string_view> prefixes);

/// Parses the common command line of every program: -c/--config FILE and
/// --set section.key=value (repeatable). Other arguments are left in `rest`.
struct CommonArgs {
    std::string config_path;
    std::vector<std::string> overrides;
    std::vector<std::string> rest;
    bool help = false;
    bool version = false;   // -V, --version
    bool check = false;     // --check: validate the configuration, list what is not default, exit
};
CommonArgs parse_common_args(int argc, char** argv);

} // namespace mm
