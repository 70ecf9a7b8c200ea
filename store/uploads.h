// uploads.h - uploads to the gateway, on the store's side (no HTTP): each
// user's upload token (hashed in the index, like item tokens), the uploads
// still open (a row in the index, their bytes in store.dir/uploads/<id>), and
// the step that makes an item of a finished one through Store's own writer,
// so that it is fsync'ed, content-addressed and indexed as mm-milter's are.
// mm-gateway's HTTP side is gateway/upload.cpp; the API is docs/gateway-api.md.
// Reads store.dir, gateway.upload_max_open and gateway.upload_expiry.
#pragma once

#include "core/config.h"
#include "store/index.h"
#include "store/store.h"

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace mm {

/// An upload refused for a reason the client is told (its HTTP status is the
/// gateway's business): too many open, a declared size the quotas refuse...
struct UploadRefused : StoreError {
    enum class Why { too_many_open, quota };
    UploadRefused(Why why, const std::string& msg) : StoreError(msg), why(why) {}
    Why why;
};

/// Whom an upload's bytes count against (the store's per-sender quota):
/// spelled as mm-milter spells a SASL login, so that a user's mail through
/// Postfix and through mmsend --gateway share one quota.
std::string upload_sender(const std::string& user);

/// Checks a user name for `mm-gateway token add`: 1 to 64 bytes of letters,
/// digits and . _ - @ + (an SASL login or an address); false otherwise.
bool valid_upload_user(const std::string& user);

class Uploads {
public:
    /// Opens the store's index (the Store must have made it).
    Uploads(const Config& cfg, Store& store);
    ~Uploads();

    // ---- tokens (mm-gateway token add|list|revoke) ----

    /// Makes a new token for `user` (replacing any it had) and returns it in
    /// clear: the only time it is ever seen. Throws StoreError for a bad name.
    std::string add_token(const std::string& user);
    bool revoke_token(const std::string& user);
    std::vector<std::pair<std::string, std::string>> tokens();   // user, created
    /// The user of a token given in clear; nullopt for a wrong or revoked one.
    std::optional<std::string> user_of(const std::string& token);

    // ---- uploads ----

    /// Opens a new upload of `size` bytes for `user`, or, when `row.sha256` is
    /// set and the user already has an open upload of that hash and size, that
    /// one (the client's resume key). Throws UploadRefused.
    UploadRow create(const std::string& user, uint64_t size, const std::string& sha256, const ItemMeta& meta,
                     bool& resumed);
    /// The open upload `id` of `user`; nullopt when unknown, expired or another user's.
    std::optional<UploadRow> find(const std::string& id, const std::string& user);
    /// Bytes on disk so far (the offset a HEAD answers).
    uint64_t offset(const std::string& id);
    /// A writer appending to the upload (Store::resume_upload); throws
    /// QuotaError when the quotas no longer allow its declared size.
    std::unique_ptr<Store::Writer> writer(const UploadRow& row);
    /// Makes the item of a complete upload (the writer holds every declared
    /// byte) and forgets the upload: its file is now the item's object.
    NewItem complete(Store::Writer& w, const UploadRow& row);
    /// Takes out an item complete() made that must not stay (its hash is not
    /// the one the client declared): nobody was ever told its URL.
    void discard_item(const std::string& item_id) { store_.remove_item(item_id); }
    /// Removes an item that an upload of `user` made (Store::remove_item);
    /// false, removing nothing, if there is no such item or another stored it.
    bool remove_own_item(const std::string& item_id, const std::string& user);
    /// Removes an upload's row and file (a DELETE, a checksum mismatch, expiry).
    void remove(const std::string& id);
    /// Removes the uploads whose expiry passed, except those in `busy` (a
    /// request is writing them: they go at the next round), and files in
    /// uploads/ no row names (after a crash between the two). Returns the ids removed.
    std::vector<std::string> expire(const std::set<std::string>& busy = {});

    int64_t expiry_seconds() const { return expiry_; }

private:
    Store& store_;
    std::unique_ptr<Index> index_;
    uint64_t max_open_;
    int64_t expiry_;
};

} // namespace mm
