// sync.cpp - a login's synchronisation (sync.h), in phases: list_upstream (UIDL
// and LIST), classify (what is cached already), fetch_missing (pipelined RETR into
// one pack per login, or raw copies of mail naming location parts), update_index
// (messages gone upstream forgotten, packs left empty removed, their raw copies and
// presented files removed: remove_gone_files) and
// build_shown_list (what the client sees; held mail presented by present.h).
// Files under cache_dir/msg: <user key>.idx and -<tag>.pack (plain mail, cache.h),
// <key>.raw (raw copy of mail naming location parts, durable), <key>.eml (presented),
// <user key>.own (which .raw/.eml keys are this user's, so that they can go).
// Config keys: fetcher.cache_dir, fetcher.max_size (through SyncOptions).
#include "fetcher/sync.h"

#include "fetcher/background_fsync.h"
#include "fetcher/cache.h"
#include "fetcher/present.h"
#include "core/config.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/util.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

namespace mm {

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

UserCache::UserCache(const SyncOptions& opt, const std::string& user)
{
    // UIDLs are never empty, so this key names no message.
    std::string k = opt.cache_dir + "/msg/" + cache_key(opt.upstream_id, user, "");
    index_path = k + ".idx";
    pack_prefix = k + "-";
}

namespace {

/// What one upstream message is to this login, found before anything is fetched.
enum class Found { no_uidl, copy, presented, raw, fetch, as_is, refused };

struct Item {
    uint64_t num = 0, list_size = 0;
    std::string uidl;    // "" when UIDL did not name the message
    std::string key, base;
    Found found = Found::fetch;
    uint64_t size = 0;   // octets of the copy or presented file
};

bool stopping(const SyncOptions& opt, std::string& err)
{
    if (!opt.stop || !opt.stop->load())
        return false;
    err = "shutting down";
    return true;
}

/// UIDL and LIST upstream: one item per message LIST names, with its UIDL.
bool list_upstream(Upstream& up, std::vector<Item>& items, std::string& err)
{
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
    items.reserve(lines.size());
    for (const auto& l : lines) {
        Item it;
        std::string v;
        if (!parse_listing(l, it.num, v) || !parse_u64(v, it.list_size)) {
            err = "bad LIST line from upstream: " + printable(l);
            return false;
        }
        if (auto u = uidls.find(it.num); u != uidls.end())
            it.uidl = u->second;
        items.push_back(std::move(it));
    }
    return true;
}

/// What is there already for each item: the index for plain mail read before
/// (most of it), then a stat or three. Returns the items still to RETR.
std::vector<size_t> classify(std::vector<Item>& items, const std::string& user, const SyncOptions& opt,
                             const CacheIndex& index)
{
    std::vector<size_t> need;
    for (size_t i = 0; i < items.size(); ++i) {
        Item& it = items[i];
        if (it.uidl.empty()) {
            it.found = Found::no_uidl;
            continue;
        }
        it.key = cache_key(opt.upstream_id, user, it.uidl);
        it.base = opt.cache_dir + "/msg/" + it.key;
        uint64_t sz = 0, sz2 = 0;
        if (auto e = index.find(it.key); e != index.end()) {
            it.found = Found::copy;
            it.size = e->second.size;
        } else if (file_size(it.base + ".eml", sz) &&
                   (!file_size(it.base + ".raw", sz2) || background_fsync().queued(it.base + ".eml"))) {
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
    return need;
}

/// After a finished PackSink: a plain message is now an entry of the pack (the
/// index names it once the login's fetching is done); one naming location parts
/// becomes the durable raw copy that present_raw() and later logins build on.
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

/// RETRs the items classify() left: plain mail into one new pack (named in
/// `index`), mail naming location parts into durable raw copies. Sets `changed`
/// when the index gained entries. False (err set) if the upstream dialogue failed.
bool fetch_missing(Upstream& up, std::vector<Item>& items, const std::vector<size_t>& need, const UserCache& uc,
                   const SyncOptions& opt, CacheIndex& index, bool& changed, SyncStats& stats, std::string& err)
{
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
    for (size_t from = 0; from < need.size(); from += window) {
        if (stopping(opt, err))
            return false;
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
                log_info("held back uidl=" + printable(it.uidl) + ": " + printable(why));
        }
    }
    return true;
}

/// Entries of messages no longer upstream go (and packs left without any); the
/// index names the new ones only now that their octets are all written.
void update_index(const std::vector<Item>& items, const UserCache& uc, const CacheIndex& before, CacheIndex& index,
                  bool changed)
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
    if (!changed)
        return;
    if (write_index(uc.index_path, index)) {
        remove_unused_packs(uc.pack_prefix, before, index);
    } else {
        // Shown from the copies all the same; the next login fetches them again.
        log_warning("cannot write " + uc.index_path + ": " + std::strerror(errno));
    }
}

/// The raw copies and presented files of this user's mail that upstream no
/// longer lists (deleted with DELE and QUIT, or by another client) are removed:
/// they would otherwise stay for ever and, being counted in fetcher.cache_quota,
/// crowd out media. <user key>.own names the keys this user has such files for;
/// a mail still listed stays named there until it goes.
void remove_gone_files(const std::vector<Item>& items, const UserCache& uc, const SyncOptions& opt)
{
    const std::string own_path = uc.index_path.substr(0, uc.index_path.size() - 4) + ".own";
    const std::set<std::string> before = read_key_list(own_path);
    std::set<std::string> listed, own;
    for (const Item& it : items) {
        if (it.key.empty())
            continue;
        listed.insert(it.key);
        if (it.found == Found::raw || it.found == Found::presented)
            own.insert(it.key);
    }
    unsigned removed = 0;
    for (const auto& k : before) {
        if (listed.count(k)) {
            own.insert(k);
            continue;
        }
        const std::string base = opt.cache_dir + "/msg/" + k;
        bool any = false;
        for (const char* ext : {".eml", ".raw"})
            any = unlink((base + ext).c_str()) == 0 || any;
        removed += any ? 1 : 0;
    }
    if (removed)
        log_info("removed the copies of " + std::to_string(removed) + " message(s) no longer upstream");
    if (own != before && !write_key_list(own_path, own))
        log_warning("cannot write " + own_path + ": " + std::strerror(errno));
}

/// What the client sees, in upstream's order: cache copies, presented files
/// (made now from raw copies where needed, present.h), and mail shown as it is;
/// the rest is counted as held back. False (err set) only when shutting down.
bool build_shown_list(const std::vector<Item>& items, const CacheIndex& index, const UserCache& uc,
                      const std::string& user, const SyncOptions& opt, std::vector<ShownMessage>& shown,
                      SyncStats& stats, std::string& err)
{
    for (const Item& it : items) {
        if (stopping(opt, err))
            return false;
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
            Presented p = present_raw(it.base, user, opt, why, m.growing);
            if (p != Presented::shown) {
                ++stats.held;
                stats.pending += p == Presented::pending ? 1 : 0;
                // Pending media is retried every login_wait tick: keep that out of info.
                log(p == Presented::pending ? LogLevel::debug : LogLevel::info,
                    "held back uidl=" + printable(it.uidl) + ": " + why);
                continue;
            }
            m.path = it.base + ".eml";
            if (m.growing) {
                m.size = m.growing->size();
            } else if (!file_size(m.path, m.size)) {
                ++stats.held;
                continue;
            }
            break;
        }
        }
        m.uidl = it.uidl;
        shown.push_back(std::move(m));
        ++stats.shown;
    }
    return true;
}

} // namespace

bool synchronise(Upstream& up, const std::string& user, const SyncOptions& opt,
                 std::vector<ShownMessage>& shown, SyncStats& stats, std::string& err)
{
    shown.clear();
    std::vector<Item> items;
    if (!list_upstream(up, items, err))
        return false;
    const UserCache uc(opt, user);
    const CacheIndex before = read_index(uc.index_path);
    CacheIndex index = before;
    const std::vector<size_t> need = classify(items, user, opt, index);
    bool changed = false;
    if (!fetch_missing(up, items, need, uc, opt, index, changed, stats, err))
        return false;
    update_index(items, uc, before, index, changed);
    remove_gone_files(items, uc, opt);
    return build_shown_list(items, index, uc, user, opt, shown, stats, err);
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
