// upload_parse.h - pure parsers of mm-gateway's upload API (docs/gateway-api.md,
// "Uploads"), no sockets, so tests feed them strings: the tus Upload-Metadata
// field, Content-Range on a PUT/PATCH (RFC 9110 14.4), strict byte counts
// (Upload-Length, Upload-Offset), the Bearer token, and the /upload target.
#pragma once

#include "store/store.h"

#include <cstdint>
#include <string>
#include <string_view>

namespace mm {

// What one upload's descriptive fields may hold (decoded bytes).
constexpr size_t kUploadMaxName = 255;
constexpr size_t kUploadMaxType = 127;
constexpr size_t kUploadMaxText = 1024;      // title, note, copyright
constexpr size_t kUploadMaxDate = 64;
constexpr size_t kUploadMaxRecipients = 100;   // RFC 5321 4.5.3.1.8's minimum
constexpr size_t kUploadMaxAddress = 320;
constexpr size_t kUploadMaxMetadata = 8192;    // the whole Upload-Metadata field

/// What a POST's Upload-Metadata declares.
struct UploadMetadata {
    ItemMeta meta;        // type, name, title, note, copyright, date, recipients
    std::string sha256;   // "" or 64 lowercase hex digits: the resume key, checked at the end
};

/// Parses tus 1.0 Upload-Metadata: "key base64,key base64,..." (a key without
/// a value is allowed). Known keys: filename, filetype, title, note,
/// copyright, date, recipients (addresses separated by commas), sha256;
/// others are ignored, as tus allows. Each key at most once; values strict
/// base64, within the caps above, UTF-8 without control characters.
/// False with `why` for anything else.
bool parse_upload_metadata(std::string_view field, UploadMetadata& out, std::string& why);

/// A byte count: digits only, no sign or spaces, no leading zeros (but "0"),
/// at most `max`.
bool parse_byte_count(std::string_view text, uint64_t max, uint64_t& out);

/// A PUT/PATCH's Content-Range "bytes FIRST-LAST/TOTAL" (TOTAL may be "*"
/// for "unknown": then total is UINT64_MAX). False for any other form,
/// LAST < FIRST, or LAST >= TOTAL.
struct ContentRange {
    uint64_t first = 0, last = 0, total = 0;
};
bool parse_content_range(std::string_view text, ContentRange& out);

/// The token of "Authorization: Bearer <64 lowercase hex>"; false otherwise.
bool parse_bearer(std::string_view field, std::string& token);

/// The request target of the upload API: "/upload" (id empty) or
/// "/upload/<32 lowercase hex>" (no query, nothing else).
bool parse_upload_target(std::string_view target, std::string& id);
/// "/upload/item/<32 lowercase hex>": an item an upload made, for its
/// uploader to delete (the mail it was for could not be sent).
bool parse_upload_item_target(std::string_view target, std::string& item_id);

} // namespace mm
