// clamd.h - the optional virus scan of downloaded media before mm-fetcher puts it
// back into a mail: the file streamed to ClamAV's clamd with zINSTREAM (chunks of
// a 4-byte big-endian length and the bytes, a zero length at the end; the answer
// "stream: OK" or "stream: NAME FOUND"), the verdict kept beside the media.
// Config keys: fetcher.clamd, fetcher.clamd_timeout (through SyncOptions).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace mm {

/// Where clamd listens: "unix:/path" or "inet:host:port".
struct ClamdAddress {
    std::string path;    // unix socket; empty for inet
    std::string host;    // inet
    uint16_t port = 0;
};

/// Parses fetcher.clamd; false if it is neither form.
bool parse_clamd_address(std::string_view s, ClamdAddress& out);

enum class ScanVerdict {
    clean,
    infected,      // `detail`: the signature name, reduced to [A-Za-z0-9._:/+-]
    unavailable,   // clamd could not be reached, timed out or answered an error: try later
};

/// Whether clamd's reply (without its NUL) says clean or infected; anything
/// else (an ERROR, a reply cut short) is unavailable. Pure, for tests.
ScanVerdict parse_clamd_reply(std::string_view reply, std::string& detail);

/// Streams the file at `path` to clamd and returns its verdict. Each connect,
/// send and receive waits at most `timeout`.
ScanVerdict clamd_scan_file(const ClamdAddress& addr, const std::string& path, std::chrono::seconds timeout,
                            std::string& detail);

/// The verdict on the media file at `path`, asked of clamd once: a clean or
/// infected verdict is kept in path + ".scan" and read from there next time.
ScanVerdict scan_media_once(const ClamdAddress& addr, const std::string& path, std::chrono::seconds timeout,
                            std::string& detail);

} // namespace mm
