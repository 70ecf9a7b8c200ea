// mime_fixtures.h - what the MIME engine's tests (detach, reinsert, prescan) and
// the milter's and fetcher's tests of it share: a temporary directory, whole-file
// reads and writes, the shared corpus, a media sink that keeps files, and a
// made-up video mail in any layout.
#pragma once

#include "mime/detach.h"
#include "mime/find_handles.h"
#include "mime/reinsert.h"
#include "core/util.h"

#include <doctest/doctest.h>

#include <cstdlib>
#include <dirent.h>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace mm::fixtures {

inline std::string read_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline void write_file(const std::string& path, const std::string& data)
{
    std::ofstream out(path, std::ios::binary);
    out << data;
}

struct TempDir {
    std::string path;
    TempDir()
    {
        char tmpl[] = "/tmp/mm-rewrite-test-XXXXXX";
        REQUIRE(mkdtemp(tmpl));
        path = tmpl;
    }
    ~TempDir() { (void)!system(("rm -rf '" + path + "'").c_str()); }
};

/// The shared corpus of real-world and adversarial messages (MM_CORPUS_DIR).
inline std::string corpus_dir()
{
    const char* env = getenv("MM_CORPUS_DIR");
    return env ? env : MM_CORPUS_DIR;
}

/// Every message file under the corpus directory (README and index left out).
inline std::vector<std::string> corpus_files()
{
    std::vector<std::string> files;
    std::vector<std::string> dirs{corpus_dir()};
    while (!dirs.empty()) {
        std::string d = dirs.back();
        dirs.pop_back();
        DIR* dp = opendir(d.c_str());
        if (!dp)
            continue;
        while (dirent* e = readdir(dp)) {
            std::string n = e->d_name;
            if (n == "." || n == ".." || n == "README.md" || n == "INDEX.tsv")
                continue;
            std::string p = d + "/" + n;
            struct stat st;
            if (stat(p.c_str(), &st) != 0)
                continue;
            if (S_ISDIR(st.st_mode))
                dirs.push_back(p);
            else if (S_ISREG(st.st_mode))
                files.push_back(p);
        }
        closedir(dp);
    }
    return files;
}

/// A sink that keeps each detached attachment in a file, as the store would.
class FileSink : public MediaSink {
public:
    explicit FileSink(std::string dir) : dir_(std::move(dir)) {}
    std::vector<std::string> files;
    bool fail = false;

    struct FilePart : Part {
        FileSink& sink;
        std::string path;
        std::ofstream out;
        FilePart(FileSink& s, std::string p) : sink(s), path(std::move(p)), out(path, std::ios::binary) {}
        void write(const void* d, size_t n) override { out.write(static_cast<const char*>(d), n); }
        void finish(Handle& h) override
        {
            if (sink.fail)
                throw std::runtime_error("store full");
            out.close();
            h.url = "https://gw.example.test:8443/m/0123456789abcdef0123456789abcdef/"
                    "fedcba9876543210fedcba9876543210";
            h.pin = "sha256//" + base64_encode(std::string(32, '\x01'));
            h.expires = "2026-12-25T10:00:00Z";
            sink.files.push_back(path);
        }
    };
    std::unique_ptr<Part> begin(const std::string&, const std::string&) override
    {
        return std::make_unique<FilePart>(*this, dir_ + "/media." + std::to_string(n_++));
    }

private:
    std::string dir_;
    int n_ = 0;
};

inline std::string b64_lines(const std::string& data, size_t line_len, const std::string& eol)
{
    std::string enc = base64_encode(data), out;
    for (size_t i = 0; i < enc.size(); i += line_len) {
        if (i)
            out += eol;
        out += enc.substr(i, line_len);
    }
    return out;
}

inline std::string fake_mp4(size_t size)
{
    std::string v = std::string("\0\0\0\x20" "ftypisom\0\0\x02\0isomiso2avc1mp41", 32);
    unsigned x = 12345;
    while (v.size() < size) {
        x = x * 1103515245 + 12345;
        v += static_cast<char>(x >> 16);
    }
    return v;
}

inline std::string media_message(const std::string& eol, const std::string& video, const std::string& type = "video/mp4",
                          size_t line_len = 76, const std::string& tail = "")
{
    std::string m;
    auto L = [&](const std::string& s) { m += s + eol; };
    L("From: Alice <alice@example.test>");
    L("To: bob@example.test");
    L("Subject: holiday video");
    L("MIME-Version: 1.0");
    L("Content-Type: multipart/mixed; boundary=\"b1\"");
    L("");
    L("preamble");
    L("--b1");
    L("Content-Type: text/plain; charset=utf-8");
    L("");
    L("Here it is.");
    L("--b1");
    L("Content-Type: " + type + "; name=\"beach.mp4\"");
    L("Content-Disposition: attachment; filename=\"beach.mp4\"");
    L("Content-Transfer-Encoding: base64");
    L("");
    m += b64_lines(video, line_len, eol) + tail + eol;
    L("--b1--");
    L("epilogue");
    return m;
}

} // namespace mm::fixtures
