// lifecycle.cpp - receipts, after-delivery policy (keep | delete | archive),
// revocation and the expiry collector over the store's SQLite index.
// Reads store.dir, gateway.after_delivery, gateway.archive_dir.
//
// Every change that can remove a media file runs inside BEGIN IMMEDIATE, the
// same write lock under which Store registers new items, so an object is never
// removed while another process is recording an item that needs it.
#include "store/lifecycle.h"

#include "store/index.h"
#include "store/layout.h"
#include "core/address.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/util.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

namespace mm {

namespace {

constexpr time_t kOrphanAge = 3600;            // an unregistered object younger than this may be mid-commit
constexpr time_t kTmpAge = 24 * 3600;          // a writer's temp file older than this is abandoned

bool is_hex_prefix(const std::string& s)
{
    if (s.size() < 6 || s.size() > 32)
        return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    return true;
}

} // namespace


struct Lifecycle::Impl {
    std::string dir, policy, archive_dir;
    std::unique_ptr<Index> index;   // opened once the configuration is known good

    // Within a write transaction: removes the object unless an item still needs it.
    void drop_object_if_unneeded(const std::string& sha, GcReport* report)
    {
        std::optional<uint64_t> freed = layout::drop_object_if_unneeded(*index, dir, sha);
        if (freed && report) {
            report->objects_removed++;
            report->bytes_freed += *freed;
        }
    }

    // Copies (or hard-links) the object into archive_dir/<sha256>, durably,
    // before anything is removed.
    void archive_object(const std::string& sha)
    {
        std::string src = layout::object_path(dir, sha), dst = archive_dir + "/" + sha;
        struct stat st;
        if (stat(dst.c_str(), &st) == 0)
            return;   // already archived (the same media, delivered before)
        if (mkdir(archive_dir.c_str(), 0750) != 0 && errno != EEXIST)
            throw StoreError("cannot create archive_dir " + archive_dir + ": " + std::strerror(errno));
        if (link(src.c_str(), dst.c_str()) == 0) {
            if (!fsync_dir_of(dst))
                throw StoreError("cannot fsync " + archive_dir + ": " + std::strerror(errno));
            return;
        }
        if (errno != EXDEV && errno != EPERM)
            throw StoreError("cannot archive " + src + " to " + dst + ": " + std::strerror(errno));
        // Another file system: copy to a temp name, fsync, rename.
        std::string tmp = dst + ".tmp-" + random_hex(8);
        int in = open(src.c_str(), O_RDONLY | O_CLOEXEC);
        if (in < 0)
            throw StoreError("cannot open " + src + ": " + std::strerror(errno));
        int out = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        if (out < 0) {
            int e = errno;
            close(in);
            throw StoreError("cannot create " + tmp + ": " + std::strerror(e));
        }
        std::string buf(256 * 1024, '\0');
        bool ok = true;
        for (;;) {
            ssize_t n = read(in, buf.data(), buf.size());
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                ok = n == 0;
                break;
            }
            for (ssize_t done = 0; done < n && ok;) {
                ssize_t w = write(out, buf.data() + done, static_cast<size_t>(n - done));
                if (w < 0 && errno == EINTR)
                    continue;
                ok = w > 0;
                done += w > 0 ? w : 0;
            }
            if (!ok)
                break;
        }
        int e = errno;
        close(in);
        ok = ok && fsync(out) == 0;
        ok = close(out) == 0 && ok;
        if (!ok || rename(tmp.c_str(), dst.c_str()) != 0 || !fsync_dir_of(dst)) {
            unlink(tmp.c_str());
            throw StoreError("cannot copy " + src + " to " + dst + ": " + std::strerror(e ? e : errno));
        }
    }

    // Within a write transaction: the after-delivery policy for one item whose
    // every recipient has a receipt. Returns true if the item changed state.
    bool finish(const std::string& id, const std::string& sha, bool linked, GcReport* report)
    {
        if (policy == "keep")
            return false;
        if (policy == "archive" && !linked)
            archive_object(sha);
        // A linked item is the sender's own file: never archived or removed, only retired.
        index->retire_item(id, policy == "archive" ? "archived" : "deleted");
        if (!linked)
            drop_object_if_unneeded(sha, report);
        return true;
    }

    // The item's envelope recipients, normalized as receipts are (the index
    // keeps them as the sending program gave them).
    std::set<std::string> recipients_of(const std::string& id)
    {
        std::set<std::string> out;
        for (const auto& r : index->recipients(id)) {
            std::string a = normalize_address(r);
            if (!a.empty())
                out.insert(a);
        }
        return out;
    }

    // Within a write transaction: is every recipient of the item covered by a
    // receipt? A revoked recipient is no longer waited for: it cannot fetch.
    bool all_received(const std::string& id)
    {
        std::set<std::string> want = recipients_of(id);
        for (const auto& r : index->revoked_recipients(id))
            want.erase(normalize_address(r));
        std::map<std::string, std::string> got = index->receipts(id);
        if (want.empty())
            return false;   // nobody to confirm: only expiry ends such an item
        for (const auto& a : want)
            if (!got.count(a))
                return false;
        return true;
    }

    std::string resolve(const std::string& id_or_prefix)
    {
        if (!is_hex_prefix(id_or_prefix))
            throw StoreError("not an item id (6 to 32 lowercase hex digits): " + printable(id_or_prefix, 40));
        std::vector<std::string> ids = index->ids_with_prefix(id_or_prefix, 2);
        if (ids.empty())
            throw StoreError("no item " + id_or_prefix);
        if (ids.size() > 1)
            throw StoreError("more than one item starts with " + id_or_prefix);
        return ids[0];
    }

};

Lifecycle::Lifecycle(const Config& cfg) : impl_(std::make_unique<Impl>())
{
    Impl& s = *impl_;
    s.dir = layout::store_dir(cfg);
    s.policy = cfg.str("gateway.after_delivery");
    s.archive_dir = cfg.str("gateway.archive_dir");
    while (s.archive_dir.size() > 1 && s.archive_dir.back() == '/')
        s.archive_dir.pop_back();
    if (s.policy == "archive" &&
        (s.archive_dir == s.dir || s.archive_dir.rfind(layout::objects_dir(s.dir), 0) == 0))
        throw ConfigError("gateway.archive_dir = '" + s.archive_dir + "' must not be store.dir or inside its objects/");
    s.index = std::make_unique<Index>(layout::index_path(s.dir), Index::Open::existing);
}

Lifecycle::~Lifecycle() = default;

// Whose receipt this is comes from the token, never from the body: a
// recipient's own token (Item::recipient) makes a receipt for that address
// only, and a receipt naming anyone else is refused like an unknown item, so
// nobody can confirm for another recipient (with after_delivery = delete, end
// the item before the others have it). The item token is shared by every copy
// of a mail that could not be split per recipient (the milter path): its
// receipts are answered the same way whatever address they name, recipient or
// not, and count for nobody, so they neither reveal the recipients (Bcc) nor
// end the item.
bool Lifecycle::receipt(const Item& item, const std::string& recipient, const std::string& sha256)
{
    Impl& s = *impl_;
    std::string addr = normalize_address(recipient);
    // The digest is public (it is in the mail); comparing in constant time anyway
    // keeps every refusal path the same shape.
    bool digest_ok = equal_ct(sha256, item.sha256);
    if (addr.empty() || !digest_ok)
        return false;
    if (item.recipient.empty())
        return true;   // the item token: the uniform answer, nothing recorded
    if (addr != item.recipient)
        return false;
    return s.index->write([&] {
        s.index->add_receipt(item.id, addr, rfc3339(time(nullptr)));
        if (s.all_received(item.id)) {
            try {
                if (s.finish(item.id, item.sha256, !item.link_path.empty(), nullptr))
                    log_info("item " + item.id.substr(0, 8) + ": every recipient has it, " + s.policy + "d");
            } catch (const StoreError& e) {
                // The receipt stands; the collector retries the policy later.
                log_error("item " + item.id.substr(0, 8) + ": after-delivery " + s.policy + " failed: " + e.what());
            }
        }
        return true;
    });
}

bool Lifecycle::revoke_recipient(const std::string& id_or_prefix, const std::string& recipient)
{
    Impl& s = *impl_;
    std::string addr = normalize_address(recipient);
    if (addr.empty())
        throw StoreError("not an address: " + printable(recipient, 80));
    return s.index->write([&] {
        std::string id = s.resolve(id_or_prefix);
        bool found = false, done = false;
        for (const auto& stored : s.index->recipients(id))
            if (normalize_address(stored) == addr) {
                found = true;
                done = s.index->revoke_recipient(id, stored) || done;
            }
        if (!found)
            throw StoreError("item " + id.substr(0, 8) + " has no recipient " + printable(recipient, 80));
        return done;
    });
}

bool Lifecycle::revoke(const std::string& id_or_prefix)
{
    Impl& s = *impl_;
    return s.index->write([&] { return s.index->retire_item(s.resolve(id_or_prefix), "revoked"); });
}

GcReport Lifecycle::gc()
{
    Impl& s = *impl_;
    GcReport report;
    s.index->write([&] {
        // 1. Finished items whose policy has not run yet (e.g. archive_dir was full).
        for (const ItemRef& it : s.index->active_items()) {
            if (!s.all_received(it.id))
                continue;
            try {
                if (s.finish(it.id, it.sha256, it.linked, &report))
                    report.delivered_items++;
            } catch (const StoreError& e) {
                log_error("item " + it.id.substr(0, 8) + ": after-delivery " + s.policy + " failed: " + e.what());
            }
        }

        // 2. Expired items, whatever their state: rows go (recipients and
        // receipts cascade), and their objects if nothing else needs them;
        // so does the media of items no longer active (revoked, delivered).
        std::set<std::string> touched = s.index->retired_digests();
        for (const ItemRef& it : s.index->expired_items(static_cast<int64_t>(time(nullptr)))) {
            s.index->delete_item(it.id);
            touched.insert(it.sha256);
            report.expired_items++;
        }
        for (const auto& sha : touched)
            s.drop_object_if_unneeded(sha, &report);

        // 3. Objects without any row (a commit that failed after placing its
        // file), once old enough that no commit can still be under way.
        std::set<std::string> known = s.index->all_digests();
        time_t now = time(nullptr);
        std::string objects = layout::objects_dir(s.dir);
        if (DIR* top = opendir(objects.c_str())) {
            while (dirent* d = readdir(top)) {
                std::string sub = d->d_name;
                if (sub.size() != 2)
                    continue;
                std::string subdir = objects + "/" + sub;
                DIR* inner = opendir(subdir.c_str());
                if (!inner)
                    continue;
                while (dirent* e = readdir(inner)) {
                    std::string name = e->d_name;
                    if (!is_hex_digest(name) || name.compare(0, 2, sub) != 0 || known.count(name))
                        continue;
                    std::string path = subdir + "/" + name;
                    struct stat st;
                    if (lstat(path.c_str(), &st) == 0 && now - st.st_mtime > kOrphanAge && unlink(path.c_str()) == 0) {
                        report.objects_removed++;
                        report.bytes_freed += static_cast<uint64_t>(st.st_size);
                    }
                }
                closedir(inner);
            }
            closedir(top);
        }
    });

    // 4. Temp files of writers that died (outside the transaction: no row refers to them).
    std::string tmp = layout::tmp_dir(s.dir);
    if (DIR* d = opendir(tmp.c_str())) {
        time_t now = time(nullptr);
        while (dirent* e = readdir(d)) {
            std::string name = e->d_name;
            if (name == "." || name == "..")
                continue;
            std::string path = tmp + "/" + name;
            struct stat st;
            if (lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && now - st.st_mtime > kTmpAge &&
                unlink(path.c_str()) == 0)
                report.tmp_removed++;
        }
        closedir(d);
    }
    return report;
}

std::vector<ItemSummary> Lifecycle::list() { return impl_->index->summaries(); }
std::vector<ItemSummary> Lifecycle::list(const ItemFilter& filter) { return impl_->index->summaries(filter); }

ItemDetail Lifecycle::show(const std::string& id_or_prefix)
{
    Impl& s = *impl_;
    std::string id = s.resolve(id_or_prefix);
    std::optional<ItemSummary> sum = s.index->summary(id);
    if (!sum)
        throw StoreError("no item " + id);
    ItemDetail d;
    d.item = std::move(*sum);
    std::map<std::string, std::string> got = s.index->receipts(id);
    std::set<std::string> revoked = s.index->revoked_recipients(id);
    for (const auto& address : s.index->recipients(id)) {
        auto it = got.find(normalize_address(address));
        d.recipients.push_back(
            RecipientStatus{address, it == got.end() ? "" : it->second, revoked.count(address) > 0});
    }
    return d;
}

bool Lifecycle::readable(std::string& why)
{
    try {
        impl_->index->version();
    } catch (const std::exception& e) {
        why = std::string("index: ") + e.what();
        return false;
    }
    const std::string objects = layout::objects_dir(impl_->dir);
    if (access(objects.c_str(), R_OK | X_OK) != 0) {
        why = objects + ": " + std::strerror(errno);
        return false;
    }
    return true;
}

StoreStats Lifecycle::stats()
{
    Impl& s = *impl_;
    StoreStats st;
    st.items_by_state = s.index->items_by_state();
    for (const auto& [state, n] : st.items_by_state)
        st.items += n;
    st.receipts = s.index->receipt_count();
    auto walk = [](const std::string& dir, uint64_t& files, uint64_t* bytes, bool nested) {
        DIR* d = opendir(dir.c_str());
        if (!d)
            return;
        while (dirent* e = readdir(d)) {
            std::string name = e->d_name;
            if (name == "." || name == "..")
                continue;
            std::string path = dir + "/" + name;
            struct stat sb;
            if (lstat(path.c_str(), &sb) != 0)
                continue;
            if (nested && S_ISDIR(sb.st_mode)) {
                if (DIR* in = opendir(path.c_str())) {
                    while (dirent* f = readdir(in)) {
                        struct stat fb;
                        if (is_hex_digest(f->d_name) && lstat((path + "/" + f->d_name).c_str(), &fb) == 0) {
                            files++;
                            if (bytes)
                                *bytes += static_cast<uint64_t>(fb.st_size);
                        }
                    }
                    closedir(in);
                }
            } else if (!nested && is_hex_digest(name)) {
                files++;
            }
        }
        closedir(d);
    };
    walk(layout::objects_dir(s.dir), st.objects, &st.object_bytes, true);
    walk(s.archive_dir, st.archived_files, nullptr, false);
    return st;
}

} // namespace mm
