// upload.cpp - the upload API's HTTP side (see upload.h and docs/gateway-api.md):
// which method does what, the checks on every field before a byte is taken,
// and the BodySink that hashes and writes an upload's bytes as they arrive.
// Every refusal is answered before the body is read; the body then stays
// unread and the connection closes after the answer.
#include "gateway/upload.h"

#include "gateway/metrics.h"
#include "gateway/upload_parse.h"
#include "store/quota.h"
#include "core/log.h"
#include "core/text.h"
#include "core/util.h"

#include <Poco/Net/HTTPResponse.h>

#include <ostream>
#include <set>

namespace mm {

using Poco::Net::HTTPResponse;

namespace {

constexpr uint64_t kMaxUploadLength = uint64_t{1} << 50;   // 1 PiB: far beyond any quota, far from overflow
constexpr const char* kTusVersion = "1.0.0";

// Poco knows no reason phrase for these two.
void set_status(Response& resp, int status)
{
    auto st = static_cast<HTTPResponse::HTTPStatus>(status);
    if (status == 423)
        resp.setStatusAndReason(st, "Locked");
    else if (status == 460)
        resp.setStatusAndReason(st, "Checksum Mismatch");   // tus checksum extension's code
    else
        resp.setStatusAndReason(st);
}

int answer(Response& resp, int status, std::string_view body)
{
    resp.set("Tus-Resumable", kTusVersion);
    resp.set("Cache-Control", "no-store");
    resp.set("X-Content-Type-Options", "nosniff");
    set_status(resp, status);
    resp.setContentType("text/plain; charset=utf-8");
    resp.setContentLength64(body.size());
    resp.send().write(body.data(), static_cast<std::streamsize>(body.size()));
    return status;
}

int no_content(Response& resp, int status = HTTPResponse::HTTP_NO_CONTENT)
{
    resp.set("Tus-Resumable", kTusVersion);
    resp.set("Cache-Control", "no-store");
    set_status(resp, status);
    resp.setContentLength64(0);
    return status;
}

// The complete handle, one "key value" per line (docs/gateway-api.md): a
// format mmsend parses strictly without a JSON parser.
std::string handle_text(const NewItem& item)
{
    std::string out = "url " + item.url + "\n" + "pin " + item.pin + "\n" + "sha256 " + item.sha256 + "\n" +
                      "size " + std::to_string(item.size) + "\n" + "expires " + item.expires + "\n";
    if (item.seg_size)
        out += "segsize " + std::to_string(item.seg_size) + "\n" + "segsha256 " + item.seg_sha256 + "\n";
    for (const auto& [address, token] : item.recipient_tokens)
        out += "recipient " + token + " " + address + "\n";
    return out;
}

} // namespace

struct UploadService::Open {
    std::string id;
    bool busy = false;
    std::unique_ptr<Store::Writer> writer;   // with the hash state of the bytes written so far
};

UploadService::~UploadService() = default;

std::shared_ptr<UploadService::Open> UploadService::take(const std::string& id)
{
    std::lock_guard<std::mutex> l(mu_);
    std::shared_ptr<Open>& o = open_[id];
    if (!o) {
        o = std::make_shared<Open>();
        o->id = id;
    }
    if (o->busy)
        return nullptr;
    o->busy = true;
    return o;
}

void UploadService::give_back(const std::shared_ptr<Open>& o, bool forget)
{
    std::lock_guard<std::mutex> l(mu_);
    o->busy = false;
    if (forget) {
        o->writer.reset();
        open_.erase(o->id);
    }
}

size_t UploadService::expire()
{
    // Held while the rows go: no PATCH can take one of them meanwhile.
    std::lock_guard<std::mutex> l(mu_);
    std::set<std::string> busy;
    for (auto it = open_.begin(); it != open_.end();) {
        if (!it->second->busy) {
            it = open_.erase(it);   // the writer goes; the file stays for the next PATCH
        } else {
            busy.insert(it->first);
            ++it;
        }
    }
    std::vector<std::string> gone = up_.expire(busy);
    for (const auto& id : gone)
        log_info("upload expired and removed" + kv("upload", id));
    return gone.size();
}

/// Takes one PATCH/PUT body into the upload's writer.
class PatchSink : public BodySink {
public:
    PatchSink(UploadService& svc, std::shared_ptr<UploadService::Open> open, UploadRow row)
        : svc_(svc), open_(std::move(open)), row_(std::move(row))
    {
    }
    ~PatchSink() override
    {
        if (!done_)
            svc_.give_back(open_, false);
    }

    bool write(const char* data, size_t len) override
    {
        try {
            open_->writer->write(data, len);
            gateway_metrics().upload_bytes(len);
            return true;
        } catch (const QuotaError& e) {
            failure_ = HTTPResponse::HTTP_REQUESTENTITYTOOLARGE;
            why_ = std::string("over quota: ") + e.what() + "\n";
        } catch (const std::exception& e) {
            log_error("upload " + row_.id + ": " + e.what());
            failure_ = HTTPResponse::HTTP_INTERNAL_SERVER_ERROR;
            why_ = "internal error\n";
        }
        // The file may hold part of this piece unhashed: the next request
        // starts a writer that hashes the file again.
        open_->writer.reset();
        return false;
    }

    int finish(Response& resp) override
    {
        resp.log_id = row_.id;
        if (failure_) {
            finish_with(false);
            return answer(resp, failure_, why_);
        }
        try {
            open_->writer->idle();   // what was received is in the file before we say where it ends
        } catch (const std::exception& e) {
            log_error("upload " + row_.id + ": " + e.what());
            open_->writer.reset();   // the next request hashes the file as it is
            finish_with(false);
            return answer(resp, HTTPResponse::HTTP_INTERNAL_SERVER_ERROR, "internal error\n");
        }
        uint64_t offset = open_->writer->size();
        if (offset < row_.size) {
            finish_with(false);
            resp.set("Upload-Offset", std::to_string(offset));
            return no_content(resp);
        }
        NewItem item;
        try {
            item = svc_.up_.complete(*open_->writer, row_);
        } catch (const std::exception& e) {
            log_error("upload " + row_.id + ": cannot make the item: " + e.what());
            open_->writer.reset();
            finish_with(false);
            return answer(resp, HTTPResponse::HTTP_INTERNAL_SERVER_ERROR, "internal error\n");
        }
        finish_with(true);
        bool verified = row_.sha256.empty() || item.sha256 == row_.sha256;
        gateway_metrics().upload_completed(verified);
        if (!verified) {
            // The bytes are not the ones the client hashed (corrupted on the
            // way, or the file changed under it): no item, no upload; it starts over.
            svc_.up_.discard_item(item.id);
            log_warning("upload " + row_.id + ": SHA-256 " + item.sha256.substr(0, 12) + " is not the declared " +
                        row_.sha256.substr(0, 12) + "; removed" + kv("user", row_.user));
            return answer(resp, 460, "checksum mismatch: the bytes received are not the declared sha256\n");
        }
        log_info("upload complete" + kv("upload", row_.id) + kv("item", item.id) + kv("user", row_.user) +
                 kv("hash", item.sha256.substr(0, 12)) + kv("size", std::to_string(item.size)) +
                 kv("recipients", std::to_string(item.recipient_tokens.size())));
        resp.set("Upload-Offset", std::to_string(item.size));
        std::string body = handle_text(item);
        return answer(resp, HTTPResponse::HTTP_OK, body);
    }

    void abort() noexcept override
    {
        // What was written stays: a HEAD tells the client where to go on.
        finish_with(false);
    }

private:
    void finish_with(bool forget)
    {
        if (!done_ && open_->writer) {
            // Writes out what is staged; no hashing or writing thread waits
            // between two requests.
            try {
                open_->writer->idle();
            } catch (const std::exception& e) {
                log_error("upload " + row_.id + ": " + e.what());
                open_->writer.reset();   // the next request hashes the file as it is
            }
        }
        if (!done_)
            svc_.give_back(open_, forget);
        done_ = true;
    }

    UploadService& svc_;
    std::shared_ptr<UploadService::Open> open_;
    UploadRow row_;
    int failure_ = 0;
    std::string why_;
    bool done_ = false;
};

namespace {

int unauthorized(Response& resp)
{
    resp.setKeepAlive(false);
    resp.set("WWW-Authenticate", "Bearer realm=\"mediamail upload\"");
    return answer(resp, HTTPResponse::HTTP_UNAUTHORIZED, "a valid upload token is required\n");
}

} // namespace

std::optional<std::string> UploadService::token_user(Request& req)
{
    std::string token;
    if (req.has("Authorization") && parse_bearer(req.get("Authorization"), token))
        return up_.user_of(token);
    return std::nullopt;
}

int UploadService::handle_item(Request& req, Response& resp, const std::string& item_id, std::string& log_id)
{
    std::optional<std::string> user = token_user(req);
    if (!user)
        return unauthorized(resp);
    log_id = item_id;
    if (req.getMethod() != "DELETE") {
        resp.setKeepAlive(false);
        resp.set("Allow", "DELETE");
        return answer(resp, HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    // Another user's item and no item at all are answered alike: a token
    // learns nothing about what others stored.
    if (!up_.remove_own_item(item_id, *user))
        return answer(resp, HTTPResponse::HTTP_NOT_FOUND, "no such item of yours\n");
    log_info("uploaded item deleted by its uploader" + kv("item", item_id) + kv("user", *user));
    return no_content(resp);
}

int UploadService::handle(Request& req, Response& resp, const std::string& id, std::string& log_id)
{
    const std::string& method = req.getMethod();
    if (method == "OPTIONS") {
        resp.set("Tus-Version", kTusVersion);
        resp.set("Tus-Extension", "creation,termination");
        resp.set("Tus-Max-Size", std::to_string(kMaxUploadLength));
        return no_content(resp);
    }
    // The token first, whatever the method: nothing about uploads is told to
    // a client without one.
    std::optional<std::string> user = token_user(req);
    if (!user)
        return unauthorized(resp);
    if (id.empty()) {
        if (method != "POST") {
            resp.setKeepAlive(false);
            resp.set("Allow", "POST, OPTIONS");
            return answer(resp, HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        return create(req, resp, *user, log_id);
    }
    log_id = id;
    std::optional<UploadRow> row = up_.find(id, *user);
    if (method == "HEAD") {
        if (!row)
            return no_content(resp, HTTPResponse::HTTP_NOT_FOUND);
        resp.set("Upload-Offset", std::to_string(up_.offset(id)));
        resp.set("Upload-Length", std::to_string(row->size));
        return no_content(resp, HTTPResponse::HTTP_OK);
    }
    if (method == "PATCH" || method == "PUT")
        return append(req, resp, row);
    if (method == "DELETE") {
        if (!row)
            return answer(resp, HTTPResponse::HTTP_NOT_FOUND, "no such upload\n");
        std::shared_ptr<Open> o = take(id);
        if (!o) {
            resp.set("Retry-After", "5");
            return answer(resp, 423, "the upload is being written by another request\n");
        }
        up_.remove(id);
        give_back(o, true);
        log_info("upload deleted" + kv("upload", id) + kv("user", *user));
        return no_content(resp);
    }
    resp.setKeepAlive(false);
    resp.set("Allow", "HEAD, PATCH, PUT, DELETE, OPTIONS");
    return answer(resp, HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
}

int UploadService::create(Request& req, Response& resp, const std::string& user, std::string& log_id)
{
    // tus's creation-with-upload is not offered: the POST has no body.
    if ((req.hasContentLength() && req.getContentLength64() != 0) || req.getChunkedTransferEncoding()) {
        resp.setKeepAlive(false);
        return answer(resp, HTTPResponse::HTTP_BAD_REQUEST, "POST /upload takes no body\n");
    }
    uint64_t size = 0;
    if (!req.has("Upload-Length") || !parse_byte_count(req.get("Upload-Length"), kMaxUploadLength, size))
        return answer(resp, HTTPResponse::HTTP_BAD_REQUEST, "Upload-Length: a byte count is required\n");
    UploadMetadata md;
    std::string why;
    if (req.has("Upload-Metadata") && !parse_upload_metadata(req.get("Upload-Metadata"), md, why))
        return answer(resp, HTTPResponse::HTTP_BAD_REQUEST, why + "\n");
    if (md.meta.type.empty())
        md.meta.type = "application/octet-stream";
    if (md.meta.name.empty())
        md.meta.name = "upload";
    bool resumed = false;
    UploadRow row;
    try {
        row = up_.create(user, size, md.sha256, md.meta, resumed);
    } catch (const UploadRefused& e) {
        bool quota = e.why == UploadRefused::Why::quota;
        log_info("upload refused" + kv("user", user) + kv("size", std::to_string(size)) + kv("why", e.what()));
        return answer(resp, quota ? HTTPResponse::HTTP_REQUESTENTITYTOOLARGE : HTTPResponse::HTTP_TOO_MANY_REQUESTS,
                      std::string(quota ? "over quota: " : "") + e.what() + "\n");
    }
    log_id = row.id;
    uint64_t offset = resumed ? up_.offset(row.id) : 0;
    log_info(std::string(resumed ? "upload resumed by its key" : "upload created") + kv("upload", row.id) +
             kv("user", user) + kv("size", std::to_string(size)) + kv("offset", std::to_string(offset)) +
             kv("name", printable(row.meta.name, 80)));
    resp.set("Location", "/upload/" + row.id);
    resp.set("Upload-Offset", std::to_string(offset));
    return no_content(resp, resumed ? HTTPResponse::HTTP_OK : HTTPResponse::HTTP_CREATED);
}

int UploadService::append(Request& req, Response& resp, const std::optional<UploadRow>& row)
{
    if (!row) {
        resp.setKeepAlive(false);
        return answer(resp, HTTPResponse::HTTP_NOT_FOUND, "no such upload\n");
    }
    const bool patch = req.getMethod() == "PATCH";
    if (!req.hasContentLength() || req.getChunkedTransferEncoding()) {
        resp.setKeepAlive(false);
        return answer(resp, HTTPResponse::HTTP_LENGTH_REQUIRED, "Content-Length is required\n");
    }
    uint64_t len = static_cast<uint64_t>(req.getContentLength64());
    if (patch && req.getContentType() != "application/offset+octet-stream") {
        resp.setKeepAlive(false);
        return answer(resp, HTTPResponse::HTTP_UNSUPPORTEDMEDIATYPE,
                      "PATCH takes Content-Type: application/offset+octet-stream\n");
    }
    // Where the bytes go: Upload-Offset (tus), Content-Range, or both agreeing.
    bool has_offset = req.has("Upload-Offset"), has_range = req.has("Content-Range");
    uint64_t at = 0;
    if (has_offset && !parse_byte_count(req.get("Upload-Offset"), kMaxUploadLength, at)) {
        resp.setKeepAlive(false);
        return answer(resp, HTTPResponse::HTTP_BAD_REQUEST, "Upload-Offset: not a byte count\n");
    }
    if (has_range) {
        ContentRange cr;
        if (!parse_content_range(req.get("Content-Range"), cr)) {
            resp.setKeepAlive(false);
            return answer(resp, HTTPResponse::HTTP_BAD_REQUEST, "Content-Range: expected bytes FIRST-LAST/TOTAL\n");
        }
        if ((cr.total != UINT64_MAX && cr.total != row->size) || cr.last - cr.first + 1 != len ||
            (has_offset && at != cr.first)) {
            resp.setKeepAlive(false);
            return answer(resp, HTTPResponse::HTTP_BAD_REQUEST,
                          "Content-Range disagrees with Content-Length, Upload-Offset or the declared length\n");
        }
        at = cr.first;
    } else if (!has_offset) {
        resp.setKeepAlive(false);
        return answer(resp, HTTPResponse::HTTP_BAD_REQUEST,
                      patch ? "Upload-Offset is required\n" : "Content-Range is required\n");
    }
    if (at > row->size || len > row->size - at) {
        resp.setKeepAlive(false);
        return answer(resp, HTTPResponse::HTTP_REQUESTENTITYTOOLARGE,
                      "more bytes than the upload's declared Upload-Length (" + std::to_string(row->size) + ")\n");
    }
    std::shared_ptr<Open> o = take(row->id);
    if (!o) {
        resp.setKeepAlive(false);
        resp.set("Retry-After", "5");
        return answer(resp, 423, "the upload is being written by another request\n");
    }
    // A writer whose bytes are not exactly the file's (none yet, a restart, a
    // failed write) is made again: it hashes the file as it finds it.
    uint64_t on_disk = up_.offset(row->id);
    try {
        if (!o->writer || o->writer->size() != on_disk)
            o->writer = up_.writer(*row);
    } catch (const QuotaError& e) {
        give_back(o, false);
        resp.setKeepAlive(false);
        return answer(resp, HTTPResponse::HTTP_REQUESTENTITYTOOLARGE, std::string("over quota: ") + e.what() + "\n");
    } catch (const std::exception& e) {
        give_back(o, true);
        log_error("upload " + row->id + ": " + e.what());
        resp.setKeepAlive(false);
        return answer(resp, HTTPResponse::HTTP_INTERNAL_SERVER_ERROR, "internal error\n");
    }
    uint64_t offset = o->writer->size();
    if (at != offset) {
        give_back(o, false);
        resp.setKeepAlive(false);
        resp.set("Upload-Offset", std::to_string(offset));
        return answer(resp, HTTPResponse::HTTP_CONFLICT,
                      "the upload is at offset " + std::to_string(offset) + ", not " + std::to_string(at) + "\n");
    }
    resp.receive(std::make_unique<PatchSink>(*this, std::move(o), *row));
    return 0;
}

} // namespace mm
