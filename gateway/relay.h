// relay.h - mm-gateway behind NAT: an SSH client session (libssh) to a stock
// OpenSSH server that asks it for a remote port forward (RFC 4254 7.1,
// "tcpip-forward") and hands every forwarded channel to the HTTPS front end as
// if it had been accepted there. TLS stays end to end: the relay carries
// ciphertext only. Reads gateway.relay, relay_key, relay_known_hosts,
// relay_port, relay_bind, relay_backoff_max and max_connections.
#pragma once

#include "core/config.h"
#include "gateway/metrics.h"

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <sys/socket.h>
#include <vector>

namespace mm {

// RelayState and its names: gateway/metrics.h (the state is a metric).

struct RelaySettings {
    SshUrl url;
    std::string key_file, known_hosts, bind;
    uint16_t port = 0;
    std::chrono::seconds backoff_max{60};
    size_t max_channels = 0;   // a memory backstop; the front end's caps decide first
};
/// The settings of gateway.relay (which must not be empty).
RelaySettings relay_settings(const Config& cfg);

/// --check: what is wrong with the relay's files (the key does not load, the
/// known_hosts file holds no key for the relay's [host]:port). Empty when fine
/// or when no relay is set.
std::vector<std::string> relay_problems(const Config& cfg);

/// Called on the relay's thread with one end of a connected socketpair per
/// forwarded channel and the originator address the relay reported.
using AdoptConnection = std::function<void(int fd, const sockaddr_storage& peer, socklen_t len)>;

class Relay {
public:
    /// Loads gateway.relay_key now (before privileges are dropped); throws
    /// ConfigError naming the key when it cannot be used.
    Relay(const Config& cfg, AdoptConnection adopt);
    ~Relay();
    Relay(const Relay&) = delete;
    Relay& operator=(const Relay&) = delete;
    void start();
    void stop();   // ends the session and every channel, joins the thread

private:
    std::unique_ptr<struct RelayImpl> impl_;
};

} // namespace mm
