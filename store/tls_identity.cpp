// tls_identity.cpp - the gateway's TLS key and certificate and their pin (the
// value of curl --pinnedpubkey: "sha256//" + base64 SHA-256 of the SPKI DER).
// Reads gateway.tls_cert, gateway.tls_key, else creates store.dir/tls/{key,cert}.pem
// (EC P-256, self-signed for the host of gateway.public_url).
#include "store/store.h"

#include "store/layout.h"
#include "core/fileio.h"
#include "core/util.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <sys/stat.h>
#include <unistd.h>

namespace mm {

namespace {

struct BioFree { void operator()(BIO* b) const { BIO_free(b); } };
struct PkeyFree { void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); } };
struct X509Free { void operator()(X509* x) const { X509_free(x); } };
using BioPtr = std::unique_ptr<BIO, BioFree>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;

bool exists(const std::string& path)
{
    struct stat st;
    return stat(path.c_str(), &st) == 0;
}

PkeyPtr read_key(const std::string& path)
{
    BioPtr bio(BIO_new_file(path.c_str(), "r"));
    if (!bio)
        throw StoreError("cannot read TLS key " + path + ": " + std::strerror(errno));
    PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
    if (!key)
        throw StoreError("TLS key " + path + " is not a PEM private key (or is encrypted)");
    return key;
}

X509Ptr read_cert(const std::string& path)
{
    BioPtr bio(BIO_new_file(path.c_str(), "r"));
    if (!bio)
        throw StoreError("cannot read TLS certificate " + path + ": " + std::strerror(errno));
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert)
        throw StoreError("TLS certificate " + path + " is not a PEM certificate");
    return cert;
}

std::string pin_of(EVP_PKEY* pub)
{
    unsigned char* der = nullptr;
    int len = i2d_PUBKEY(pub, &der);
    if (len <= 0)
        throw StoreError("cannot encode the TLS public key");
    std::string raw(reinterpret_cast<char*>(der), static_cast<size_t>(len));
    OPENSSL_free(der);
    Sha256 h;
    h.update(raw.data(), raw.size());
    return "sha256//" + base64_encode(h.raw_digest());
}

// The host part of gateway.public_url: https://HOST[:PORT][/...], HOST may be [v6].
std::string url_host(const std::string& url)
{
    size_t start = url.find("://");
    start = start == std::string::npos ? 0 : start + 3;
    size_t end = url.find('/', start);
    std::string hostport = url.substr(start, end == std::string::npos ? std::string::npos : end - start);
    size_t at = hostport.rfind('@');
    if (at != std::string::npos)
        hostport = hostport.substr(at + 1);
    if (!hostport.empty() && hostport[0] == '[') {
        size_t close = hostport.find(']');
        return close == std::string::npos ? hostport.substr(1) : hostport.substr(1, close - 1);
    }
    size_t colon = hostport.find(':');
    return colon == std::string::npos ? hostport : hostport.substr(0, colon);
}

// Writes `data` to a fresh temp file next to `path`, fsyncs it, then link()s it
// to `path`: link never replaces, so when two programs race the first pair to
// land wins and the other reads it back.
void write_first_wins(const std::string& path, const std::string& data, mode_t mode)
{
    std::string tmp = path + ".tmp." + random_hex(8);
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        throw StoreError("cannot create " + tmp + ": " + std::strerror(errno));
    size_t off = 0;
    while (off < data.size()) {
        ssize_t n = write(fd, data.data() + off, data.size() - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            unlink(tmp.c_str());
            throw StoreError("cannot write " + tmp + ": " + std::strerror(e));
        }
        off += static_cast<size_t>(n);
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp.c_str());
        throw StoreError("cannot fsync " + tmp + ": " + std::strerror(e));
    }
    if (link(tmp.c_str(), path.c_str()) != 0 && errno != EEXIST) {
        int e = errno;
        unlink(tmp.c_str());
        throw StoreError("cannot create " + path + ": " + std::strerror(e));
    }
    unlink(tmp.c_str());
    fsync_dir_of(path);
}

std::string new_key_pem()
{
    PkeyPtr key(EVP_EC_gen("P-256"));
    if (!key)
        throw StoreError("cannot generate an EC P-256 key");
    BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio || PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
        throw StoreError("cannot encode the new TLS key");
    char* p = nullptr;
    long n = BIO_get_mem_data(bio.get(), &p);
    return std::string(p, static_cast<size_t>(n));
}

std::string new_cert_pem(EVP_PKEY* key, const std::string& host)
{
    X509Ptr cert(X509_new());
    if (!cert)
        throw StoreError("cannot allocate a certificate");
    X509_set_version(cert.get(), 2);   // v3, for subjectAltName
    unsigned char serial[16];
    if (RAND_bytes(serial, sizeof serial) != 1)
        throw StoreError("no randomness for the certificate serial");
    serial[0] &= 0x7f;   // serials are positive
    BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
    ASN1_INTEGER* sn = bn ? BN_to_ASN1_INTEGER(bn, nullptr) : nullptr;
    BN_free(bn);
    if (!sn || X509_set_serialNumber(cert.get(), sn) != 1) {
        ASN1_INTEGER_free(sn);
        throw StoreError("cannot set the certificate serial");
    }
    ASN1_INTEGER_free(sn);
    // Valid from an hour ago (clock skew) for ten years.
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), 10L * 366 * 24 * 3600);
    X509_set_pubkey(cert.get(), key);

    std::string cn = host.empty() ? "localhost" : host.substr(0, 64);
    X509_NAME* name = X509_get_subject_name(cert.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                               0);
    X509_set_issuer_name(cert.get(), name);

    unsigned char addr[16];
    bool is_ip = inet_pton(AF_INET, cn.c_str(), addr) == 1 || inet_pton(AF_INET6, cn.c_str(), addr) == 1;
    std::string san = (is_ip ? "IP:" : "DNS:") + cn;
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
    const std::pair<int, std::string> exts[] = {
        {NID_subject_alt_name, san},
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature"},
        {NID_ext_key_usage, "serverAuth"},
        {NID_subject_key_identifier, "hash"},
    };
    for (const auto& [nid, value] : exts) {
        X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
        if (!ext || X509_add_ext(cert.get(), ext, -1) != 1) {
            X509_EXTENSION_free(ext);
            throw StoreError("cannot add certificate extension " + value);
        }
        X509_EXTENSION_free(ext);
    }
    if (X509_sign(cert.get(), key, EVP_sha256()) <= 0)
        throw StoreError("cannot sign the certificate");
    BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio || PEM_write_bio_X509(bio.get(), cert.get()) != 1)
        throw StoreError("cannot encode the certificate");
    char* p = nullptr;
    long n = BIO_get_mem_data(bio.get(), &p);
    return std::string(p, static_cast<size_t>(n));
}

TlsIdentity load_pair(const std::string& key_path, const std::string& cert_path)
{
    PkeyPtr key = read_key(key_path);
    X509Ptr cert = read_cert(cert_path);
    if (X509_check_private_key(cert.get(), key.get()) != 1)
        throw StoreError("TLS certificate " + cert_path + " does not match key " + key_path);
    TlsIdentity id;
    id.key_path = key_path;
    id.cert_path = cert_path;
    id.pin = pin_of(key.get());
    return id;
}

} // namespace

TlsIdentity tls_identity(const Config& cfg)
{
    const std::string& cert = cfg.str("gateway.tls_cert");
    const std::string& key = cfg.str("gateway.tls_key");
    if (!cert.empty() || !key.empty()) {
        if (cert.empty() || key.empty())
            throw StoreError("gateway.tls_cert and gateway.tls_key must be set together (" +
                             std::string(cert.empty() ? "gateway.tls_cert" : "gateway.tls_key") + " is empty)");
        return load_pair(key, cert);
    }

    std::string dir = layout::store_dir(cfg);
    // store.dir may not exist yet when the gateway starts before any Store.
    for (size_t pos = 1; pos <= dir.size(); ++pos)
        if ((pos == dir.size() || dir[pos] == '/') && mkdir(dir.substr(0, pos).c_str(), 0750) != 0 && errno != EEXIST)
            throw StoreError("cannot create directory " + dir.substr(0, pos) + ": " + std::strerror(errno));
    dir = layout::tls_dir(dir);
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
        throw StoreError("cannot create directory " + dir + ": " + std::strerror(errno));
    std::string key_path = dir + "/key.pem", cert_path = dir + "/cert.pem";
    // Key first, then a certificate for whichever key won; a loser of either
    // race reads back the winner's file, so every program serves the same pin.
    if (!exists(key_path))
        write_first_wins(key_path, new_key_pem(), 0600);
    if (!exists(cert_path)) {
        PkeyPtr k = read_key(key_path);
        write_first_wins(cert_path, new_cert_pem(k.get(), url_host(cfg.str("gateway.public_url"))), 0644);
    }
    return load_pair(key_path, cert_path);
}

} // namespace mm
