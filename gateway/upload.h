// upload.h - mm-gateway's upload API (docs/gateway-api.md, "Uploads"): tus-like
// resumable uploads over the same TLS front end as the downloads. POST /upload
// opens one, HEAD /upload/<id> tells its offset, PATCH (tus) or PUT with
// Content-Range appends, DELETE drops it; the last byte makes the item and the
// answer is its handle. The store's side is store/uploads.h. Reads
// gateway.upload_max_open and gateway.upload_expiry (through Uploads).
#pragma once

#include "gateway/server_net.h"
#include "store/uploads.h"

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace mm {

class UploadService {
public:
    explicit UploadService(Uploads& uploads) : up_(uploads) {}
    ~UploadService();

    /// Answers one request to /upload or /upload/<id> (`id` empty for the
    /// former); `log_id` gets the upload id. Never throws for a client's mistake.
    int handle(Request& req, Response& resp, const std::string& id, std::string& log_id);
    /// Answers one request to /upload/item/<id>: DELETE by the user whose
    /// upload made the item (mmsend, when the mail could not be sent).
    int handle_item(Request& req, Response& resp, const std::string& item_id, std::string& log_id);

    /// Drops expired uploads (their rows and files), except one being written
    /// right now. For the gateway's collector.
    size_t expire();

    struct Open;   // an upload this process has a writer for

private:
    /// The user the request's upload token names; nullopt when there is none
    /// (unauthorized() answers it).
    std::optional<std::string> token_user(Request& req);
    int create(Request& req, Response& resp, const std::string& user, std::string& log_id);
    int append(Request& req, Response& resp, const std::optional<UploadRow>& row);
    std::shared_ptr<Open> take(const std::string& id);   // null when another request holds it
    void give_back(const std::shared_ptr<Open>& o, bool forget);
    friend class PatchSink;

    Uploads& up_;
    std::mutex mu_;
    std::map<std::string, std::shared_ptr<Open>> open_;
};

} // namespace mm
