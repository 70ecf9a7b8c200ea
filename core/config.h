// config.h - the one mediamail.conf (INI) read by every MediaMail program.
//
// Every key is named once, with its type, default and bounds, in the table in
// config.cpp; conf/mediamail.conf documents the same keys. Load() validates all
// of them, so a program that started has a configuration it can trust.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
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

class Config {
public:
    /// Defaults, then the file (if path is not empty), then each "section.key=value"
    /// override in order. Throws ConfigError on an unknown key, a syntax error or a
    /// value its type refuses.
    static Config load(const std::string& path, const std::vector<std::string>& overrides);

    const std::string& str(const std::string& key) const;
    uint64_t size(const std::string& key) const;           // bytes; K/M/G/T suffixes (1024-based)
    int64_t integer(const std::string& key) const;
    bool boolean(const std::string& key) const;
    std::chrono::seconds duration(const std::string& key) const; // 30d, 24h, 15m, 10s or bare seconds
    HostPort hostport(const std::string& key) const;
    std::vector<std::string> list(const std::string& key) const; // comma separated, trimmed

    /// The source of a key's value ("default", "FILE:LINE" or "--set"), for messages.
    const std::string& origin(const std::string& key) const;

private:
    struct Value {
        std::string text;
        std::string origin;
    };
    std::map<std::string, Value> values_;
    const Value& get(const std::string& key) const;
    void set(const std::string& key, const std::string& value, const std::string& origin);
};

// Strict value parsers, shared by Config and by anything that parses numbers from
// peers: digits only, the whole input used, no overflow. They return false on error.
bool parse_u64(std::string_view s, uint64_t& out);
bool parse_size(std::string_view s, uint64_t& out);
bool parse_duration(std::string_view s, std::chrono::seconds& out);
bool parse_bool(std::string_view s, bool& out);
bool parse_hostport(std::string_view s, HostPort& out);

/// The table of keys, for documentation checks: name and default.
struct KeyInfo {
    std::string key, default_value;
};
std::vector<KeyInfo> config_keys();

/// Parses the common command line of every program: -c/--config FILE and
/// --set section.key=value (repeatable). Other arguments are left in `rest`.
struct CommonArgs {
    std::string config_path;
    std::vector<std::string> overrides;
    std::vector<std::string> rest;
    bool help = false;
};
CommonArgs parse_common_args(int argc, char** argv);

} // namespace mm
