// session.h - one client connection of the POP3 proxy: the RFC 1939 state machine
// (AUTHORIZATION, TRANSACTION, UPDATE) in front of one upstream session.
// Config keys: those of UpstreamConfig and SyncOptions, passed in SessionConfig.
#pragma once

#include "mailbox.h"
#include "upstream.h"

#include <atomic>

namespace mm {

struct SessionConfig {
    UpstreamConfig upstream;
    SyncOptions sync;
    std::chrono::seconds client_idle{600};   // RFC 1939 3: at least 10 minutes
};

/// Serves one client on fd (takes ownership) until QUIT, error or stop.
void run_session(int fd, const SessionConfig& cfg, const std::atomic<bool>& stop);

} // namespace mm
