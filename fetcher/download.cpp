// download.cpp - the background media downloader: a thread running libcurl's multi
// interface over the on-disk queue cache_dir/jobs, writing cache_dir/media/<sha256>
// (.part while incomplete), pinned keys, address filter at socket open, Range resume,
// incremental SHA-256, backoff with jitter, receipts. A job is one source (SHA-256,
// URL, pin): the verified file is shared by SHA-256, a source's failure is its own.
// Fairness: fetcher.max_per_host, fetcher.min_rate and preemption (start_due).
// Config keys: see download.h.
#include "fetcher/download.h"

#include "fetcher/address_policy.h"
#include "fetcher/receipt.h"
#include "fetcher/status.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/stream.h"
#include "core/util.h"

#include <curl/curl.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <random>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>


namespace mm {

std::chrono::seconds backoff(unsigned attempts, std::chrono::seconds retry_min, std::chrono::seconds retry_max,
                             double jitter)
{
    int64_t s = std::max<int64_t>(1, retry_min.count());
    for (unsigned i = 1; i < attempts && s < retry_max.count(); ++i)
        s *= 2;
    s = std::min<int64_t>(s, std::max<int64_t>(1, retry_max.count()));
    jitter = std::clamp(jitter, 0.0, 0.999);
    return std::chrono::seconds(std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(s) * (0.5 + jitter / 2))));
}

namespace {

bool hash_into(const std::string& path, Sha256& h)
{
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(fd);
            return n == 0;
        }
        h.update(buf, static_cast<size_t>(n));
    }
}

int64_t now_s() { return static_cast<int64_t>(time(nullptr)); }

double jitter()
{
    thread_local std::mt19937 gen{std::random_device{}()};
    return std::uniform_real_distribution<double>(0.0, 1.0)(gen);
}

} // namespace


bool runs_before(const Job& a, const Job& b)
{
    if (a.priority != b.priority)
        return a.priority;
    return a.attempts < b.attempts;
}

std::string url_host(const std::string& url)
{
    size_t p = url.find("://");
    if (p == std::string::npos)
        return "";
    std::string_view rest = std::string_view(url).substr(p + 3);
    rest = rest.substr(0, rest.find_first_of("/?#"));
    if (size_t at = rest.rfind('@'); at != std::string_view::npos)
        rest.remove_prefix(at + 1);
    if (!rest.empty() && rest.front() == '[') {
        size_t close = rest.find(']');
        rest = close == std::string_view::npos ? std::string_view() : rest.substr(0, close + 1);
    } else {
        rest = rest.substr(0, rest.find(':'));
    }
    std::string host(rest);
    for (char& c : host)
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
    return host;
}

// One running transfer: a download into <sha256>.part or a receipt POST.
struct Downloader::Transfer {
    CURL* easy = nullptr;
    std::string id, sha, host;
    bool receipt = false;
    std::string recipient, body, url;
    FILE* out = nullptr;
    uint64_t start_have = 0, have = 0, limit = 0;
    uint64_t reserved = 0;   // counted in fetcher.cache_quota while it runs: the whole file
    std::chrono::steady_clock::time_point started;
    std::unique_ptr<Sha256> hash = std::make_unique<Sha256>();
    bool overflow = false, write_failed = false;
    bool allow_private = false, refused_address = false;
    char errbuf[CURL_ERROR_SIZE] = "";
};

namespace {

size_t on_write(char* data, size_t size, size_t nmemb, void* user)
{
    auto* t = static_cast<Downloader::Transfer*>(user);
    size_t n = size * nmemb;
    if (t->receipt)
        return n;   // a receipt's answer body is not needed
    if (t->have + n > t->limit) {
        t->overflow = true;   // more than the handle promised: an attack or a bug
        return 0;
    }
    if (fwrite(data, 1, n, t->out) != n) {
        t->write_failed = true;
        return 0;
    }
    t->hash->update(data, n);
    t->have += n;
    fetcher_status().bytes_downloaded.fetch_add(n, std::memory_order_relaxed);
    return n;
}

curl_socket_t on_open_socket(void* user, curlsocktype purpose, curl_sockaddr* addr)
{
    // Checked on the address actually connected to, after DNS: a name that
    // resolves to a private address (DNS rebinding included) is refused here.
    auto* t = static_cast<Downloader::Transfer*>(user);
    if (purpose != CURLSOCKTYPE_IPCXN || !address_allowed(&addr->addr, t->allow_private)) {
        t->refused_address = true;
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

void configure(CURL* c, Downloader::Transfer& t, const Handle& h, const DownloadOptions& opt)
{
    curl_easy_setopt(c, CURLOPT_PRIVATE, &t);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, t.errbuf);
    curl_easy_setopt(c, CURLOPT_URL, t.url.c_str());
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, opt.allow_insecure ? "https,http" : "https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);   // a redirect could lead anywhere
    curl_easy_setopt(c, CURLOPT_PROXY, "");           // no proxy from the environment
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &t);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, static_cast<long>(opt.timeout.count()));
    // fetcher.min_rate: a server that trickles (2 bytes/s of a 4 GB file) is cut
    // once its average over the window falls below it; without it, a stall of one
    // fetcher.timeout is still cut.
    if (opt.min_rate > 0) {
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, static_cast<long>(std::min<uint64_t>(opt.min_rate, LONG_MAX)));
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(opt.min_rate_window.count()));
    } else {
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(opt.timeout.count()));
    }
    curl_easy_setopt(c, CURLOPT_TLS13_CIPHERS, kTls13Suites);
    if (!h.pin.empty()) {
        // The gateway's certificate is self-signed: the pinned key from the mail
        // is its identity, so the chain and host name checks are replaced by it.
        curl_easy_setopt(c, CURLOPT_PINNEDPUBLICKEY, h.pin.c_str());
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    } else {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    }
}

} // namespace

void download_global_init()
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

Downloader::Downloader(const DownloadOptions& opt) : opt_(opt) {}

Downloader::~Downloader() { stop(); }

void Downloader::load_queue(unsigned& loaded, unsigned& bad, unsigned& migrated)
{
    DIR* d = opendir(opt_.jobs_dir.c_str());
    if (!d)
        return;
    std::vector<std::string> names;
    while (dirent* e = readdir(d)) {
        std::string id;
        if (job_file_name(e->d_name, id))
            names.push_back(id);
    }
    closedir(d);
    for (const auto& name_id : names) {
        Job j;
        const std::string path = job_path(opt_.jobs_dir, name_id);
        JobFileName cls = JobFileName::mismatch;
        if (load_job(path, j))
            cls = classify_job_file(name_id, j);
        if (cls == JobFileName::mismatch) {
            // Keep it for a human to look at, out of the way of the queue.
            rename(path.c_str(), (path + ".bad").c_str());
            ++bad;
            continue;
        }
        bool rewrite = false;
        if (!opt_.receipts && !j.recipients.empty()) {
            // fetcher.receipts = false: nothing is ever sent, nor kept for later.
            if (j.state == Job::State::receipt) {
                unlink(path.c_str());
                continue;
            }
            j.recipients.clear();
            rewrite = true;
        }
        const std::string id = job_id(j.handle);
        if (rewrite && cls == JobFileName::current)
            save(j);
        if (cls == JobFileName::old_layout) {
            // Named by its SHA-256 alone (before jobs were per source): written
            // again under its id, then the old name goes.
            if (!save_job(opt_.jobs_dir, j))
                continue;
            unlink(path.c_str());
            ++migrated;
        }
        jobs_[id] = std::move(j);
        ++loaded;
    }
}

bool Downloader::start(std::string& err)
{
    DIR* d = opendir(opt_.jobs_dir.c_str());
    if (!d) {
        err = "cannot open " + opt_.jobs_dir + ": " + std::strerror(errno);
        return false;
    }
    closedir(d);
    unsigned loaded = 0, bad = 0, migrated = 0;
    load_queue(loaded, bad, migrated);
    if (loaded || bad)
        log_info("download queue: " + std::to_string(loaded) + " jobs resumed" +
                 (migrated ? " (" + std::to_string(migrated) + " renamed from the older layout)" : "") +
                 (bad ? ", " + std::to_string(bad) + " unreadable set aside as .bad" : ""));
    multi_ = curl_multi_init();
    if (!multi_) {
        err = "curl_multi_init failed";
        return false;
    }
    thread_ = std::thread([this] { run(); });
    return true;
}

void Downloader::stop()
{
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (stop_ && !thread_.joinable())
            return;
        stop_ = true;
    }
    if (multi_)
        curl_multi_wakeup(static_cast<CURLM*>(multi_));
    if (thread_.joinable())
        thread_.join();
    if (multi_) {
        curl_multi_cleanup(static_cast<CURLM*>(multi_));
        multi_ = nullptr;
    }
}

void Downloader::save(const Job& j)
{
    if (!save_job(opt_.jobs_dir, j))
        log_warning("cannot write download job " + j.handle.sha256.substr(0, 16) + " to " + opt_.jobs_dir);
}

void Downloader::drop(const std::string& id)
{
    unlink(job_path(opt_.jobs_dir, id).c_str());
    jobs_.erase(id);
    last_start_.erase(id);
}

bool Downloader::downloading(const std::string& sha) const
{
    for (const auto& [id, t] : active_)
        if (!t->receipt && t->sha == sha)
            return true;
    return false;
}

unsigned Downloader::transfers_to(const std::string& host) const
{
    unsigned n = 0;
    for (const auto& [id, t] : active_)
        n += t->host == host ? 1 : 0;
    return n;
}

MediaState Downloader::want(const Handle& h, bool priority, bool schedule, const std::string& recipient,
                            std::string& path)
{
    // The file name is the digest, checked lexically: nothing else from the mail
    // (least of all h.name) ever becomes part of a path.
    if (!is_hex_digest(h.sha256) || !job_value_clean(h.url) || !job_value_clean(h.pin))
        return MediaState::refused;
    const std::string final_path = opt_.media_dir + "/" + h.sha256;
    const std::string id = job_id(h);
    const bool receipt_wanted = opt_.receipts && !recipient.empty();
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(id);
    uint64_t sz = 0;
    if (file_size(final_path, sz) && sz == h.size) {
        // Verified before it was renamed into place. Touch it: the quota removes
        // the least recently used first. A receipt goes only to a source that
        // served the bytes: this one if its job is sending receipts.
        utimensat(AT_FDCWD, final_path.c_str(), nullptr, 0);
        path = final_path;
        if (receipt_wanted && it != jobs_.end() && it->second.state == Job::State::receipt &&
            it->second.recipients.size() < kMaxJobRecipients && it->second.recipients.insert(recipient).second)
            save(it->second);
        return MediaState::ready;
    }
    if (!url_scheme_allowed(h.url, opt_.allow_insecure) || h.size > opt_.quota)
        return MediaState::refused;
    if (it == jobs_.end()) {
        Job j;
        j.handle.url = h.url;
        j.handle.sha256 = h.sha256;
        j.handle.size = h.size;
        j.handle.pin = h.pin;
        j.priority = priority;
        j.state = schedule ? Job::State::download : Job::State::asked;
        j.next_try = 0;
        if (receipt_wanted)
            j.recipients.insert(recipient);
        it = jobs_.emplace(id, std::move(j)).first;
        save(it->second);
        if (multi_)
            curl_multi_wakeup(static_cast<CURLM*>(multi_));
        return MediaState::pending;
    }
    Job& j = it->second;
    bool changed = false;
    if (schedule && j.state == Job::State::asked) {
        j.state = Job::State::download;
        changed = true;
    }
    if (priority && !j.priority) {
        j.priority = true;
        changed = true;
    }
    if (receipt_wanted && j.recipients.size() < kMaxJobRecipients && j.recipients.insert(recipient).second)
        changed = true;
    if (changed) {
        save(j);
        if (multi_)
            curl_multi_wakeup(static_cast<CURLM*>(multi_));
    }
    if (j.state == Job::State::refused)
        return MediaState::refused;
    if (j.state == Job::State::asked || (active_.count(id) == 0 && j.next_try > now_s()))
        return MediaState::waiting;
    return MediaState::pending;
}

std::string Downloader::request_fetch(const std::string& jobs_dir, const std::string& key, std::string& err)
{
    // Every source of that file (or every job of that URL) is asked for.
    const bool by_sha = is_hex_digest(key);
    std::string sha;
    std::vector<std::string> ids;
    DIR* d = opendir(jobs_dir.c_str());
    if (!d) {
        err = "cannot open " + jobs_dir + ": " + std::strerror(errno);
        return "";
    }
    while (dirent* e = readdir(d)) {
        std::string id;
        Job j;
        if (!job_file_name(e->d_name, id) || !load_job(job_path(jobs_dir, id), j))
            continue;
        if (by_sha ? j.handle.sha256 == key : j.handle.url == key) {
            sha = j.handle.sha256;
            ids.push_back(id);
        }
    }
    closedir(d);
    if (ids.empty()) {
        err = "no such media in the queue (the mail must have been seen by mm-fetcher first)";
        return "";
    }
    for (const auto& id : ids) {
        if (!write_want_marker(jobs_dir, id)) {
            err = "cannot write " + want_path(jobs_dir, id);
            return "";
        }
    }
    return sha;
}

void Downloader::rescan_markers()
{
    DIR* d = opendir(opt_.jobs_dir.c_str());
    if (!d)
        return;
    std::vector<std::string> wanted;
    while (dirent* e = readdir(d)) {
        std::string id;
        if (want_marker_name(e->d_name, id))
            wanted.push_back(id);
    }
    closedir(d);
    for (const auto& marker : wanted) {
        unlink(want_path(opt_.jobs_dir, marker).c_str());
        // A marker names a job id, or (written by an older "mm-fetcher fetch") a SHA-256.
        for (auto& [id, j] : jobs_) {
            if (id != marker && j.handle.sha256 != marker)
                continue;
            if (j.state == Job::State::asked || j.state == Job::State::download) {
                j.state = Job::State::download;
                j.priority = true;   // a person is waiting for this one
                j.next_try = 0;
                save(j);
                log_info("media " + j.handle.sha256.substr(0, 16) + ": fetch requested");
            }
        }
    }
}

QuotaUse Downloader::quota_use(const std::string& starting_sha)
{
    QuotaUse use;
    for (const auto& [id, t] : active_)
        use.reserved += t->reserved;
    for (const std::string* dir : {&opt_.media_dir, &opt_.msg_dir}) {
        if (dir->empty())
            continue;
        DIR* d = opendir(dir->c_str());
        if (!d)
            continue;
        const bool media = dir == &opt_.media_dir;
        while (dirent* e = readdir(d)) {
            std::string name = e->d_name;
            struct stat st;
            if (name[0] == '.' || stat((*dir + "/" + name).c_str(), &st) != 0 || !S_ISREG(st.st_mode))
                continue;
            // A running download's .part is counted at its full size in `reserved`.
            if (media && name.size() == 69 && name.compare(64, 5, ".part") == 0) {
                const std::string sha = name.substr(0, 64);
                if (sha == starting_sha || downloading(sha))
                    continue;
            }
            use.files += static_cast<uint64_t>(st.st_size);
        }
        closedir(d);
    }
    return use;
}

bool Downloader::make_room(uint64_t need, const std::string& keep)
{
    QuotaUse use = quota_use(keep);
    if (use.fits(need, opt_.quota))
        return true;
    struct Entry {
        int64_t mtime;
        uint64_t size;
        std::string name;
    };
    std::vector<Entry> done;
    if (DIR* d = opendir(opt_.media_dir.c_str())) {
        while (dirent* e = readdir(d)) {
            std::string name = e->d_name;
            struct stat st;
            // Only finished files are evicted: a .part is someone's progress, and
            // cache_dir/msg is the mailbox itself (removed by sync when mail goes).
            if (!is_hex_digest(name) || name == keep ||
                stat((opt_.media_dir + "/" + name).c_str(), &st) != 0 || !S_ISREG(st.st_mode))
                continue;
            done.push_back({static_cast<int64_t>(st.st_mtime), static_cast<uint64_t>(st.st_size), name});
        }
        closedir(d);
    }
    std::sort(done.begin(), done.end(), [](const Entry& a, const Entry& b) { return a.mtime < b.mtime; });
    for (const auto& e : done) {
        if (use.fits(need, opt_.quota))
            break;
        // Media already put back into presented messages; a later mail naming it
        // would download it again.
        if (unlink((opt_.media_dir + "/" + e.name).c_str()) == 0) {
            use.files -= std::min(use.files, e.size);
            log_info("cache_quota: removed media " + e.name.substr(0, 16));
        }
    }
    return use.fits(need, opt_.quota);
}

void Downloader::retry(Job& j, const std::string& why, int64_t now)
{
    ++j.attempts;
    auto wait = backoff(j.attempts, opt_.retry_min, opt_.retry_max, jitter());
    j.next_try = now + wait.count();
    log_warning("media " + j.handle.sha256.substr(0, 16) + " (" + job_state_name(j.state) + "): " + printable(why) +
                "; attempt " + std::to_string(j.attempts) + ", next in " + std::to_string(wait.count()) + "s");
    save(j);
}

bool Downloader::start_transfer(const std::string& id, Job& j, int64_t now)
{
    const std::string sha = j.handle.sha256;
    auto t = std::make_unique<Transfer>();
    t->id = id;
    t->sha = sha;
    t->host = url_host(j.handle.url);
    t->started = std::chrono::steady_clock::now();
    t->allow_private = opt_.allow_private;
    if (j.state == Job::State::receipt) {
        if (j.recipients.empty() || !opt_.receipts) {
            drop(id);
            return false;
        }
        t->receipt = true;
        t->recipient = *j.recipients.begin();
        t->url = receipt_url(j.handle.url);
        t->body = receipt_body(t->recipient, sha);
    } else {
        uint64_t done_size = 0;
        if (file_size(final_path(sha), done_size) && done_size == j.handle.size) {
            // Another source of the same bytes was verified: nothing to fetch here,
            // and no receipt, since this source served nothing.
            log_info("media " + sha.substr(0, 16) + ": already verified from another source");
            drop(id);
            return false;
        }
        const std::string part = part_path(sha);
        uint64_t have = 0;
        auto owner = part_owner_.find(sha);
        if (owner != part_owner_.end() && owner->second != id) {
            // Another source's bytes: a source that failed never hands its
            // leftovers to the next one.
            unlink(part.c_str());
        }
        if (file_size(part, have) && have > j.handle.size) {
            unlink(part.c_str());
            have = 0;
        }
        have = file_size(part, have) ? have : 0;
        // The whole file is reserved now: parallel downloads together stay under
        // fetcher.cache_quota however far each has come.
        if (!make_room(j.handle.size, sha)) {
            j.next_try = now + 10;   // wait for room without counting it as a failure
            log_warning("media " + sha.substr(0, 16) + ": fetcher.cache_quota full, waiting");
            return false;
        }
        // The hash of the bytes already there, so that the finished file is never re-read.
        if (have > 0 && !hash_into(part, *t->hash)) {
            unlink(part.c_str());
            have = 0;
            t->hash = std::make_unique<Sha256>();
        }
        t->out = fopen(part.c_str(), have > 0 ? "ab" : "wb");
        if (!t->out) {
            retry(j, "cannot open " + part + ": " + std::strerror(errno), now);
            return false;
        }
        part_owner_[sha] = id;
        t->start_have = t->have = have;
        t->limit = j.handle.size;
        t->reserved = j.handle.size;
        t->url = j.handle.url;
    }
    CURL* c = curl_easy_init();
    if (!c) {
        if (t->out)
            fclose(t->out);
        return false;
    }
    t->easy = c;
    configure(c, *t, j.handle, opt_);
    if (t->receipt) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, t->body.c_str());
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(t->body.size()));
        curl_easy_setopt(c, CURLOPT_TIMEOUT, static_cast<long>(opt_.timeout.count()));
    } else {
        curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
        curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(j.handle.size));
        if (t->have > 0)
            curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, static_cast<curl_off_t>(t->have));
    }
    if (curl_multi_add_handle(static_cast<CURLM*>(multi_), c) != CURLM_OK) {
        curl_easy_cleanup(c);
        if (t->out)
            fclose(t->out);
        return false;
    }
    last_start_[id] = t->started;
    active_[id] = t.get();
    if (t->receipt) {
        log_debug("media " + sha.substr(0, 16) + ": receipt started");
    } else {
        fetcher_status().downloads_active++;
        std::string mid = fetcher_status().message_id_of(sha);
        if (!mid.empty())
            j.message_id = mid;
        log_info("media " + sha.substr(0, 16) + ": download started" + (t->have ? " at " + std::to_string(t->have) : "") +
                 media_trace(sha, j.handle.url));
    }
    t.release();   // owned by the easy handle's CURLOPT_PRIVATE until finish()
    return true;
}

void Downloader::end_transfer(Transfer* t)
{
    curl_multi_remove_handle(static_cast<CURLM*>(multi_), t->easy);
    curl_easy_cleanup(t->easy);
    if (t->out) {
        fflush(t->out);
        fsync(fileno(t->out));
        fclose(t->out);
    }
    if (!t->receipt)
        fetcher_status().downloads_active--;
    active_.erase(t->id);
    delete t;
}

bool Downloader::preempt_for(const std::string& host)
{
    // All slots are taken and a job of `host` is due. A download of another host
    // that has held its slot for a whole fetcher.timeout gives it up: its .part
    // stays and it resumes (Range) when its turn comes again, without counting as
    // a failure. min_rate alone would not do: a server just above it (or a big
    // file on a slow link) can hold a slot for hours, and with fetcher.parallel = 1
    // every other sender's media would wait behind it. So a due job of another host
    // never waits more than one timeout for a slot; jobs that were preempted go
    // behind those that waited (last_start_), so slots are shared in turns.
    const auto now = std::chrono::steady_clock::now();
    Transfer* victim = nullptr;
    for (const auto& [id, t] : active_)
        if (!t->receipt && t->host != host && now - t->started >= opt_.timeout &&
            (!victim || t->started < victim->started))
            victim = t;
    if (!victim)
        return false;
    log_info("media " + victim->sha.substr(0, 16) + ": preempted after " +
             std::to_string(std::chrono::duration_cast<std::chrono::seconds>(now - victim->started).count()) +
             "s at " + std::to_string(victim->have) + " bytes for a download from another host; resumes later");
    ++counters_.preempted;
    end_transfer(victim);
    return true;
}

void Downloader::start_due(int64_t now)
{
    std::vector<std::pair<std::string, Job*>> due;
    for (auto& [id, j] : jobs_)
        if ((j.state == Job::State::download || j.state == Job::State::receipt) && j.next_try <= now &&
            active_.count(id) == 0)
            due.emplace_back(id, &j);
    auto last = [this](const std::string& id) {
        auto it = last_start_.find(id);
        return it == last_start_.end() ? std::chrono::steady_clock::time_point{} : it->second;
    };
    std::stable_sort(due.begin(), due.end(), [&](const auto& a, const auto& b) {
        if (runs_before(*a.second, *b.second) || runs_before(*b.second, *a.second))
            return runs_before(*a.second, *b.second);
        return last(a.first) < last(b.first);
    });
    for (auto& [id, j] : due) {
        // One download per file at a time: sources of the same bytes take turns,
        // and a verified file ends the others (start_transfer).
        if (j->state == Job::State::download && downloading(j->handle.sha256))
            continue;
        // A host at fetcher.max_per_host: its job waits, the next host's does not.
        const std::string host = url_host(j->handle.url);
        if (transfers_to(host) >= opt_.max_per_host)
            continue;
        if (active_.size() >= opt_.parallel && !preempt_for(host))
            continue;
        start_transfer(id, *j, now);   // may drop the job: j is not used after
    }
}

void Downloader::verified(const std::string& id, Job& j, int64_t now)
{
    const std::string sha = j.handle.sha256;
    ++counters_.verified;
    fetcher_status().downloads_verified++;
    log_info("media " + sha.substr(0, 16) + ": verified, " + std::to_string(j.handle.size) + " bytes" +
             media_trace(sha, j.handle.url, j.message_id));
    // Other sources of the same file have nothing left to fetch; they served
    // nothing, so they get no receipt (it goes to the source that served the bytes).
    for (auto it = jobs_.begin(); it != jobs_.end();) {
        if (it->first != id && it->second.handle.sha256 == sha && it->second.state != Job::State::receipt &&
            active_.count(it->first) == 0) {
            unlink(job_path(opt_.jobs_dir, it->first).c_str());
            last_start_.erase(it->first);
            it = jobs_.erase(it);
        } else {
            ++it;
        }
    }
    part_owner_.erase(sha);
    if (j.recipients.empty() || !opt_.receipts) {
        drop(id);
        return;
    }
    j.state = Job::State::receipt;
    j.attempts = 0;
    j.next_try = now;
    save(j);
}

void Downloader::finish(Transfer* t, int result)
{
    std::unique_ptr<Transfer> owner(t);
    CURLcode rc = static_cast<CURLcode>(result);
    long status = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(static_cast<CURLM*>(multi_), t->easy);
    curl_easy_cleanup(t->easy);
    if (!t->receipt)
        fetcher_status().downloads_active--;
    active_.erase(t->id);
    auto it = jobs_.find(t->id);
    int64_t now = now_s();
    std::string err = t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc);

    if (t->receipt) {
        if (it == jobs_.end())
            return;
        Job& j = it->second;
        if (rc == CURLE_OK && status == 204) {
            fetcher_status().receipts_sent++;
            log_info("media " + t->sha.substr(0, 16) + ": receipt sent for " + printable(t->recipient, 64) +
                     media_trace(t->sha, j.handle.url));
            j.recipients.erase(t->recipient);
        } else if (rc == CURLE_OK && status >= 400 && status < 500) {
            // The gateway does not know the item (expired, deleted) or the request:
            // asking again will not change its answer.
            log_warning("media " + t->sha.substr(0, 16) + ": receipt refused with HTTP " + std::to_string(status));
            j.recipients.erase(t->recipient);
        } else {
            retry(j, rc == CURLE_OK ? "receipt: HTTP " + std::to_string(status) : "receipt: " + err, now);
            return;
        }
        if (j.recipients.empty())
            drop(t->id);
        else {
            j.attempts = 0;
            j.next_try = now;
            save(j);
        }
        return;
    }

    const std::string part = part_path(t->sha);
    const std::string final_file = final_path(t->sha);
    bool write_ok = !t->write_failed && fflush(t->out) == 0 && fsync(fileno(t->out)) == 0;
    fclose(t->out);
    if (it == jobs_.end())
        return;
    Job& j = it->second;
    if (t->overflow) {
        fetcher_status().verify_failures++;
        unlink(part.c_str());
        retry(j, "server sent more than the handle's size", now);
        return;
    }
    if (rc != CURLE_OK) {
        fetcher_status().download_failures++;
        if (t->refused_address) {
            // Not a failure that time repairs: under this config this source is
            // never fetched (other sources of the same file still are).
            j.state = Job::State::refused;
            log_warning("media " + t->sha.substr(0, 16) + ": address refused (fetcher.allow_private); not fetched");
            save(j);
            return;
        }
        if (rc == CURLE_SSL_PINNEDPUBKEYNOTMATCH)
            unlink(part.c_str());
        retry(j, "download failed: " + err, now);   // .part kept for resuming otherwise
        return;
    }
    if (t->start_have > 0 && status != 206) {
        // The server ignored the Range: the appended bytes are a second copy.
        unlink(part.c_str());
        retry(j, "server did not honour the Range request", now);
        return;
    }
    if (!write_ok) {
        retry(j, "write failed on " + part, now);
        return;
    }
    if (t->have != j.handle.size) {
        fetcher_status().verify_failures++;
        unlink(part.c_str());
        retry(j, "size mismatch: got " + std::to_string(t->have) + ", handle says " + std::to_string(j.handle.size), now);
        return;
    }
    if (t->hash->hex_digest() != j.handle.sha256) {
        fetcher_status().verify_failures++;
        unlink(part.c_str());
        retry(j, "SHA-256 mismatch", now);
        return;
    }
    if (rename(part.c_str(), final_file.c_str()) != 0) {
        retry(j, std::string("rename failed: ") + std::strerror(errno), now);
        return;
    }
    fsync_dir_of(final_file);
    verified(t->id, j, now);
}

MediaState Downloader::peek(const std::string& sha256, uint64_t size)
{
    if (!is_hex_digest(sha256))
        return MediaState::refused;
    uint64_t sz = 0;
    if (file_size(final_path(sha256), sz) && sz == size)
        return MediaState::ready;
    std::lock_guard<std::mutex> lock(mu_);
    // The best any source of the file can say: one downloading or due makes it
    // pending; refused only when every source is.
    MediaState best = MediaState::refused;
    const int64_t now = now_s();
    for (const auto& [id, j] : jobs_) {
        if (j.handle.sha256 != sha256 || j.state == Job::State::refused)
            continue;
        if (active_.count(id) > 0 || (j.state == Job::State::download && j.next_try <= now))
            return MediaState::pending;
        best = MediaState::waiting;
    }
    return best;
}

std::string Downloader::part_path(const std::string& sha256) const
{
    return opt_.media_dir + "/" + sha256 + ".part";
}

std::string Downloader::final_path(const std::string& sha256) const
{
    return opt_.media_dir + "/" + sha256;
}

Downloader::Progress Downloader::progress()
{
    std::lock_guard<std::mutex> lock(progress_mu_);
    return progress_;
}

Downloader::Progress Downloader::wait_progress(const Progress& seen, bool any_write,
                                               std::chrono::steady_clock::time_point until)
{
    std::unique_lock<std::mutex> lock(progress_mu_);
    progress_cv_.wait_until(lock, until, [&] {
        return progress_.ended != seen.ended || (any_write && progress_.written != seen.written);
    });
    return progress_;
}

void Downloader::bump(bool ended)
{
    {
        std::lock_guard<std::mutex> lock(progress_mu_);
        ++(ended ? progress_.ended : progress_.written);
    }
    progress_cv_.notify_all();
}

Downloader::Counters Downloader::counters()
{
    std::lock_guard<std::mutex> lock(mu_);
    return counters_;
}

void Downloader::run()
{
    auto* m = static_cast<CURLM*>(multi_);
    for (;;) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (stop_)
                break;
            int64_t now = now_s();
            if (now != last_scan_) {
                last_scan_ = now;
                rescan_markers();
            }
            start_due(now);
        }
        int running = 0;
        curl_multi_perform(m, &running);
        if (!active_.empty()) {
            // What stdio holds back is a follower's wait; the kernel has the rest.
            {
                std::lock_guard<std::mutex> lock(mu_);
                for (auto& [id, t] : active_)
                    if (t->out)
                        fflush(t->out);
            }
            bump(false);
        }
        bool ended = false;
        {
            std::lock_guard<std::mutex> lock(mu_);
            int left = 0;
            while (CURLMsg* msg = curl_multi_info_read(m, &left)) {
                if (msg->msg != CURLMSG_DONE)
                    continue;
                Transfer* t = nullptr;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
                finish(t, static_cast<int>(msg->data.result));
                ended = true;
            }
        }
        if (ended)
            bump(true);
        curl_multi_poll(m, nullptr, 0, 500, nullptr);
    }
    // Abandon running transfers; their .part files are resumed next time.
    std::lock_guard<std::mutex> lock(mu_);
    while (!active_.empty())
        end_transfer(active_.begin()->second);
}

} // namespace mm
