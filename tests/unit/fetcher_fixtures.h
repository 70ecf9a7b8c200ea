// fetcher_fixtures.h - what the unit tests of mm-fetcher's cache, sync and upstream
// client share: a throw-away cache directory, a scripted fake POP3 server on
// loopback, SyncOptions for them, and small file readers.
#pragma once

#include "fetcher/sync.h"
#include "fetcher/upstream.h"
#include "loopback_upstream.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <arpa/inet.h>
#include <cstdlib>
#include <fstream>
#include <netinet/in.h>
#include <sstream>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace mm::fetch_fixtures {

inline std::string read_all(const std::string& path)
{
    std::ifstream f(path, std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

inline std::string read_fd(int fd)
{
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0)
        out.append(buf, static_cast<size_t>(n));
    return out;
}

/// A fresh cache directory, removed again at the end of the test.
struct TempCache {
    std::string dir;
    TempCache()
    {
        char tmpl[] = "/tmp/mm-cache-test-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        dir = tmpl;
        std::string err;
        REQUIRE(prepare_cache(dir, err));
    }
    ~TempCache() { std::system(("rm -rf '" + dir + "'").c_str()); }
};

/// Greets, then answers each command line it reads with the next canned reply;
/// records the commands. Pipelined commands are read and answered in order.
class ScriptedPop3 {
public:
    explicit ScriptedPop3(std::vector<std::string> replies)
    {
        lfd_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(listen(lfd_, 1) == 0);
        socklen_t len = sizeof a;
        getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        thread_ = std::thread([this, replies] {
            int fd = accept(lfd_, nullptr, nullptr);
            if (fd < 0)
                return;
            send(fd, "+OK hi\r\n", 8, MSG_NOSIGNAL);
            for (const auto& r : replies) {
                std::string line;
                char c;
                while (recv(fd, &c, 1, 0) == 1 && c != '\n')
                    line.push_back(c);
                if (!line.empty() && line.back() == '\r')
                    line.pop_back();
                commands.push_back(line);
                send(fd, r.data(), r.size(), MSG_NOSIGNAL);
            }
            shutdown(fd, SHUT_WR);
            char sink[256];
            while (recv(fd, sink, sizeof sink, 0) > 0) {
            }
            close(fd);
        });
    }
    ~ScriptedPop3()
    {
        shutdown(lfd_, SHUT_RDWR);
        if (thread_.joinable())
            thread_.join();
        close(lfd_);
    }
    void wait() { thread_.join(); }
    UpstreamConfig config() const { return loopback_upstream(port_); }
    std::vector<std::string> commands;

private:
    int lfd_ = -1;
    uint16_t port_ = 0;
    std::thread thread_;
};

inline SyncOptions options(const TempCache& c, uint64_t max_size)
{
    SyncOptions o;
    o.cache_dir = c.dir;
    o.upstream_id = "127.0.0.1:110";
    o.max_size = max_size;
    return o;
}

inline bool has(const std::vector<std::string>& v, const std::string& s)
{
    return std::find(v.begin(), v.end(), s) != v.end();
}

} // namespace mm::fetch_fixtures
