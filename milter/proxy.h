// proxy.h - mm-milter's before-queue filter: Postfix's smtpd_proxy_filter speaks
// SMTP to it, and it speaks SMTP on to an after-filter smtpd (milter.proxy_next).
// Commands and replies are relayed one by one; DATA is taken here, spooled and
// decoded while it arrives, and the rewritten message is what the next hop gets,
// so Postfix's queue never holds the media. Keys: milter.proxy_listen,
// milter.proxy_next, milter.proxy_timeout, milter.proxy_max_clients, and through
// Intake the milter.* keys of the rewrite.
#pragma once

#include "milter/milter.h"

#include <atomic>

namespace mm {

/// Accepts and serves filter sessions on listen_fd until `stop` is set
/// (looked at twice a second); one thread per session.
void serve_proxy(int listen_fd, const MilterSettings& settings, const std::atomic<bool>& stop);

} // namespace mm
