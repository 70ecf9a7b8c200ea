// server.h - the listening side of mm-fetcher: accept clients on fetcher.listen,
// one thread per session, at most fetcher.max_sessions at once (RFC 1939 transport);
// fetcher.tls_listen for implicit TLS (RFC 8314 style, port 995 conventionally).
#pragma once

#include "fetcher/session.h"

#include <atomic>
#include <functional>

namespace mm {

struct ServerConfig {
    std::string host;               // fetcher.listen
    uint16_t port = 0;
    unsigned max_sessions = 32;     // fetcher.max_sessions
    SessionConfig session;
};

/// Accepts and serves until `stop` is set (checked at least twice a second and on
/// signals unblocked by `wait_mask` during the wait), then ends the sessions.
/// tls_fd (fetcher.tls_listen, or -1): its clients speak TLS from the start.
/// `between` (if set) runs on the accept thread after each wait: the place for
/// a SIGHUP's work, outside the signal handler.
void serve(int listen_fd, int tls_fd, const ServerConfig& cfg, std::atomic<bool>& stop, const void* wait_mask,
           const std::function<void()>& between = {});

} // namespace mm
