// http.h - pure helpers of mm-gateway's request handler (no sockets, so tests
// feed them strings): the /m/<id>/<token> request target, RFC 6266/8187
// Content-Disposition, a media type safe to put in a header, the receipt form
// body. HTML/JSON escaping is core/text.h's.
#pragma once

#include "core/text.h"

#include <string>
#include <string_view>

namespace mm {

/// The id and token of a request target "/m/<id>/<token>[/<name>]" (query ignored);
/// false for anything else, including any '..' or percent-encoding games.
bool parse_media_target(std::string_view target, std::string& id, std::string& token);
/// The same, also giving what follows the token: `tail` is "" or "/<segment>",
/// `query` the text after '?' (both bounded by the target's own limits).
bool parse_media_target(std::string_view target, std::string& id, std::string& token, std::string& tail,
                        std::string& query);
/// True if the query string (without '?') has the parameter `download=1`.
bool query_wants_download(std::string_view query);

/// The body of a receipt (docs/gateway-api.md), application/x-www-form-urlencoded:
/// "recipient=<address>&sha256=<64 hex>", each exactly once, strict percent
/// escapes, at most kMaxReceiptBody bytes. Unknown parameters are ignored so
/// that later fetchers may add some. False for anything malformed.
constexpr size_t kMaxReceiptBody = 4096;
bool parse_receipt_body(std::string_view body, std::string& recipient, std::string& sha256);

/// RFC 6266 Content-Disposition: attachment with an ASCII fallback filename and
/// an RFC 8187 filename* in UTF-8.
std::string content_disposition(std::string_view name);
/// The item's media type if it is a plain "type/subtype" token, else application/octet-stream.
std::string safe_media_type(std::string_view type);

} // namespace mm
