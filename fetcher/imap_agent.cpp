// imap_agent.cpp - the IMAP mailbox agent (imap_agent.h): one connection, every
// configured folder searched for mail with location parts, each replaced by its
// rebuilt copy. The order of steps is what keeps mail safe:
//   1. fetch the original (BODY.PEEK: its \Seen stays as the user left it);
//   2. rebuild it with present_raw() (present.h), the POP3 path's code: same
//      downloads, SSRF rules, types, sniffing, quotas, hold limit, sender lists,
//      mode = ask; a mail with nothing put back is left as it is;
//   3. look the original up again by UID: gone or \Deleted means the user moved
//      or deleted it meanwhile, and we do nothing;
//   4. write a journal entry (cache_dir/imap/KEY.append: Message-ID and size of
//      the copy), durable, then APPEND the copy with the original's flags and
//      INTERNALDATE;
//   5. only after the tagged OK remove the original by its UID alone.
// A crash before 4 leaves the original; between 4 and 5, both: on restart the
// journal says a copy may exist, and a message with the same Message-ID, an
// X-Media-Restored field and the journal's size is taken as that copy, so the
// agent only finishes step 5. Without a journal no "restored" mail is believed
// (a stranger could send one to make us delete the original).
// Config keys: see imap_agent.h.
#include "fetcher/imap_agent.h"

#include "core/config.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/util.h"
#include "fetcher/present.h"
#include "fetcher/status.h"
#include "mime/find_handles.h"
#include "mime/header_block.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <strings.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace mm {

namespace {

constexpr size_t kMaxMessageId = 998;               // one header line (RFC 5322 2.1.1)
constexpr size_t kMaxLeftAlone = 100000;            // remembered mails left as they are
constexpr auto kPendingRecheck = std::chrono::seconds(2);   // media downloading: look again this soon
constexpr auto kIdleMax = std::chrono::minutes(25);          // RFC 2177: re-issue IDLE within 29 minutes
constexpr auto kBackoffMax = std::chrono::seconds(300);

/// The header block of a file, at most 256 KiB.
std::string head_of(const std::string& path)
{
    std::string out;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        return out;
    char buf[8192];
    ssize_t n;
    while (out.size() < 256 * 1024 && (n = ::read(fd.get(), buf, sizeof buf)) > 0) {
        size_t from = out.size() >= 3 ? out.size() - 3 : 0;
        out.append(buf, static_cast<size_t>(n));
        size_t end = out.find("\n\r\n", from);
        size_t end_lf = out.find("\n\n", from);
        end = std::min(end, end_lf);
        if (end != std::string::npos) {
            out.resize(end + 1);
            break;
        }
    }
    return out;
}

std::string trim(std::string s)
{
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
        s.pop_back();
    size_t i = 0;
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t'))
        ++i;
    return s.substr(i);
}

bool has_flag(const std::vector<std::string>& flags, std::string_view want)
{
    return std::any_of(flags.begin(), flags.end(), [&](const std::string& f) {
        return f.size() == want.size() && strncasecmp(f.c_str(), want.data(), want.size()) == 0;
    });
}

/// Sleeps up to `d`, waking early when `stop` turns true.
void nap(std::chrono::seconds d, const std::atomic<bool>& stop)
{
    const auto until = std::chrono::steady_clock::now() + d;
    while (!stop.load() && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
}

struct Journal {
    std::string message_id;
    uint64_t size = 0;
};

bool read_journal(const std::string& path, Journal& j)
{
    FILE* f = fopen(path.c_str(), "rb");
    if (!f)
        return false;
    char buf[2048];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    std::string s(buf, n);
    size_t nl = s.find('\n');
    if (nl == std::string::npos)
        return false;
    j.message_id = s.substr(0, nl);
    std::string rest = trim(s.substr(nl + 1));
    return !j.message_id.empty() && parse_u64(rest, j.size);
}

bool write_journal(const std::string& path, const Journal& j)
{
    const std::string tmp = path + ".tmp";
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    const std::string body = j.message_id + "\n" + std::to_string(j.size) + "\n";
    if (!fd || !write_all(fd.get(), body.data(), body.size()) || fsync(fd.get()) != 0)
        return false;
    fd.reset();
    return durable_rename(tmp, path, true);
}

class Agent {
public:
    Agent(const ImapAgentOptions& opt, const std::atomic<bool>& stop) : opt_(opt), stop_(stop)
    {
        sync_ = opt.sync;
        sync_.stream = false;   // the copy is appended whole; nothing reads it while it grows
        dir_ = sync_.cache_dir + "/imap";
    }

    void run()
    {
        if (mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST)
            log_error("imap: cannot create " + dir_ + ": " + std::strerror(errno));
        std::chrono::seconds backoff{1};
        while (!stop_.load()) {
            std::string err;
            if (!c_.connect(opt_.server, err) || !c_.login(opt_.user, opt_.password, err)) {
                log_warning("imap: " + printable(err) + kv("retry_in", static_cast<long long>(backoff.count())));
                c_.close();
                nap(backoff, stop_);
                backoff = std::min<std::chrono::seconds>(backoff * 2, kBackoffMax);
                continue;
            }
            log_info("imap: logged in" + kv("server", opt_.server.host + ":" + std::to_string(opt_.server.port)) +
                     kv("idle", c_.has("IDLE") ? "yes" : "no") + kv("uidplus", c_.has("UIDPLUS") ? "yes" : "no"));
            backoff = std::chrono::seconds(1);
            if (!session(err))
                log_warning("imap: " + printable(err) + "; reconnecting");
            c_.logout();
            if (!stop_.load())
                nap(backoff, stop_);
        }
    }

private:
    /// Works through the folders, then waits for news; false when the
    /// connection failed.
    bool session(std::string& err)
    {
        while (!stop_.load()) {
            pending_ = false;
            // One pass waits for downloads at most fetcher.login_wait in all, so
            // that one slow sender does not hold up every mail behind it: later
            // mails get their downloads started and are looked at again soon.
            follow_until_ = std::chrono::steady_clock::now() + sync_.login_wait;
            for (const auto& folder : opt_.folders) {
                if (stop_.load())
                    break;
                if (!work_folder(folder, err))
                    return false;
            }
            if (stop_.load())
                break;
            std::chrono::seconds wait = pending_ ? kPendingRecheck : opt_.poll;
            if (c_.has("IDLE")) {
                // IDLE on the first folder: new mail there wakes us at once;
                // other folders are looked at every fetcher.imap_poll.
                uint32_t validity = 0;
                if (opt_.folders.size() > 1) {
                    if (!c_.select(opt_.folders.front(), validity, err))
                        return false;
                    c_.clear_news();   // SELECT's own EXISTS: no news (others are polled)
                }
                bool changed = false;
                // Mail waiting for a download retry, or more folders than the
                // one IDLE watches, need a look every fetcher.imap_poll.
                auto idle_for = pending_ ? kPendingRecheck
                                         : std::min<std::chrono::seconds>(
                                               opt_.poll * (opt_.folders.size() > 1 || !waiting_.empty() ? 1 : 10),
                                               std::chrono::duration_cast<std::chrono::seconds>(kIdleMax));
                if (!c_.idle(idle_for, &stop_, changed, err))
                    return false;
                if (changed)
                    log_debug("imap: new mail");
            } else {
                nap(wait, stop_);
                // Keep the connection alive and see new mail (RFC 9051 6.1.2).
                if (!c_.ok("NOOP", err))
                    return false;
            }
        }
        return true;
    }

    bool work_folder(const std::string& folder, std::string& err)
    {
        uint32_t validity = 0;
        if (!c_.select(folder, validity, err))
            return false;
        // From here on an EXISTS is mail that came after this SEARCH: the next
        // IDLE must not wait for it (imap_client.h news()).
        c_.clear_news();
        std::vector<uint32_t> uids;
        if (!c_.uid_search("UNDELETED HEADER X-Media-Handles \"\"", uids, err))
            return false;
        forget_gone(folder, validity, uids);
        for (uint32_t uid : uids) {
            if (stop_.load())
                break;
            if (!work_mail(folder, validity, uid, err))
                return false;
        }
        return true;
    }

    /// Mails whose media are still coming (their raw copy kept in the cache)
    /// that the user moved or deleted meanwhile: they are not ours any more.
    void forget_gone(const std::string& folder, uint32_t validity, const std::vector<uint32_t>& uids)
    {
        for (auto it = waiting_.begin(); it != waiting_.end();) {
            const Waiting& w = it->second;
            if (w.folder != folder ||
                (w.validity == validity && std::find(uids.begin(), uids.end(), w.uid) != uids.end())) {
                ++it;
                continue;
            }
            drop_gone(it->first, folder, w.uid);
            it = waiting_.erase(it);
        }
    }

    /// A mail we had started on is gone from its folder, or marked \Deleted:
    /// its copies in the cache go, nothing is appended.
    void drop_gone(const std::string& key, const std::string& folder, uint32_t uid)
    {
        log_info("imap: mail moved or deleted meanwhile: not replaced" + kv("folder", folder) +
                 kv("uid", static_cast<unsigned long long>(uid)));
        const std::string base = sync_.cache_dir + "/msg/" + key;
        unlink((base + ".raw").c_str());
        unlink((base + ".eml").c_str());
        fetcher_status().released(key);   // no longer held for the status page
    }

    /// Remembers a mail left as it is, so that it is not fetched again until
    /// fetcher.imap_poll has passed (mode = ask may have its media by then).
    void leave(const std::string& key)
    {
        if (left_.size() >= kMaxLeftAlone)
            left_.clear();
        left_[key] = std::chrono::steady_clock::now() + opt_.poll;
    }

    bool left_alone(const std::string& key)
    {
        auto it = left_.find(key);
        if (it == left_.end())
            return false;
        if (std::chrono::steady_clock::now() < it->second)
            return true;
        left_.erase(it);
        return false;
    }

    /// One mail by UID: false only when the connection failed.
    bool work_mail(const std::string& folder, uint32_t validity, uint32_t uid, std::string& err)
    {
        const std::string key = cache_key(sync_.upstream_id, opt_.user,
                                          "imap/" + folder + "/" + std::to_string(validity) + "/" + std::to_string(uid));
        if (left_alone(key))
            return true;
        waiting_.erase(key);   // settled below, or put back when still waiting
        const std::string tag = kv("folder", folder) + kv("uid", static_cast<unsigned long long>(uid));
        ImapFetch meta;
        bool found = false;
        if (!c_.uid_fetch_meta(uid, meta, found, err))
            return false;
        const std::string base = sync_.cache_dir + "/msg/" + key;
        const std::string raw = base + ".raw", eml = base + ".eml";
        uint64_t have = 0;
        if (!found || has_flag(meta.flags, "\\Deleted")) {
            if (file_size(raw, have) || file_size(eml, have))
                drop_gone(key, folder, uid);
            return true;
        }
        const std::string message_id = trim(header_value(meta.header, "Message-ID"));
        if (message_id.empty() || message_id.size() > kMaxMessageId || imap_quote(message_id).empty()) {
            // Without a Message-ID a copy could not be recognised after a crash.
            log_warning("imap: mail without a usable Message-ID left as it is" + tag);
            leave(key);
            return true;
        }
        const std::string journal = dir_ + "/" + key + ".append";
        Journal j;
        if (read_journal(journal, j)) {
            bool copy = false;
            if (!find_copy(j, copy, err))
                return false;
            if (copy) {
                log_info("imap: copy of an earlier run found, removing the original" + tag +
                         kv("message_id", message_id));
                bool removed = false;
                if (!remove_original(folder, uid, tag, removed, err))
                    return false;
                if (!removed) {
                    leave(key);   // the journal stays: tried again at the next look
                    return true;
                }
                unlink(journal.c_str());
                unlink(eml.c_str());
                unlink(raw.c_str());
                return true;
            }
            unlink(journal.c_str());   // the APPEND never completed: start over
        }
        if (meta.has_size && sync_.max_message_size && meta.size > sync_.max_message_size) {
            log_info("imap: mail over fetcher.max_message_size left as it is" + tag);
            leave(key);
            return true;
        }
        if (!file_size(eml, have) && !file_size(raw, have)) {
            log_info("imap: mail with location parts" + tag + kv("message_id", message_id) +
                     kv("size", static_cast<unsigned long long>(meta.size)));
            const std::string tmp = raw + ".tmp" + random_hex(4);
            ImapClient::Body b = c_.uid_fetch_body(uid, tmp, sync_.max_message_size ? sync_.max_message_size
                                                                                      : UINT64_MAX, err);
            if (b == ImapClient::Body::io)
                return false;
            if (b != ImapClient::Body::ok) {
                if (b == ImapClient::Body::too_big)
                    leave(key);
                return true;
            }
            if (rename(tmp.c_str(), raw.c_str()) != 0) {
                unlink(tmp.c_str());
                log_error("imap: cannot keep " + raw + ": " + std::strerror(errno));
                return true;
            }
        }
        const uint64_t limit = imap_appendlimit(c_.capabilities());
        if (!file_size(eml, have)) {
            if (limit && over_limit_before(raw, limit)) {
                log_warning("imap: mail with its media would be over the server's APPENDLIMIT " +
                            std::to_string(limit) + ": left as it is" + tag);
                unlink(raw.c_str());
                leave(key);
                return true;
            }
            SyncOptions so = sync_;
            so.follow_until = follow_until_;
            std::string why;
            std::shared_ptr<GrowingMessage> growing;
            unsigned back = 0;
            Presented p = present_raw(base, opt_.user, so, why, growing, &back);
            if (p != Presented::shown) {
                pending_ = pending_ || p == Presented::pending;
                waiting_[key] = Waiting{folder, validity, uid};
                log_debug("imap: held" + tag + kv("why", why));
                return true;
            }
            if (back == 0) {
                log_info("imap: nothing put back, mail left as it is" + tag);
                unlink(eml.c_str());
                unlink(raw.c_str());
                leave(key);
                return true;
            }
        }
        if (restored_header(eml).empty()) {
            // A presented file of some other making (an older run): not ours to append.
            unlink(eml.c_str());
            leave(key);
            return true;
        }
        uint64_t size = 0;
        if (!file_size(eml, size))
            return true;
        if (limit && size > limit) {
            log_warning("imap: rebuilt mail of " + std::to_string(size) + " octets over the server's APPENDLIMIT " +
                        std::to_string(limit) + ": left as it is" + tag);
            unlink(eml.c_str());
            leave(key);
            return true;
        }
        // The user may have moved, deleted or flagged it while the media came.
        // NOOP first: a server may answer a UID FETCH of a message another
        // session expunged from its cache until this session has been told
        // (Dovecot does); NOOP delivers the pending EXPUNGEs.
        ImapFetch now;
        if (!c_.ok("NOOP", err) || !c_.uid_fetch_meta(uid, now, found, err))
            return false;
        if (!found || has_flag(now.flags, "\\Deleted")) {
            drop_gone(key, folder, uid);
            return true;
        }
        std::vector<std::string> flags;
        for (const auto& f : now.flags)
            if (imap_flag_ok(f) && strcasecmp(f.c_str(), "\\Deleted") != 0)
                flags.push_back(f);
        if (!write_journal(journal, Journal{message_id, size})) {
            log_error("imap: cannot write " + journal + ": " + std::strerror(errno));
            return true;
        }
        uint32_t new_uid = 0;
        if (!c_.append(folder, flags, now.internal_date.empty() ? meta.internal_date : now.internal_date, eml,
                       new_uid, err)) {
            log_warning("imap: " + printable(err) + tag);
            // A broken connection leaves it open whether the server stored the
            // copy: the journal stays, and the next look searches for it.
            if (!c_.connected())
                return false;
            unlink(journal.c_str());   // refused (NO/BAD): no copy exists
            leave(key);
            return true;
        }
        log_info("imap: rebuilt mail appended" + tag + kv("new_uid", static_cast<unsigned long long>(new_uid)) +
                 kv("size", static_cast<unsigned long long>(size)));
        if (opt_.stop_after_append) {
            log_warning("imap: test hook MM_TEST_STOP_AFTER_APPEND: stopped before removing the original");
            for (;;)
                pause();
        }
        bool removed = false;
        if (!remove_original(folder, uid, tag, removed, err))
            return false;
        unlink(eml.c_str());
        if (!removed) {
            leave(key);   // both stay; the journal tells the next look the copy is there
            return true;
        }
        unlink(journal.c_str());
        log_info("imap: media put back in place" + tag + kv("message_id", message_id));
        return true;
    }

    /// Whether the mail would certainly be over `limit` with its media put
    /// back: checked before any download.
    bool over_limit_before(const std::string& raw, uint64_t limit)
    {
        uint64_t total = 0;
        if (!file_size(raw, total))
            return false;
        try {
            for (const auto& f : find_handles(raw))
                if (f.parsed.error == HandleError::none)
                    total += f.parsed.handle.part_size;
        } catch (const std::exception&) {
            return false;
        }
        return total > limit;
    }

    /// A message in the selected folder that is the copy the journal names.
    bool find_copy(const Journal& j, bool& copy, std::string& err)
    {
        copy = false;
        std::vector<uint32_t> uids;
        if (!c_.uid_search("UNDELETED HEADER Message-ID " + imap_quote(j.message_id) + " HEADER X-Media-Restored \"\"",
                           uids, err))
            return false;
        for (uint32_t u : uids) {
            ImapFetch f;
            bool found = false;
            if (!c_.uid_fetch_meta(u, f, found, err))
                return false;
            if (found && f.has_size && f.size == j.size)
                copy = true;
        }
        return true;
    }

    /// Removes the original by its UID alone: \Deleted and UID EXPUNGE with
    /// UIDPLUS; else UID MOVE (or COPY and \Deleted, left for the client to
    /// expunge) to fetcher.imap_originals. Never a plain EXPUNGE, which would
    /// take every other \Deleted mail of the folder with it.
    /// `removed` says whether it is gone; false only when the connection failed.
    bool remove_original(const std::string& folder, uint32_t uid, const std::string& tag, bool& removed,
                         std::string& err)
    {
        removed = false;
        const std::string u = std::to_string(uid);
        if (c_.has("UIDPLUS")) {
            if (!c_.ok("UID STORE " + u + " +FLAGS.SILENT (\\Deleted)", err) || !c_.ok("UID EXPUNGE " + u, err)) {
                log_warning("imap: original not removed (both stay): " + printable(err) + tag);
                return c_.connected();
            }
            removed = true;
            return true;
        }
        // fetcher.imap_originals spells levels with '/'; the server may use
        // another delimiter (Dovecot's Maildir++ uses '.').
        std::string name = opt_.originals;
        char d = '/';
        if (!c_.delimiter(d, err))
            return c_.connected() ? (log_warning("imap: " + printable(err) + tag), true) : false;
        if (d != 0 && d != '/')
            std::replace(name.begin(), name.end(), '/', d);
        const std::string dest = imap_quote(name);
        if (dest.empty() || opt_.originals == folder) {
            log_warning("imap: fetcher.imap_originals unusable: original kept beside its copy" + tag);
            return true;
        }
        std::string ignored;
        c_.ok("CREATE " + dest, ignored);   // NO when it exists: fine
        if (!c_.connected()) {
            err = ignored;
            return false;
        }
        bool done = c_.has("MOVE") ? c_.ok("UID MOVE " + u + " " + dest, err)
                                   : c_.ok("UID COPY " + u + " " + dest, err) &&
                                         c_.ok("UID STORE " + u + " +FLAGS.SILENT (\\Deleted)", err);
        if (!done) {
            log_warning("imap: original not moved to " + printable(name) + " (both stay): " +
                        printable(err) + tag);
            return c_.connected();
        }
        removed = true;
        return true;
    }

    const ImapAgentOptions& opt_;
    const std::atomic<bool>& stop_;
    SyncOptions sync_;
    std::string dir_;
    ImapClient c_;
    std::map<std::string, std::chrono::steady_clock::time_point> left_;
    struct Waiting {
        std::string folder;
        uint32_t validity, uid;
    };
    std::map<std::string, Waiting> waiting_;   // by cache key
    bool pending_ = false;
    std::chrono::steady_clock::time_point follow_until_{};
};

} // namespace

std::string restored_header(const std::string& path)
{
    return header_value(head_of(path), "X-Media-Restored");
}

void run_imap_agent(const ImapAgentOptions& opt, const std::atomic<bool>& stop)
{
    Agent(opt, stop).run();
}

} // namespace mm
