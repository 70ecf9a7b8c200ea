// admin.cpp - "mm-gateway list | show ID | revoke ID [--recipient ADDR] | gc | stats [--json]":
// the sender's view of the store (items, recipients, receipts, space). Reads
// store.dir, gateway.after_delivery, gateway.archive_dir through Store and Lifecycle.
#include "gateway/admin.h"

#include "gateway/http.h"
#include "store/lifecycle.h"
#include "gateway/page.h"
#include "store/store.h"

#include "core/log.h"

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
           ",\"recipients\":" + std::to_string(s.recipients) + ",\"receipts\":" + std::to_string(s.receipts) + "}";
}

int cmd_list(Lifecycle& life, bool json)
{
    auto items = life.list();
    if (json) {
        std::string out = "[";
        for (size_t i = 0; i < items.size(); ++i)
            out += (i ? ",\n " : "") + json_summary(items[i]);
        std::cout << out << "]\n";
        return 0;
    }
    std::printf("%-32s  %-8s  %10s  %-20s  %-9s  %s\n", "ID", "STATE", "SIZE", "EXPIRES", "RECEIPTS", "NAME");
    for (const auto& s : items)
        std::printf("%-32s  %-8s  %10s  %-20s  %4llu/%-4llu  %s\n", s.id.c_str(), cell(s.state, 8).c_str(),
                    human_size(s.size).c_str(), cell(s.expires, 20).c_str(),
                    static_cast<unsigned long long>(s.receipts), static_cast<unsigned long long>(s.recipients),
                    cell(s.name, 60).c_str());
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

bool is_admin_command(const std::string& c)
{
    return c == "list" || c == "show" || c == "revoke" || c == "gc" || c == "stats";
}

int run_admin(const Config& cfg, const std::vector<std::string>& args)
{
    const std::string& cmd = args.at(0);
    bool json = false;
    std::string recipient;   // revoke ID --recipient ADDR
    std::vector<std::string> pos;
    for (size_t i = 1; i < args.size(); ++i) {
        if (args[i] == "--json")
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
        return cmd_list(life, json);
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
