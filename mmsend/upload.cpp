// upload.cpp - mmsend's upload client (see upload.h; the API is
// docs/gateway-api.md, "Uploads"). One libcurl handle for the whole run, so
// the TLS connection is kept between requests.
#include "mmsend/upload.h"

#include "mmsend/options.h"

#include "core/address.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/util.h"
#include "mime/segments.h"

#include <curl/curl.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <set>
#include <thread>
#include <unistd.h>

namespace mm::send {

namespace {

constexpr size_t kMaxReplyBody = 64 * 1024;   // the handle with 100 recipients is a few KiB
constexpr int kMaxBackoff = 60;

bool parse_u64(std::string_view text, uint64_t& out)
{
    if (text.empty() || text.size() > 20 || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return false;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && end == text.data() + text.size();
}

std::string trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
        s.remove_suffix(1);
    return std::string(s);
}

std::string metadata_pair(const char* key, const std::string& value)
{
    return std::string(key) + " " + base64_encode(value);
}

} // namespace

std::string read_upload_token(const std::string& path)
{
    std::ifstream in(path);
    if (!in)
        throw Failure(ex_config, "mmsend.gateway_token_file = " + path + ": cannot read it: " + std::strerror(errno));
    std::string line(128, '\0');
    in.getline(line.data(), static_cast<std::streamsize>(line.size()));   // bounded: a token is 64 digits
    line.resize(std::strlen(line.c_str()));
    line = trim(line);
    if (!is_lower_hex(line, 64))
        throw Failure(ex_config, "mmsend.gateway_token_file = " + path +
                                     ": the first line is not an upload token (64 hex digits from mm-gateway token add)");
    return line;
}

bool parse_upload_location(std::string_view location, std::string& path)
{
    std::string l = trim(location);
    if (l.size() != 8 + 32 || l.compare(0, 8, "/upload/") != 0 || !is_lower_hex(std::string_view(l).substr(8), 32))
        return false;
    path = l;
    return true;
}

bool parse_upload_result(std::string_view body, NewItem& out, std::string& why)
{
    out = NewItem{};
    std::set<std::string> seen;
    size_t pos = 0;
    while (pos < body.size()) {
        size_t nl = body.find('\n', pos);
        if (nl == std::string_view::npos) {
            why = "the last line has no end";
            return false;
        }
        std::string_view line = body.substr(pos, nl - pos);
        pos = nl + 1;
        size_t sp = line.find(' ');
        if (sp == std::string_view::npos || sp == 0) {
            why = "a line without a key and a value";
            return false;
        }
        std::string key(line.substr(0, sp));
        std::string_view value = line.substr(sp + 1);
        if (value.empty() || value.find_first_of("\r\t") != std::string_view::npos) {
            why = key + ": empty or with a control character";
            return false;
        }
        if (key != "recipient" && !seen.insert(key).second) {
            why = key + " given twice";
            return false;
        }
        if (key == "url") {
            if (value.substr(0, 8) != "https://" || value.find(' ') != std::string_view::npos) {
                why = "url: not an https URL";
                return false;
            }
            out.url = value;
        } else if (key == "pin") {
            if (value.substr(0, 8) != "sha256//" || value.size() > 100) {
                why = "pin: not sha256//BASE64";
                return false;
            }
            out.pin = value;
        } else if (key == "sha256") {
            if (!is_hex_digest(value)) {
                why = "sha256: not 64 lowercase hex digits";
                return false;
            }
            out.sha256 = value;
        } else if (key == "size" || key == "segsize") {
            uint64_t v;
            if (!parse_u64(value, v)) {
                why = key + ": not a number";
                return false;
            }
            (key == "size" ? out.size : out.seg_size) = v;
        } else if (key == "expires") {
            time_t t;
            if (!parse_rfc3339(value, t)) {
                why = "expires: not an RFC 3339 time";
                return false;
            }
            out.expires = value;
        } else if (key == "segsha256") {
            out.seg_sha256 = value;
        } else if (key == "recipient") {
            size_t sp2 = value.find(' ');
            std::string token(value.substr(0, sp2));
            std::string address = sp2 == std::string_view::npos ? "" : std::string(value.substr(sp2 + 1));
            if (!is_lower_hex(token, 32) || address.empty() || normalize_address(address) != address) {
                why = "recipient: expected TOKEN ADDRESS";
                return false;
            }
            out.recipient_tokens.emplace_back(address, token);
        }
        // Other keys: a newer gateway may say more.
    }
    for (const char* k : {"url", "pin", "sha256", "size", "expires"})
        if (!seen.count(k)) {
            why = std::string(k) + " is missing";
            return false;
        }
    if (seen.count("segsize") != seen.count("segsha256") ||
        (out.seg_size && !valid_segments(out.size, out.seg_size, out.seg_sha256))) {
        why = "segsize and segsha256 do not agree with size";
        return false;
    }
    // The URL must end in the item token recipient_url() replaces.
    size_t m = out.url.rfind("/m/");
    if (m == std::string::npos || out.url.size() != m + 3 + 32 + 1 + 32 ||
        !is_lower_hex(std::string_view(out.url).substr(m + 3, 32), 32) ||
        !is_lower_hex(std::string_view(out.url).substr(m + 36), 32)) {
        why = "url: not an item URL (/m/ID/TOKEN)";
        return false;
    }
    out.id = out.url.substr(m + 3, 32);
    out.token = out.url.substr(m + 36);
    return true;
}

struct Uploader::Reply {
    bool ok = false;         // a whole HTTP answer came
    std::string error;       // else why not
    long status = 0;
    std::string location, upload_offset;
    std::string body;
    uint64_t sent = 0;       // body bytes curl sent
};

namespace {

struct Transfer {
    Uploader::Reply* reply;
    int fd = -1;
    uint64_t offset = 0, length = 0, done = 0;
    const std::function<void(uint64_t)>* progress = nullptr;
};

size_t on_header(char* data, size_t size, size_t n, void* user)
{
    auto* t = static_cast<Transfer*>(user);
    std::string_view line(data, size * n);
    if (line.substr(0, 5) == "HTTP/") {   // each answer (a 100 Continue too) starts afresh
        t->reply->location.clear();
        t->reply->upload_offset.clear();
        return size * n;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos)
        return size * n;
    std::string name(line.substr(0, colon));
    for (char& c : name)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (name == "location")
        t->reply->location = trim(line.substr(colon + 1)).substr(0, 256);
    else if (name == "upload-offset")
        t->reply->upload_offset = trim(line.substr(colon + 1)).substr(0, 32);
    return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* user)
{
    auto* t = static_cast<Transfer*>(user);
    size_t len = size * n;
    std::string& b = t->reply->body;
    b.append(data, std::min(len, kMaxReplyBody - std::min(kMaxReplyBody, b.size())));
    return len;
}

// The file's bytes [offset, offset + length), read as curl asks for them.
size_t on_read(char* buf, size_t size, size_t n, void* user)
{
    auto* t = static_cast<Transfer*>(user);
    size_t want = static_cast<size_t>(std::min<uint64_t>(size * n, t->length - t->done));
    if (want == 0)
        return 0;
    for (;;) {
        ssize_t r = pread(t->fd, buf, want, static_cast<off_t>(t->offset + t->done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return CURL_READFUNC_ABORT;   // the file shrank or cannot be read
        t->done += static_cast<uint64_t>(r);
        return static_cast<size_t>(r);
    }
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t ulnow)
{
    auto* t = static_cast<Transfer*>(user);
    if (t->progress && *t->progress)
        (*t->progress)(t->offset + static_cast<uint64_t>(ulnow));
    return 0;
}

} // namespace

Uploader::Uploader(GatewaySettings s) : s_(std::move(s))
{
    curl_ = curl_easy_init();
    if (!curl_)
        throw Failure(ex_software, "cannot start libcurl");
}

Uploader::~Uploader() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

Uploader::Reply Uploader::request(const std::string& method, const std::string& url,
                                  const std::vector<std::string>& headers, int fd, uint64_t offset, uint64_t length,
                                  const std::function<void(uint64_t)>& progress)
{
    CURL* c = static_cast<CURL*>(curl_);
    curl_easy_reset(c);   // keeps the connection
    Reply r;
    Transfer t{&r, fd, offset, length, 0, &progress};
    char errbuf[CURL_ERROR_SIZE] = {};
    curl_slist* hl = nullptr;
    std::string auth = "Authorization: Bearer " + s_.token;
    hl = curl_slist_append(hl, auth.c_str());
    hl = curl_slist_append(hl, "Tus-Resumable: 1.0.0");
    for (const auto& h : headers)
        hl = curl_slist_append(hl, h.c_str());
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");   // the token never goes in clear
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, static_cast<long>(s_.timeout.count()));
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(s_.timeout.count()));
    if (!s_.pin.empty()) {
        // The pin is the whole check, as for the fetcher's downloads: the
        // gateway's certificate is usually self-made.
        curl_easy_setopt(c, CURLOPT_PINNEDPUBLICKEY, s_.pin.c_str());
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    } else if (s_.insecure) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    } else if (!s_.ca_file.empty()) {
        curl_easy_setopt(c, CURLOPT_CAINFO, s_.ca_file.c_str());
    }
    if (method == "HEAD") {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (method == "POST") {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(0));
    } else {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &t);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(length));
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        if (s_.max_rate)
            curl_easy_setopt(c, CURLOPT_MAX_SEND_SPEED_LARGE, static_cast<curl_off_t>(s_.max_rate));
    }
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(hl);
    curl_off_t up = 0;
    curl_easy_getinfo(c, CURLINFO_SIZE_UPLOAD_T, &up);
    r.sent = static_cast<uint64_t>(up);
    sent_ += r.sent;
    if (rc != CURLE_OK) {
        r.error = errbuf[0] ? errbuf : curl_easy_strerror(rc);
        return r;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    r.ok = true;
    return r;
}

bool Uploader::remove_item(const std::string& item_id, std::string& why)
{
    Reply r = request("DELETE", s_.base + "/upload/item/" + item_id, {}, -1, 0, 0, {});
    if (!r.ok)
        why = r.error;
    else if (r.status != 204)
        why = "DELETE answered " + std::to_string(r.status);
    return why.empty();
}

NewItem Uploader::upload(const std::string& path, uint64_t size, const std::string& sha256, const ItemMeta& meta,
                         const std::function<void(uint64_t)>& progress)
{
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        throw Failure(ex_noinput, "cannot open " + path + ": " + std::strerror(errno));
    UniqueFd file(fd);
    const std::string name = printable(meta.name, 80);

    // The descriptive fields and the envelope recipients go with the POST
    // (tus Upload-Metadata); the hash is also the key to find it again.
    std::vector<std::string> md{metadata_pair("filename", meta.name), metadata_pair("filetype", meta.type),
                                metadata_pair("sha256", sha256)};
    for (auto [key, value] : {std::pair{"title", &meta.title}, std::pair{"note", &meta.note},
                              std::pair{"copyright", &meta.copyright}, std::pair{"date", &meta.date}})
        if (!value->empty())
            md.push_back(metadata_pair(key, *value));
    std::string rcpts;
    bool rcpts_ok = meta.recipients.size() <= 100;
    for (const auto& r : meta.recipients) {
        std::string a = normalize_address(r);
        rcpts_ok = rcpts_ok && !a.empty() && a.find(',') == std::string::npos;
        rcpts += (rcpts.empty() ? "" : ",") + a;
    }
    if (rcpts_ok && !rcpts.empty())
        md.push_back(metadata_pair("recipients", rcpts));
    else if (!rcpts.empty())
        log_warning("the recipients cannot be registered with the upload (over 100, or an address the gateway "
                    "cannot take): one shared link, receipts will not count");
    std::string metadata = "Upload-Metadata: ";
    for (size_t i = 0; i < md.size(); ++i)
        metadata += (i ? "," : "") + md[i];

    std::string upath;     // "/upload/<id>" once the gateway gave it
    bool need_head = false;
    uint64_t offset = 0, first_offset = UINT64_MAX;
    int failures = 0;
    auto failed = [&](const std::string& why) {
        ++failures;
        if (failures > s_.retries)
            throw Failure(ex_tempfail, name + ": upload to " + s_.base + " stopped (" + why + "): " +
                                           std::to_string(offset) + " of " + std::to_string(size) +
                                           " bytes are on the gateway, " + std::to_string(size - offset) +
                                           " left (" + std::to_string(sent_) +
                                           " bytes sent in this run); run the same command again to resume");
        int pause = std::min(kMaxBackoff, 1 << std::min(failures - 1, 6));
        log_warning(name + ": " + why + "; trying again in " + std::to_string(pause) + " s (" +
                    std::to_string(failures) + " of " + std::to_string(s_.retries) + ")");
        std::this_thread::sleep_for(std::chrono::seconds(pause));
    };
    auto refused = [&](const Reply& r) -> Failure {
        std::string body = printable(trim(r.body), 200);
        if (r.status == 401)
            return Failure(ex_noperm, "the gateway refused the upload token (401): check mmsend.gateway_token_file");
        if (r.status == 413)
            return Failure(ex_tempfail, name + ": the gateway refused it (413): " + body);
        if (r.status == 460)
            return Failure(ex_dataerr, name + ": the gateway received other bytes than were hashed here (460): did "
                                              "the file change while it was sent?");
        return Failure(ex_software, name + ": the gateway refused the request (" + std::to_string(r.status) +
                                        "): " + body);
    };

    for (;;) {
        if (upath.empty()) {
            Reply r = request("POST", s_.base + "/upload",
                              {"Upload-Length: " + std::to_string(size), metadata}, -1, 0, 0, {});
            if (!r.ok) {
                failed(r.error);
                continue;
            }
            if (r.status == 201 || r.status == 200) {
                if (!parse_upload_location(r.location, upath) || !parse_u64(r.upload_offset, offset) || offset > size)
                    throw Failure(ex_software, name + ": the gateway's answer to POST /upload has no usable "
                                                      "Location and Upload-Offset");
                if (first_offset == UINT64_MAX)
                    first_offset = offset;
                if (offset > 0)
                    log_info(name + ": resuming the upload at byte " + std::to_string(offset) + " of " +
                             std::to_string(size));
                continue;
            }
            if (r.status >= 500 || r.status == 429)
                failed("POST answered " + std::to_string(r.status));
            else
                throw refused(r);
            continue;
        }
        if (need_head) {
            Reply r = request("HEAD", s_.base + upath, {}, -1, 0, 0, {});
            if (!r.ok) {
                failed(r.error);
                continue;
            }
            need_head = false;
            if (r.status == 404) {
                upath.clear();   // expired or removed: start over
                continue;
            }
            if (r.status != 200 || !parse_u64(r.upload_offset, offset) || offset > size) {
                if (r.status == 401)
                    throw refused(r);
                failed("HEAD answered " + std::to_string(r.status));
                need_head = true;
            }
            continue;
        }
        uint64_t len = std::min(s_.chunk, size - offset);
        Reply r = request("PATCH", s_.base + upath,
                          {"Upload-Offset: " + std::to_string(offset), "Content-Type: application/offset+octet-stream"},
                          fd, offset, len, progress);
        if (!r.ok) {
            need_head = true;   // the gateway may have some of it: ask
            failed(r.error);
            continue;
        }
        if (r.status == 200) {
            NewItem item;
            std::string why;
            if (!parse_upload_result(r.body, item, why))
                throw Failure(ex_software, name + ": the gateway's handle is malformed: " + why);
            if (item.sha256 != sha256 || item.size != size)
                throw Failure(ex_dataerr, name + ": the gateway's SHA-256 or size is not the file's");
            log_info(name + ": uploaded" + kv("item", item.id) + kv("bytes_sent", std::to_string(sent_)) +
                     kv("resumed_at", std::to_string(first_offset == UINT64_MAX ? 0 : first_offset)));
            if (progress)
                progress(size);
            return item;
        }
        uint64_t at = 0;
        if (r.status == 204 && parse_u64(r.upload_offset, at) && at > offset && at <= size) {
            offset = at;
            failures = 0;   // progress: the retries count again from here
            continue;
        }
        if (r.status == 409 && parse_u64(r.upload_offset, at) && at <= size) {
            offset = at;   // the gateway is elsewhere (a cut PATCH it kept part of)
            failed("the gateway is at byte " + std::to_string(at));
            continue;
        }
        if (r.status == 404) {
            upath.clear();
            failed("the upload is gone from the gateway (expired?)");
            continue;
        }
        if (r.status >= 500 || r.status == 423 || r.status == 429) {
            need_head = true;
            failed("PATCH answered " + std::to_string(r.status));
            continue;
        }
        throw refused(r);
    }
}

} // namespace mm::send
