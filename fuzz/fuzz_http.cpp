// fuzz_http.cpp - libFuzzer target for mm-gateway's request helpers: the Range
// header (RFC 9110 14.2), the /m/<id>/<token> target, Content-Disposition
// (RFC 6266/8187) and the media type filter; the upload API's Upload-Metadata,
// Content-Range, byte counts, Bearer token and /upload target. No sockets, as
// in the gateway's tests.
#include "gateway/http.h"
#include "gateway/range.h"
#include "gateway/upload_parse.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    // First 8 bytes: the representation size, so Range is tried against every size.
    uint64_t rep = 0;
    if (size >= 8) {
        memcpy(&rep, data, 8);
        data += 8;
        size -= 8;
    }
    rep >>= (rep & 63);   // mostly small sizes, sometimes huge ones
    std::string_view in(reinterpret_cast<const char*>(data), size);

    mm::ByteRange r = mm::parse_range(in, rep);
    if (r.kind == mm::ByteRange::Kind::partial && (r.first > r.last || r.last >= rep))
        abort();   // the gateway would seek and send past the file

    std::string id, token;
    if (mm::parse_media_target(in, id, token)) {
        // Ids and tokens name files and rows: no path games may get through.
        if (id.empty() || token.empty() || id.find('/') != std::string::npos ||
            id.find("..") != std::string::npos || token.find('/') != std::string::npos)
            abort();
    }
    std::string cd = mm::content_disposition(in);
    if (cd.find('\r') != std::string::npos || cd.find('\n') != std::string::npos)
        abort();   // header injection
    std::string t = mm::safe_media_type(in);
    if (t.find_first_of("\r\n;,\" ") != std::string::npos)
        abort();

    // Uploads: what passes must keep the promises the upload handler relies on.
    mm::ContentRange cr;
    if (mm::parse_content_range(in, cr) && (cr.first > cr.last || cr.last >= cr.total))
        abort();   // a length of last - first + 1 that wraps, or bytes past the end
    uint64_t n = 0;
    if (mm::parse_byte_count(in, rep, n) && n > rep)
        abort();
    mm::UploadMetadata md;
    std::string why;
    if (mm::parse_upload_metadata(in, md, why)) {
        const mm::ItemMeta& m = md.meta;
        if (m.name.size() > mm::kUploadMaxName || m.name.find('/') != std::string::npos ||
            m.type.size() > mm::kUploadMaxType || m.recipients.size() > mm::kUploadMaxRecipients)
            abort();
        for (const std::string* v : {&m.name, &m.type, &m.title, &m.note, &m.copyright, &m.date})
            for (char c : *v)
                if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
                    abort();   // would reach handles, pages and logs
    }
    std::string upload_id;
    if (mm::parse_upload_target(in, upload_id) && !upload_id.empty() && upload_id.size() != 32)
        abort();   // names a file under uploads/
    return 0;
}
