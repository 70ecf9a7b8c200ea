// options.cpp - mmsend's argument parser (see options.h). Strict on purpose: an
// unknown option or a misplaced --title is an error, never silently ignored,
// because a mail sent with the wrong recipients or fields cannot be recalled.
#include "mmsend/options.h"

namespace mm::send {

namespace {

bool has_line_break(const std::string& s)
{
    return s.find_first_of(std::string("\r\n\0", 3)) != std::string::npos;
}

// A value that goes into a header: one line, bounded.
void check_header_value(const std::string& opt, const std::string& v)
{
    if (has_line_break(v))
        throw UsageError(opt + ": line breaks and NUL are not allowed");
    if (v.size() > 998)
        throw UsageError(opt + ": longer than 998 characters");
}

} // namespace

Options parse_options(const std::vector<std::string>& args)
{
    Options o;
    bool compose_opt = false, sendmail_opt = false, end_of_options = false;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& arg = args[i];
        if (arg.size() > kMaxArgLength)
            throw UsageError("argument " + std::to_string(i + 1) + " is longer than " +
                             std::to_string(kMaxArgLength) + " bytes");
        if (end_of_options || arg.empty() || arg[0] != '-' || arg == "-") {
            if (arg.empty() || arg == "-")
                throw UsageError("empty or '-' recipient argument");
            o.recipients.push_back(arg);
            sendmail_opt = true;
            continue;
        }
        std::string name = arg, inline_value;
        bool has_inline = false;
        if (arg.rfind("--", 0) == 0) {
            size_t eq = arg.find('=');
            if (eq != std::string::npos) {
                name = arg.substr(0, eq);
                inline_value = arg.substr(eq + 1);
                has_inline = true;
            }
        }
        auto value = [&]() -> std::string {
            if (has_inline)
                return inline_value;
            if (i + 1 >= args.size())
                throw UsageError(name + " needs a value");
            if (args[i + 1].size() > kMaxArgLength)
                throw UsageError(name + ": value longer than " + std::to_string(kMaxArgLength) + " bytes");
            return args[++i];
        };
        auto flag = [&] {
            if (has_inline)
                throw UsageError(name + " takes no value");
        };
        auto describe = [&](std::string Attachment::*field) {
            std::string v = value();
            check_header_value(name, v);
            if (o.attachments.empty())
                throw UsageError(name + " must follow the --attach it describes");
            std::string& slot = o.attachments.back().*field;
            if (!slot.empty())
                throw UsageError(name + " given twice for " + o.attachments.back().path);
            if (v.empty())
                throw UsageError(name + " is empty");
            slot = v;
            compose_opt = true;
        };

        if (name == "--") {
            flag();
            end_of_options = true;
        } else if (name == "-c" || name == "--config") {
            o.config_path = value();
        } else if (name == "--set") {
            o.overrides.push_back(value());
        } else if (name == "-h" || name == "--help") {
            flag();
            o.help = true;
        } else if (name == "-V" || name == "--version") {
            flag();
            o.version = true;
        } else if (name == "--check") {
            flag();
            o.check = true;
        } else if (name == "--from") {
            if (!o.from.empty())
                throw UsageError("--from given twice");
            o.from = value();
            check_header_value(name, o.from);
            compose_opt = true;
        } else if (name == "--to" || name == "--cc" || name == "--bcc") {
            std::string v = value();
            check_header_value(name, v);
            if (v.empty())
                throw UsageError(name + " is empty");
            (name == "--to" ? o.to : name == "--cc" ? o.cc : o.bcc).push_back(v);
            compose_opt = true;
        } else if (name == "--subject") {
            o.subject = value();
            check_header_value(name, o.subject);
            compose_opt = true;
        } else if (name == "--body" || name == "--body-file") {
            if (o.has_body)
                throw UsageError("give one --body or --body-file");
            o.has_body = true;
            (name == "--body" ? o.body : o.body_file) = value();
            if (name == "--body-file" && o.body_file.empty())
                throw UsageError("--body-file is empty");
            compose_opt = true;
        } else if (name == "--attach") {
            std::string v = value();
            if (v.empty() || has_line_break(v))
                throw UsageError("--attach needs a file name without line breaks");
            if (o.attachments.size() >= kMaxAttachments)
                throw UsageError("more than " + std::to_string(kMaxAttachments) + " attachments");
            o.attachments.push_back(Attachment{v, "", "", ""});
            compose_opt = true;
        } else if (name == "--title") {
            describe(&Attachment::title);
        } else if (name == "--note") {
            describe(&Attachment::note);
        } else if (name == "--copyright") {
            describe(&Attachment::copyright);
        } else if (name == "--detach-all") {
            flag();
            o.detach_all = true;
        } else if (name == "--link") {
            flag();
            o.link = true;
        } else if (name == "--gateway") {
            // The same as mmsend.gateway, checked with the other keys (Config::verify).
            o.overrides.push_back("mmsend.gateway=" + value());
            o.gateway = true;
        } else if (name == "--insecure") {
            flag();
            o.insecure = true;
        } else if (name == "--json") {
            flag();
            o.json = true;
        } else if (name == "-q" || name == "--quiet") {
            flag();
            o.quiet = true;
        } else if (name == "-t") {
            o.read_recipients = true;
            sendmail_opt = true;
        } else if (name == "-f" || (name.rfind("-f", 0) == 0 && name.size() > 2 && name[1] == 'f')) {
            if (!o.envelope_from.empty())
                throw UsageError("-f given twice");
            o.envelope_from = name.size() > 2 ? name.substr(2) : value();
            check_header_value("-f", o.envelope_from);
            sendmail_opt = true;
        } else if (name == "-F" || (name.size() > 2 && name.rfind("-F", 0) == 0)) {
            // The sender's full name: accepted for compatibility; the From header rules.
            if (name.size() == 2)
                value();
            sendmail_opt = true;
        } else if (name == "-i" || name == "-oi" || (name.rfind("-o", 0) == 0 && name.size() > 2) ||
                   name == "-bm" || name == "-U") {
            // sendmail options that change nothing here: a lone dot never ends
            // the message we read (we read to EOF), delivery mode is the MTA's.
            sendmail_opt = true;
        } else {
            throw UsageError("unknown option " + name.substr(0, 64));
        }
    }
    if (o.help || o.version || o.check)
        return o;
    if (compose_opt && sendmail_opt)
        throw UsageError("compose options (--from, --to, --attach ...) and sendmail options (-t, -f, "
                         "recipients) cannot be mixed");
    if (o.link && o.gateway)
        throw UsageError("--link and --gateway cannot be combined: the gateway needs the bytes");
    if (sendmail_opt) {
        o.mode = Mode::sendmail;
        if (o.link)
            throw UsageError("--link needs files: use compose mode (--attach)");
        if (!o.read_recipients && o.recipients.empty())
            throw UsageError("no recipients: give -t or recipient addresses");
        return o;
    }
    if (!compose_opt)
        throw UsageError("nothing to send: give --from, --to, --subject and --attach, or -t");
    o.mode = Mode::compose;
    if (o.from.empty())
        throw UsageError("--from is required");
    if (o.to.empty() && o.cc.empty() && o.bcc.empty())
        throw UsageError("at least one --to, --cc or --bcc is required");
    if (o.subject.empty())
        throw UsageError("--subject is required");
    return o;
}

const char* usage_text()
{
    return "usage: mmsend [-c FILE] [--set section.key=value]... --from ADDR --to ADDR [--to ADDR]...\n"
           "              [--cc ADDR]... [--bcc ADDR]... --subject TEXT [--body TEXT | --body-file FILE]\n"
           "              [--attach FILE [--title T] [--note N] [--copyright C]]...\n"
           "              [--detach-all] [--link | --gateway URL] [--insecure] [--json] [-q]\n"
           "       mmsend [-c FILE] -t [-f SENDER] [-oi] [--detach-all] [--gateway URL] [--insecure] [--json]\n"
           "              [--] [RCPT]... < MESSAGE\n"
           "       mmsend [-c FILE] [--set section.key=value]... --check | --version\n"
           "\n"
           "Sends mail with big media detached into the local MediaMail store (served by\n"
           "mm-gateway); the mail carries a small location part instead.\n"
           "\n"
           "  --attach FILE     attach a file; --title/--note/--copyright describe the last one\n"
           "  --detach-all      detach every attachment, not only large media\n"
           "  --link            register media files in place instead of copying them\n"
           "  --gateway URL     upload media to that mm-gateway instead of a local store\n"
           "                    (mmsend.gateway; token in mmsend.gateway_token_file); an\n"
           "                    upload cut short resumes, also in a second run (exit 75)\n"
           "  --insecure        allow SMTP without TLS and skip certificate checks\n"
           "  --json            print the handles created, as JSON, on standard output\n"
           "  -q, --quiet       no progress bar\n"
           "  -t                read recipients from To, Cc and Bcc (Bcc is removed)\n"
           "  -f SENDER         envelope sender (default: the From address)\n"
           "  --check           check the configuration, print what is not default, exit\n"
           "  -V, --version     print the version\n"
           "\n"
           "Submission: mmsend.smtp = sendmail | smtp://HOST:587 | smtps://HOST:465;\n"
           "password from mmsend.password_file, $MMSEND_PASSWORD or the terminal.\n"
           "A mail with nothing to detach never opens the store: any user may send it.\n"
           "See mmsend(1).\n";
}

} // namespace mm::send
