// layout.cpp - the media store's paths under store.dir and object removal (see
// layout.h). Reads store.dir.
#include "store/layout.h"

#include "store/index.h"
#include "store/store.h"
#include "core/log.h"
#include "core/util.h"

#include <cerrno>
#include <cstring>
#include <sys/stat.h>
#include <unistd.h>

namespace mm::layout {

std::string store_dir(const Config& cfg)
{
    std::string dir = cfg.str("store.dir");
    while (dir.size() > 1 && dir.back() == '/')
        dir.pop_back();
    return dir;
}

std::string index_path(const std::string& dir) { return dir + "/index.sqlite"; }
std::string objects_dir(const std::string& dir) { return dir + "/objects"; }
std::string tmp_dir(const std::string& dir) { return dir + "/tmp"; }
std::string tls_dir(const std::string& dir) { return dir + "/tls"; }
std::string uploads_dir(const std::string& dir) { return dir + "/uploads"; }

std::string upload_path(const std::string& dir, const std::string& id)
{
    if (!is_lower_hex(id, 32))
        throw StoreError("not an upload id: " + printable(id, 80));
    return uploads_dir(dir) + "/" + id;
}

std::vector<std::string> opened_paths(const std::string& dir)
{
    const std::string index = index_path(dir), tls = tls_dir(dir);
    std::vector<std::string> paths{objects_dir(dir), tmp_dir(dir), uploads_dir(dir), index, index + "-wal", index + "-shm",
                                   index + "-journal", tls, tls + "/key.pem", tls + "/cert.pem"};
    // A store.dir of "/" is a mistake; the root directory is never given away.
    if (dir != "/")
        paths.insert(paths.begin(), dir);
    return paths;
}

std::string object_dir(const std::string& dir, const std::string& sha256)
{
    if (!is_hex_digest(sha256))
        throw StoreError("not a SHA-256 digest: " + printable(sha256, 80));
    return objects_dir(dir) + "/" + sha256.substr(0, 2);
}

std::string object_path(const std::string& dir, const std::string& sha256)
{
    return object_dir(dir, sha256) + "/" + sha256;
}

std::string new_tmp_path(const std::string& dir) { return tmp_dir(dir) + "/" + random_hex(16); }

std::optional<uint64_t> drop_object_if_unneeded(Index& index, const std::string& dir, const std::string& sha256)
{
    if (!is_hex_digest(sha256) || index.object_needed(sha256))
        return std::nullopt;
    // Unlinked while the caller holds the index's write lock: a writer that
    // deduplicated onto this object records its row after us, then finds the
    // object gone and places its own copy again (Store's FileWriter::commit).
    std::string path = object_path(dir, sha256);
    struct stat st;
    if (lstat(path.c_str(), &st) != 0)
        return std::nullopt;
    if (unlink(path.c_str()) != 0) {
        log_error("cannot remove " + path + ": " + std::strerror(errno));
        return std::nullopt;
    }
    return static_cast<uint64_t>(st.st_size);
}

} // namespace mm::layout
