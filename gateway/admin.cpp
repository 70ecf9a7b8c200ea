// admin.cpp - "mm-gateway list | show ID | revoke ID [--recipient ADDR] | gc | stats [--json]":
// the sender's view of the store (items, recipients, receipts, space). Reads
// store.dir, gateway.after_delivery, gateway.archive_dir through Store and Lifecycle.
#include "gateway/admin.h"

#include "gateway/http.h"
#include "store/index.h"
#include "store/lifecycle.h"
#include "gateway/page.h"
#include "store/store.h"
#include "store/uploads.h"

#include "core/address.h"
#include "core/log.h"
#include "core/util.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <iostream>

namespace mm {

namespace {

// Index text (names, notes) can hold anything a mail carried: escape control
// characters before they reach a terminal.
std::string cell(const std::string& s, size_t width)
{
    std::string p = printable(s, width > 3 ? width : 3);
    if (p.size() > width)
        p = p.substr(0, width - 1) + "~";
    return p;
}

std::string json_summary(const ItemSummary& s)
{
    return "{\"id\":" + json_quote(s.id) + ",\"state\":" + json_quote(s.state) + ",\"sha256\":" +
           json_quote(s.sha256) + ",\"size\":" + std::to_string(s.size) + ",\"type\":" + json_quote(s.type) +
           ",\"name\":" + json_quote(s.name) + ",\"title\":" + json_quote(s.title) + ",\"note\":" +
           json_quote(s.note) + ",\"date\":" + json_quote(s.date) + ",\"created\":" + json_quote(s.created) +
           ",\"expires\":" + json_quote(s.expires) + ",\"linked\":" + (s.linked ? "true" : "false") +
           ",\"recipients\":" + std::to_string(s.recipients) + ",\"receipts\":" + std::to_string(s.receipts) +
           ",\"message_id\":" + json_quote(s.message_id) + ",\"envelope_from\":" + json_quote(s.envelope_from) +
           ",\"queue_id\":" + json_quote(s.queue_id) + "}";
}

/// A fixed-width decimal field of `text` at `pos`, within [lo, hi].
bool field(std::string_view text, size_t pos, size_t len, int lo, int hi, int& out)
{
    if (pos + len > text.size())
        return false;
    for (size_t i = pos; i < pos + len; ++i)
        if (text[i] < '0' || text[i] > '9')
            return false;   // from_chars alone would take a sign
    auto r = std::from_chars(text.data() + pos, text.data() + pos + len, out);
    return r.ec == std::errc() && out >= lo && out <= hi;
}

int cmd_list(Lifecycle& life, bool json, const ItemFilter& filter)
{
    auto items = life.list(filter);
    if (json) {
        std::string out = "[";
        for (size_t i = 0; i < items.size(); ++i)
            out += (i ? ",\n " : "") + json_summary(items[i]);
        std::cout << out << "]\n";
        return 0;
    }
    std::printf("%-32s  %-8s  %10s  %-20s  %-9s  %-30s  %-40s  %s\n", "ID", "STATE", "SIZE", "EXPIRES", "RECEIPTS",
                "SENDER", "MESSAGE-ID", "NAME");
    for (const auto& s : items)
        std::printf("%-32s  %-8s  %10s  %-20s  %4llu/%-4llu  %-30s  %-40s  %s\n", s.id.c_str(), cell(s.state, 8).c_str(),
                    human_size(s.size).c_str(), cell(s.expires, 20).c_str(),
                    static_cast<unsigned long long>(s.receipts), static_cast<unsigned long long>(s.recipients),
                    cell(s.envelope_from.empty() ? "-" : s.envelope_from, 30).c_str(),
                    cell(s.message_id.empty() ? "-" : s.message_id, 40).c_str(), cell(s.name, 60).c_str());
    std::printf("%zu item%s\n", items.size(), items.size() == 1 ? "" : "s");
    return 0;
}

int cmd_show(Lifecycle& life, const std::string& id, bool json)
{
    ItemDetail d = life.show(id);
    if (json) {
        std::string out = json_summary(d.item);
        out.pop_back();
        out += ",\"recipient_status\":[";
        for (size_t i = 0; i < d.recipients.size(); ++i)
            out += std::string(i ? "," : "") + "{\"address\":" + json_quote(d.recipients[i].address) +
                   ",\"receipt\":" + (d.recipients[i].receipt.empty() ? "null" : json_quote(d.recipients[i].receipt)) +
                   ",\"revoked\":" + (d.recipients[i].revoked ? "true" : "false") + "}";
        std::cout << out << "]}\n";
        return 0;
    }
    const ItemSummary& s = d.item;
    auto line = [](const char* k, const std::string& v) { std::printf("%-11s %s\n", k, v.c_str()); };
    line("id:", s.id);
    line("state:", s.state + (s.linked ? " (linked file)" : ""));
    line("name:", printable(s.name, 200));
    line("type:", printable(s.type, 100));
    line("size:", std::to_string(s.size) + " (" + human_size(s.size) + ")");
    line("sha256:", s.sha256);
    if (!s.title.empty())
        line("title:", printable(s.title, 200));
    if (!s.note.empty())
        line("note:", printable(s.note, 400));
    if (!s.date.empty())
        line("date:", printable(s.date, 60));
    line("created:", s.created);
    line("expires:", s.expires);
    if (!s.message_id.empty())
        line("message-id:", printable(s.message_id, 400));
    if (!s.envelope_from.empty())
        line("sender:", printable(s.envelope_from, 320));
    if (!s.queue_id.empty())
        line("queue id:", printable(s.queue_id, 64));
    std::printf("recipients: %zu, receipts: %llu\n", d.recipients.size(), static_cast<unsigned long long>(s.receipts));
    for (const auto& r : d.recipients)
        std::printf("  %-40s %s%s\n", cell(r.address, 40).c_str(), r.receipt.empty() ? "-" : r.receipt.c_str(),
                    r.revoked ? " revoked" : "");
    return 0;
}

int cmd_gc(Lifecycle& life, bool json)
{
    GcReport r = life.gc();
    if (json) {
        std::printf("{\"expired_items\":%llu,\"delivered_items\":%llu,\"objects_removed\":%llu,\"bytes_freed\":%llu,"
                    "\"tmp_removed\":%llu}\n",
                    static_cast<unsigned long long>(r.expired_items), static_cast<unsigned long long>(r.delivered_items),
                    static_cast<unsigned long long>(r.objects_removed), static_cast<unsigned long long>(r.bytes_freed),
                    static_cast<unsigned long long>(r.tmp_removed));
        return 0;
    }
    std::printf("expired items removed:   %llu\ndelivered items done:    %llu\nmedia files removed:     %llu (%s)\n"
                "temp files removed:      %llu\n",
                static_cast<unsigned long long>(r.expired_items), static_cast<unsigned long long>(r.delivered_items),
                static_cast<unsigned long long>(r.objects_removed), human_size(r.bytes_freed).c_str(),
                static_cast<unsigned long long>(r.tmp_removed));
    return 0;
}

int cmd_stats(Lifecycle& life, bool json)
{
    StoreStats st = life.stats();
    if (json) {
        std::string by = "{";
        for (const auto& [state, n] : st.items_by_state)
            by += (by.size() > 1 ? "," : "") + json_quote(state) + ":" + std::to_string(n);
        by += "}";
        std::printf("{\"items\":%llu,\"items_by_state\":%s,\"receipts\":%llu,\"objects\":%llu,\"object_bytes\":%llu,"
                    "\"archived_files\":%llu}\n",
                    static_cast<unsigned long long>(st.items), by.c_str(), static_cast<unsigned long long>(st.receipts),
                    static_cast<unsigned long long>(st.objects), static_cast<unsigned long long>(st.object_bytes),
                    static_cast<unsigned long long>(st.archived_files));
        return 0;
    }
    std::printf("items:          %llu\n", static_cast<unsigned long long>(st.items));
    for (const auto& [state, n] : st.items_by_state)
        std::printf("  %-12s  %llu\n", cell(state, 12).c_str(), static_cast<unsigned long long>(n));
    std::printf("receipts:       %llu\nmedia files:    %llu (%s)\narchived files: %llu\n",
                static_cast<unsigned long long>(st.receipts), static_cast<unsigned long long>(st.objects),
                human_size(st.object_bytes).c_str(), static_cast<unsigned long long>(st.archived_files));
    return 0;
}

} // namespace

bool parse_since(std::string_view t, time_t& out)
{
    int y, mo, d, h = 0, mi = 0, se = 0, zh = 0, zm = 0;
    if (!field(t, 0, 4, 1970, 9999, y) || t.size() < 10 || t[4] != '-' || t[7] != '-' ||
        !field(t, 5, 2, 1, 12, mo) || !field(t, 8, 2, 1, 31, d))
        return false;
    size_t pos = 10;
    int sign = 0;
    if (pos < t.size()) {
        if ((t[pos] != 'T' && t[pos] != 't' && t[pos] != ' ') || !field(t, pos + 1, 2, 0, 23, h) ||
            pos + 3 >= t.size() || t[pos + 3] != ':' || !field(t, pos + 4, 2, 0, 59, mi))
            return false;
        pos += 6;
        if (pos < t.size() && t[pos] == ':') {
            if (!field(t, pos + 1, 2, 0, 60, se))
                return false;
            pos += 3;
        }
        if (pos < t.size()) {
            if (t[pos] == 'Z' || t[pos] == 'z') {
                ++pos;
            } else if (t[pos] == '+' || t[pos] == '-') {
                sign = t[pos] == '+' ? 1 : -1;
                if (!field(t, pos + 1, 2, 0, 23, zh) || pos + 3 >= t.size() || t[pos + 3] != ':' ||
                    !field(t, pos + 4, 2, 0, 59, zm))
                    return false;
                pos += 6;
            } else {
                return false;
            }
        }
        if (pos != t.size())
            return false;
    }
    static const int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > kDays[mo - 1] || (mo == 2 && d == 29 && !leap))
        return false;
    out = utc_time(y, mo, d, h, mi, se) - sign * (zh * 3600 + zm * 60);
    return true;
}

bool is_admin_command(const std::string& c)
{
    return c == "list" || c == "show" || c == "revoke" || c == "gc" || c == "stats" || c == "token";
}

namespace {

// token add USER | token list | token revoke USER: upload tokens (store/uploads.h).
int cmd_token(const Config& cfg, const std::vector<std::string>& args)
{
    std::string sub = args.size() > 1 ? args[1] : "";
    bool takes_user = sub == "add" || sub == "revoke";
    if (!(takes_user || sub == "list") || args.size() != (takes_user ? 3u : 2u)) {
        std::fprintf(stderr, "mm-gateway: token takes: add USER | list | revoke USER\n");
        return 64;
    }
    if (takes_user && !valid_upload_user(args[2])) {
        std::fprintf(stderr, "mm-gateway: token %s: '%s' is not a user name (1-64 letters, digits, . _ - @ +)\n",
                     sub.c_str(), printable(args[2], 80).c_str());
        return 64;
    }
    Store store(cfg);
    Uploads uploads(cfg, store);
    if (sub == "list") {
        for (const auto& [user, created] : uploads.tokens())
            std::printf("%s\t%s\n", user.c_str(), created.c_str());
        return 0;
    }
    if (sub == "revoke") {
        bool done = uploads.revoke_token(args[2]);
        std::printf(done ? "revoked\n" : "not revoked: %s has no token\n", args[2].c_str());
        return done ? 0 : 1;
    }
    // Printed once: only its hash is kept, so a lost token is replaced, never shown again.
    std::printf("%s\n", uploads.add_token(args[2]).c_str());
    return 0;
}

} // namespace

int run_admin(const Config& cfg, const std::vector<std::string>& args)
{
    const std::string& cmd = args.at(0);
    if (cmd == "token")
        return cmd_token(cfg, args);
    bool json = false;
    std::string recipient;   // revoke ID --recipient ADDR
    std::vector<std::string> pos;
    ItemFilter filter;
    for (size_t i = 1; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (cmd == "list" && (a == "--recipient" || a == "--since" || a == "--message-id")) {
            if (i + 1 >= args.size()) {
                std::fprintf(stderr, "mm-gateway: list: %s needs a value\n", a.c_str());
                return 64;
            }
            const std::string& v = args[++i];
            // A filter that cannot match is a typo to point at, not an empty list.
            if (a == "--recipient") {
                filter.recipient = normalize_address(v);
                if (filter.recipient.empty() || filter.recipient.find('@') == std::string::npos) {
                    std::fprintf(stderr, "mm-gateway: list: --recipient '%s' is not an e-mail address\n",
                                 printable(v, 80).c_str());
                    return 64;
                }
            } else if (a == "--since") {
                time_t t;
                if (!parse_since(v, t)) {
                    std::fprintf(stderr,
                                 "mm-gateway: list: --since '%s' is not a date: expected YYYY-MM-DD or ISO 8601 "
                                 "(YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM])\n",
                                 printable(v, 80).c_str());
                    return 64;
                }
                filter.since = rfc3339(t);
            } else {
                filter.message_id = v;
                if (v.empty() || v.size() > kMaxMessageIdBytes ||
                    std::any_of(v.begin(), v.end(), [](char c) { return static_cast<unsigned char>(c) < 0x21; })) {
                    std::fprintf(stderr, "mm-gateway: list: --message-id '%s' is not a Message-ID\n",
                                 printable(v, 80).c_str());
                    return 64;
                }
            }
        } else if (a == "--json")
            json = true;
        else if (cmd == "revoke" && args[i] == "--recipient" && i + 1 < args.size() && recipient.empty())
            recipient = args[++i];
        else if (!args[i].empty() && args[i][0] == '-') {
            std::fprintf(stderr, "mm-gateway: %s: unknown option %s\n", cmd.c_str(), printable(args[i], 40).c_str());
            return 64;   // EX_USAGE
        } else
            pos.push_back(args[i]);
    }
    size_t want = (cmd == "show" || cmd == "revoke") ? 1 : 0;
    if (pos.size() != want) {
        std::fprintf(stderr, "mm-gateway: %s takes %s\n", cmd.c_str(), want ? "one item ID" : "no arguments");
        return 64;
    }
    Store store(cfg);   // creates the index (and TLS identity) if this is the first program to run
    Lifecycle life(cfg);
    if (cmd == "list")
        return cmd_list(life, json, filter);
    if (cmd == "show")
        return cmd_show(life, pos[0], json);
    if (cmd == "gc")
        return cmd_gc(life, json);
    if (cmd == "stats")
        return cmd_stats(life, json);
    if (!recipient.empty()) {
        // One recipient's own token: the item and the other recipients stay.
        bool done = life.revoke_recipient(pos[0], recipient);
        if (json)
            std::printf("{\"revoked\":%s}\n", done ? "true" : "false");
        else
            std::printf(done ? "revoked for %s\n" : "not revoked: %s was already revoked\n",
                        printable(recipient, 80).c_str());
        return done ? 0 : 1;
    }
    bool done = life.revoke(pos[0]);
    if (json)
        std::printf("{\"revoked\":%s}\n", done ? "true" : "false");
    else
        std::printf(done ? "revoked\n" : "not revoked: the item is not active\n");
    return done ? 0 : 1;
}

} // namespace mm
