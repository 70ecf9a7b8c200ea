// uploads.cpp - upload tokens and open uploads in the store (see uploads.h).
// Reads store.dir, gateway.upload_max_open and gateway.upload_expiry.
#include "store/uploads.h"

#include "store/layout.h"
#include "store/quota.h"
#include "core/log.h"
#include "core/util.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

namespace mm {

std::string upload_sender(const std::string& user) { return "sasl:" + user; }

bool valid_upload_user(const std::string& user)
{
    if (user.empty() || user.size() > 64)
        return false;
    for (char c : user)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-' && c != '@' && c != '+')
            return false;
    return true;
}

Uploads::Uploads(const Config& cfg, Store& store)
    : store_(store),
      index_(std::make_unique<Index>(layout::index_path(store.dir()), Index::Open::existing)),
      max_open_(static_cast<uint64_t>(cfg.integer("gateway.upload_max_open"))),
      expiry_(cfg.duration("gateway.upload_expiry").count())
{
}

Uploads::~Uploads() = default;

std::string Uploads::add_token(const std::string& user)
{
    if (!valid_upload_user(user))
        throw StoreError("not a user name for an upload token (1-64 letters, digits, . _ - @ +): " +
                         printable(user, 80));
    // 256 bits: a token is a long-lived credential, unlike an item's.
    std::string token = random_hex(32);
    index_->write([&] { index_->set_upload_token(user, sha256_hex(token), rfc3339(time(nullptr))); });
    return token;
}

bool Uploads::revoke_token(const std::string& user)
{
    return index_->write([&] { return index_->delete_upload_token(user); });
}

std::vector<std::pair<std::string, std::string>> Uploads::tokens() { return index_->upload_tokens(); }

std::optional<std::string> Uploads::user_of(const std::string& token)
{
    // Found by its hash: the lookup tells a prober nothing about the token.
    if (!is_lower_hex(token, 64))
        return std::nullopt;
    return index_->upload_token_user(sha256_hex(token));
}

UploadRow Uploads::create(const std::string& user, uint64_t size, const std::string& sha256, const ItemMeta& meta,
                          bool& resumed)
{
    resumed = false;
    if (!sha256.empty()) {
        std::optional<UploadRow> old = index_->find_upload_by_key(user, sha256, size);
        if (old && old->expires_unix > static_cast<int64_t>(time(nullptr))) {
            resumed = true;
            return *old;
        }
    }
    // The declared size must fit the quotas now: refused before a byte is sent.
    try {
        store_.check_room(upload_sender(user), size);
    } catch (const QuotaError& e) {
        throw UploadRefused(UploadRefused::Why::quota, e.what());
    }
    UploadRow row;
    row.id = random_hex(16);
    row.user = user;
    row.size = size;
    row.sha256 = sha256;
    row.meta = meta;
    row.created_unix = static_cast<int64_t>(time(nullptr));
    row.expires_unix = row.created_unix + expiry_;
    index_->write([&] {
        // Counted under the write lock: two POSTs at once cannot both pass.
        if (index_->upload_count(user) >= max_open_)
            throw UploadRefused(UploadRefused::Why::too_many_open,
                                "too many open uploads (gateway.upload_max_open = " + std::to_string(max_open_) + ")");
        index_->insert_upload(row);
    });
    return row;
}

std::optional<UploadRow> Uploads::find(const std::string& id, const std::string& user)
{
    if (!is_lower_hex(id, 32))
        return std::nullopt;
    std::optional<UploadRow> row = index_->find_upload(id);
    // Another user's upload looks exactly like an unknown one.
    if (!row || row->user != user || row->expires_unix <= static_cast<int64_t>(time(nullptr)))
        return std::nullopt;
    return row;
}

uint64_t Uploads::offset(const std::string& id)
{
    struct stat st;
    if (stat(layout::upload_path(store_.dir(), id).c_str(), &st) != 0)
        return 0;
    return static_cast<uint64_t>(st.st_size);
}

bool Uploads::remove_own_item(const std::string& item_id, const std::string& user)
{
    if (index_->item_sender(item_id) != upload_sender(user))
        return false;
    return store_.remove_item(item_id);
}

std::unique_ptr<Store::Writer> Uploads::writer(const UploadRow& row)
{
    return store_.resume_upload(row.id, upload_sender(row.user), row.size);
}

NewItem Uploads::complete(Store::Writer& w, const UploadRow& row)
{
    if (w.size() != row.size)
        throw StoreError("upload " + row.id + " is not complete");
    NewItem item = w.commit(row.meta);
    index_->write([&] { index_->delete_upload(row.id); });
    return item;
}

void Uploads::remove(const std::string& id)
{
    index_->write([&] { index_->delete_upload(id); });
    unlink(layout::upload_path(store_.dir(), id).c_str());
}

std::vector<std::string> Uploads::expire(const std::set<std::string>& busy)
{
    std::vector<std::string> gone;
    for (const auto& id : index_->expired_uploads(static_cast<int64_t>(time(nullptr)))) {
        if (busy.count(id))
            continue;
        remove(id);
        gone.push_back(id);
    }
    // Files without a row: the row went (DELETE, expiry) but the unlink did not happen.
    std::vector<std::string> ids = index_->upload_ids();
    std::set<std::string> known(ids.begin(), ids.end());
    std::string dir = layout::uploads_dir(store_.dir());
    if (DIR* d = opendir(dir.c_str())) {
        time_t now = time(nullptr);
        while (dirent* e = readdir(d)) {
            std::string name = e->d_name;
            if (!is_lower_hex(name, 32) || known.count(name) || busy.count(name))
                continue;
            struct stat st;
            std::string path = dir + "/" + name;
            // A minute's grace: a POST may have made the row after our list.
            if (lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && now - st.st_mtime > 60 &&
                unlink(path.c_str()) == 0)
                gone.push_back(name);
        }
        closedir(d);
    }
    return gone;
}

} // namespace mm
