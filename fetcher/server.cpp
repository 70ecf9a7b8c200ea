// server.cpp - accept loop of mm-fetcher: thread per connection, capped by
// fetcher.max_sessions, clean stop on SIGTERM/SIGINT, SIGHUP's work done between
// two waits. Config keys: fetcher.listen, fetcher.max_sessions (through ServerConfig).
#include "fetcher/server.h"

#include "core/log.h"

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <poll.h>
#include <set>
#include <signal.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace mm {

void serve(int listen_fd, int tls_fd, const ServerConfig& cfg, std::atomic<bool>& stop, const void* wait_mask,
           const std::function<void()>& between)
{
    // Static: a session still running after serve() returns must not touch a dead frame.
    static std::mutex mu;
    static std::condition_variable cv;
    static std::set<int> active;   // client fds, so that a stop can wake their sessions

    while (!stop.load()) {
        pollfd p[2] = {{listen_fd, POLLIN, 0}, {tls_fd, POLLIN, 0}};
        timespec ts{0, 500 * 1000 * 1000};
        int n = ppoll(p, tls_fd >= 0 ? 2 : 1, &ts, static_cast<const sigset_t*>(wait_mask));
        if (between)
            between();
        if (n <= 0)
            continue;
        bool implicit_tls = !(p[0].revents & POLLIN);
        int fd = accept4(implicit_tls ? tls_fd : listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        {
            std::lock_guard<std::mutex> lock(mu);
            if (active.size() >= cfg.max_sessions) {
                static const char busy[] = "-ERR [SYS/TEMP] too many sessions, try later\r\n";
                (void)!send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL);
                close(fd);
                log_warning("refused a client: fetcher.max_sessions reached");
                continue;
            }
            active.insert(fd);
        }
        // The session owns a duplicate; `fd` stays open until it leaves `active`, so
        // a stop never shuts down a descriptor number some other socket has reused.
        int session_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (session_fd < 0) {
            std::lock_guard<std::mutex> lock(mu);
            active.erase(fd);
            close(fd);
            continue;
        }
        std::thread([fd, session_fd, implicit_tls, &cfg, &stop] {
            try {
                run_session(session_fd, cfg.session, stop, implicit_tls);   // closes session_fd
            } catch (const std::exception& e) {
                log_error(std::string("session ended by exception: ") + e.what());
            }
            std::lock_guard<std::mutex> lock(mu);
            active.erase(fd);
            close(fd);
            cv.notify_all();
        }).detach();
    }
    close(listen_fd);
    if (tls_fd >= 0)
        close(tls_fd);
    // Wake sessions blocked on their clients, then give them a moment to finish.
    std::unique_lock<std::mutex> lock(mu);
    for (int fd : active)
        shutdown(fd, SHUT_RDWR);
    cv.wait_for(lock, std::chrono::seconds(10), [&] { return active.empty(); });
    if (!active.empty())
        log_warning(std::to_string(active.size()) + " sessions still busy at exit");
}

} // namespace mm
