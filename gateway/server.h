// server.h - mm-gateway's peer HTTPS server: GET/HEAD /m/<id>/<token>[/<name>]
// serves one stored item, with single byte ranges (RFC 9110) over TLS 1.2+ (OpenSSL; server_net.h).
// Reads gateway.listen, gateway.threads, gateway.max_connections(_per_ip), gateway.max_transfers_per_ip,
// gateway.timeout, gateway.header_timeout, gateway.min_rate(_window), gateway.admin_listen
// (/healthz and /metrics, metrics.h), gateway.relay and its keys (relay.h: connections
// forwarded by an SSH relay are served like accepted ones) and the store's keys.
#pragma once

#include "core/config.h"

#include <memory>
#include <string>

namespace mm {

class Gateway {
public:
    /// Opens the store, loads or creates the TLS identity, binds gateway.listen
    /// (unless empty) and loads gateway.relay_key (when gateway.relay is set).
    /// Throws (ConfigError, StoreError, Poco exceptions) on any start-up failure.
    explicit Gateway(const Config& cfg);
    ~Gateway();
    void start();
    void stop();                        // stops accepting, aborts running requests
    std::string address() const;        // the bound address, "host:port"; "" without gateway.listen
    const std::string& pin() const;     // the TLS key pin clients should use
    /// Loads the TLS pair `cfg` names again (a renewed certificate) and serves it
    /// on new connections; running ones keep theirs. On failure nothing changes
    /// and `err` says why.
    bool reload_tls(const Config& cfg, std::string& err);

    struct Impl;
private:
    void start_admin(const Config& cfg);   // gateway.admin_listen
    std::unique_ptr<Impl> impl_;
};

} // namespace mm
