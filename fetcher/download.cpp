// download.cpp - the media downloader: libcurl easy transfers of handle URLs into
// cache_dir/media/<sha256>, with key pinning, address filtering, Range resume and
// verification. Config keys: fetcher.allow_private, fetcher.allow_insecure, fetcher.timeout.
#include "download.h"

#include "log.h"
#include "util.h"

#include <curl/curl.h>

#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mm {

namespace {

bool v4_allowed(uint32_t a /* host order */)
{
    auto in = [a](uint32_t net, int bits) {
        uint32_t mask = bits == 0 ? 0 : ~uint32_t(0) << (32 - bits);
        return (a & mask) == (net & mask);
    };
    return !(in(0x00000000, 8)        // 0/8 "this network", includes 0.0.0.0
             || in(0x7f000000, 8)     // loopback
             || in(0x0a000000, 8)     // RFC 1918
             || in(0xac100000, 12)    // RFC 1918
             || in(0xc0a80000, 16)    // RFC 1918
             || in(0x64400000, 10)    // RFC 6598 shared (CGNAT)
             || in(0xa9fe0000, 16)    // link-local
             || in(0xe0000000, 4)     // multicast
             || in(0xf0000000, 4));   // reserved and broadcast
}

} // namespace

bool address_allowed(const sockaddr* sa, bool allow_private)
{
    if (!sa)
        return false;
    if (sa->sa_family == AF_INET) {
        if (allow_private)
            return true;
        const auto* s4 = reinterpret_cast<const sockaddr_in*>(sa);
        return v4_allowed(ntohl(s4->sin_addr.s_addr));
    }
    if (sa->sa_family == AF_INET6) {
        if (allow_private)
            return true;
        const auto* s6 = reinterpret_cast<const sockaddr_in6*>(sa);
        const uint8_t* b = s6->sin6_addr.s6_addr;
        bool zero10 = true;
        for (int i = 0; i < 10; ++i)
            zero10 = zero10 && b[i] == 0;
        uint32_t tail = (uint32_t(b[12]) << 24) | (uint32_t(b[13]) << 16) | (uint32_t(b[14]) << 8) | b[15];
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, also :: and ::1) carry
        // an IPv4 address the kernel may route to; judge that address.
        if (zero10 && b[10] == 0xff && b[11] == 0xff)
            return v4_allowed(tail);
        if (zero10 && b[10] == 0 && b[11] == 0)
            return tail > 1 && v4_allowed(tail);
        if ((b[0] & 0xfe) == 0xfc)                 // fc00::/7 unique local
            return false;
        if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) // fe80::/10 link-local
            return false;
        if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) // fec0::/10 old site-local
            return false;
        if (b[0] == 0xff)                          // multicast
            return false;
        // 64:ff9b::/96 NAT64 embeds an IPv4 address as well.
        static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
        if (std::memcmp(b, nat64, 12) == 0)
            return v4_allowed(tail);
        return true;
    }
    return false;   // AF_UNIX and anything else
}

namespace {

struct Transfer {
    FILE* out = nullptr;
    uint64_t have = 0;      // bytes in the .part file, including this transfer's
    uint64_t limit = 0;     // handle.size: more than this is an attack or a bug
    bool overflow = false;
    bool allow_private = false;
    bool refused_address = false;
};

size_t on_write(char* data, size_t size, size_t nmemb, void* user)
{
    auto* t = static_cast<Transfer*>(user);
    size_t n = size * nmemb;
    if (t->have + n > t->limit) {
        t->overflow = true;
        return 0;   // aborts the transfer
    }
    if (fwrite(data, 1, n, t->out) != n)
        return 0;
    t->have += n;
    return n;
}

curl_socket_t on_open_socket(void* user, curlsocktype purpose, curl_sockaddr* addr)
{
    auto* t = static_cast<Transfer*>(user);
    if (purpose != CURLSOCKTYPE_IPCXN || !address_allowed(&addr->addr, t->allow_private)) {
        t->refused_address = true;
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

bool file_size(const std::string& path, uint64_t& out)
{
    struct stat st;
    if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    out = static_cast<uint64_t>(st.st_size);
    return true;
}

bool hash_file(const std::string& path, std::string& hex)
{
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    Sha256 h;
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            close(fd);
            return false;
        }
        if (n == 0)
            break;
        h.update(buf, static_cast<size_t>(n));
    }
    close(fd);
    hex = h.hex_digest();
    return true;
}

} // namespace

void download_global_init()
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

std::string download_media(const Handle& h, const DownloadOptions& opt, std::string& err)
{
    // The file name is the digest, checked lexically: nothing else from the mail
    // (least of all h.name) ever becomes part of a path.
    if (!is_hex_digest(h.sha256)) {
        err = "handle sha256 is not 64 hex digits";
        return "";
    }
    const std::string final_path = opt.media_dir + "/" + h.sha256;
    const std::string part_path = final_path + ".part";
    uint64_t sz = 0;
    if (file_size(final_path, sz) && sz == h.size)
        return final_path;   // verified before it was renamed into place

    bool https = h.url.rfind("https://", 0) == 0;
    bool http = h.url.rfind("http://", 0) == 0;
    if (!https && !(http && opt.allow_insecure)) {
        err = "URL scheme not allowed (https only unless fetcher.allow_insecure)";
        return "";
    }

    uint64_t have = 0;
    if (file_size(part_path, have) && have > h.size) {
        unlink(part_path.c_str());
        have = 0;
    }
    Transfer t;
    t.limit = h.size;
    t.have = have;
    t.allow_private = opt.allow_private;
    t.out = fopen(part_path.c_str(), have > 0 ? "ab" : "wb");
    if (!t.out) {
        err = "cannot open " + part_path + ": " + std::strerror(errno);
        return "";
    }

    CURLcode rc = CURLE_OK;
    long status = 0;
    if (have < h.size) {
        CURL* c = curl_easy_init();
        if (!c) {
            fclose(t.out);
            err = "curl_easy_init failed";
            return "";
        }
        char errbuf[CURL_ERROR_SIZE] = "";
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(c, CURLOPT_URL, h.url.c_str());
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, opt.allow_insecure ? "https,http" : "https");
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(c, CURLOPT_PROXY, "");   // no proxy from the environment
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
        curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
        curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &t);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, static_cast<long>(opt.timeout.count()));
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(opt.timeout.count()));
        curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(h.size));
        if (have > 0)
            curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, static_cast<curl_off_t>(have));
        if (!h.pin.empty()) {
            // The gateway's certificate is self-signed: the pinned key from the mail
            // is its identity, so the chain and host name checks are replaced by it.
            curl_easy_setopt(c, CURLOPT_PINNEDPUBLICKEY, h.pin.c_str());
            curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
            curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
        } else {
            curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
            curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
        }
        rc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(c);
        if (rc != CURLE_OK) {
            err = std::string("download failed: ") + (errbuf[0] ? errbuf : curl_easy_strerror(rc));
            if (t.refused_address)
                err += " (address refused; fetcher.allow_private)";
        } else if (have > 0 && status != 206) {
            // The server ignored the Range: the appended bytes are a second copy.
            err = "server did not honour the Range request";
            rc = CURLE_RANGE_ERROR;
        }
    }
    bool write_ok = fflush(t.out) == 0 && fsync(fileno(t.out)) == 0;
    fclose(t.out);
    if (t.overflow) {
        unlink(part_path.c_str());
        err = "server sent more than the handle's size";
        return "";
    }
    if (rc != CURLE_OK) {
        if (rc == CURLE_RANGE_ERROR || rc == CURLE_SSL_PINNEDPUBKEYNOTMATCH)
            unlink(part_path.c_str());
        return "";   // .part kept for resuming otherwise
    }
    if (!write_ok) {
        err = "write failed on " + part_path;
        return "";
    }
    uint64_t got = 0;
    std::string digest;
    if (!file_size(part_path, got) || got != h.size) {
        unlink(part_path.c_str());
        err = "size mismatch: got " + std::to_string(got) + ", handle says " + std::to_string(h.size);
        return "";
    }
    if (!hash_file(part_path, digest) || digest != h.sha256) {
        unlink(part_path.c_str());
        err = "SHA-256 mismatch";
        return "";
    }
    if (rename(part_path.c_str(), final_path.c_str()) != 0) {
        err = "rename failed: " + std::string(std::strerror(errno));
        return "";
    }
    fsync_dir_of(final_path);
    return final_path;
}

} // namespace mm
