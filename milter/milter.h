// milter.h - mm-milter's settings, validated once at start, and its main loop
// (Sendmail milter protocol through libmilter). Keys: every milter.* key, store.dir.
#pragma once

#include "gateway/store.h"
#include "policy.h"
#include "mime/rewrite.h"

#include <memory>
#include <string>

namespace mm {

struct MilterSettings {
    std::string socket;          // milter.socket, libmilter form
    std::string on_error;        // milter.on_error: tempfail | accept
    bool apply_to_all = false;   // milter.apply_to = all (else outgoing only)
    std::vector<Cidr> trusted;   // milter.trusted_networks
    bool rewrite_signed_dkim = false;   // milter.rewrite_signed_dkim
    uint64_t max_message_size;   // milter.max_message_size
    std::string spool_dir;       // store.dir/spool
    DetachPolicy policy;         // milter.min_size, milter.types
    std::unique_ptr<Store> store;
};

/// Registers the callbacks, listens on settings.socket and serves until stopped.
/// Returns the process exit code.
int run_milter(MilterSettings& settings);

} // namespace mm
