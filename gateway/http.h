// http.h - pure helpers of mm-gateway's request handler (no sockets, so tests
// feed them strings): the /m/<id>/<token> request target, RFC 6266/8187
// Content-Disposition, and a media type safe to put in a header.
#pragma once

#include <string>
#include <string_view>

namespace mm {

/// The id and token of a request target "/m/<id>/<token>[/<name>]" (query ignored);
/// false for anything else, including any '..' or percent-encoding games.
bool parse_media_target(std::string_view target, std::string& id, std::string& token);
/// RFC 6266 Content-Disposition: attachment with an ASCII fallback filename and
/// an RFC 8187 filename* in UTF-8.
std::string content_disposition(std::string_view name);
/// The item's media type if it is a plain "type/subtype" token, else application/octet-stream.
std::string safe_media_type(std::string_view type);

} // namespace mm
