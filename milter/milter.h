// milter.h - mm-milter's settings, validated once at start, and its main loop
// (Sendmail milter protocol through libmilter). Keys: every milter.* key, store.dir.
#pragma once

#include "store/store.h"
#include "milter/policy.h"
#include "mime/detach.h"

#include <chrono>
#include <memory>
#include <string>

namespace mm {

/// milter.on_error: the verdict for a message the milter could not work on.
enum class OnError { tempfail, accept };

struct MilterSettings {
    std::string socket;          // milter.socket, libmilter form
    OnError on_error = OnError::tempfail;   // milter.on_error
    bool apply_to_all = false;   // milter.apply_to = all (else outgoing only)
    std::vector<Cidr> trusted;   // milter.trusted_networks
    bool rewrite_signed_dkim = false;   // milter.rewrite_signed_dkim
    uint64_t max_message_size;   // milter.max_message_size
    std::string spool_dir;       // store.dir/spool
    DetachPolicy policy;         // milter.min_size, milter.types
    std::unique_ptr<Store> store;
    // The before-queue filter (proxy.h); proxy_listen.port == 0: off.
    HostPort proxy_listen;       // milter.proxy_listen
    HostPort proxy_next;         // milter.proxy_next
    std::chrono::seconds proxy_timeout{300};   // milter.proxy_timeout
    unsigned proxy_max_clients = 100;           // milter.proxy_max_clients
    unsigned max_recipient_copies = 1000;       // milter.max_recipient_copies
};

/// Registers the callbacks and opens settings.socket; a unix socket gets `mode`
/// and, unless it is -1, group `group`. Throws ExitError (core/exit_codes.h):
/// 78 for a socket libmilter cannot use, 69 when it is in use (also a unix
/// socket some live milter answers on: it is never taken over).
void open_milter(MilterSettings& settings, unsigned mode, long group);
/// Serves the socket open_milter opened until stop_milter(); returns the exit code.
int serve_milter();
/// Makes serve_milter() return soon (from any thread).
void stop_milter();

} // namespace mm
