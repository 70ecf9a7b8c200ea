// lifecycle.h - what happens to stored items after they are sent: receipts from
// receivers (docs/gateway-api.md), the after-delivery policy, revocation, the
// expiry collector, and the admin queries behind "mm-gateway list|show|stats".
// Reads store.dir, gateway.after_delivery, gateway.archive_dir.
#pragma once

#include "store/store.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mm {

struct ItemSummary {
    std::string id, sha256, type, name, title, note, date, created, expires, state;
    uint64_t size = 0;
    int64_t expires_unix = 0;
    bool linked = false;         // served from the sender's own file (mmsend --link)
    uint64_t recipients = 0, receipts = 0;
    std::string message_id, envelope_from, queue_id;   // ItemTrace; "" before index version 6
};

struct RecipientStatus {
    std::string address;
    std::string receipt;         // RFC 3339 time of its receipt, empty if none yet
    bool revoked = false;        // its own token cut off (revoke_recipient)
};

struct ItemDetail {
    ItemSummary item;
    std::vector<RecipientStatus> recipients;
};

struct GcReport {
    uint64_t expired_items = 0;    // rows removed because their expiry passed
    uint64_t delivered_items = 0;  // items finished by the after-delivery policy
    uint64_t objects_removed = 0;  // media files no item needs any more (Index::object_needed)
    uint64_t bytes_freed = 0;
    uint64_t tmp_removed = 0;      // temp files of writers that died long ago
};

struct StoreStats {
    std::map<std::string, uint64_t> items_by_state;
    uint64_t items = 0, receipts = 0, objects = 0, object_bytes = 0, archived_files = 0;
};

struct ItemFilter;   // index.h

/// Works on the same index as Store, through its own Index (the index is
/// shared by several processes anyway; SQLite's locks order them).
class Lifecycle {
public:
    /// Opens the index under store.dir (made by Store), bringing its schema up
    /// to date like any opener (index.h). Throws StoreError / ConfigError.
    explicit Lifecycle(const Config& cfg);
    ~Lifecycle();

    /// Records that `recipient` has the item `item` (already authorized by
    /// Store::authorize) with the given SHA-256. With a recipient's own token
    /// (item.recipient set): false, and nothing recorded, when the digest
    /// differs or the address is not that recipient; the caller answers those
    /// exactly like an unknown item. With the item token: true whenever the
    /// digest matches, whoever the address is, and nothing recorded (no
    /// oracle; see lifecycle.cpp). When this was the last missing receipt
    /// (revoked recipients are not waited for), the after-delivery policy runs.
    bool receipt(const Item& item, const std::string& recipient, const std::string& sha256);

    /// Marks an item revoked: every request for it gets the usual 404 from now.
    /// The id may be a unique prefix of at least 6 digits. False if not found.
    bool revoke(const std::string& id_or_prefix);
    /// Cuts one recipient off: its own token answers 404 from now, the item
    /// and the others' tokens stay. False if it was already revoked; throws
    /// StoreError when the item or the recipient is unknown.
    bool revoke_recipient(const std::string& id_or_prefix, const std::string& recipient);

    /// Applies the after-delivery policy to finished items, removes expired
    /// items and media no active item needs. Safe to run from any process.
    GcReport gc();

    std::vector<ItemSummary> list();
    /// The items `filter` (index.h) lets through, oldest first.
    std::vector<ItemSummary> list(const ItemFilter& filter);
    /// Throws StoreError when no item or more than one matches.
    ItemDetail show(const std::string& id_or_prefix);
    StoreStats stats();
    /// Whether the store can be served from: the index answers a query and
    /// objects/ can be read. False with `why` set (for /healthz).
    bool readable(std::string& why);

    struct Impl;
private:
    std::unique_ptr<Impl> impl_;
};


} // namespace mm
