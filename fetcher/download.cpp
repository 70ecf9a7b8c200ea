// download.cpp - the background media downloader: a thread running libcurl's multi
// interface over the on-disk queue cache_dir/jobs, writing cache_dir/media/<sha256>
// (.part while incomplete), pinned keys, address filter at socket open, Range resume,
// incremental SHA-256, backoff with jitter, receipts. Config keys: see download.h.
#include "fetcher/download.h"

#include "fetcher/address_policy.h"
#include "fetcher/receipt.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/util.h"

#include <curl/curl.h>

#include <algorithm>
#include <cerrno>
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

// One running transfer: a download into <sha256>.part or a receipt POST.
struct Downloader::Transfer {
    CURL* easy = nullptr;
    std::string sha;
    bool receipt = false;
    std::string recipient, body, url;
    FILE* out = nullptr;
    uint64_t start_have = 0, have = 0, limit = 0;
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
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(opt.timeout.count()));
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

bool Downloader::start(std::string& err)
{
    DIR* d = opendir(opt_.jobs_dir.c_str());
    if (!d) {
        err = "cannot open " + opt_.jobs_dir + ": " + std::strerror(errno);
        return false;
    }
    unsigned loaded = 0, bad = 0;
    while (dirent* e = readdir(d)) {
        std::string sha;
        if (!job_file_name(e->d_name, sha))
            continue;
        Job j;
        const std::string path = job_path(opt_.jobs_dir, sha);
        if (!load_job(path, j) || j.handle.sha256 != sha) {
            // Keep it for a human to look at, out of the way of the queue.
            rename(path.c_str(), (path + ".bad").c_str());
            ++bad;
            continue;
        }
        jobs_[j.handle.sha256] = std::move(j);
        ++loaded;
    }
    closedir(d);
    if (loaded || bad)
        log_info("download queue: " + std::to_string(loaded) + " jobs resumed" +
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

void Downloader::drop(const std::string& sha)
{
    unlink(job_path(opt_.jobs_dir, sha).c_str());
    jobs_.erase(sha);
}

MediaState Downloader::want(const Handle& h, bool priority, bool schedule, const std::string& recipient,
                            std::string& path)
{
    // The file name is the digest, checked lexically: nothing else from the mail
    // (least of all h.name) ever becomes part of a path.
    if (!is_hex_digest(h.sha256) || !job_value_clean(h.url) || !job_value_clean(h.pin))
        return MediaState::refused;
    const std::string final_path = opt_.media_dir + "/" + h.sha256;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(h.sha256);
    uint64_t sz = 0;
    if (file_size(final_path, sz) && sz == h.size) {
        // Verified before it was renamed into place. Touch it: the quota removes
        // the least recently used first.
        utimensat(AT_FDCWD, final_path.c_str(), nullptr, 0);
        path = final_path;
        if (!recipient.empty() && it != jobs_.end() && it->second.recipients.size() < kMaxJobRecipients &&
            it->second.recipients.insert(recipient).second)
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
        if (!recipient.empty())
            j.recipients.insert(recipient);
        it = jobs_.emplace(h.sha256, std::move(j)).first;
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
    if (!recipient.empty() && j.recipients.size() < kMaxJobRecipients && j.recipients.insert(recipient).second)
        changed = true;
    if (changed) {
        save(j);
        if (multi_)
            curl_multi_wakeup(static_cast<CURLM*>(multi_));
    }
    if (j.state == Job::State::refused)
        return MediaState::refused;
    if (j.state == Job::State::asked || (active_.count(j.handle.sha256) == 0 && j.next_try > now_s()))
        return MediaState::waiting;
    return MediaState::pending;
}

std::string Downloader::request_fetch(const std::string& jobs_dir, const std::string& key, std::string& err)
{
    std::string sha;
    if (is_hex_digest(key)) {
        sha = key;
    } else {
        // A URL: find the recorded job that carries it.
        DIR* d = opendir(jobs_dir.c_str());
        if (!d) {
            err = "cannot open " + jobs_dir + ": " + std::strerror(errno);
            return "";
        }
        while (dirent* e = readdir(d)) {
            std::string name_sha;
            Job j;
            if (job_file_name(e->d_name, name_sha) && load_job(job_path(jobs_dir, name_sha), j) &&
                j.handle.url == key) {
                sha = j.handle.sha256;
                break;
            }
        }
        closedir(d);
    }
    if (sha.empty() || access(job_path(jobs_dir, sha).c_str(), F_OK) != 0) {
        err = "no such media in the queue (the mail must have been seen by mm-fetcher first)";
        return "";
    }
    if (!write_want_marker(jobs_dir, sha)) {
        err = "cannot write " + want_path(jobs_dir, sha);
        return "";
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
        std::string sha;
        if (want_marker_name(e->d_name, sha))
            wanted.push_back(sha);
    }
    closedir(d);
    for (const auto& sha : wanted) {
        unlink(want_path(opt_.jobs_dir, sha).c_str());
        auto it = jobs_.find(sha);
        if (it == jobs_.end())
            continue;
        Job& j = it->second;
        if (j.state == Job::State::asked || j.state == Job::State::download) {
            j.state = Job::State::download;
            j.priority = true;   // a person is waiting for this one
            j.next_try = 0;
            save(j);
            log_info("media " + sha.substr(0, 16) + ": fetch requested");
        }
    }
}

bool Downloader::make_room(uint64_t need, const std::string& keep)
{
    struct Entry {
        int64_t mtime;
        uint64_t size;
        std::string name;
    };
    std::vector<Entry> done;
    uint64_t used = 0;
    DIR* d = opendir(opt_.media_dir.c_str());
    if (!d)
        return false;
    while (dirent* e = readdir(d)) {
        std::string name = e->d_name;
        struct stat st;
        if (name[0] == '.' || stat((opt_.media_dir + "/" + name).c_str(), &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        used += static_cast<uint64_t>(st.st_size);
        // Only finished files are evicted: a .part is someone's progress.
        if (is_hex_digest(name) && name != keep && active_.count(name) == 0)
            done.push_back({static_cast<int64_t>(st.st_mtime), static_cast<uint64_t>(st.st_size), name});
    }
    closedir(d);
    if (used + need <= opt_.quota)
        return true;
    std::sort(done.begin(), done.end(), [](const Entry& a, const Entry& b) { return a.mtime < b.mtime; });
    for (const auto& e : done) {
        if (used + need <= opt_.quota)
            break;
        // Media already put back into presented messages; a later mail naming it
        // would download it again.
        if (unlink((opt_.media_dir + "/" + e.name).c_str()) == 0) {
            used -= e.size;
            log_info("cache_quota: removed media " + e.name.substr(0, 16));
        }
    }
    return used + need <= opt_.quota;
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

bool Downloader::start_transfer(Job& j, int64_t now)
{
    const std::string& sha = j.handle.sha256;
    auto t = std::make_unique<Transfer>();
    t->sha = sha;
    t->allow_private = opt_.allow_private;
    if (j.state == Job::State::receipt) {
        if (j.recipients.empty()) {
            drop(sha);
            return false;
        }
        t->receipt = true;
        t->recipient = *j.recipients.begin();
        t->url = receipt_url(j.handle.url);
        t->body = receipt_body(t->recipient, sha);
    } else {
        const std::string part = opt_.media_dir + "/" + sha + ".part";
        uint64_t have = 0;
        if (file_size(part, have) && have > j.handle.size) {
            unlink(part.c_str());
            have = 0;
        }
        if (!make_room(j.handle.size - have, sha)) {
            j.next_try = now + 60;   // wait for room without counting it as a failure
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
        t->start_have = t->have = have;
        t->limit = j.handle.size;
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
    active_[sha] = t.get();
    log_debug("media " + sha.substr(0, 16) + ": " + (t->receipt ? "receipt" : "download") + " started" +
              (t->have ? " at " + std::to_string(t->have) : ""));
    t.release();   // owned by the easy handle's CURLOPT_PRIVATE until finish()
    return true;
}

void Downloader::start_due(int64_t now)
{
    std::vector<Job*> due;
    for (auto& [sha, j] : jobs_)
        if ((j.state == Job::State::download || j.state == Job::State::receipt) && j.next_try <= now &&
            active_.count(sha) == 0)
            due.push_back(&j);
    std::stable_sort(due.begin(), due.end(), [](const Job* a, const Job* b) { return runs_before(*a, *b); });
    for (Job* j : due) {
        if (active_.size() >= opt_.parallel)
            break;
        start_transfer(*j, now);   // may drop the job (a receipt with no one left): j is not used after
    }
}

void Downloader::finish(Transfer* t, int result)
{
    std::unique_ptr<Transfer> owner(t);
    CURLcode rc = static_cast<CURLcode>(result);
    long status = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(static_cast<CURLM*>(multi_), t->easy);
    curl_easy_cleanup(t->easy);
    active_.erase(t->sha);
    auto it = jobs_.find(t->sha);
    int64_t now = now_s();
    std::string err = t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc);

    if (t->receipt) {
        if (it == jobs_.end())
            return;
        Job& j = it->second;
        if (rc == CURLE_OK && status == 204) {
            log_info("media " + t->sha.substr(0, 16) + ": receipt sent for " + printable(t->recipient, 64));
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
            drop(t->sha);
        else {
            j.attempts = 0;
            j.next_try = now;
            save(j);
        }
        return;
    }

    const std::string part = opt_.media_dir + "/" + t->sha + ".part";
    const std::string final_path = opt_.media_dir + "/" + t->sha;
    bool write_ok = !t->write_failed && fflush(t->out) == 0 && fsync(fileno(t->out)) == 0;
    fclose(t->out);
    if (it == jobs_.end())
        return;
    Job& j = it->second;
    if (t->overflow) {
        unlink(part.c_str());
        retry(j, "server sent more than the handle's size", now);
        return;
    }
    if (rc != CURLE_OK) {
        if (t->refused_address) {
            // Not a failure that time repairs: under this config it is never fetched.
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
        unlink(part.c_str());
        retry(j, "size mismatch: got " + std::to_string(t->have) + ", handle says " + std::to_string(j.handle.size), now);
        return;
    }
    if (t->hash->hex_digest() != j.handle.sha256) {
        unlink(part.c_str());
        retry(j, "SHA-256 mismatch", now);
        return;
    }
    if (rename(part.c_str(), final_path.c_str()) != 0) {
        retry(j, std::string("rename failed: ") + std::strerror(errno), now);
        return;
    }
    fsync_dir_of(final_path);
    log_info("media " + t->sha.substr(0, 16) + ": verified, " + std::to_string(j.handle.size) + " bytes");
    if (j.recipients.empty()) {
        drop(t->sha);
        return;
    }
    j.state = Job::State::receipt;
    j.attempts = 0;
    j.next_try = now;
    save(j);
}

MediaState Downloader::peek(const std::string& sha256, uint64_t size)
{
    if (!is_hex_digest(sha256))
        return MediaState::refused;
    uint64_t sz = 0;
    if (file_size(final_path(sha256), sz) && sz == size)
        return MediaState::ready;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(sha256);
    if (it == jobs_.end() || it->second.state == Job::State::refused)
        return MediaState::refused;
    const Job& j = it->second;
    if (active_.count(sha256) > 0 || (j.state == Job::State::download && j.next_try <= now_s()))
        return MediaState::pending;
    return MediaState::waiting;
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
                for (auto& [sha, t] : active_)
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
    for (auto& [sha, t] : active_) {
        curl_multi_remove_handle(m, t->easy);
        curl_easy_cleanup(t->easy);
        if (t->out) {
            fflush(t->out);
            fsync(fileno(t->out));
            fclose(t->out);
        }
        delete t;
    }
    active_.clear();
}

} // namespace mm
