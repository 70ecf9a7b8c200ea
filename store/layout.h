// layout.h - where the media store keeps things under store.dir, spelled once for
// Store, Lifecycle and the TLS identity: objects/ab/<sha256>, tmp/, index.sqlite,
// tls/; and the one way an object leaves objects/. Reads store.dir.
//
// Apart from index.h on purpose: these are file-system names with no SQL, and
// tls_identity needs them without opening the index.
#pragma once

#include "core/config.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mm {

class Index;

namespace layout {

/// store.dir without trailing slashes ("/" stays "/").
std::string store_dir(const Config& cfg);

std::string index_path(const std::string& dir);     // dir/index.sqlite
std::string objects_dir(const std::string& dir);    // dir/objects
std::string tmp_dir(const std::string& dir);        // dir/tmp: files being written
std::string tls_dir(const std::string& dir);        // dir/tls: the gateway's own key pair
std::string uploads_dir(const std::string& dir);    // dir/uploads: uploads to the gateway still open
/// dir/uploads/<id>: an open upload's bytes. Throws StoreError unless id is 32 lowercase hex digits.
std::string upload_path(const std::string& dir, const std::string& id);

/// What opening a Store in dir may create: dir, its objects/, tmp/, the index
/// with its SQLite side files, tls/ and the key pair in it. A program started
/// as root gives these to its user before it drops to it (drop_privileges).
std::vector<std::string> opened_paths(const std::string& dir);

/// dir/objects/ab (the first two digits): the directory an object goes in.
/// Throws StoreError unless sha256 is 64 lowercase hex digits.
std::string object_dir(const std::string& dir, const std::string& sha256);
/// dir/objects/ab/<sha256>. The only store path built from a name that may come
/// from outside, so it is checked lexically: throws StoreError unless sha256 is
/// 64 lowercase hex digits.
std::string object_path(const std::string& dir, const std::string& sha256);
/// A fresh, unused name under dir/tmp for a writer's temp file.
std::string new_tmp_path(const std::string& dir);

/// Within index.write(): removes the object for sha256 unless index.object_needed()
/// says an item still needs it. Returns the bytes freed when a file was removed;
/// nullopt when it is needed, already gone, or cannot be removed (logged).
/// Store::remove_item and Lifecycle (after delivery, gc) all go through here,
/// so they cannot disagree on when media may go.
std::optional<uint64_t> drop_object_if_unneeded(Index& index, const std::string& dir, const std::string& sha256);

} // namespace layout
} // namespace mm
