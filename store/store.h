// store.h - the sender's media store: content-addressed objects plus an SQLite
// index of items, shared by every program on the sending host (mm-milter writes,
// mm-gateway serves).
//
// Layout under store.dir (layout.h): objects/ab/<sha256> (the media, read-only
// once in place), tmp/ (files being written), index.sqlite (items, recipients,
// receipts; index.h), tls/ (the gateway's key and self-signed certificate when
// none is configured).
// Reads store.dir, gateway.public_url, gateway.retention, gateway.tls_cert, gateway.tls_key,
// and the quota keys (quota.h): store.max_bytes, store.min_free, milter.sender_quota,
// milter.sender_quota_window.
#pragma once

#include "core/config.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace mm {

struct StoreError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// What a detaching program knows about a media attachment.
struct ItemMeta {
    std::string type, name, title, note, copyright, date;
    std::vector<std::string> recipients;
};

/// Which mail an item went out in, for following one mail through the logs and
/// `mm-gateway list --message-id`. From the mail itself: hostile text, cut and
/// cleaned where it is recorded (Index::set_item_trace).
struct ItemTrace {
    std::string message_id;      // the Message-ID header as written ("" if none)
    std::string envelope_from;   // MAIL FROM's address, without angle brackets
    std::string queue_id;        // the MTA's queue id ("" when not known)
};

/// A freshly registered item: everything that goes into its handle.
struct NewItem {
    std::string id;       // item id (random, 32 hex digits)
    std::string token;    // capability token in clear (only ever in the mail)
    std::string sha256;
    uint64_t size = 0;
    std::string url;      // gateway.public_url + "/m/<id>/<token>"
    std::string pin;      // "sha256//BASE64"
    std::string expires;  // RFC 3339
    uint64_t seg_size = 0;     // the handle's segments (segments.h), hashed while stored
    std::string seg_sha256;
    /// Each envelope recipient's own token in clear (normalized address, token;
    /// one per distinct address): its URL is url with the item token replaced
    /// (recipient_url()). Only that recipient's receipts count (lifecycle.h).
    std::vector<std::pair<std::string, std::string>> recipient_tokens;
};

/// `url` (an item URL ending in its 32-digit token) with that token replaced.
std::string recipient_url(const std::string& url, const std::string& token);

/// An item as the gateway serves it.
struct Item {
    std::string id, sha256, type, name, title, note, copyright, date, created, expires, state;
    uint64_t size = 0;
    // Set for an item registered in place (mmsend --link): the file is served
    // from link_path, and only while its size, mtime and hash are unchanged.
    std::string link_path;
    uint64_t link_size = 0;
    int64_t link_mtime_ns = 0;
    // Set by Store::authorize when the token was a recipient's own (the
    // normalized address); empty for the item token, which every copy of a
    // mail shares when it could not be split per recipient.
    std::string recipient;
};

class Store {
public:
    /// Opens (creating if needed) the store under store.dir. Throws StoreError.
    /// `free_space` tells the free bytes of store.dir's file system for
    /// store.min_free (statvfs when empty; tests inject their own).
    explicit Store(const Config& cfg,
                   std::function<std::optional<uint64_t>(const std::string&)> free_space = {});
    ~Store();

    /// Streams one media file into the store. Nothing is visible until commit()
    /// returns: the bytes are fsync'ed and renamed into objects/ and the item is
    /// recorded first. Destroying a Writer without commit() removes its temp file.
    ///
    /// Quotas (quota.h): a Writer reserves its bytes in the index before it
    /// writes them, `expected` at once and more as it grows. When a quota
    /// would be exceeded, create() or write() throw QuotaError (a StoreError)
    /// and the temp file is gone already. `sender` is whom the bytes count
    /// against ("": only the store-wide limits apply); it is recorded on the item.
    class Writer {
    public:
        virtual ~Writer() = default;
        virtual void write(const void* data, size_t len) = 0;   // throws StoreError
        virtual NewItem commit(const ItemMeta& meta) = 0;        // throws StoreError
        virtual uint64_t size() const = 0;                       // bytes written (and hashed) so far
        /// No more writes for a while (an upload between two requests): write
        /// out what is staged, so that the file holds size() bytes, and let go
        /// of what a running write holds (buffers, the hashing and writing
        /// threads). Throws StoreError if the staged bytes cannot be written;
        /// the Writer is then of no further use.
        virtual void idle() {}
    };
    std::unique_ptr<Writer> create(const std::string& sender = "", uint64_t expected = 0);

    /// A Writer that appends to an open upload's file (layout::upload_path;
    /// created if missing), after hashing what the file already holds: an
    /// upload resumes across requests and restarts, and is hashed as it is
    /// written all the same. Its reservation is named after the upload, so a
    /// new Writer for it replaces the old one's. Destroying it without
    /// commit() keeps the file; commit() moves it into objects/ as create()'s do.
    std::unique_ptr<Writer> resume_upload(const std::string& upload_id, const std::string& sender, uint64_t expected);
    /// The store's directory (store.dir without trailing slashes).
    const std::string& dir() const;

    /// Throws QuotaError if `bytes` more media from `sender` would not fit
    /// now; reserves nothing (a Writer still checks as it writes). For callers
    /// that know sizes up front (mmsend), to refuse before any work.
    void check_room(const std::string& sender, uint64_t bytes);

    /// The item for (id, token) if the token is valid and the item not expired
    /// or revoked; otherwise nullopt, whatever the reason (no oracle for callers).
    /// The token is the item's or one recipient's own (Item::recipient says
    /// whose); a revoked recipient's token is refused like a wrong one.
    std::optional<Item> authorize(const std::string& id, const std::string& token);

    /// Absolute path of an item's bytes.
    std::string object_path(const std::string& sha256) const;

    /// Registers the file at `path` in place, without copying it: the index
    /// records its real path, size, mtime and SHA-256 (hashed now; `progress`
    /// gets bytes done and total). Throws StoreError if the file is not a
    /// regular file or changes while it is hashed.
    NewItem link_file(const std::string& path, const ItemMeta& meta,
                      const std::function<void(uint64_t, uint64_t)>& progress = {});

    /// Where the item's bytes are: link_path for a linked item, else the object.
    std::string item_path(const Item& item) const;

    /// How much of a linked file linked_file_intact() checks.
    enum class LinkCheck {
        stat,      // size and mtime: cheap enough for every request
        content,   // also the SHA-256: reads the whole file
    };

    /// For a linked item: whether the file still has the recorded size, mtime
    /// and SHA-256 (reads the whole file). `why` says what changed. Objects
    /// (not linked) are always intact.
    bool linked_file_intact(const Item& item, std::string& why) const;
    /// The same on `fd`, the file the caller opened from item_path() and will
    /// serve (-1 if it could not be opened), to the depth `how`. mm-gateway
    /// checks LinkCheck::stat on every request and answers 410 Gone when false;
    /// a same-size, same-mtime rewrite gets past that, and only
    /// LinkCheck::content catches it.
    bool linked_file_intact(const Item& item, int fd, LinkCheck how, std::string& why) const;

    /// Removes an item (a mail that was never sent): its row, recipients and
    /// receipts, and its object unless another item still needs it (the rule
    /// is Index::object_needed). False if there was no such item.
    bool remove_item(const std::string& id);

    /// Records which mail the items `ids` went out in (Index::set_item_trace),
    /// in one transaction. For the detaching programs, once they know it.
    void record_trace(const std::vector<std::string>& ids, const ItemTrace& trace);

    /// The public-key pin of the gateway's TLS key, for handles.
    const std::string& pin() const;

    struct Impl;
private:
    std::unique_ptr<Impl> impl_;
};

/// The TLS key and certificate the gateway serves with: gateway.tls_cert and
/// gateway.tls_key when configured, else store.dir/tls/{key,cert}.pem, created
/// (EC P-256, self-signed) on first use. Safe when two programs race to create.
struct TlsIdentity {
    std::string key_path, cert_path;
    std::string pin;   // "sha256//" + base64(SHA-256(SubjectPublicKeyInfo DER))
};
TlsIdentity tls_identity(const Config& cfg);

} // namespace mm
