// upload.h - mmsend's client for mm-gateway's upload API (docs/gateway-api.md,
// "Uploads"), over libcurl: POST to open (or find again) an upload, PATCH the
// file a chunk at a time, HEAD after a failure to learn where the gateway is,
// retry with a doubling pause, then give up with what is left (exit 75).
// Reads nothing itself: mmsend.cpp passes mmsend.gateway, gateway_token_file,
// gateway_pin, ca_file, gateway_chunk, gateway_retries, gateway_max_rate and timeout.
//
// Resuming across runs: the POST declares the file's SHA-256 and size, and the
// gateway answers with this user's open upload of the same hash and size if
// there is one (at its offset). No state file on the laptop: a second run of
// the same command, even from another directory or after the cache was
// cleared, finds its upload again, and two files never share one by mistake.
#pragma once

#include "store/store.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace mm::send {

struct GatewaySettings {
    std::string base;      // https://HOST[:PORT][/PATH], no trailing slash
    std::string token;     // 64 hex digits
    std::string pin;       // sha256//BASE64, or "" to check with ca_file
    std::string ca_file;   // "" for the system's CAs
    uint64_t chunk = 64ULL << 20;
    int retries = 6;
    uint64_t max_rate = 0;
    std::chrono::seconds timeout{60};
    bool insecure = false;   // mmsend --insecure: no certificate check (tests only)
};

/// Reads the token file's first line: 64 lowercase hex digits. Throws Failure naming the key.
std::string read_upload_token(const std::string& path);

/// Parses the gateway's answer to an upload's last byte: "key value" lines
/// (url, pin, sha256, size, expires, segsize, segsha256, recipient TOKEN ADDRESS).
/// Strict: every required key once, values checked; false with `why` otherwise.
bool parse_upload_result(std::string_view body, NewItem& out, std::string& why);

/// "/upload/<32 hex>" from a Location field; false for anything else.
bool parse_upload_location(std::string_view location, std::string& path);

class Uploader {
public:
    explicit Uploader(GatewaySettings s);
    ~Uploader();
    /// Uploads the file at `path` (`size` bytes, SHA-256 `sha256`) and returns
    /// the item the gateway made. `progress` gets the bytes the gateway has.
    /// Throws Failure: ex_tempfail when the retries are spent (the message says
    /// how much is left) or a quota refuses it, ex_noperm for a refused token,
    /// ex_dataerr when the gateway's hash is not `sha256`.
    NewItem upload(const std::string& path, uint64_t size, const std::string& sha256, const ItemMeta& meta,
                   const std::function<void(uint64_t)>& progress);
    /// Deletes an item one of our uploads made (DELETE /upload/item/<id>), for
    /// a mail that could not be sent. One attempt; false with `why` if the
    /// gateway could not be reached or refused.
    bool remove_item(const std::string& item_id, std::string& why);
    /// Bytes this run sent in request bodies (cut requests included).
    uint64_t bytes_sent() const { return sent_; }

    struct Reply;

private:
    Reply request(const std::string& method, const std::string& url, const std::vector<std::string>& headers,
                  int fd, uint64_t offset, uint64_t length, const std::function<void(uint64_t)>& progress);
    GatewaySettings s_;
    void* curl_ = nullptr;
    uint64_t sent_ = 0;
};

} // namespace mm::send
