// server.cpp - mm-gateway's HTTPS request handling: capability URLs checked
// against the store, every refusal an identical 404, media streamed in fixed
// buffers with single byte ranges (RFC 9110 14, RFC 6266 for the file name),
// receipts (POST .../receipt, docs/gateway-api.md), the browser page, and the
// connection guard that cuts clients too slow to send their request head.
// Reads gateway.listen, gateway.threads, gateway.max_connections, gateway.timeout,
// gateway.header_timeout, gateway.gc_interval (and the store's and lifecycle's keys).
#include "gateway/server.h"

#include "gateway/http.h"
#include "store/lifecycle.h"
#include "gateway/page.h"
#include "gateway/range.h"
#include "store/store.h"

#include "core/fileio.h"
#include "core/address.h"
#include "core/log.h"
#include "core/util.h"

#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServerConnection.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerRequestImpl.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/PrivateKeyPassphraseHandler.h>
#include <Poco/Net/RejectCertificateHandler.h>
#include <Poco/Net/SSLManager.h>
#include <Poco/Net/SecureServerSocket.h>
#include <Poco/Net/TCPServer.h>
#include <Poco/Net/TCPServerConnectionFactory.h>
#include <Poco/ThreadPool.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fcntl.h>
#include <list>
#include <mutex>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace mm {

namespace {

// One read and one TLS write of this size: OpenSSL cuts it into full 16 KiB
// records, so the per-record and per-syscall costs are as low as they go.
constexpr size_t kBufferSize = 512 * 1024;
constexpr uint64_t kMapWindow = 64 * 1024 * 1024;   // mapped at once when sending an object
constexpr size_t kMaxHeaderBytes = 16 * 1024;   // all request header fields together
constexpr std::string_view kNotFoundBody = "not found\n";

using Clock = std::chrono::steady_clock;
using Poco::Net::HTTPResponse;
using Poco::Net::HTTPServerRequest;
using Poco::Net::HTTPServerResponse;

// The connection guard: each connection is "reading" (TLS handshake, waiting
// for or reading a request head) or "busy" (a handler runs). A watchdog shuts
// down any connection reading for longer than gateway.header_timeout, so a
// slow-loris client trickling bytes cannot keep a worker thread; Poco's own
// receive timeout restarts with every byte and would not stop it.
class ConnectionGuard {
public:
    struct Slot {
        int fd;
        Clock::time_point since;
        bool busy = false;
        bool cut = false;
    };
    using Handle = std::list<Slot>::iterator;

    explicit ConnectionGuard(std::chrono::seconds header_timeout) : limit_(header_timeout)
    {
        thread_ = std::thread([this] { watch(); });
    }
    ~ConnectionGuard()
    {
        {
            std::lock_guard<std::mutex> l(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        thread_.join();
    }

    Handle enter(int fd)
    {
        std::lock_guard<std::mutex> l(mu_);
        slots_.push_front(Slot{fd, Clock::now()});
        return slots_.begin();
    }
    // Called before the socket is closed, so the watchdog never touches a reused fd.
    void leave(Handle h)
    {
        std::lock_guard<std::mutex> l(mu_);
        slots_.erase(h);
    }
    void set_busy(Slot* s, bool busy)
    {
        std::lock_guard<std::mutex> l(mu_);
        s->busy = busy;
        s->since = Clock::now();
    }
    // On stop: end every connection, downloads included.
    void cut_all()
    {
        std::lock_guard<std::mutex> l(mu_);
        for (auto& s : slots_) {
            ::shutdown(s.fd, SHUT_RDWR);
            s.cut = true;
        }
    }

private:
    void watch()
    {
        std::unique_lock<std::mutex> l(mu_);
        while (!stop_) {
            cv_.wait_for(l, std::chrono::milliseconds(250));
            Clock::time_point now = Clock::now();
            for (auto& s : slots_) {
                if (!s.busy && !s.cut && now - s.since > limit_) {
                    ::shutdown(s.fd, SHUT_RDWR);   // the blocked read returns; Poco ends the connection
                    s.cut = true;
                    ++cut_count_;
                }
            }
            // One summary line a minute at most: an attack must not flood the log.
            if (cut_count_ != cut_logged_ && now - last_log_ >= std::chrono::seconds(60)) {
                log_info("closed " + std::to_string(cut_count_ - cut_logged_) +
                         " connection(s) that sent no complete request within gateway.header_timeout");
                cut_logged_ = cut_count_;
                last_log_ = now;
            }
        }
    }

    std::chrono::seconds limit_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::list<Slot> slots_;
    std::thread thread_;
    bool stop_ = false;
    uint64_t cut_count_ = 0, cut_logged_ = 0;
    Clock::time_point last_log_{};
};

// The guard slot of the connection this worker thread is serving, and the
// gateway's guard (one gateway per process).
thread_local ConnectionGuard::Slot* t_slot = nullptr;
ConnectionGuard* g_guard = nullptr;

// Marks this thread's connection as running a handler (busy) or as reading
// from the client under the header deadline.
void mark_connection(bool busy)
{
    if (t_slot && g_guard)
        g_guard->set_busy(t_slot, busy);
}

class GuardedConnection : public Poco::Net::HTTPServerConnection {
public:
    GuardedConnection(const Poco::Net::StreamSocket& s, Poco::Net::HTTPServerParams::Ptr params,
                      Poco::Net::HTTPRequestHandlerFactory::Ptr factory, ConnectionGuard& guard)
        : HTTPServerConnection(s, params, factory), guard_(guard)
    {
    }
    void run() override
    {
        ConnectionGuard::Handle h = guard_.enter(socket().impl()->sockfd());
        t_slot = &*h;
        try {
            HTTPServerConnection::run();
        } catch (...) {
            t_slot = nullptr;
            guard_.leave(h);
            throw;
        }
        t_slot = nullptr;
        guard_.leave(h);
    }

private:
    ConnectionGuard& guard_;
};

class GuardedConnectionFactory : public Poco::Net::TCPServerConnectionFactory {
public:
    GuardedConnectionFactory(Poco::Net::HTTPServerParams::Ptr params, Poco::Net::HTTPRequestHandlerFactory::Ptr f,
                             ConnectionGuard& guard)
        : params_(params), factory_(f), guard_(guard)
    {
    }
    Poco::Net::TCPServerConnection* createConnection(const Poco::Net::StreamSocket& s) override
    {
        return new GuardedConnection(s, params_, factory_, guard_);
    }

private:
    Poco::Net::HTTPServerParams::Ptr params_;
    Poco::Net::HTTPRequestHandlerFactory::Ptr factory_;
    ConnectionGuard& guard_;
};

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

class MediaHandler : public Poco::Net::HTTPRequestHandler {
public:
    MediaHandler(Store& store, Lifecycle& life) : store_(store), life_(life) {}

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
        mark_connection(false);   // back to waiting for the next request head
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
        // Poco caps each field (name 256, value 8 KiB) and their number (100);
        // the sum is capped here, well below what 100 large fields would allow.
        size_t header_bytes = req.getURI().size();
        for (const auto& [name, value] : req)
            header_bytes += name.size() + value.size() + 4;
        if (header_bytes > kMaxHeaderBytes) {
            resp.setKeepAlive(false);
            return small(resp, HTTPResponse::HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, "request header fields too large\n");
        }
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
        id_prefix = id.substr(0, 8);
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
        return media(req, resp, *item, id_prefix, head, sent);
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
        std::istream& in = req.stream();
        body.resize(kMaxReceiptBody + 1);
        // The body is part of the request: the guard's deadline applies to it
        // too, so a client trickling its receipt cannot hold the worker.
        mark_connection(false);
        in.read(body.data(), static_cast<std::streamsize>(body.size()));
        mark_connection(true);
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
        log_info("receipt for item " + id.substr(0, 8) + " from " + printable(normalize_address(recipient), 80));
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
              bool head, uint64_t& sent)
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
        std::ostream& out = resp.send();
        // Poco buffers the head in the body stream: push it out before the
        // body bypasses that stream.
        out.flush();
        if (head)
            return status;

        // The body goes straight to the TLS socket in large writes: Poco's
        // fixed-length stream would cut it into 4 KiB TLS records. The stream
        // stays unused, so its byte count is never at odds with ours.
        auto* impl = dynamic_cast<Poco::Net::HTTPServerRequestImpl*>(&req);
        if (impl && item.link_path.empty() && count > 0) {
            send_mapped(impl->socket(), fd, first, count, sent);
            return status;
        }
        thread_local std::unique_ptr<char[]> buf;   // one per worker thread, not per request
        if (!buf)
            buf.reset(new char[kBufferSize]);
        uint64_t off = first, left = count;
        while (left > 0) {
            size_t want = left < kBufferSize ? static_cast<size_t>(left) : kBufferSize;
            ssize_t n = pread(fd, buf.get(), want, static_cast<off_t>(off));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                throw std::runtime_error("read error or short file at offset " + std::to_string(off) + " of " + path);
            if (impl) {
                for (ssize_t done = 0; done < n;) {
                    int w = impl->socket().sendBytes(buf.get() + done, static_cast<int>(n - done));
                    if (w <= 0)
                        throw std::runtime_error("peer went away after " + std::to_string(sent) + " bytes");
                    done += w;
                }
            } else {
                out.write(buf.get(), n);
                if (!out)
                    throw std::runtime_error("peer went away after " + std::to_string(sent) + " bytes");
            }
            off += static_cast<uint64_t>(n);
            left -= static_cast<uint64_t>(n);
            sent += static_cast<uint64_t>(n);
        }
        if (!impl)
            out.flush();
        return status;
    }

    // Objects never change once placed (content-addressed; the store only
    // ever unlinks them, which keeps the mapping valid), so their pages are
    // mapped and OpenSSL encrypts straight from the page cache: one copy fewer
    // than pread() into a buffer. Linked files are the sender's own and could
    // be truncated under us (SIGBUS), so they take the pread() path.
    static void send_mapped(Poco::Net::StreamSocket& sock, int fd, uint64_t first, uint64_t count, uint64_t& sent)
    {
        static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
        uint64_t pos = first;
        const uint64_t end = first + count;
        while (pos < end) {
            // A window at a time, so that a 4 GiB file does not pin 4 GiB of address space.
            uint64_t base = pos & ~(page - 1);
            uint64_t len = std::min<uint64_t>(end - base, kMapWindow);
            void* m = mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(base));
            if (m == MAP_FAILED)
                throw std::runtime_error(std::string("cannot map the object: ") + std::strerror(errno));
            struct Unmap {
                void* m;
                size_t len;
                ~Unmap() { munmap(m, len); }
            } unmap{m, static_cast<size_t>(len)};
            madvise(m, len, MADV_SEQUENTIAL | MADV_WILLNEED);
            const char* p = static_cast<const char*>(m) + (pos - base);
            const char* stop = static_cast<const char*>(m) + len;
            while (p < stop) {
                int want = static_cast<int>(std::min<uint64_t>(static_cast<uint64_t>(stop - p), kBufferSize));
                int w = sock.sendBytes(p, want);
                if (w <= 0)
                    throw std::runtime_error("peer went away after " + std::to_string(sent) + " bytes");
                p += w;
                sent += static_cast<uint64_t>(w);
            }
            pos = base + len;
        }
    }

    Store& store_;
    Lifecycle& life_;
};

class Factory : public Poco::Net::HTTPRequestHandlerFactory {
public:
    Factory(Store& store, Lifecycle& life) : store_(store), life_(life) {}
    Poco::Net::HTTPRequestHandler* createRequestHandler(const HTTPServerRequest&) override
    {
        // The request head is complete: from here the guard leaves the connection alone.
        mark_connection(true);
        return new MediaHandler(store_, life_);
    }

private:
    Store& store_;
    Lifecycle& life_;
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

std::chrono::seconds at_least_1s(const Config& cfg, const char* key)
{
    auto d = cfg.duration(key);
    if (d.count() < 1)
        throw ConfigError(std::string("bad value for ") + key + " = '" + cfg.str(key) + "' (" + cfg.origin(key) +
                          "): must be at least 1s");
    return d;
}

} // namespace

struct Gateway::Impl {
    TlsIdentity tls;   // first: a bad key pair fails before the store is touched
    Store store;
    Lifecycle life;
    ConnectionGuard guard;
    Poco::Net::Context::Ptr ctx;
    std::unique_ptr<Poco::Net::SecureServerSocket> socket;   // built once the Context exists
    Poco::ThreadPool pool;
    std::unique_ptr<Poco::Net::TCPServer> server;

    // The expiry collector: once at start, then every gateway.gc_interval.
    std::chrono::seconds gc_interval;
    std::mutex gc_mu;
    std::condition_variable gc_cv;
    bool gc_stop = false;
    std::thread gc_thread;

    Impl(const Config& cfg, int threads, std::chrono::seconds header_timeout)
        : tls(tls_identity(cfg)), store(cfg), life(cfg), guard(header_timeout),
          pool(1, threads + 1, 60), gc_interval(at_least_1s(cfg, "gateway.gc_interval"))
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
    int threads = static_cast<int>(positive(cfg, "gateway.threads"));
    int max_conn = static_cast<int>(positive(cfg, "gateway.max_connections"));
    auto timeout = at_least_1s(cfg, "gateway.timeout");
    auto header_timeout = at_least_1s(cfg, "gateway.header_timeout");
    HostPort listen = cfg.hostport("gateway.listen");

    impl_ = std::make_unique<Impl>(cfg, threads, header_timeout);
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
    // gateway.max_connections counts connections being served plus those
    // waiting for a worker; Poco's dispatcher closes any beyond that at once.
    params->setMaxQueued(max_conn > threads ? max_conn - threads : 1);
    params->setTimeout(Poco::Timespan(timeout.count(), 0));
    params->setKeepAlive(true);
    params->setKeepAliveTimeout(Poco::Timespan(timeout.count(), 0));
    params->setMaxKeepAliveRequests(100);
    Poco::Net::HTTPRequestHandlerFactory::Ptr handlers = new Factory(impl_->store, impl_->life);
    g_guard = &impl_->guard;
    impl_->server = std::make_unique<Poco::Net::TCPServer>(
        new GuardedConnectionFactory(params, handlers, impl_->guard), impl_->pool, *impl_->socket, params);
}

Gateway::~Gateway()
{
    if (impl_) {
        impl_->stop_gc();
        if (impl_->server)
            impl_->server->stop();
        impl_->guard.cut_all();
        impl_->pool.joinAll();
        g_guard = nullptr;
    }
}

void Gateway::start()
{
    impl_->server->start();
    impl_->gc_thread = std::thread([this] { impl_->gc_loop(); });
}

void Gateway::stop()
{
    impl_->stop_gc();
    impl_->server->stop();
    impl_->guard.cut_all();
    impl_->pool.joinAll();
}

std::string Gateway::address() const { return impl_->socket->address().toString(); }

const std::string& Gateway::pin() const { return impl_->tls.pin; }

} // namespace mm
