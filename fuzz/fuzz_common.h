// fuzz_common.h - what the file-based fuzz targets share: a per-process scratch
// directory on tmpfs (/dev/shm, so a million runs do not touch the disk) and
// media sinks that stand in for the sender's store.
#pragma once

#include "mime/detach.h"
#include "core/util.h"

#include <openssl/evp.h>

#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <string>
#include <unistd.h>

namespace mmfuzz {

/// One scratch directory per fuzzer process, removed by the OS-level tmpfs
/// cleanup of run.sh; created lazily so that -help runs leave nothing behind.
inline const std::string& scratch()
{
    static std::string dir = [] {
        const char* base = getenv("MM_FUZZ_TMP");
        std::string tmpl = std::string(base ? base : "/dev/shm") + "/mm-fuzz-XXXXXX";
        if (!mkdtemp(tmpl.data()))
            abort();
        return tmpl;
    }();
    return dir;
}

inline void write_bytes(const std::string& path, const uint8_t* data, size_t size)
{
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        abort();
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n <= 0)
            abort();
        data += n;
        size -= static_cast<size_t>(n);
    }
    close(fd);
}

inline std::string read_bytes(const std::string& path)
{
    std::string out;
    FILE* f = fopen(path.c_str(), "rb");
    if (!f)
        return out;
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        out.append(buf, n);
    fclose(f);
    return out;
}

/// Fills in what the store would: a syntactically valid url, pin and expiry.
inline void fill_handle(mm::Handle& h)
{
    h.url = "https://gw.example.test:8443/m/0123456789abcdef0123456789abcdef/"
            "fedcba9876543210fedcba9876543210";
    h.pin = "sha256//" + mm::base64_encode(std::string(32, '\x01'));
    h.expires = "2026-12-25T10:00:00Z";
}

/// Hashes each attachment and discards it, as the milter's store would keep it;
/// aborts when the handle's sha256/size disagree with the bytes it was given.
class HashSink : public mm::MediaSink {
public:
    struct HashPart : Part {
        EVP_MD_CTX* ctx = EVP_MD_CTX_new();
        uint64_t n = 0;
        HashPart() { EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr); }
        ~HashPart() override { EVP_MD_CTX_free(ctx); }
        void write(const void* d, size_t len) override
        {
            EVP_DigestUpdate(ctx, d, len);
            n += len;
        }
        void finish(mm::Handle& h) override
        {
            unsigned char md[32];
            unsigned len = 0;
            EVP_DigestFinal_ex(ctx, md, &len);
            static const char* hex = "0123456789abcdef";
            std::string s;
            for (unsigned i = 0; i < len; ++i) {
                s += hex[md[i] >> 4];
                s += hex[md[i] & 15];
            }
            if (s != h.sha256 || n != h.size)
                abort();   // the handle would promise bytes the store does not have
            fill_handle(h);
        }
    };
    std::unique_ptr<Part> begin(const std::string&, const std::string&) override
    {
        return std::make_unique<HashPart>();
    }
};

/// Keeps each attachment in a scratch file, so that it can be put back.
class FileSink : public mm::MediaSink {
public:
    std::vector<std::string> files;
    struct FilePart : Part {
        FileSink& sink;
        std::string path;
        FILE* f;
        FilePart(FileSink& s, std::string p) : sink(s), path(std::move(p)), f(fopen(path.c_str(), "wb")) {}
        ~FilePart() override
        {
            if (f)
                fclose(f);
        }
        void write(const void* d, size_t len) override { fwrite(d, 1, len, f); }
        void finish(mm::Handle& h) override
        {
            fclose(f);
            f = nullptr;
            fill_handle(h);
            sink.files.push_back(path);
        }
    };
    std::unique_ptr<Part> begin(const std::string&, const std::string&) override
    {
        return std::make_unique<FilePart>(*this, scratch() + "/media." + std::to_string(files.size()));
    }
};

} // namespace mmfuzz
