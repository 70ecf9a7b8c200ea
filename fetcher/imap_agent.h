// imap_agent.h - mm-fetcher's second mode (mm-fetcher --imap): an IMAP mailbox
// agent that puts the media back into the user's mail in place, on the server,
// so that every IMAP client (Thunderbird, Outlook, a phone, webmail) sees the
// ordinary mail with its attachment. For each mail with location parts it asks
// present.h for the rebuilt mail (the POP3 path's code and policies), APPENDs it
// with the original's flags and INTERNALDATE, and only after the server has
// confirmed the append removes the original: UID STORE \Deleted + UID EXPUNGE of
// that UID (UIDPLUS), else a move to fetcher.imap_originals. Never a plain EXPUNGE.
// Config keys: fetcher.imap, fetcher.imap_user, fetcher.imap_password_file,
// fetcher.imap_folders, fetcher.imap_originals, fetcher.imap_poll, and those of
// SyncOptions (present.h).
#pragma once

#include "fetcher/imap_client.h"
#include "fetcher/sync.h"

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

namespace mm {

struct ImapAgentOptions {
    ImapConfig server;
    std::string user, password;
    std::vector<std::string> folders{"INBOX"};
    std::string originals = "MediaMail/Originals";
    std::chrono::seconds poll{60};
    SyncOptions sync;   // as the POP3 path's, with the process's downloader
    /// Test hook (tests/integration/imap.test.sh): the environment variable
    /// MM_TEST_STOP_AFTER_APPEND=1 makes the agent stop still, after the
    /// server confirmed an APPEND and before the original is removed, so that
    /// a test can kill it there. Read only in --imap mode.
    bool stop_after_append = false;
};

/// Runs the agent until `stop`: connect, log in, work through every folder,
/// IDLE (or sleep fetcher.imap_poll) and again; reconnects with backoff.
void run_imap_agent(const ImapAgentOptions& opt, const std::atomic<bool>& stop);

/// The X-Media-Restored header field of a rebuilt mail's header block ("" if
/// none): how the agent recognises its own copy after a crash.
std::string restored_header(const std::string& path);

} // namespace mm
