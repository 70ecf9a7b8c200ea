// server.cpp - mm-gateway's HTTPS request handling: capability URLs checked
// against the store, every refusal an identical 404, media streamed in fixed
// buffers with single byte ranges (RFC 9110 14, RFC 6266 for the file name),
// receipts (POST .../receipt, docs/gateway-api.md) and the browser page; the
// connections themselves are server_net.cpp's. Reads gateway.listen, gateway.threads,
// gateway.max_connections, gateway.max_connections_per_ip, gateway.max_transfers_per_ip,
// gateway.timeout, gateway.header_timeout, gateway.min_rate, gateway.min_rate_window,
// gateway.gc_interval (and the store's and lifecycle's keys).
#include "gateway/server.h"

#include "gateway/http.h"
#include "gateway/metrics.h"
#include "gateway/relay.h"
#include "store/lifecycle.h"
#include "gateway/page.h"
#include "gateway/range.h"
#include "gateway/server_net.h"
#include "gateway/upload.h"
#include "gateway/upload_parse.h"
#include "store/store.h"

#include "core/fileio.h"
#include "core/address.h"
#include "core/log.h"
#include "core/status_http.h"
#include "core/stream.h"
#include "core/util.h"

#include <Poco/Net/Context.h>
#include <Poco/Net/PrivateKeyPassphraseHandler.h>
#include <Poco/Net/RejectCertificateHandler.h>
#include <Poco/Net/SSLManager.h>
#include <openssl/ssl.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <optional>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace mm {

namespace {

constexpr size_t kMaxHeaderBytes = 16 * 1024;   // all request header fields together
constexpr std::string_view kNotFoundBody = "not found\n";

using Poco::Net::HTTPResponse;
// The handler keeps Poco's names for what it reads and writes; both are the
// front end's (server_net.h), which parses heads with Poco and sends the answers.
using HTTPServerRequest = Request;
using HTTPServerResponse = Response;

bool ascii_contains_ci(std::string_view hay, std::string_view needle)
{
    if (needle.size() > hay.size())
        return false;
    for (size_t i = 0; i + needle.size() <= hay.size(); ++i) {
        size_t k = 0;
        while (k < needle.size() && std::tolower(static_cast<unsigned char>(hay[i + k])) == needle[k])
            ++k;
        if (k == needle.size())
            return true;
    }
    return false;
}

class MediaHandler {
public:
    MediaHandler(Store& store, Lifecycle& life, UploadService& uploads) : store_(store), life_(life), uploads_(uploads)
    {
    }

    // Runs on a front-end worker; the front end writes the access log line
    // once the answer is sent (or cut).
    int handleRequest(HTTPServerRequest& req, HTTPServerResponse& resp)
    {
        std::string method = req.getMethod();
        std::string id_prefix = "-";
        int status = 0;
        try {
            status = handle(req, resp, method, id_prefix);
        } catch (const std::exception& e) {
            log_error("request " + printable(method, 16) + " id=" + id_prefix + " failed: " + printable(e.what()));
            status = -1;
        }
        resp.log_id = id_prefix;
        return status;
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

    int handle(HTTPServerRequest& req, HTTPServerResponse& resp, const std::string& method, std::string& id_prefix)
    {
        // Poco caps each field (name 256, value 8 KiB) and their number (100);
        // the sum is capped here, well below what 100 large fields would allow.
        size_t header_bytes = req.getURI().size();
        for (const auto& [name, value] : req)
            header_bytes += name.size() + value.size() + 4;
        if (header_bytes > kMaxHeaderBytes) {
            resp.setKeepAlive(false);
            return small(resp, HTTPResponse::HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, "request header fields too large\n");
        }
        // The upload API (upload.cpp) has its own methods and answers.
        std::string upload_id;
        if (parse_upload_target(req.getURI(), upload_id))
            return uploads_.handle(req, resp, upload_id, id_prefix);
        if (parse_upload_item_target(req.getURI(), upload_id))
            return uploads_.handle_item(req, resp, upload_id, id_prefix);
        bool head = method == "HEAD";
        bool post = method == "POST";
        if (method != "GET" && !head && !post) {
            resp.setKeepAlive(false);   // any body stays unread
            resp.set("Allow", "GET, HEAD, POST");
            return small(resp, HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        std::string id, token, tail, query;
        if (!parse_media_target(req.getURI(), id, token, tail, query))
            return post ? receipt_refused(req, resp) : not_found(resp);
        id_prefix = id;   // the whole id: the trace greps for it (docs/gateway-api.md)
        if (post) {
            if (tail != "/receipt") {
                resp.setKeepAlive(false);
                resp.set("Allow", "GET, HEAD");
                return small(resp, HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
            }
            return receipt(req, resp, id, token);
        }
        std::optional<Item> item = store_.authorize(id, token);
        if (!item)
            return not_found(resp);

        // A person opening the link gets a page; players and downloaders
        // (Range requests, Accept without text/html, ?download=1) get the bytes.
        if (!req.has("Range") && !query_wants_download(query) && req.has("Accept") &&
            ascii_contains_ci(req.get("Accept"), "text/html"))
            return page(resp, *item, id, token, head);
        // Each address gets gateway.max_transfers_per_ip bodies at once: one
        // host cannot hold every connection slot with slow downloads.
        if (!head && !resp.begin_transfer()) {
            gateway_metrics().refused(Limit::transfers_per_ip);
            resp.set("Retry-After", "10");
            return small(resp, HTTPResponse::HTTP_SERVICE_UNAVAILABLE, "too many downloads from your address\n");
        }
        return media(req, resp, *item, id_prefix, head);
    }

    // The body checks depend only on the request, never on the item, so their
    // 400/413 answers tell nothing about ids or tokens.
    int read_receipt_body(HTTPServerRequest& req, HTTPServerResponse& resp, std::string& body)
    {
        if (req.hasContentLength() && req.getContentLength64() > static_cast<Poco::Int64>(kMaxReceiptBody)) {
            resp.setKeepAlive(false);   // the body stays unread
            return small(resp, HTTPResponse::HTTP_REQUESTENTITYTOOLARGE, "receipt body too large\n");
        }
        std::string type = req.getContentType();
        size_t semi = type.find(';');
        std::string base = type.substr(0, semi);
        while (!base.empty() && (base.back() == ' ' || base.back() == '\t'))
            base.pop_back();
        for (char& c : base)
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        // The front end read the body under the request's deadline, so a
        // client trickling its receipt never held a worker.
        std::istream& in = req.stream();
        body.resize(kMaxReceiptBody + 1);
        in.read(body.data(), static_cast<std::streamsize>(body.size()));
        body.resize(static_cast<size_t>(in.gcount()));
        if (body.size() > kMaxReceiptBody) {
            resp.setKeepAlive(false);
            return small(resp, HTTPResponse::HTTP_REQUESTENTITYTOOLARGE, "receipt body too large\n");
        }
        if (base != "application/x-www-form-urlencoded")
            return small(resp, HTTPResponse::HTTP_BAD_REQUEST, "expected application/x-www-form-urlencoded\n");
        return 0;
    }

    // A POST to a target that is no item URL: the body rules first, as for a real one.
    int receipt_refused(HTTPServerRequest& req, HTTPServerResponse& resp)
    {
        std::string body, r, s;
        if (int st = read_receipt_body(req, resp, body))
            return st;
        if (!parse_receipt_body(body, r, s))
            return small(resp, HTTPResponse::HTTP_BAD_REQUEST, "malformed receipt\n");
        return not_found(resp);
    }

    int receipt(HTTPServerRequest& req, HTTPServerResponse& resp, const std::string& id, const std::string& token)
    {
        std::string body, recipient, sha256;
        if (int st = read_receipt_body(req, resp, body))
            return st;
        if (!parse_receipt_body(body, recipient, sha256))
            return small(resp, HTTPResponse::HTTP_BAD_REQUEST, "malformed receipt\n");
        std::optional<Item> item = store_.authorize(id, token);
        if (!item || !life_.receipt(*item, recipient, sha256))
            return not_found(resp);
        gateway_metrics().receipt();
        // Only a recipient's own token makes a receipt; the item token's answer is the same whoever is named.
        if (!item->recipient.empty())
            log_info("receipt accepted" + kv("item", id) + kv("hash", item->sha256.substr(0, 12)) +
                     kv("recipient", item->recipient) + kv("client", req.clientAddress().host().toString()));
        else
            log_info("receipt answered, not counted: the item's shared token" + kv("item", id) +
                     kv("hash", item->sha256.substr(0, 12)) + kv("client", req.clientAddress().host().toString()));
        common_headers(resp);
        resp.setStatusAndReason(HTTPResponse::HTTP_NO_CONTENT);
        resp.send();
        return HTTPResponse::HTTP_NO_CONTENT;
    }

    int page(HTTPServerResponse& resp, const Item& item, const std::string& id, const std::string& token, bool head)
    {
        PageInfo p;
        p.name = item.name;
        p.type = safe_media_type(item.type);
        p.title = item.title;
        p.note = item.note;
        p.copyright = item.copyright;
        p.date = item.date;
        p.expires = item.expires;
        p.size = item.size;
        p.self = "/m/" + id + "/" + token;
        p.nonce = random_hex(16);
        std::string html = render_item_page(p);
        common_headers(resp);
        resp.set("Content-Security-Policy", item_page_csp(p.nonce));
        resp.set("Referrer-Policy", "no-referrer");   // the URL is a capability: never leak it
        resp.set("X-Frame-Options", "DENY");
        resp.set("Vary", "Accept, Range");
        resp.setStatusAndReason(HTTPResponse::HTTP_OK);
        resp.setContentType("text/html; charset=utf-8");
        resp.setContentLength64(html.size());
        std::ostream& out = resp.send();
        if (!head)
            out.write(html.data(), static_cast<std::streamsize>(html.size()));
        return HTTPResponse::HTTP_OK;
    }

    int media(HTTPServerRequest& req, HTTPServerResponse& resp, const Item& item, const std::string& id_prefix,
              bool head)
    {
        std::string path = store_.item_path(item);
        UniqueFd file(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
        int fd = file.get();
        if (!item.link_path.empty()) {
            // A linked file (mmsend --link) must still be what was sent. Size and
            // mtime are checked on every request; re-hashing the whole file for
            // each Range request of a player would cost more than the transfer.
            std::string why;
            if (!store_.linked_file_intact(item, fd, Store::LinkCheck::stat, why)) {
                log_warning("item " + id_prefix + ": " + why + "; refusing it (410)");
                return small(resp, HTTPResponse::HTTP_GONE, "gone: the sender changed or removed the file\n");
            }
        } else {
            if (fd < 0) {
                log_error("item " + id_prefix + ": cannot open " + path + ": " + std::strerror(errno));
                return small(resp, HTTPResponse::HTTP_INTERNAL_SERVER_ERROR, "internal error\n");
            }
            struct stat st;
            if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != item.size) {
                log_error("item " + id_prefix + ": object " + path + " is not a regular file of the recorded size");
                return small(resp, HTTPResponse::HTTP_INTERNAL_SERVER_ERROR, "internal error\n");
            }
        }
        const uint64_t size = item.size;
        const std::string etag = "\"" + item.sha256 + "\"";

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
        resp.set("Vary", "Accept, Range");
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
        resp.setContentType(safe_media_type(item.type));
        resp.set("Content-Disposition", content_disposition(item.name));
        resp.setContentLength64(count);
        if (head)
            return status;

        // The front end sends the body once this returns, never waiting on the
        // peer, reading the file in small pieces that stay in the CPU cache.
        if (count > 0)
            resp.send_file(std::move(file), first, count);
        return status;
    }

    Store& store_;
    Lifecycle& life_;
    UploadService& uploads_;
};

// Our keys are never encrypted; if one is, refuse rather than prompt on a console.
class NoPassphrase : public Poco::Net::PrivateKeyPassphraseHandler {
public:
    NoPassphrase() : PrivateKeyPassphraseHandler(true) {}
    void onPrivateKeyRequested(const void*, std::string& passphrase) override { passphrase.clear(); }
};

// The table in core/config.cpp holds every bound of these keys.
NetLimits net_limits(const Config& cfg)
{
    NetLimits l;
    l.threads = static_cast<int>(cfg.integer("gateway.threads"));
    l.max_connections = static_cast<int>(cfg.integer("gateway.max_connections"));
    // Above gateway.max_connections the per-address cap is simply never reached.
    l.max_connections_per_ip =
        static_cast<int>(std::min<int64_t>(cfg.integer("gateway.max_connections_per_ip"), l.max_connections));
    l.max_transfers_per_ip = static_cast<int>(cfg.integer("gateway.max_transfers_per_ip"));
    l.timeout = cfg.duration("gateway.timeout");
    l.header_timeout = cfg.duration("gateway.header_timeout");
    l.min_rate = cfg.size("gateway.min_rate");
    l.min_rate_window = cfg.duration("gateway.min_rate_window");
    l.max_body = kMaxReceiptBody;
    return l;
}

} // namespace

/// The server TLS context for an identity: TLS 1.2 and up, strong ciphers only.
///
/// TLS 1.3 suites in the server's order, AES-128-GCM first: with the default
/// offer of curl, browsers and OpenSSL clients (AES-256-GCM first) the server's
/// preference decides, and AES-128-GCM costs this server about a tenth less CPU
/// per byte for the same protection of a media file (bench/gateway_vs_nginx.sh).
/// A client that puts ChaCha20 first (phones without AES instructions) keeps it.
Poco::Net::Context::Ptr tls_context(const TlsIdentity& id)
{
    Poco::Net::Context::Ptr ctx =
        new Poco::Net::Context(Poco::Net::Context::TLS_SERVER_USE, id.key_path, id.cert_path, "",
                               Poco::Net::Context::VERIFY_NONE, 9, false, "HIGH:!aNULL:!eNULL:!MD5:!RC4:!3DES:!SHA1");
    ctx->requireMinimumProtocol(Poco::Net::Context::PROTO_TLSV1_2);
    ctx->preferServerCiphers();
    SSL_CTX* raw = ctx->sslContext();
    if (SSL_CTX_set_ciphersuites(raw, kTls13Suites) != 1)
        throw std::runtime_error("OpenSSL refused the TLS 1.3 cipher suites " + std::string(kTls13Suites));
    SSL_CTX_set_options(raw, SSL_OP_PRIORITIZE_CHACHA);
    return ctx;
}

struct Gateway::Impl {
    TlsIdentity tls;   // first: a bad key pair fails before the store is touched
    Store store;
    Lifecycle life;
    Uploads uploads;
    UploadService upload_service;
    MediaHandler handler;
    Poco::Net::Context::Ptr ctx;
    std::unique_ptr<HttpFrontend> front;   // built once the Context exists
    std::unique_ptr<StatusServer> admin;   // gateway.admin_listen (metrics.h); none when empty
    std::unique_ptr<Relay> relay;          // gateway.relay; none when empty

    // The expiry collector: once at start, then every gateway.gc_interval.
    std::chrono::seconds gc_interval;
    std::mutex gc_mu;
    std::condition_variable gc_cv;
    bool gc_stop = false;
    std::thread gc_thread;

    explicit Impl(const Config& cfg)
        : tls(tls_identity(cfg)), store(cfg), life(cfg), uploads(cfg, store), upload_service(uploads),
          handler(store, life, upload_service),
          gc_interval(cfg.duration("gateway.gc_interval"))
    {
    }

    void collect()
    {
        try {
            GcReport r = life.gc();
            if (r.expired_items || r.delivered_items || r.objects_removed || r.tmp_removed)
                log_info("gc: " + std::to_string(r.expired_items) + " expired, " + std::to_string(r.delivered_items) +
                         " delivered, " + std::to_string(r.objects_removed) + " objects (" +
                         std::to_string(r.bytes_freed) + " bytes) and " + std::to_string(r.tmp_removed) +
                         " temp files removed");
        } catch (const std::exception& e) {
            log_error(std::string("gc failed: ") + e.what());
        }
        try {
            upload_service.expire();
        } catch (const std::exception& e) {
            log_error(std::string("expiring uploads failed: ") + e.what());
        }
    }

    void gc_loop()
    {
        std::unique_lock<std::mutex> l(gc_mu);
        while (!gc_stop) {
            l.unlock();
            collect();
            l.lock();
            gc_cv.wait_for(l, gc_interval, [this] { return gc_stop; });
        }
    }

    void stop_gc()
    {
        {
            std::lock_guard<std::mutex> l(gc_mu);
            gc_stop = true;
        }
        gc_cv.notify_all();
        if (gc_thread.joinable())
            gc_thread.join();
    }
};

Gateway::Gateway(const Config& cfg)
{
    NetLimits limits = net_limits(cfg);
    HostPort listen = cfg.hostport("gateway.listen");   // port 0: no listener (gateway.relay only)

    impl_ = std::make_unique<Impl>(cfg);
    impl_->ctx = tls_context(impl_->tls);
    // Poco's SSLManager otherwise looks for a Poco::Util::Application configuration.
    Poco::Net::SSLManager::instance().initializeServer(new NoPassphrase, new Poco::Net::RejectCertificateHandler(true),
                                                       impl_->ctx);
    MediaHandler* handler = &impl_->handler;
    std::optional<Poco::Net::SocketAddress> at;
    if (listen.port != 0)
        at.emplace(listen.host, listen.port);
    impl_->front = std::make_unique<HttpFrontend>(
        at ? &*at : nullptr, impl_->ctx->sslContext(), limits,
        [handler](Request& req, Response& resp) { return handler->handleRequest(req, resp); });
    if (!cfg.str("gateway.relay").empty()) {
        HttpFrontend* front = impl_->front.get();
        impl_->relay = std::make_unique<Relay>(cfg, [front](int fd, const sockaddr_storage& peer, socklen_t len) {
            front->adopt(fd, peer, len);
        });
    }
    start_admin(cfg);
}

// gateway.admin_listen: /healthz and /metrics in plain HTTP, on loopback only
// (Config::verify refuses any other address).
void Gateway::start_admin(const Config& cfg)
{
    HostPort at = cfg.hostport("gateway.admin_listen");
    if (at.host.empty())
        return;
    std::string err;
    int fd = listen_tcp(at.host, at.port, err);
    if (fd < 0)
        throw cfg.invalid("gateway.admin_listen", err);
    Impl* s = impl_.get();
    impl_->admin = std::make_unique<StatusServer>(fd, "admin_listen", [s](const std::string& path) {
        return gateway_admin_reply(
            path, gateway_metrics(), [s](std::string& why) { return s->life.readable(why); },
            [s] {
                StoreStats st = s->life.stats();
                return StoreFigures{st.items_by_state, st.objects, st.object_bytes, st.receipts};
            });
    });
}

Gateway::~Gateway()
{
    if (impl_) {
        impl_->stop_gc();
        if (impl_->admin)
            impl_->admin->stop();
        if (impl_->relay)
            impl_->relay->stop();   // first: it hands connections to the front end
        if (impl_->front)
            impl_->front->stop();
        gateway_metrics().set_listening(false);
    }
}

void Gateway::start()
{
    impl_->front->start();
    gateway_metrics().set_listening(true);
    if (impl_->relay)
        impl_->relay->start();
    if (impl_->admin)
        impl_->admin->start();
    impl_->gc_thread = std::thread([this] { impl_->gc_loop(); });
}

void Gateway::stop()
{
    gateway_metrics().set_listening(false);
    impl_->stop_gc();
    if (impl_->admin)
        impl_->admin->stop();
    if (impl_->relay)
        impl_->relay->stop();
    impl_->front->stop();
}

std::string Gateway::address() const { return impl_->front->address(); }

const std::string& Gateway::pin() const { return impl_->tls.pin; }

bool Gateway::reload_tls(const Config& cfg, std::string& err)
{
    try {
        TlsIdentity id = tls_identity(cfg);
        Poco::Net::Context::Ptr ctx = tls_context(id);
        impl_->front->set_tls(ctx->sslContext());
        impl_->ctx = ctx;   // the front end holds its own reference to the old one while it matters
        impl_->tls = id;
        return true;
    } catch (const Poco::Exception& e) {
        err = e.displayText();
    } catch (const std::exception& e) {
        err = e.what();
    }
    return false;
}

} // namespace mm
