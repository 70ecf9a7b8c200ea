// present.h - presenting one mail that names location parts: from its durable raw
// copy (cache_dir/msg/<key>.raw, the RETR'd bytes) to the presented file the
// client gets (msg/<key>.eml: media re-inserted, CRLF throughout), or a reason to
// hold it back. Asks the downloader for each handle's media, follows downloads
// under way at a login (growing_media.h) and, with fetcher.stream, shows the mail
// while it is still being built (growing_message.h).
// Config keys (via SyncOptions): fetcher.max_size, fetcher.hold_max, fetcher.mode,
// fetcher.stream, fetcher.address, fetcher.priority_senders, fetcher.ignore_senders.
#pragma once

#include "fetcher/growing_message.h"
#include "fetcher/sync.h"

#include <memory>
#include <string>
#include <vector>

namespace mm {

/// What became of a mail: shown (its presented file is in place, or growing),
/// held back, or pending: held back while its media download, which is worth a
/// login's wait (fetcher.login_wait).
enum class Presented { shown, held, pending };

/// Makes the presented file of a message whose raw copy (base + ".raw") exists.
/// Media not yet verified hold the message back (the downloader works on it in
/// the background) until fetcher.hold_max after the message was first read; then
/// it is shown with its links. The raw copy is durable (made so when fetched):
/// later logins build on it. With fetcher.stream a message whose media are
/// downloading may be shown while they arrive: `growing` is then set. `why`
/// says why a message is not shown. `put_back`, when given, is set to how many
/// media went back in (0: the mail is shown as it came, or with notes only):
/// the IMAP agent replaces a mail only when that is not 0.
Presented present_raw(const std::string& base, const std::string& user, const SyncOptions& opt, std::string& why,
                      std::shared_ptr<GrowingMessage>& growing, unsigned* put_back = nullptr);

/// Whether `address` matches a fetcher.priority_senders / ignore_senders entry:
/// "a@b.org" the address, "@b.org" or "b.org" the domain (case-insensitive).
bool sender_matches(const std::string& address, const std::vector<std::string>& list);

} // namespace mm
