// session.h - one client connection of the POP3 proxy: the RFC 1939 state machine
// (AUTHORIZATION, TRANSACTION, UPDATE) in front of one upstream session.
// Config keys: those of UpstreamConfig and SyncOptions, passed in SessionConfig.
#pragma once

#include "fetcher/sync.h"
#include "fetcher/upstream.h"

#include <atomic>

namespace mm {

struct SessionConfig {
    UpstreamConfig upstream;
    SyncOptions sync;
    std::chrono::seconds client_idle{600};   // RFC 1939 3: at least 10 minutes
    SSL_CTX* tls = nullptr;   // fetcher.tls_cert/tls_key: STLS offered, and the TLS listener
};

/// Serves one client on fd (takes ownership) until QUIT, error or stop.
/// implicit_tls: the fetcher.tls_listen socket, TLS before the greeting.
void run_session(int fd, const SessionConfig& cfg, const std::atomic<bool>& stop, bool implicit_tls = false);

} // namespace mm
