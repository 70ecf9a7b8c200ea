// submit.cpp - SMTP submission through libcurl and the sendmail pipe (see
// submit.h). The message is read from its file in fixed buffers; bare LFs are
// sent as CRLF (SMTP requires it), and libcurl does the dot-stuffing.
#include "mmsend/submit.h"

#include "core/fileio.h"
#include "core/config.h"
#include "core/log.h"

#include <curl/curl.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

namespace mm::send {

namespace {


// Feeds the message to libcurl, turning lone LF into CRLF.
struct Reader {
    int fd = -1;
    std::string path;
    char buf[65536];
    size_t have = 0, off = 0;
    bool prev_cr = false, pending_lf = false, error = false;
};

size_t read_cb(char* out, size_t size, size_t nitems, void* userp)
{
    Reader& r = *static_cast<Reader*>(userp);
    size_t cap = size * nitems, n = 0;
    while (n < cap) {
        if (r.pending_lf) {
            out[n++] = '\n';
            r.pending_lf = false;
            continue;
        }
        if (r.off == r.have) {
            ssize_t got = read(r.fd, r.buf, sizeof r.buf);
            if (got < 0 && errno == EINTR)
                continue;
            if (got < 0) {
                r.error = true;
                return CURL_READFUNC_ABORT;
            }
            if (got == 0)
                break;
            r.have = static_cast<size_t>(got);
            r.off = 0;
        }
        char c = r.buf[r.off++];
        if (c == '\n' && !r.prev_cr) {
            out[n++] = '\r';
            r.pending_lf = true;
            r.prev_cr = false;
            continue;
        }
        out[n++] = c;
        r.prev_cr = c == '\r';
    }
    return n;
}

// Keeps the server's last reply lines (bounded) for error messages.
struct Transcript {
    std::string last;
};

int debug_cb(CURL*, curl_infotype type, char* data, size_t size, void* userp)
{
    if (type != CURLINFO_HEADER_IN)
        return 0;
    auto& t = *static_cast<Transcript*>(userp);
    std::string_view line(data, size);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
        line.remove_suffix(1);
    t.last = printable(line, 200);
    return 0;
}

struct CurlSlist {
    curl_slist* l = nullptr;
    ~CurlSlist() { curl_slist_free_all(l); }
    void add(const std::string& s)
    {
        curl_slist* n = curl_slist_append(l, s.c_str());
        if (!n)
            throw Failure(ex_software, "out of memory");
        l = n;
    }
};

void submit_smtp(const SubmitSettings& s, const std::string& from, const std::vector<std::string>& rcpts,
                 const std::string& path)
{
    static bool inited = [] { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }();
    if (!inited)
        throw Failure(ex_software, "libcurl could not be initialised");
    Reader r;
    UniqueFd f(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (f.get() < 0)
        throw Failure(ex_ioerr, "cannot open " + path + ": " + std::strerror(errno));
    r.fd = f.get();
    r.path = path;

    CURL* c = curl_easy_init();
    if (!c)
        throw Failure(ex_software, "libcurl could not be initialised");
    std::string scheme = s.target.kind == SubmitTarget::Kind::smtps ? "smtps" : "smtp";
    std::string host = s.target.host.find(':') != std::string::npos ? "[" + s.target.host + "]" : s.target.host;
    std::string url = scheme + "://" + host + ":" + std::to_string(s.target.port);
    CurlSlist rc;
    for (const auto& a : rcpts)
        rc.add("<" + a + ">");
    std::string mail_from = "<" + from + ">";
    Transcript t;
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_MAIL_FROM, mail_from.c_str());
    curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rc.l);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(c, CURLOPT_READDATA, &r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_DEBUGFUNCTION, debug_cb);
    curl_easy_setopt(c, CURLOPT_DEBUGDATA, &t);
    curl_easy_setopt(c, CURLOPT_VERBOSE, 1L);   // only feeds debug_cb; nothing is printed
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, static_cast<long>(s.timeout.count()));
    // A stalled server: less than 1 byte/s for the timeout ends the transfer.
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(s.timeout.count()));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    // STARTTLS is required: a server that does not offer it, or a man in the
    // middle who strips it, must not get the password or the mail in clear.
    curl_easy_setopt(c, CURLOPT_USE_SSL, s.insecure ? static_cast<long>(CURLUSESSL_TRY) : static_cast<long>(CURLUSESSL_ALL));
    if (s.insecure) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (!s.ca_file.empty())
        curl_easy_setopt(c, CURLOPT_CAINFO, s.ca_file.c_str());
    std::string login_options;
    if (!s.user.empty()) {
        curl_easy_setopt(c, CURLOPT_USERNAME, s.user.c_str());
        curl_easy_setopt(c, CURLOPT_PASSWORD, s.password.c_str());
        login_options = s.auth == "plain" ? "AUTH=PLAIN" : s.auth == "login" ? "AUTH=LOGIN" : "AUTH=*";
        curl_easy_setopt(c, CURLOPT_LOGIN_OPTIONS, login_options.c_str());
    }
    CURLcode res = curl_easy_perform(c);
    long reply = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &reply);
    curl_easy_cleanup(c);
    if (r.error)
        throw Failure(ex_ioerr, "cannot read " + path + " while sending");
    if (res == CURLE_OK)
        return;

    std::string server = url;
    std::string why = errbuf[0] ? errbuf : curl_easy_strerror(res);
    std::string said = t.last.empty() ? "" : " (server said: " + t.last + ")";
    switch (res) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
        throw Failure(ex_unavailable, server + ": cannot connect: " + why);
    case CURLE_OPERATION_TIMEDOUT:
        throw Failure(ex_tempfail, server + ": timed out: " + why + said);
    case CURLE_USE_SSL_FAILED:
        throw Failure(ex_unavailable, server + " does not offer STARTTLS; refusing to send in clear text "
                                               "(--insecure allows it)" + said);
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
        throw Failure(ex_unavailable, server + ": TLS failed: " + why);
    case CURLE_LOGIN_DENIED:
        throw Failure(ex_noperm, server + ": authentication as " + printable(s.user, 80) + " refused" + said);
    default:
        break;
    }
    int code = reply >= 400 ? exit_for_smtp_reply(reply) : ex_tempfail;
    throw Failure(code, server + ": " + why + said);
}

void submit_sendmail(const SubmitSettings& s, const std::string& from, const std::vector<std::string>& rcpts,
                     const std::string& path)
{
    UniqueFd in(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (in.get() < 0)
        throw Failure(ex_ioerr, "cannot open " + path + ": " + std::strerror(errno));
    std::vector<std::string> args = {s.sendmail_path, "-oi", "-f", from, "--"};
    args.insert(args.end(), rcpts.begin(), rcpts.end());
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = fork();
    if (pid < 0)
        throw Failure(ex_tempfail, "cannot start " + s.sendmail_path + ": " + std::strerror(errno));
    if (pid == 0) {
        // The message file is the program's standard input: no pipe to feed.
        if (dup2(in.get(), STDIN_FILENO) < 0)
            _exit(71);
        execv(s.sendmail_path.c_str(), argv.data());
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            throw Failure(ex_tempfail, "lost " + s.sendmail_path + ": " + std::strerror(errno));
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
        throw Failure(ex_unavailable, "cannot run " + s.sendmail_path + " (mmsend.sendmail)");
    if (WIFEXITED(st)) {
        int code = WEXITSTATUS(st);
        // Pass on sendmail's own sysexits code (75 means it will not queue now).
        throw Failure(code >= 64 && code <= 78 ? code : ex_unavailable,
                      s.sendmail_path + " failed with exit status " + std::to_string(code));
    }
    throw Failure(ex_tempfail, s.sendmail_path + " was killed by signal " + std::to_string(WTERMSIG(st)));
}

} // namespace

int exit_for_smtp_reply(long code)
{
    if (code >= 400 && code < 500)
        return ex_tempfail;
    return ex_unavailable;
}

SubmitTarget parse_submit_target(const std::string& value)
{
    SubmitTarget t;
    if (value == "sendmail")
        return t;
    auto bad = [&](const std::string& why) {
        return Failure(ex_config, "mmsend.smtp = '" + printable(value, 100) + "': " + why);
    };
    std::string rest;
    if (value.rfind("smtp://", 0) == 0) {
        t.kind = SubmitTarget::Kind::smtp;
        t.port = 587;
        rest = value.substr(7);
    } else if (value.rfind("smtps://", 0) == 0) {
        t.kind = SubmitTarget::Kind::smtps;
        t.port = 465;
        rest = value.substr(8);
    } else {
        throw bad("expected sendmail, smtp://HOST:PORT or smtps://HOST:PORT");
    }
    if (!rest.empty() && rest.back() == '/')
        rest.pop_back();
    if (rest.empty())
        throw bad("no host");
    if (rest.find_first_of("/@?# ") != std::string::npos)
        throw bad("only a host and a port are allowed (no user, path or query)");
    if (rest.find(':') != std::string::npos) {
        HostPort hp;
        if (!mm::parse_hostport(rest, hp))
            throw bad("expected HOST:PORT with a port from 1 to 65535");
        t.host = hp.host;
        t.port = hp.port;
    } else {
        t.host = rest;
    }
    if (t.host.empty())
        throw bad("no host");
    return t;
}

std::string read_password(const std::string& file, const std::string& user)
{
    if (!file.empty()) {
        std::string pw, err;
        if (!read_secret_line(file, 1023, pw, err))
            throw Failure(ex_config, "mmsend.password_file: " + err);
        return pw;
    }
    if (const char* env = std::getenv("MMSEND_PASSWORD"))
        return env;
    // A prompt on the terminal even when standard input is the message (-t).
    UniqueFd tty(open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY));
    if (tty.get() < 0)
        throw Failure(ex_config, "mmsend.user is " + printable(user, 80) +
                                     " but no password: set mmsend.password_file or MMSEND_PASSWORD");
    std::string prompt = "SMTP password for " + printable(user, 80) + ": ";
    if (write(tty.get(), prompt.data(), prompt.size()) < 0)
        throw Failure(ex_config, "cannot prompt for the password on /dev/tty");
    struct termios old{}, quiet{};
    bool have_termios = tcgetattr(tty.get(), &old) == 0;
    if (have_termios) {
        quiet = old;
        quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
        tcsetattr(tty.get(), TCSAFLUSH, &quiet);
    }
    std::string pw;
    char c;
    while (pw.size() < 1024) {
        ssize_t n = read(tty.get(), &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || c == '\n')
            break;
        pw += c;
    }
    if (have_termios)
        tcsetattr(tty.get(), TCSAFLUSH, &old);
    (void)!write(tty.get(), "\n", 1);
    return pw;
}

void submit(const SubmitSettings& s, const std::string& envelope_from, const std::vector<std::string>& rcpts,
            const std::string& message_path)
{
    if (s.target.kind == SubmitTarget::Kind::sendmail)
        submit_sendmail(s, envelope_from, rcpts, message_path);
    else
        submit_smtp(s, envelope_from, rcpts, message_path);
}

} // namespace mm::send
