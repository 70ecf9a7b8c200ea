// util.h - small helpers every program shares: hashing, hex and base64, random
// tokens, RFC 3339 time, MIME tokens. File I/O is core/fileio.h's.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace mm {

/// Incremental SHA-256 (OpenSSL EVP).
class Sha256 {
public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;
    void update(const void* data, size_t len);
    std::string hex_digest();   // finishes; 64 lowercase hex digits
    std::string raw_digest();   // finishes; 32 bytes
    void reset();               // starts over, for the next digest
private:
    void* ctx_;
};

std::string sha256_hex(std::string_view data);
std::string hex_encode(std::string_view raw);
std::string base64_encode(std::string_view raw);           // no line breaks
bool base64_decode(std::string_view text, std::string& out); // strict, no whitespace
bool is_hex_digest(std::string_view s);                      // 64 lowercase hex digits
bool is_lower_hex(std::string_view s, size_t len);           // exactly len lowercase hex digits
int hex_value(char c);                                       // 0..15, or -1 if not a hex digit

/// `bytes` random bytes from the OS CSPRNG, as lowercase hex.
std::string random_hex(size_t bytes);

/// Constant-time comparison of two equally long strings.
bool equal_ct(std::string_view a, std::string_view b);

std::string rfc3339(time_t t);
bool parse_rfc3339(std::string_view s, time_t& out);
/// Seconds since the epoch of a UTC calendar time (month 1-12), fields already checked.
time_t utc_time(int year, int month, int day, int hour, int minute, int second);

/// Lowercased first token of a MIME header value: the type of a Content-Type,
/// the name of a Content-Transfer-Encoding; no parameters, comments or spaces.
std::string mime_token(std::string_view value);

} // namespace mm
