// server.cpp - mm-gateway's HTTPS request handling: capability URLs checked
// against the store, every refusal an identical 404, media streamed in fixed
// buffers with single byte ranges (RFC 9110 14, RFC 6266 for the file name).
// Reads gateway.listen, gateway.threads, gateway.max_connections, gateway.timeout.
#include "server.h"

#include "http.h"
#include "range.h"
#include "store.h"

#include "../mime/log.h"

#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/PrivateKeyPassphraseHandler.h>
#include <Poco/Net/RejectCertificateHandler.h>
#include <Poco/Net/SSLManager.h>
#include <Poco/Net/SecureServerSocket.h>
#include <Poco/ThreadPool.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace mm {

namespace {

constexpr size_t kBufferSize = 256 * 1024;   // per request, whatever the file size
constexpr std::string_view kNotFoundBody = "not found\n";

using Poco::Net::HTTPResponse;
using Poco::Net::HTTPServerRequest;
using Poco::Net::HTTPServerResponse;

class MediaHandler : public Poco::Net::HTTPRequestHandler {
public:
    explicit MediaHandler(Store& store) : store_(store) {}

    void handleRequest(HTTPServerRequest& req, HTTPServerResponse& resp) override
    {
        std::string method = req.getMethod();
        std::string id_prefix = "-";
        int status = 0;
        uint64_t sent = 0;
        try {
            status = handle(req, resp, method, id_prefix, sent);
        } catch (const std::exception& e) {
            log_error("request " + printable(method, 16) + " id=" + id_prefix + " failed: " + printable(e.what()));
            status = -1;
        }
        log_info(printable(method, 16) + " " + (status < 0 ? std::string("aborted") : std::to_string(status)) +
                 " bytes=" + std::to_string(sent) + " id=" + id_prefix + " peer=" + req.clientAddress().toString());
    }

private:
    void common_headers(HTTPServerResponse& resp)
    {
        // The media is private to the mail's recipients: no shared caches, no sniffing.
        resp.set("Cache-Control", "private, no-store");
        resp.set("X-Content-Type-Options", "nosniff");
    }

    int small(HTTPServerResponse& resp, HTTPResponse::HTTPStatus status, std::string_view body)
    {
        common_headers(resp);
        resp.setStatusAndReason(status);
        resp.setContentType("text/plain; charset=utf-8");
        resp.setContentLength64(body.size());
        std::ostream& out = resp.send();
        out.write(body.data(), static_cast<std::streamsize>(body.size()));
        return status;
    }

    // Every refusal of a request target looks the same, whatever the reason:
    // no oracle telling an unknown id from a wrong token or an expired item.
    int not_found(HTTPServerResponse& resp) { return small(resp, HTTPResponse::HTTP_NOT_FOUND, kNotFoundBody); }

    int handle(HTTPServerRequest& req, HTTPServerResponse& resp, const std::string& method, std::string& id_prefix,
               uint64_t& sent)
    {
        bool head = method == "HEAD";
        if (method != "GET" && !head) {
            resp.set("Allow", "GET, HEAD");
            return small(resp, HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        std::string id, token;
        if (!parse_media_target(req.getURI(), id, token))
            return not_found(resp);
        id_prefix = id.substr(0, 8);
        std::optional<Item> item = store_.authorize(id, token);
        if (!item)
            return not_found(resp);

        std::string path = store_.object_path(item->sha256);
        int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
            log_error("item " + id_prefix + ": cannot open " + path + ": " + std::strerror(errno));
            return small(resp, HTTPResponse::HTTP_INTERNAL_SERVER_ERROR, "internal error\n");
        }
        struct FdCloser {
            int fd;
            ~FdCloser() { close(fd); }
        } closer{fd};
        struct stat st;
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != item->size) {
            log_error("item " + id_prefix + ": object " + path + " is not a regular file of the recorded size");
            return small(resp, HTTPResponse::HTTP_INTERNAL_SERVER_ERROR, "internal error\n");
        }
        const uint64_t size = item->size;
        const std::string etag = "\"" + item->sha256 + "\"";

        ByteRange range;
        if (req.has("Range")) {
            // If-Range with another validator means the client's partial copy
            // is of something else: send it all. Objects never change, so our
            // strong ETag is the only match.
            if (!req.has("If-Range") || req.get("If-Range") == etag)
                range = parse_range(req.get("Range"), size);
        }

        common_headers(resp);
        resp.set("ETag", etag);
        resp.set("Accept-Ranges", "bytes");
        if (range.kind == ByteRange::Kind::unsatisfiable) {
            resp.set("Content-Range", "bytes */" + std::to_string(size));
            return small(resp, HTTPResponse::HTTP_REQUESTED_RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
        }
        uint64_t first = 0, count = size;
        HTTPResponse::HTTPStatus status = HTTPResponse::HTTP_OK;
        if (range.kind == ByteRange::Kind::partial) {
            first = range.first;
            count = range.last - range.first + 1;
            status = HTTPResponse::HTTP_PARTIAL_CONTENT;
            resp.set("Content-Range",
                     "bytes " + std::to_string(range.first) + "-" + std::to_string(range.last) + "/" + std::to_string(size));
        }
        resp.setStatusAndReason(status);
        resp.setContentType(safe_media_type(item->type));
        resp.set("Content-Disposition", content_disposition(item->name));
        resp.setContentLength64(count);
        std::ostream& out = resp.send();
        if (head)
            return status;

        std::vector<char> buf(kBufferSize);
        uint64_t off = first, left = count;
        while (left > 0) {
            size_t want = left < buf.size() ? static_cast<size_t>(left) : buf.size();
            ssize_t n = pread(fd, buf.data(), want, static_cast<off_t>(off));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                throw std::runtime_error("read error or short file at offset " + std::to_string(off) + " of " + path);
            out.write(buf.data(), n);
            if (!out)
                throw std::runtime_error("peer went away after " + std::to_string(sent) + " bytes");
            off += static_cast<uint64_t>(n);
            left -= static_cast<uint64_t>(n);
            sent += static_cast<uint64_t>(n);
        }
        out.flush();
        return status;
    }

    Store& store_;
};

class Factory : public Poco::Net::HTTPRequestHandlerFactory {
public:
    explicit Factory(Store& store) : store_(store) {}
    Poco::Net::HTTPRequestHandler* createRequestHandler(const HTTPServerRequest&) override
    {
        return new MediaHandler(store_);
    }

private:
    Store& store_;
};

// Our keys are never encrypted; if one is, refuse rather than prompt on a console.
class NoPassphrase : public Poco::Net::PrivateKeyPassphraseHandler {
public:
    NoPassphrase() : PrivateKeyPassphraseHandler(true) {}
    void onPrivateKeyRequested(const void*, std::string& passphrase) override { passphrase.clear(); }
};

int64_t positive(const Config& cfg, const char* key)
{
    int64_t v = cfg.integer(key);
    if (v < 1)
        throw ConfigError(std::string("bad value for ") + key + " = '" + cfg.str(key) + "' (" + cfg.origin(key) +
                          "): must be at least 1");
    return v;
}

} // namespace

struct Gateway::Impl {
    TlsIdentity tls;   // first: a bad key pair fails before the store is touched
    Store store;
    Poco::Net::Context::Ptr ctx;
    std::unique_ptr<Poco::Net::SecureServerSocket> socket;   // built once the Context exists
    Poco::ThreadPool pool;
    std::unique_ptr<Poco::Net::HTTPServer> server;

    Impl(const Config& cfg, int threads)
        : tls(tls_identity(cfg)), store(cfg), pool(1, threads, 60)
    {
    }
};

Gateway::Gateway(const Config& cfg)
{
    int threads = static_cast<int>(positive(cfg, "gateway.threads"));
    int queued = static_cast<int>(positive(cfg, "gateway.max_connections"));
    auto timeout = cfg.duration("gateway.timeout");
    if (timeout.count() < 1)
        throw ConfigError("bad value for gateway.timeout = '" + cfg.str("gateway.timeout") + "': must be at least 1s");
    HostPort listen = cfg.hostport("gateway.listen");

    impl_ = std::make_unique<Impl>(cfg, threads);
    impl_->ctx = new Poco::Net::Context(Poco::Net::Context::TLS_SERVER_USE, impl_->tls.key_path,
                                       impl_->tls.cert_path, "", Poco::Net::Context::VERIFY_NONE, 9, false,
                                       "HIGH:!aNULL:!eNULL:!MD5:!RC4:!3DES:!SHA1");
    impl_->ctx->requireMinimumProtocol(Poco::Net::Context::PROTO_TLSV1_2);
    impl_->ctx->preferServerCiphers();
    // Poco's SSLManager otherwise looks for a Poco::Util::Application configuration.
    Poco::Net::SSLManager::instance().initializeServer(new NoPassphrase, new Poco::Net::RejectCertificateHandler(true),
                                                       impl_->ctx);
    impl_->socket = std::make_unique<Poco::Net::SecureServerSocket>(
        Poco::Net::SocketAddress(listen.host, listen.port), 64, impl_->ctx);

    Poco::Net::HTTPServerParams::Ptr params = new Poco::Net::HTTPServerParams;
    params->setMaxThreads(threads);
    params->setMaxQueued(queued);
    params->setTimeout(Poco::Timespan(timeout.count(), 0));
    params->setKeepAlive(true);
    params->setKeepAliveTimeout(Poco::Timespan(timeout.count(), 0));
    params->setMaxKeepAliveRequests(100);
    impl_->server = std::make_unique<Poco::Net::HTTPServer>(new Factory(impl_->store), impl_->pool, *impl_->socket,
                                                             params);
}

Gateway::~Gateway()
{
    if (impl_ && impl_->server)
        impl_->server->stopAll(true);
}

void Gateway::start() { impl_->server->start(); }

void Gateway::stop()
{
    impl_->server->stopAll(true);
    impl_->pool.joinAll();
}

std::string Gateway::address() const { return impl_->socket->address().toString(); }

const std::string& Gateway::pin() const { return impl_->tls.pin; }

} // namespace mm
