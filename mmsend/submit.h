// submit.h - hands the finished message to the mail system: SMTP submission
// with libcurl (smtp:// with STARTTLS required unless insecure, smtps://, AUTH
// PLAIN/LOGIN), or the local sendmail program. Reads mmsend.smtp,
// mmsend.sendmail, mmsend.user, mmsend.password_file, mmsend.auth, mmsend.timeout,
// mmsend.ca_file.
#pragma once

#include "mmsend/options.h"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace mm::send {

struct SubmitTarget {
    enum class Kind { sendmail, smtp, smtps } kind = Kind::sendmail;
    std::string host;
    uint16_t port = 0;
};

/// Parses mmsend.smtp: "sendmail", smtp://HOST[:PORT] (587) or smtps://HOST[:PORT]
/// (465). Throws Failure(78) naming the value.
SubmitTarget parse_submit_target(const std::string& value);

struct SubmitSettings {
    SubmitTarget target;
    std::string sendmail_path;
    std::string user, password;
    std::string auth = "any";    // any | plain | login
    std::string ca_file;
    std::chrono::seconds timeout{60};
    bool insecure = false;
};

/// Sends the message file to the recipients. Throws Failure with a sysexits
/// code and the server's (escaped, cut) reply or the program's exit status.
void submit(const SubmitSettings& s, const std::string& envelope_from, const std::vector<std::string>& rcpts,
            const std::string& message_path);

/// The password for SMTP AUTH: the first line of `file` when set, else
/// $MMSEND_PASSWORD, else asked on /dev/tty. Never from argv. Throws Failure(78).
std::string read_password(const std::string& file, const std::string& user);

/// The sysexits code for an SMTP reply code (4xx temporary, 5xx permanent).
int exit_for_smtp_reply(long code);

} // namespace mm::send
