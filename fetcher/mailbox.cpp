// mailbox.cpp - upstream mailbox to what the client sees: cache copies of plain mail
// (cache_dir/msg/<key>.msg, cache.h), presented files with media re-inserted
// (msg/<key>.eml, made durable in the background: Settler), raw copies of held-back mail (msg/<key>.raw, durable),
// handle resolution and the held-back rule. RFC 1939 UIDL/LIST.
// Config keys: fetcher.cache_dir, fetcher.max_size (through SyncOptions).
#include "fetcher/mailbox.h"

#include "fetcher/cache.h"
#include "core/fileio.h"
#include "core/address.h"
#include "core/config.h"
#include "fetcher/follow.h"
#include "core/log.h"
#include "mime/find_handles.h"
#include "mime/reinsert.h"
#include "core/util.h"

#include <cerrno>
#include <condition_variable>
#include <deque>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <memory>
#include <set>
#include <strings.h>
#include <ctime>
#include <mutex>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace mm {

namespace {


/// Makes `out` from `in` with every bare LF turned into CRLF and a final line
/// end, so that the presented file is exactly what RETR sends (before
/// dot-stuffing) and its size is what LIST says. The engine writes a message's
/// own line ends, CRLF for mail that came over SMTP: then `in` is only renamed
/// (a byte-wise copy of a rebuilt 300 MB mail had cost seconds at every login).
bool normalise_crlf(const std::string& in, const std::string& out)
{
    int ifd = open(in.c_str(), O_RDONLY | O_CLOEXEC);
    if (ifd < 0)
        return false;
    std::string buf(1 << 20, '\0');
    // Pass 1: is there anything to change?
    bool bare = false;
    int prev = -1;
    ssize_t n;
    while (!bare && (n = read(ifd, buf.data(), buf.size())) > 0) {
        for (const char* p = buf.data(); (p = static_cast<const char*>(memchr(p, '\n', buf.data() + n - p)));
             ++p) {
            int before = p == buf.data() ? prev : static_cast<unsigned char>(p[-1]);
            if (before != '\r') {
                bare = true;
                break;
            }
        }
        prev = static_cast<unsigned char>(buf[static_cast<size_t>(n) - 1]);
    }
    if (n < 0) {
        ::close(ifd);
        return false;
    }
    if (!bare && (prev == '\n' || prev == -1)) {
        ::close(ifd);
        return rename(in.c_str(), out.c_str()) == 0;
    }
    // Pass 2: the copy with the line ends made CRLF.
    int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || lseek(ifd, 0, SEEK_SET) != 0) {
        if (fd >= 0)
            ::close(fd);
        ::close(ifd);
        return false;
    }
    std::string outbuf;
    outbuf.reserve(buf.size() * 2 + 2);
    bool ok = true;
    prev = -1;
    while (ok && (n = read(ifd, buf.data(), buf.size())) > 0) {
        outbuf.clear();
        const char* p = buf.data();
        const char* end = p + n;
        while (p < end) {
            const char* nl = static_cast<const char*>(memchr(p, '\n', static_cast<size_t>(end - p)));
            const char* stop = nl ? nl : end;
            outbuf.append(p, static_cast<size_t>(stop - p));
            if (nl) {
                int before = nl == buf.data() ? prev : static_cast<unsigned char>(nl[-1]);
                if (before != '\r')
                    outbuf.push_back('\r');
                outbuf.push_back('\n');
                p = nl + 1;
            } else {
                p = end;
            }
        }
        prev = static_cast<unsigned char>(buf[static_cast<size_t>(n) - 1]);
        ok = ::write(fd, outbuf.data(), outbuf.size()) == static_cast<ssize_t>(outbuf.size());
    }
    ok = ok && n == 0;
    // A POP3 message ends with CRLF before the terminating dot; keep that true here.
    if (ok && prev != '\n' && prev != -1)
        ok = ::write(fd, "\r\n", 2) == 2;
    ::close(ifd);
    ::close(fd);
    if (!ok)
        unlink(out.c_str());
    return ok;
}

enum class Outcome { shown, held, pending, io };

/// The raw header block of a cached message, at most kMaxHeaderBlock octets.
constexpr size_t kMaxHeaderBlock = 256 * 1024;

std::string read_header_block(const std::string& path)
{
    std::string out;
    FILE* f = fopen(path.c_str(), "rb");
    if (!f)
        return out;
    char buf[8192];
    size_t n;
    while (out.size() < kMaxHeaderBlock && (n = fread(buf, 1, sizeof buf, f)) > 0) {
        size_t from = out.size() >= 3 ? out.size() - 3 : 0;
        out.append(buf, n);
        size_t end = out.find("\r\n\r\n", from);
        if (end != std::string::npos) {
            out.resize(end + 2);
            break;
        }
    }
    fclose(f);
    if (out.size() > kMaxHeaderBlock)
        out.resize(kMaxHeaderBlock);
    return out;
}


/// Presented files that are in place but not yet durable. A background thread
/// syncs each one and only then removes its raw copy, so the client's login does
/// not wait for 300 MB to reach the disk; until then the raw copy stays, and
/// after a crash synchronise() finds both and builds the presented file again.
class Settler {
public:
    ~Settler()
    {
        {
            std::lock_guard<std::mutex> lock(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        if (thread_.joinable())
            thread_.join();   // what is queued is settled first
    }
    void add(const std::string& presented, const std::string& raw)
    {
        std::lock_guard<std::mutex> lock(mu_);
        queued_.emplace_back(presented, raw);
        unsettled_.insert(presented);
        if (!thread_.joinable())
            thread_ = std::thread([this] { run(); });
        cv_.notify_all();
    }
    /// Whether presented is queued here: its raw copy is then no sign of a crash.
    bool unsettled(const std::string& presented)
    {
        std::lock_guard<std::mutex> lock(mu_);
        return unsettled_.count(presented) > 0;
    }

private:
    void run()
    {
        std::unique_lock<std::mutex> lock(mu_);
        for (;;) {
            cv_.wait(lock, [this] { return stop_ || !queued_.empty(); });
            if (queued_.empty())
                return;
            auto [presented, raw] = queued_.front();
            queued_.pop_front();
            lock.unlock();
            int fd = open(presented.c_str(), O_RDONLY | O_CLOEXEC);
            bool ok = fd >= 0 && fsync(fd) == 0 && fsync_dir_of(presented);
            if (fd >= 0)
                ::close(fd);
            if (ok || (fd < 0 && errno == ENOENT))
                unlink(raw.c_str());   // durable, or its message gone
            else
                log_warning("cannot sync " + presented + ": " + std::strerror(errno) + "; rebuilt at the next login");
            lock.lock();
            unsettled_.erase(presented);
        }
    }
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::pair<std::string, std::string>> queued_;
    std::set<std::string> unsettled_;
    std::thread thread_;
    bool stop_ = false;
};

Settler& settler()
{
    static Settler s;
    return s;
}

// How long a streamed build follows a download (fetcher.stream). A transfer
// that stalls is ended sooner by fetcher.timeout; this only bounds one crawling.
constexpr auto kStreamFollowMax = std::chrono::hours(1);

/// fetcher.stream: starts building the presented file of `base` in the
/// background, the media being downloaded (`downloading`) followed segment by
/// segment, when every one of them has segment digests and the message will
/// come out CRLF throughout. Returns nullptr (media untouched) when it does not
/// apply; else the build, or nullptr with `why` set when it cannot start.
std::shared_ptr<Building> start_streamed(const std::string& base, const std::vector<FoundHandle>& found,
                                         std::vector<std::unique_ptr<MediaInput>>& media,
                                         const std::vector<size_t>& downloading, const SyncOptions& opt,
                                         std::string& why)
{
    std::vector<bool> replace(media.size());
    for (size_t i = 0; i < media.size(); ++i)
        replace[i] = media[i] != nullptr;
    for (size_t i : downloading) {
        if (found[i].parsed.handle.seg_size == 0)
            return nullptr;   // an older sender's handle: verified whole, at login
        replace[i] = true;
    }
    const std::string presented = base + ".eml", raw = base + ".raw";
    ReinsertLayout layout;
    std::string err;
    if (!reinsert_layout(raw, replace, layout, err) || !layout.crlf_clean)
        return nullptr;   // reinsert_media will say why, or normalise_crlf is needed
    auto cancel = std::make_shared<std::atomic<bool>>(false);
    const auto until = std::chrono::steady_clock::now() + kStreamFollowMax;
    for (size_t i : downloading)
        media[i] = std::make_unique<FollowedMedia>(*opt.downloader, found[i].parsed.handle, until, opt.stop, true,
                                                   cancel.get());
    // In place, durable soon: as present_raw does it below.
    auto finish = [presented, raw](const std::string& rebuilt, std::string& w) {
        if (rename(rebuilt.c_str(), presented.c_str()) != 0) {
            w = "cannot rename " + rebuilt + ": " + std::strerror(errno);
            return false;
        }
        settler().add(presented, raw);
        return true;
    };
    auto b = Building::start(raw, presented + ".rebuilt" + random_hex(4), presented, std::move(media), cancel, layout,
                             finish, err);
    if (!b)
        why = err;
    else
        log_info("streaming " + base.substr(base.rfind('/') + 1, 16) + " while its media download");
    return b;
}

/// Makes the presented file of a message whose raw copy (base + ".raw", RETR'd
/// bytes naming location parts) exists. Media not yet verified hold the message
/// back (the downloader works on it in the background) until fetcher.hold_max
/// after the message was first read. The raw copy is durable (made so when
/// fetched): later logins build on it.
/// With fetcher.stream a message whose media are downloading may be shown
/// while they arrive: `building` is then set (start_streamed()).
Outcome present_raw(const std::string& base, const std::string& user, const SyncOptions& opt, std::string& why,
                    std::shared_ptr<Building>& building)
{
    const std::string presented = base + ".eml";
    const std::string raw = base + ".raw";
    if (auto b = Building::find(presented)) {
        building = std::move(b);   // streamed to another reader already, or just now
        return Outcome::shown;
    }
    std::vector<FoundHandle> found;
    try {
        found = find_handles(raw);
    } catch (const std::exception& e) {
        // A message GMime cannot walk is still a message: show it as it came
        // rather than hide mail from its recipient.
        log_warning("find_handles failed, presenting as is: " + printable(e.what()));
        found.clear();
    }
    // One input per location part: the verified file, a download followed while
    // it arrives, or none (the location part stays).
    std::vector<std::unique_ptr<MediaInput>> media(found.size());
    std::vector<size_t> downloading;   // parts whose media is being downloaded now
    bool any = false, pending = false, busy = false, waiting = false;
    if (!found.empty()) {
        const std::string headers = read_header_block(raw);
        const std::string sender = normalize_address(header_value(headers, "From"));
        const bool ignored = !sender.empty() && sender_matches(sender, opt.ignore_senders);
        const bool priority = !sender.empty() && sender_matches(sender, opt.priority_senders);
        const std::string recipient = receipt_recipient(opt.address, headers, user);
        for (size_t i = 0; i < found.size(); ++i) {
            const auto& f = found[i];
            if (f.parsed.error != HandleError::none) {
                // An unparsable location part stays in the mail as the sender's note.
                log_warning(std::string("bad handle left in place: ") + handle_error_name(f.parsed.error) +
                            " " + printable(f.parsed.detail));
                continue;
            }
            const Handle& h = f.parsed.handle;
            if (ignored || h.size > opt.max_size || !opt.downloader)
                continue;   // shown with its location part: fetcher.ignore_senders / max_size
            std::string path;
            MediaState st = opt.downloader->want(h, priority, !opt.ask, recipient, path);
            if (st == MediaState::ready) {
                try {
                    media[i] = open_media_file(path);
                } catch (const std::exception& e) {
                    why = "media " + h.sha256.substr(0, 16) + ": " + printable(e.what());
                    return Outcome::held;
                }
                any = true;
            } else if (st == MediaState::refused) {
                log_info("media " + h.sha256.substr(0, 16) + " not fetched (URL scheme, address or cache_quota " +
                         "not allowed): shown with its link");
            } else if ((st == MediaState::pending || st == MediaState::waiting) && !opt.ask) {
                pending = true;
                // Only a transfer under way is worth a login's wait (fetcher.login_wait).
                busy = busy || st == MediaState::pending;
                waiting = waiting || st == MediaState::waiting;
                if (st == MediaState::pending)
                    downloading.push_back(i);
                why = "media " + h.sha256.substr(0, 16) + " not yet downloaded";
            }
        }
    }
    bool following = false;
    if (pending) {
        // The raw file's age is the time since we first read the message.
        struct stat st;
        bool expired = stat(raw.c_str(), &st) == 0 &&
                       time(nullptr) - st.st_mtime >= static_cast<time_t>(opt.hold_max.count());
        if (!expired) {
            // A login re-inserts while the downloads arrive, when they all are under
            // way: the message is ready moments after its last media is verified.
            following = !waiting && std::chrono::steady_clock::now() < opt.follow_until;
            if (!following)
                return busy ? Outcome::pending : Outcome::held;
            if (opt.stream) {
                // Listed once its first segment checks out: a download that
                // cannot even start (gateway down, bad bytes) holds the mail
                // back as it always did, and the login's loop tries again.
                std::string failed;
                building = start_streamed(base, found, media, downloading, opt, failed);
                if (building && building->wait_started(failed, opt.follow_until))
                    return Outcome::shown;
                if (building) {
                    building.reset();
                    why = failed;
                    return Outcome::pending;
                }
                if (!failed.empty()) {
                    why = failed;
                    return Outcome::held;
                }
            }
            for (size_t i : downloading)
                media[i] = std::make_unique<FollowedMedia>(*opt.downloader, found[i].parsed.handle, opt.follow_until,
                                                           opt.stop);
            any = true;
        } else {
            log_warning("held longer than fetcher.hold_max, shown with the link: " + why);
        }
    }

    const std::string tmp = presented + ".tmp" + random_hex(4);
    if (!any) {
        // No media: the presented file is the raw message, byte for byte (already
        // CRLF), and as durable as the raw copy was.
        if (rename(raw.c_str(), presented.c_str()) != 0 || !fsync_dir_of(presented)) {
            why = std::string("cannot keep ") + raw + ": " + std::strerror(errno);
            return Outcome::held;
        }
        return Outcome::shown;
    }
    const std::string rebuilt = presented + ".rebuilt" + random_hex(4);
    std::string err;
    bool ok = false, crlf = false;
    std::vector<MediaInput*> inputs;
    for (const auto& m : media)
        inputs.push_back(m.get());
    try {
        ok = reinsert_media(raw, inputs, rebuilt, err, &crlf);
    } catch (const std::exception& e) {
        err = e.what();
    }
    if (!ok) {
        unlink(rebuilt.c_str());
        if (following) {
            // Nothing shown: the downloader goes on, and the next poll uses its file.
            log_info("re-insertion alongside the download given up: " + printable(err));
            return Outcome::pending;
        }
        why = "reinsert failed: " + printable(err);
        return Outcome::held;
    }
    // What RETR sends must be CRLF throughout (normalise_crlf); mail from SMTP is already.
    bool norm = crlf ? rename(rebuilt.c_str(), tmp.c_str()) == 0 : normalise_crlf(rebuilt, tmp);
    unlink(rebuilt.c_str());
    // In place now, durable soon: the raw copy goes only then (Settler), because
    // re-inserting a big video again costs seconds to minutes.
    if (!norm || rename(tmp.c_str(), presented.c_str()) != 0) {
        unlink(tmp.c_str());
        why = "cannot write presented file";
        return Outcome::held;
    }
    settler().add(presented, raw);
    return Outcome::shown;
}

bool parse_listing(const std::string& line, uint64_t& num, std::string& value)
{
    size_t sp = line.find(' ');
    if (sp == std::string::npos || !parse_u64(std::string_view(line).substr(0, sp), num) || num == 0)
        return false;
    value = line.substr(sp + 1);
    return !value.empty();
}

} // namespace

std::string header_value(std::string_view headers, std::string_view name)
{
    size_t pos = 0;
    while (pos < headers.size()) {
        size_t eol = headers.find('\n', pos);
        if (eol == std::string_view::npos)
            eol = headers.size();
        std::string_view line = headers.substr(pos, eol - pos);
        if (!line.empty() && line.back() == '\r')
            line.remove_suffix(1);
        if (line.empty())
            return "";   // end of the header block
        if (line.size() > name.size() && line[name.size()] == ':' &&
            strncasecmp(line.data(), name.data(), name.size()) == 0) {
            std::string v(line.substr(name.size() + 1));
            // Unfold continuation lines (RFC 5322 2.2.3).
            size_t next = eol + 1;
            while (next < headers.size() && (headers[next] == ' ' || headers[next] == '\t')) {
                size_t e = headers.find('\n', next);
                if (e == std::string_view::npos)
                    e = headers.size();
                std::string_view cont = headers.substr(next, e - next);
                if (!cont.empty() && cont.back() == '\r')
                    cont.remove_suffix(1);
                v += cont;
                next = e + 1;
            }
            size_t b = v.find_first_not_of(" \t"), e = v.find_last_not_of(" \t");
            return b == std::string::npos ? "" : v.substr(b, e - b + 1);
        }
        pos = eol + 1;
    }
    return "";
}


bool sender_matches(const std::string& address, const std::vector<std::string>& list)
{
    size_t at = address.rfind('@');
    if (at == std::string::npos)
        return false;
    std::string domain = address.substr(at + 1);
    for (std::string e : list) {
        for (char& c : e)
            c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        if (e.empty())
            continue;
        if (e[0] == '@') {
            if (e.substr(1) == domain)
                return true;
        } else if (e.find('@') != std::string::npos) {
            if (e == address)
                return true;
        } else if (e == domain) {
            return true;
        }
    }
    return false;
}

std::string receipt_recipient(const std::string& configured, std::string_view headers, const std::string& user)
{
    if (!configured.empty())
        return configured;
    for (const char* name : {"Delivered-To", "X-Original-To"}) {
        std::string a = normalize_address(header_value(headers, name));
        if (!a.empty())
            return a;
    }
    return normalize_address(user);
}

std::string cache_key(const std::string& upstream_id, const std::string& user, const std::string& uidl)
{
    // NUL separators: no (user, uidl) pair can be made to collide with another.
    std::string in = upstream_id;
    in.push_back('\0');
    in += user;
    in.push_back('\0');
    in += uidl;
    return sha256_hex(in);
}

bool valid_uidl(const std::string& s)
{
    if (s.empty() || s.size() > 70)
        return false;
    for (unsigned char c : s)
        if (c < 0x21 || c > 0x7e)
            return false;
    return true;
}

bool prepare_cache(const std::string& cache_dir, std::string& err)
{
    for (const std::string& d : {cache_dir, cache_dir + "/msg", cache_dir + "/media", cache_dir + "/jobs"}) {
        if (mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) {
            err = "cannot create " + d + ": " + std::strerror(errno);
            return false;
        }
        struct stat st;
        if (stat(d.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
            err = d + " is not a directory";
            return false;
        }
    }
    return true;
}

namespace {

/// What one upstream message is to this login, found before anything is fetched.
enum class Found { no_uidl, copy, presented, raw, fetch, as_is, refused };

struct Item {
    uint64_t num = 0, list_size = 0;
    const std::string* uidl = nullptr;
    std::string key, base;
    Found found = Found::fetch;
    uint64_t size = 0;   // octets of the copy or presented file
};

/// The index of one user's cache copies and the common start of their packs' names.
struct UserCache {
    std::string index_path, pack_prefix;
    UserCache(const SyncOptions& opt, const std::string& user)
    {
        // UIDLs are never empty, so this key names no message.
        std::string k = opt.cache_dir + "/msg/" + cache_key(opt.upstream_id, user, "");
        index_path = k + ".idx";
        pack_prefix = k + "-";
    }
};

/// After a finished PackSink: a plain message is now an entry of the pack (the
/// index names it once the login's fetching is done); one naming location parts
/// becomes the durable raw copy that present_raw and later logins build on.
void keep_fetched(PackSink& sink, Item& it, CacheIndex& index, std::string& why)
{
    if (!sink.handle_name()) {
        IndexEntry e = sink.entry();
        index[it.key] = e;
        it.found = Found::copy;
        it.size = e.size;
        return;
    }
    if (durable_rename(sink.raw_path(), it.base + ".raw", false)) {
        it.found = Found::raw;
        return;
    }
    unlink(sink.raw_path().c_str());
    why = "cannot keep the raw copy";
    it.found = Found::refused;
}

} // namespace

bool synchronise(Upstream& up, const std::string& user, const SyncOptions& opt,
                 std::vector<ShownMessage>& shown, SyncStats& stats, std::string& err)
{
    shown.clear();
    std::vector<std::string> lines;
    std::string text;
    Reply r = up.multiline("UIDL", lines, text);
    if (r != Reply::ok) {
        // Without stable ids there is no cache key: refuse rather than guess.
        err = r == Reply::err ? "upstream does not support UIDL" : "upstream connection lost";
        return false;
    }
    std::map<uint64_t, std::string> uidls;
    for (const auto& l : lines) {
        uint64_t n;
        std::string v;
        if (!parse_listing(l, n, v) || !valid_uidl(v)) {
            err = "bad UIDL line from upstream: " + printable(l);
            return false;
        }
        uidls[n] = v;
    }
    r = up.multiline("LIST", lines, text);
    if (r != Reply::ok) {
        err = "upstream LIST failed";
        return false;
    }
    const UserCache uc(opt, user);
    const CacheIndex before = read_index(uc.index_path);
    CacheIndex index = before;
    std::vector<Item> items;
    items.reserve(lines.size());
    for (const auto& l : lines) {
        Item it;
        std::string v;
        if (!parse_listing(l, it.num, v) || !parse_u64(v, it.list_size)) {
            err = "bad LIST line from upstream: " + printable(l);
            return false;
        }
        items.push_back(std::move(it));
    }
    // What is there already: the index for plain mail read before (most of it),
    // then a stat or three.
    std::vector<size_t> need;
    for (size_t i = 0; i < items.size(); ++i) {
        Item& it = items[i];
        auto u = uidls.find(it.num);
        if (u == uidls.end()) {
            it.found = Found::no_uidl;
            continue;
        }
        it.uidl = &u->second;
        it.key = cache_key(opt.upstream_id, user, u->second);
        it.base = opt.cache_dir + "/msg/" + it.key;
        uint64_t sz = 0, sz2 = 0;
        if (auto e = index.find(it.key); e != index.end()) {
            it.found = Found::copy;
            it.size = e->second.size;
        } else if (file_size(it.base + ".eml", sz) &&
                   (!file_size(it.base + ".raw", sz2) || settler().unsettled(it.base + ".eml"))) {
            it.found = Found::presented;
            it.size = sz;
        } else if (file_size(it.base + ".raw", sz)) {
            // With a presented file beside it, a crash came before that file was
            // durable: it is made again.
            it.found = Found::raw;
        } else if (it.list_size > opt.max_size) {
            it.found = Found::as_is;   // not even RETR'd: LIST says it is over fetcher.max_size
        } else {
            need.push_back(i);
        }
    }
    // A first login over a big mailbox is mostly upstream round trips: with
    // PIPELINING (RFC 2449) the RETRs go out in windows of 32, else one by one.
    bool pipelining = false;
    if (need.size() > 1)
        for (const auto& c : up.capabilities())
            pipelining = pipelining || c == "PIPELINING";
    const size_t window = pipelining ? 32 : 1;
    // One pack per login that fetches: creating a file costs more here than
    // writing a few hundred messages into one (about 0.8 ms against 5 us).
    const std::string tag = random_hex(4);
    PackWriter pack(uc.pack_prefix + tag + ".pack", tag);
    bool changed = false;
    for (size_t from = 0; from < need.size(); from += window) {
        if (opt.stop && opt.stop->load()) {
            err = "shutting down";
            return false;
        }
        size_t to = std::min(need.size(), from + window);
        std::vector<std::unique_ptr<PackSink>> sinks;
        std::vector<RetrSink*> ptrs;
        std::vector<uint64_t> nums;
        for (size_t j = from; j < to; ++j) {
            const Item& it = items[need[j]];
            sinks.push_back(std::make_unique<PackSink>(pack, it.key, it.base + ".raw.tmp" + tag));
            ptrs.push_back(sinks.back().get());
            nums.push_back(it.num);
        }
        std::vector<Upstream::Fetch> results;
        uint64_t written = 0;
        bool ok = up.retr_many(nums, ptrs, opt.max_size, results, written, err);
        stats.fetched_bytes += written;
        if (!ok)
            return false;
        for (size_t j = from; j < to; ++j) {
            Item& it = items[need[j]];
            std::string why;
            switch (results[j - from]) {
            case Upstream::Fetch::ok:
                keep_fetched(*sinks[j - from], it, index, why);
                changed = true;
                break;
            case Upstream::Fetch::too_big:
                it.found = Found::as_is;   // LIST said less than RETR brought
                break;
            default:
                it.found = Found::refused;
                why = err;
                break;
            }
            if (it.found == Found::refused)
                log_info("held back uidl=" + printable(*it.uidl) + ": " + printable(why));
        }
    }
    // Entries of messages no longer upstream go (and packs left without any);
    // the index names the new ones only now that their octets are all written.
    {
        std::set<std::string> present;
        for (const Item& it : items)
            if (!it.key.empty())
                present.insert(it.key);
        for (auto e = index.begin(); e != index.end();) {
            if (present.count(e->first)) {
                ++e;
            } else {
                e = index.erase(e);
                changed = true;
            }
        }
    }
    if (changed) {
        if (write_index(uc.index_path, index)) {
            remove_unused_packs(uc.pack_prefix, before, index);
        } else {
            // Shown from the copies all the same; the next login fetches them again.
            log_warning("cannot write " + uc.index_path + ": " + std::strerror(errno));
        }
    }
    for (const Item& it : items) {
        if (opt.stop && opt.stop->load()) {
            err = "shutting down";
            return false;
        }
        ShownMessage m;
        m.upstream_num = it.num;
        m.key = it.key;
        switch (it.found) {
        case Found::no_uidl:
            ++stats.held;
            log_warning("message " + std::to_string(it.num) + " has no UIDL; held back");
            continue;
        case Found::refused:
        case Found::fetch:
            ++stats.held;
            continue;
        case Found::copy: {
            const IndexEntry& e = index.at(it.key);
            m.source = ShownMessage::Source::copy;
            m.path = uc.pack_prefix + e.pack + ".pack";
            m.offset = e.offset;
            m.size = it.size;
            break;
        }
        case Found::presented:
            m.path = it.base + ".eml";
            m.size = it.size;
            break;
        case Found::as_is:
            // Shown as upstream has it, location parts and links included: the
            // fetcher keeps no copy, RETR relays upstream's answer.
            m.source = ShownMessage::Source::as_is;
            m.size = it.list_size;
            break;
        case Found::raw: {
            std::string why;
            Outcome o = present_raw(it.base, user, opt, why, m.building);
            if (o != Outcome::shown) {
                ++stats.held;
                stats.pending += o == Outcome::pending ? 1 : 0;
                // Pending media is retried every login_wait tick: keep that out of info.
                log(o == Outcome::pending ? LogLevel::debug : LogLevel::info,
                    "held back uidl=" + printable(*it.uidl) + ": " + why);
                continue;
            }
            m.path = it.base + ".eml";
            if (m.building) {
                m.size = m.building->size();
            } else if (!file_size(m.path, m.size)) {
                ++stats.held;
                continue;
            }
            break;
        }
        }
        m.uidl = *it.uidl;
        shown.push_back(std::move(m));
        ++stats.shown;
    }
    return true;
}

int open_copy(Upstream& up, const ShownMessage& m, const std::string& user, const SyncOptions& opt,
              std::string& why)
{
    int fd = open_entry(m.path, m.offset, m.key, m.size, why);
    if (fd >= 0)
        return fd;
    log_warning("cache copy of uidl=" + printable(m.uidl) + " unusable (" + why + "): fetched again");
    // The same message from upstream gives the same octets: a pack of its own,
    // then the index names it there.
    const UserCache uc(opt, user);
    const std::string tag = random_hex(4);
    PackWriter pack(uc.pack_prefix + tag + ".pack", tag);
    PackSink sink(pack, m.key, opt.cache_dir + "/msg/" + m.key + ".raw.tmp" + tag);
    std::vector<Upstream::Fetch> results;
    uint64_t written = 0;
    std::string err;
    if (!up.retr_many({m.upstream_num}, {&sink}, opt.max_size, results, written, err)) {
        why = "upstream: " + err;
        return -1;
    }
    if (results[0] != Upstream::Fetch::ok || sink.handle_name()) {
        unlink(sink.raw_path().c_str());
        unlink(pack.path().c_str());
        why = results[0] == Upstream::Fetch::ok ? "message changed upstream" : err;
        return -1;
    }
    const CacheIndex before = read_index(uc.index_path);
    CacheIndex index = before;
    index[m.key] = sink.entry();
    if (write_index(uc.index_path, index))
        remove_unused_packs(uc.pack_prefix, before, index);
    if (sink.entry().size != m.size) {
        why = "fetched again, size differs from LIST";
        return -1;
    }
    return open_entry(pack.path(), 0, m.key, m.size, why);
}

bool poll_mailbox(const UpstreamConfig& cfg, const SyncOptions& opt, const std::string& user,
                  const std::string& pass, unsigned& shown_count, unsigned& held, std::string& err)
{
    Upstream up;
    if (!up.connect(cfg, err))
        return false;
    std::string text;
    Reply r = up.command("USER " + user, text);
    if (r == Reply::ok)
        r = up.command("PASS " + pass, text);
    if (r != Reply::ok) {
        err = r == Reply::err ? "upstream refused the login of fetcher.prefetch_user" : "upstream connection lost";
        return false;
    }
    std::vector<ShownMessage> shown;
    SyncStats stats;
    if (!synchronise(up, user, opt, shown, stats, err))
        return false;
    up.command("QUIT", text);
    shown_count = stats.shown;
    held = stats.held;
    return true;
}

} // namespace mm
