// server_net.h - mm-gateway's connection front end: one epoll loop that accepts,
// runs the TLS handshake and reads each HTTP/1.1 request head (and a small body)
// under one deadline, a worker pool that runs the handler and sends the answer
// without ever waiting on a slow peer. Reads no keys itself: server.cpp passes
// gateway.threads, max_connections, max_connections_per_ip, max_transfers_per_ip,
// header_timeout, timeout, min_rate and min_rate_window in NetLimits.
#pragma once

#include "core/fileio.h"

#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/SocketAddress.h>

#include <chrono>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <sys/socket.h>

typedef struct ssl_ctx_st SSL_CTX;

namespace mm {

struct NetLimits {
    int threads = 16;                       // workers running handlers and sending
    int max_connections = 4096;             // all connections; also bounded by RLIMIT_NOFILE
    int max_connections_per_ip = 256;       // per IPv4 address or IPv6 /64
    int max_transfers_per_ip = 128;         // concurrent media bodies per address
    std::chrono::seconds header_timeout{10};   // accept (or the previous answer) to the end of the request
    std::chrono::seconds timeout{60};          // a send that makes no progress at all
    uint64_t min_rate = 4096;               // bytes/s a transfer must average over min_rate_window; 0 = off
    std::chrono::seconds min_rate_window{60};
    size_t max_body = 4096;                 // request bodies up to this are read before the handler runs
};

/// A parsed request head (Poco's parser and its field caps) with the body the
/// front end read for it (at most NetLimits::max_body bytes).
class Request : public Poco::Net::HTTPRequest {
public:
    const Poco::Net::SocketAddress& clientAddress() const { return peer_; }
    std::istream& stream() { return body_; }

private:
    friend struct Frontend;
    Poco::Net::SocketAddress peer_;
    std::istringstream body_;
};

class Response;

/// Takes a request body of any length (an upload, docs/gateway-api.md) after
/// the handler accepted its head: the front end feeds it the body as it
/// arrives, on a worker and never waiting on the peer (a slow sender holds no
/// worker, and is cut by gateway.min_rate and gateway.timeout as a slow reader
/// is), then lets it build the answer. Exactly one of finish() or abort() is called.
class BodySink {
public:
    virtual ~BodySink() = default;
    /// The next bytes of the body; false to stop taking them (finish() then
    /// answers, and the connection closes after the answer).
    virtual bool write(const char* data, size_t len) = 0;
    /// The body ended (or write() said stop): build the answer as a handler
    /// does and return its status (-1: close without one).
    virtual int finish(Response& resp) = 0;
    /// The connection was cut before the body ended (peer gone, deadline,
    /// shutdown). What was written stays written.
    virtual void abort() noexcept = 0;
};

/// The answer a handler builds. send() gives a stream for a small body; a
/// file body is given with send_file() and sent by the front end after the
/// handler returns, so that no worker waits on a slow reader.
class Response : public Poco::Net::HTTPResponse {
public:
    std::ostream& send() { return body_; }
    /// Sends [first, first + count) of `file` as the body.
    void send_file(UniqueFd file, uint64_t first, uint64_t count)
    {
        file_ = std::move(file);
        first_ = first;
        count_ = count;
    }
    /// Takes one of the peer address's gateway.max_transfers_per_ip slots for
    /// this answer's body; false if they are all taken.
    bool begin_transfer() { return take_transfer_ && take_transfer_(); }
    /// The id shown in the access log line ("-" if none).
    std::string log_id = "-";
    /// Accepts the request's body into `sink` (Content-Length bytes; the
    /// handler checked that it has one). The answer is then finish()'s, and
    /// whatever the handler put here is dropped. A 100-continue the client
    /// waits for is sent now.
    void receive(std::unique_ptr<BodySink> sink) { sink_ = std::move(sink); }

private:
    friend struct Frontend;
    std::ostringstream body_;
    UniqueFd file_;
    uint64_t first_ = 0, count_ = 0;
    std::function<bool()> take_transfer_;
    std::unique_ptr<BodySink> sink_;
};

/// Runs on a worker; returns the HTTP status sent, or -1 after an internal
/// failure (the connection is then closed).
using RequestHandler = std::function<int(Request&, Response&)>;

class HttpFrontend {
public:
    /// Binds `listen` unless it is null (throws BindError, core/program.h, on
    /// failure; never SO_REUSEPORT, so a second server on the port fails) and
    /// raises the RLIMIT_NOFILE soft limit to the hard one. Holds a reference to `tls`.
    HttpFrontend(const Poco::Net::SocketAddress* listen, SSL_CTX* tls, const NetLimits& limits,
                 RequestHandler handler);
    ~HttpFrontend();
    /// New connections use `tls` from now on (a renewed certificate); running
    /// ones keep the context they started with.
    void set_tls(SSL_CTX* tls);
    void start();
    void stop();   // stops accepting, aborts every connection, joins all threads
    /// Serves `fd`, a connected non-blocking stream socket (gateway/relay.cpp
    /// hands in one end of a socketpair per relayed channel), exactly like an
    /// accepted connection from `peer`: the same caps, deadlines and TLS. Takes
    /// ownership of fd (closed at once after stop()). Any thread.
    void adopt(int fd, const sockaddr_storage& peer, socklen_t len);
    std::string address() const;   // "" without a listener

private:
    std::unique_ptr<struct Frontend> impl_;
};

} // namespace mm
