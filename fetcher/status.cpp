// status.cpp - mm-fetcher's status: held mails, counters, page, text, metrics (see status.h).
#include "fetcher/status.h"

#include "core/log.h"
#include "core/text.h"

#include <algorithm>
#include <ctime>
#include <sys/stat.h>

namespace mm {

namespace {

constexpr size_t kMaxHeldShown = 500;   // a page never grows without bound

bool exists(const std::string& path)
{
    struct stat st;
    return stat(path.c_str(), &st) == 0;
}

unsigned percent(const MediaProgress& p)
{
    if (p.done || p.size == 0)
        return 100;
    uint64_t have = std::min(p.have, p.size);
    return static_cast<unsigned>(have * 100 / p.size);
}

std::string utc(int64_t t)
{
    char buf[32];
    time_t tt = static_cast<time_t>(t);
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
    return buf;
}

} // namespace

void FetcherStatus::held(HeldMail m)
{
    std::lock_guard<std::mutex> lock(mu_);
    auto it = held_.find(m.key);
    if (it != held_.end())
        m.since_unix = it->second.since_unix;
    else if (m.since_unix == 0)
        m.since_unix = static_cast<int64_t>(time(nullptr));
    held_[m.key] = std::move(m);
}

void FetcherStatus::released(const std::string& key)
{
    std::lock_guard<std::mutex> lock(mu_);
    held_.erase(key);
}

std::vector<HeldMail> FetcherStatus::held_mails()
{
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<HeldMail> out;
    for (auto it = held_.begin(); it != held_.end();) {
        // The raw copy goes when the mail is shown (its presented file made) or
        // gone upstream: either way it is not held any more.
        if (!exists(it->second.raw_path)) {
            it = held_.erase(it);
            continue;
        }
        out.push_back(it->second);
        ++it;
    }
    std::sort(out.begin(), out.end(), [](const HeldMail& a, const HeldMail& b) {
        return a.since_unix != b.since_unix ? a.since_unix < b.since_unix : a.key < b.key;
    });
    if (out.size() > kMaxHeldShown)
        out.resize(kMaxHeldShown);
    return out;
}

std::string FetcherStatus::message_id_of(const std::string& sha256)
{
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, m] : held_)
        for (const auto& media : m.media)
            if (media.sha256 == sha256)
                return m.message_id;
    return "";
}

FetcherStatus& fetcher_status()
{
    static FetcherStatus s;
    return s;
}

std::string item_id_of_url(const std::string& url)
{
    size_t at = url.find("/m/");
    if (at == std::string::npos || url.size() < at + 3 + 32)
        return "";
    std::string id = url.substr(at + 3, 32);
    if (!std::all_of(id.begin(), id.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }))
        return "";
    if (url.size() > at + 35 && url[at + 35] != '/')
        return "";
    return id;
}

std::string media_trace(const std::string& sha256, const std::string& url, const std::string& known_message_id)
{
    std::string out = kv("hash", sha256.substr(0, 12));
    std::string item = item_id_of_url(url);
    if (!item.empty())
        out += kv("item", item);
    std::string mid = fetcher_status().message_id_of(sha256);
    if (mid.empty())
        mid = known_message_id;
    if (!mid.empty())
        out += kv("message_id", mid);
    return out;
}

MediaProgress media_progress(const std::string& media_dir, const HeldMedia& media)
{
    MediaProgress p;
    p.size = media.size;
    struct stat st;
    if (stat((media_dir + "/" + media.sha256).c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) == media.size) {
        p.have = media.size;
        p.done = true;
    } else if (stat((media_dir + "/" + media.sha256 + ".part").c_str(), &st) == 0) {
        p.have = static_cast<uint64_t>(st.st_size);
    }
    return p;
}

std::string render_status_html(const std::vector<HeldView>& held, int refresh_s)
{
    std::string h =
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        "<meta http-equiv=\"refresh\" content=\"" +
        std::to_string(refresh_s) +
        "\">\n<title>MediaMail: mail waiting for its media</title>\n"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{padding:.3em .8em;text-align:left;border-bottom:1px solid #ddd}progress{width:12em}</style>\n"
        "</head><body>\n<h1>Mail waiting for its media</h1>\n";
    if (held.empty()) {
        h += "<p id=\"none\">No mail is waiting: everything fetched has been delivered to your mail program.</p>\n";
    } else {
        h += "<p>" + std::to_string(held.size()) +
             " mail(s) held back until their media are downloaded and verified. This page refreshes every " +
             std::to_string(refresh_s) +
             " seconds.</p>\n<table id=\"held\">\n<tr><th>From</th><th>Subject</th><th>Media</th><th>Size</th>"
             "<th>Progress</th><th>Waiting since</th></tr>\n";
        for (const auto& v : held) {
            for (size_t i = 0; i < v.mail.media.size(); ++i) {
                const HeldMedia& m = v.mail.media[i];
                const MediaProgress& p = v.progress[i];
                unsigned pc = percent(p);
                h += "<tr class=\"mail\"><td class=\"from\">" + html_escape(v.mail.sender) + "</td><td class=\"subject\">" +
                     html_escape(v.mail.subject) + "</td><td class=\"name\">" + html_escape(m.name) + "</td><td>" +
                     html_escape(human_size(m.size)) + "</td><td><progress max=\"100\" value=\"" + std::to_string(pc) +
                     "\">" + std::to_string(pc) + "%</progress> <span class=\"percent\">" + std::to_string(pc) +
                     "%</span> (" + html_escape(human_size(std::min(p.have, p.size))) + ")</td><td>" +
                     html_escape(utc(v.mail.since_unix)) + "</td></tr>\n";
            }
        }
        h += "</table>\n";
    }
    h += "</body></html>\n";
    return h;
}

std::string render_status_text(const std::vector<HeldView>& held)
{
    if (held.empty())
        return "no mail held back: every mail fetched is ready\n";
    std::string out = std::to_string(held.size()) + " mail(s) held back until their media are verified:\n";
    for (const auto& v : held) {
        out += "\nfrom:    " + printable(v.mail.sender, 200) + "\nsubject: " + printable(v.mail.subject, 200) +
               "\nwaiting since " + utc(v.mail.since_unix) + "\n";
        for (size_t i = 0; i < v.mail.media.size(); ++i) {
            const HeldMedia& m = v.mail.media[i];
            const MediaProgress& p = v.progress[i];
            unsigned pc = percent(p);
            std::string bar(20, '.');
            std::fill(bar.begin(), bar.begin() + pc / 5, '#');
            out += "  " + printable(m.name, 80) + "  " + human_size(m.size) + "  [" + bar + "] " +
                   std::to_string(pc) + "%" + (p.done ? " (verified)" : "") + "\n";
        }
    }
    return out;
}

std::string render_fetcher_metrics(const FetcherStatus& s, size_t held)
{
    int64_t active = s.downloads_active.load();
    return render_prometheus({
        {"mm_fetcher_mails_held", "Mails held back until their media are verified.", "gauge", {{"", held}}},
        {"mm_fetcher_downloads_active", "Media downloads running now.", "gauge",
         {{"", static_cast<uint64_t>(active < 0 ? 0 : active)}}},
        {"mm_fetcher_downloaded_bytes_total", "Media bytes received since start.", "counter",
         {{"", s.bytes_downloaded.load()}}},
        {"mm_fetcher_downloads_verified_total", "Media files downloaded and verified since start.", "counter",
         {{"", s.downloads_verified.load()}}},
        {"mm_fetcher_verify_failures_total", "Downloads whose size or SHA-256 did not match the handle.", "counter",
         {{"", s.verify_failures.load()}}},
        {"mm_fetcher_download_failures_total", "Downloads that failed (network, HTTP, refused address).", "counter",
         {{"", s.download_failures.load()}}},
        {"mm_fetcher_receipts_sent_total", "Receipts the sender's gateway accepted.", "counter",
         {{"", s.receipts_sent.load()}}},
        {"mm_fetcher_mails_put_back_total", "Mails whose media were put back since start.", "counter",
         {{"", s.mails_put_back.load()}}},
    });
}

StatusReply fetcher_status_reply(const std::string& path, FetcherStatus& s, const std::string& media_dir)
{
    StatusReply r;
    if (path == "/healthz") {
        bool ok = s.listening.load();
        r.status = ok ? 200 : 503;
        r.body = ok ? "ok\n" : "the POP3 listener is not running\n";
        return r;
    }
    std::vector<HeldView> views;
    for (auto& m : s.held_mails()) {
        HeldView v;
        for (const auto& media : m.media)
            v.progress.push_back(media_progress(media_dir, media));
        v.mail = std::move(m);
        views.push_back(std::move(v));
    }
    if (path == "/metrics") {
        r.content_type = "text/plain; version=0.0.4; charset=utf-8";
        r.body = render_fetcher_metrics(s, views.size());
    } else if (path == "/" || path == "/index.html") {
        r.content_type = "text/html; charset=utf-8";
        r.body = render_status_html(views, 5);
    } else if (path == "/status.txt") {
        r.body = render_status_text(views);
    } else {
        r.status = 404;
        r.body = "not found: /, /status.txt, /healthz or /metrics\n";
    }
    return r;
}

} // namespace mm
