// index.h - the media store's SQLite index (store.dir/index.sqlite): the one owner
// of the connection, the whole schema (items, recipients, receipts), its versioned
// migrations (PRAGMA user_version) and every query Store and Lifecycle make. No SQL
// lives outside index.cpp. Shared by mm-milter, mm-gateway and mmsend at once.
#pragma once

#include "store/lifecycle.h"
#include "store/quota.h"

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

struct sqlite3;

namespace mm {

/// An item's row: what the gateway serves plus what only the index needs.
struct ItemRecord {
    Item item;
    std::string token_sha256;   // the token itself is never stored
    int64_t expires_unix = 0;
};

/// A recipient found by its own token (schema version 4).
struct RecipientToken {
    std::string address;   // as the sending program gave it
    bool revoked = false;
};

/// An item by id and media, as the lifecycle walks them.
struct ItemRef {
    std::string id, sha256;
    bool linked = false;   // served from the sender's own file, not from objects/
};

/// An upload still open (schema version 8): what its POST declared.
struct UploadRow {
    std::string id, user;
    uint64_t size = 0;
    std::string sha256;   // declared by the client, "" if it did not
    ItemMeta meta;        // type, name, descriptive fields, envelope recipients
    int64_t created_unix = 0, expires_unix = 0;
};

/// `mm-gateway list`'s filters; empty fields filter nothing.
struct ItemFilter {
    std::string recipient;    // an envelope recipient, compared normalized (address.h)
    std::string since;        // RFC 3339 (rfc3339()): items created at or after it
    std::string message_id;   // the Message-ID, with or without its angle brackets
};

/// What set_item_trace keeps of each value: control bytes (and DEL) dropped,
/// spaces and tabs trimmed at both ends, cut at `max` bytes.
std::string sanitize_trace(std::string_view value, size_t max);
constexpr size_t kMaxMessageIdBytes = 998;   // RFC 5322 2.1.1: a line's limit
constexpr size_t kMaxSenderBytes = 320;      // 64 local part + @ + 255 domain
constexpr size_t kMaxQueueIdBytes = 64;

class Index {
public:
    /// The schema this program writes. 1: items and recipients; 2: items'
    /// link_path, link_size, link_mtime_ns (mmsend --link); 3: receipts;
    /// 4: recipients' token_sha256 (each one's own token) and revoked flag;
    /// 5: items' sender and created_unix, and reservations (store quotas,
    /// quota.h); 6: version 4 again, for stores made while step 4 was an empty
    /// placeholder (index.cpp, add_recipient_tokens); 7: items' message_id,
    /// envelope_from and queue_id (tracing one mail); 8: upload_tokens and
    /// uploads (mm-gateway's upload API, store/uploads.h).
    static constexpr int kVersion = 8;

    enum class Open {
        create,     // make the file if it is missing (Store: the first program to run)
        existing,   // the file must exist (Lifecycle: Store made it)
    };

    /// Opens the index at path and brings its schema to kVersion, creating it
    /// when the file is new. Throws StoreError naming the path: cannot open,
    /// or a schema newer than kVersion (a newer MediaMail wrote it; an older
    /// one must not guess at it).
    Index(const std::string& path, Open how);
    ~Index();
    Index(const Index&) = delete;
    Index& operator=(const Index&) = delete;

    /// Runs body inside BEGIN IMMEDIATE, the write lock every process takes
    /// before changing the index, and commits when body returns; rolls back
    /// and rethrows when it throws. Holds this connection's mutex throughout,
    /// so the gateway's threads take turns. Not nested.
    template <class F>
    auto write(F&& body)
    {
        std::lock_guard<std::recursive_mutex> lock(mu_);
        begin();
        try {
            if constexpr (std::is_void_v<decltype(body())>) {
                body();
                commit();
            } else {
                auto r = body();
                commit();
                return r;
            }
        } catch (...) {
            rollback();
            throw;
        }
    }

    /// PRAGMA user_version: kVersion once opened.
    int version();

    // ---- items (the write methods belong inside write()) ----

    /// Records an item and its envelope recipients (as given; duplicates ignored),
    /// recipients[i] with the SHA-256 of its own token token_sha256s[i] (none
    /// when the list is shorter).
    void insert_item(const ItemRecord& rec, const std::vector<std::string>& recipients,
                     const std::vector<std::string>& token_sha256s = {});
    std::optional<ItemRecord> find_item(const std::string& id);
    /// Deletes the row; its recipients and receipts go with it. False if none.
    bool delete_item(const std::string& id);
    /// Moves an active item to `state` (revoked, deleted, archived). False when
    /// it was not active: every other state is final.
    bool retire_item(const std::string& id, const std::string& state);
    /// Up to `limit` ids that start with `prefix`.
    std::vector<std::string> ids_with_prefix(const std::string& prefix, size_t limit);
    std::vector<ItemRef> active_items();
    /// Items whose expiry (unix time) is at or before now, in any state.
    std::vector<ItemRef> expired_items(int64_t now);
    /// The media digests of items that are no longer active.
    std::set<std::string> retired_digests();
    /// Every digest any row names, in any state.
    std::set<std::string> all_digests();

    /// Whether the object (objects/ab/<sha256>) is still needed: true when an
    /// active item that is not linked names it. The one rule for every removal
    /// (layout::drop_object_if_unneeded); see index.cpp for why it is this one.
    bool object_needed(const std::string& sha256);

    // ---- recipients and receipts ----

    /// The item's envelope recipients as the sending program gave them, sorted.
    std::vector<std::string> recipients(const std::string& id);
    /// The recipient of item `id` whose token has this SHA-256 (never one without a token).
    std::optional<RecipientToken> find_recipient_token(const std::string& id, const std::string& token_sha256);
    /// Marks one recipient row (address as stored) revoked. False if none or already.
    bool revoke_recipient(const std::string& id, const std::string& address);
    /// The item's revoked recipients, addresses as stored.
    std::set<std::string> revoked_recipients(const std::string& id);
    /// Receipts by normalized address: address -> RFC 3339 time received.
    std::map<std::string, std::string> receipts(const std::string& id);
    /// Records a receipt; a repeated one is a no-op.
    void add_receipt(const std::string& id, const std::string& address, const std::string& received);

    // ---- quota accounting (version 5; the write methods belong inside write()) ----

    /// Who stored the item (quota.h: SASL login or envelope sender) and when
    /// (unix time), and the writer's reservation gone, in the item's transaction.
    void set_item_sender(const std::string& id, const std::string& sender, int64_t created_unix,
                         const std::string& reservation);
    /// Usage as quota_refusal() needs it, leaving out the reservation `except`
    /// (the writer asking); fs_free is the caller's. Items count from `since`.
    QuotaUsage quota_usage(const std::string& sender, int64_t since, const std::string& except);
    /// Records (or replaces) a writer's reservation of `bytes` in all, `written` of them on disk.
    void reserve(const std::string& id, const std::string& sender, uint64_t bytes, uint64_t written, int64_t pid,
                 int64_t now);
    void release(const std::string& id);
    /// Drops reservations left by processes that are gone (no such pid) or not
    /// renewed since `before`. Returns how many.
    int drop_stale_reservations(int64_t before);
    /// The item's sender as recorded ("" for items from before version 5).
    std::string item_sender(const std::string& id);

    // ---- tracing (version 6) ----

    /// Records which mail the item went out in. The values come from the mail
    /// (hostile): control bytes are dropped and each is cut (sanitize_trace).
    void set_item_trace(const std::string& id, const ItemTrace& trace);

    // ---- uploads (version 8; the write methods belong inside write()) ----

    /// Sets (or replaces) `user`'s upload token, by its SHA-256.
    void set_upload_token(const std::string& user, const std::string& token_sha256, const std::string& created);
    bool delete_upload_token(const std::string& user);
    /// Every user with a token and when it was made, by user.
    std::vector<std::pair<std::string, std::string>> upload_tokens();
    /// The user whose token has this SHA-256.
    std::optional<std::string> upload_token_user(const std::string& token_sha256);
    void insert_upload(const UploadRow& row);
    std::optional<UploadRow> find_upload(const std::string& id);
    /// The user's newest open upload of this declared SHA-256 and size.
    std::optional<UploadRow> find_upload_by_key(const std::string& user, const std::string& sha256, uint64_t size);
    uint64_t upload_count(const std::string& user);
    bool delete_upload(const std::string& id);
    /// Open uploads whose expiry (unix time) is at or before now.
    std::vector<std::string> expired_uploads(int64_t now);
    std::vector<std::string> upload_ids();

    // ---- admin views ----

    /// Every item, oldest first, with its recipient and receipt counts.
    std::vector<ItemSummary> summaries();
    /// The items `filter` lets through (its fields combine), oldest first.
    std::vector<ItemSummary> summaries(const ItemFilter& filter);
    std::optional<ItemSummary> summary(const std::string& id);
    std::map<std::string, uint64_t> items_by_state();
    uint64_t receipt_count();

private:
    void begin();
    void commit();
    void rollback();
    void migrate();

    std::string path_;
    sqlite3* db_ = nullptr;
    std::recursive_mutex mu_;   // one connection, shared by the gateway's threads
};

} // namespace mm
