// present.cpp - a mail's presented file from its raw copy (present.h): the media
// asked for, followed or re-inserted, the line ends made CRLF, the file put in
// place and made durable in the background (background_fsync.h).
// Config keys: see present.h (through SyncOptions).
#include "fetcher/present.h"

#include "fetcher/auth_results.h"
#include "fetcher/background_fsync.h"
#include "fetcher/clamd.h"
#include "fetcher/growing_media.h"
#include "fetcher/receipt.h"
#include "fetcher/status.h"
#include "core/address.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/util.h"
#include "mime/header_block.h"
#include "mime/find_handles.h"
#include "mime/part_header.h"
#include "mime/reinsert.h"
#include "mime/sniff.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace mm {

namespace {

/// Makes `out` from `in` with every bare LF turned into CRLF and a final line
/// end, so that the presented file is exactly what RETR sends (before
/// dot-stuffing) and its size is what LIST says. The engine writes a message's
/// own line ends, CRLF for mail that came over SMTP: then `in` is only renamed
/// (a byte-wise copy of a rebuilt 300 MB mail had cost seconds at every login).
bool normalise_crlf(const std::string& in, const std::string& out)
{
    int ifd = open(in.c_str(), O_RDONLY | O_CLOEXEC);
    if (ifd < 0)
        return false;
    std::string buf(1 << 20, '\0');
    // Pass 1: is there anything to change?
    bool bare = false;
    int prev = -1;
    ssize_t n;
    while (!bare && (n = read(ifd, buf.data(), buf.size())) > 0) {
        for (const char* p = buf.data(); (p = static_cast<const char*>(memchr(p, '\n', buf.data() + n - p)));
             ++p) {
            int before = p == buf.data() ? prev : static_cast<unsigned char>(p[-1]);
            if (before != '\r') {
                bare = true;
                break;
            }
        }
        prev = static_cast<unsigned char>(buf[static_cast<size_t>(n) - 1]);
    }
    if (n < 0) {
        ::close(ifd);
        return false;
    }
    if (!bare && (prev == '\n' || prev == -1)) {
        ::close(ifd);
        return rename(in.c_str(), out.c_str()) == 0;
    }
    // Pass 2: the copy with the line ends made CRLF.
    int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || lseek(ifd, 0, SEEK_SET) != 0) {
        if (fd >= 0)
            ::close(fd);
        ::close(ifd);
        return false;
    }
    std::string outbuf;
    outbuf.reserve(buf.size() * 2 + 2);
    bool ok = true;
    prev = -1;
    while (ok && (n = read(ifd, buf.data(), buf.size())) > 0) {
        outbuf.clear();
        const char* p = buf.data();
        const char* end = p + n;
        while (p < end) {
            const char* nl = static_cast<const char*>(memchr(p, '\n', static_cast<size_t>(end - p)));
            const char* stop = nl ? nl : end;
            outbuf.append(p, static_cast<size_t>(stop - p));
            if (nl) {
                int before = nl == buf.data() ? prev : static_cast<unsigned char>(nl[-1]);
                if (before != '\r')
                    outbuf.push_back('\r');
                outbuf.push_back('\n');
                p = nl + 1;
            } else {
                p = end;
            }
        }
        prev = static_cast<unsigned char>(buf[static_cast<size_t>(n) - 1]);
        ok = ::write(fd, outbuf.data(), outbuf.size()) == static_cast<ssize_t>(outbuf.size());
    }
    ok = ok && n == 0;
    // A POP3 message ends with CRLF before the terminating dot; keep that true here.
    if (ok && prev != '\n' && prev != -1)
        ok = ::write(fd, "\r\n", 2) == 2;
    ::close(ifd);
    ::close(fd);
    if (!ok)
        unlink(out.c_str());
    return ok;
}

/// The raw header block of a cached message, at most kMaxHeaderBlock octets.
constexpr size_t kMaxHeaderBlock = 256 * 1024;

std::string read_header_block(const std::string& path)
{
    std::string out;
    FILE* f = fopen(path.c_str(), "rb");
    if (!f)
        return out;
    char buf[8192];
    size_t n;
    while (out.size() < kMaxHeaderBlock && (n = fread(buf, 1, sizeof buf, f)) > 0) {
        size_t from = out.size() >= 3 ? out.size() - 3 : 0;
        out.append(buf, n);
        size_t end = out.find("\r\n\r\n", from);
        if (end != std::string::npos) {
            out.resize(end + 2);
            break;
        }
    }
    fclose(f);
    if (out.size() > kMaxHeaderBlock)
        out.resize(kMaxHeaderBlock);
    return out;
}

/// The media of a message's location parts that are not verified yet.
struct Missing {
    std::vector<size_t> downloading;   // parts whose download is under way or due
    bool waiting = false;              // some part waits for a retry after a failure (or for mode = ask)
    std::vector<size_t> unscanned;     // verified, but clamd could not be asked (fetcher.clamd)
    bool any() const { return !downloading.empty() || waiting; }
};

// The notes a reader finds at the top of a location part whose file was not put
// back (reinsert.h format_note). Our own words only: no sender text, no type or
// name from the handle, so nothing a stranger wrote is shown as if we said it.
constexpr const char* kNotePrefix = "[MediaMail] The file named below was not put back into this mail: ";
constexpr const char* kNoteType = "its type is not one this mailbox accepts (fetcher.types).";
constexpr const char* kNoteHeader =
    "the sender's description of it is not one plain audio or video attachment, so it could hide other "
    "content. Do not open the link unless you trust the sender.";
constexpr const char* kNoteSniff =
    "the downloaded file is not the audio or video it claims to be. Do not open the link unless you "
    "trust the sender.";
constexpr const char* kNoteVirus = "the virus scanner found malware in it (";
constexpr const char* kNoteVirusEnd = "). Do not open the link.";
constexpr const char* kNoteSize =
    "with its files put back the mail would be larger than this mailbox allows (fetcher.max_message_size).";
constexpr const char* kNoteUnscanned =
    "it could not be scanned for viruses in time. Open the link only if you trust the sender.";

std::string lower_ascii(std::string s)
{
    for (char& c : s)
        c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    return s;
}

/// Whether the verified file at path sniffs as the kind of media `type` says.
bool sniffs_as(const std::string& path, const std::string& type)
{
    unsigned char buf[kSniffMediaBytes];
    FILE* f = fopen(path.c_str(), "rb");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return sniffed_kind_fits(type, sniff_media(buf, n));
}

/// A download followed while it arrives (growing_media.h), its first bytes
/// sniffed before any of them goes out: a file that is not the media its
/// handle says makes the re-insertion fail before its bytes are written.
class SniffedMedia : public MediaInput {
public:
    SniffedMedia(std::unique_ptr<MediaInput> in, std::string type, uint64_t size)
        : in_(std::move(in)), type_(std::move(type)), size_(size)
    {
    }
    size_t read(char* buf, size_t n) override
    {
        if (!checked_) {
            head_.resize(static_cast<size_t>(std::min<uint64_t>(kSniffMediaBytes, size_)));
            size_t have = 0;
            while (have < head_.size())
                have += in_->read(head_.data() + have, head_.size() - have);
            if (!sniffed_kind_fits(type_, sniff_media(reinterpret_cast<const unsigned char*>(head_.data()),
                                                      head_.size())))
                throw std::runtime_error("downloaded bytes are not the media the handle names");
            checked_ = true;
        }
        if (off_ < head_.size()) {
            size_t k = std::min(n, head_.size() - off_);
            memcpy(buf, head_.data() + off_, k);
            off_ += k;
            return k;
        }
        return in_->read(buf, n);
    }
    void finish() override { in_->finish(); }

private:
    std::unique_ptr<MediaInput> in_;
    std::string type_;
    uint64_t size_;
    std::string head_;
    size_t off_ = 0;
    bool checked_ = false;
};

// How long a streamed build follows a download (fetcher.stream). A transfer
// that stalls is ended sooner by fetcher.timeout; this only bounds one crawling.
constexpr auto kStreamFollowMax = std::chrono::hours(1);

/// fetcher.stream: starts building the presented file of `base` in the
/// background, the media being downloaded (`downloading`) followed segment by
/// segment, when every one of them has segment digests and the message will
/// come out CRLF throughout. Returns nullptr (media untouched) when it does not
/// apply; else the build, or nullptr with `why` set when it cannot start.
std::shared_ptr<GrowingMessage> start_streamed(const std::string& base, const std::vector<FoundHandle>& found,
                                               std::vector<std::unique_ptr<MediaInput>>& media,
                                               const std::vector<size_t>& downloading, const SyncOptions& opt,
                                               std::string& why)
{
    std::vector<bool> replace(media.size());
    for (size_t i = 0; i < media.size(); ++i)
        replace[i] = media[i] != nullptr;
    for (size_t i : downloading) {
        if (found[i].parsed.handle.seg_size == 0)
            return nullptr;   // an older sender's handle: verified whole, at login
        replace[i] = true;
    }
    const std::string presented = base + ".eml", raw = base + ".raw";
    ReinsertLayout layout;
    std::string err;
    if (!reinsert_layout(raw, replace, layout, err) || !layout.crlf_clean)
        return nullptr;   // reinsert_media will say why, or normalise_crlf is needed
    auto cancel = std::make_shared<std::atomic<bool>>(false);
    const auto until = std::chrono::steady_clock::now() + kStreamFollowMax;
    for (size_t i : downloading)
        media[i] = std::make_unique<SniffedMedia>(
            std::make_unique<GrowingMedia>(*opt.downloader, found[i].parsed.handle, until, opt.stop, true,
                                           cancel.get()),
            lower_ascii(found[i].parsed.handle.type), found[i].parsed.handle.size);
    // In place, durable soon: as place_presented() does it.
    auto finish = [presented, raw](const std::string& rebuilt, std::string& w) {
        if (rename(rebuilt.c_str(), presented.c_str()) != 0) {
            w = "cannot rename " + rebuilt + ": " + std::strerror(errno);
            return false;
        }
        background_fsync().add(presented, raw);
        return true;
    };
    auto b = GrowingMessage::start(raw, presented + ".rebuilt" + random_hex(4), presented, std::move(media), cancel, layout,
                             finish, err);
    if (!b)
        why = err;
    else
        log_info("streaming " + base.substr(base.rfind('/') + 1, 16) + " while its media download");
    return b;
}

/// Asks the downloader for the media of each location part in `found`: a
/// verified file becomes media[i]; one not downloaded yet goes into `missing`;
/// the rest (bad handle, ignored sender, over max_size, refused) keeps its
/// location part. False with `why` set when a verified file cannot be opened.
bool ask_for_media(const std::vector<FoundHandle>& found, const std::string& raw, const std::string& user,
                   const SyncOptions& opt, std::vector<std::unique_ptr<MediaInput>>& media,
                   std::vector<std::string>& notes, Missing& missing, std::string& why)
{
    if (found.empty())
        return true;
    const std::string headers = read_header_block(raw);
    const std::string sender = normalize_address(header_value(headers, "From"));
    // From: is whatever the sender wrote: the lists apply only when the
    // receiving server vouches for it (fetcher.authserv_id, auth_results.h).
    const bool vouched = !sender.empty() && sender_vouched(headers, opt.authserv_id);
    const bool ignored = vouched && sender_matches(sender, opt.ignore_senders);
    const bool priority = vouched && sender_matches(sender, opt.priority_senders);
    ClamdAddress clamd;
    const bool scan = !opt.clamd.empty();
    const bool clamd_ok = scan && parse_clamd_address(opt.clamd, clamd);
    const std::string recipient = receipt_recipient(opt.address, headers, user);
    for (size_t i = 0; i < found.size(); ++i) {
        const auto& f = found[i];
        if (f.parsed.error != HandleError::none) {
            // An unparsable location part stays in the mail as the sender's note.
            log_warning(std::string("bad handle left in place: ") + handle_error_name(f.parsed.error) + " " +
                        printable(f.parsed.detail));
            continue;
        }
        const Handle& h = f.parsed.handle;
        const std::string tag = "media " + h.sha256.substr(0, 16);
        // What goes back must be one plain media part of an allowed type
        // (docs/handle-format.md, re-insertion rules): checked before any download.
        const std::string type = lower_ascii(h.type);
        if (!type_matches(type, opt.types)) {
            log_info(tag + " not fetched: type " + printable(type) + " not in fetcher.types");
            notes[i] = std::string(kNotePrefix) + kNoteType;
            continue;
        }
        std::string detail;
        if (PartHeaderError pe = check_part_header(h.headers, h.type, detail); pe != PartHeaderError::none) {
            log_warning(tag + " not fetched: its saved part header is refused (" + part_header_error_name(pe) + ", " +
                        printable(detail) + ")");
            notes[i] = std::string(kNotePrefix) + kNoteHeader;
            continue;
        }
        if (ignored || h.size > opt.max_size || !opt.downloader)
            continue;   // shown with its location part: fetcher.ignore_senders / max_size
        std::string path;
        MediaState st = opt.downloader->want(h, priority, !opt.ask, recipient, path);
        if (st == MediaState::ready) {
            if (!sniffs_as(path, type)) {
                log_warning(tag + " is not the " + printable(type) + " its handle names: left as a link");
                notes[i] = std::string(kNotePrefix) + kNoteSniff;
                continue;
            }
            if (scan) {
                std::string found_name;
                ScanVerdict v = clamd_ok ? scan_media_once(clamd, path, opt.clamd_timeout, found_name)
                                         : ScanVerdict::unavailable;
                if (v == ScanVerdict::infected) {
                    log_warning(tag + " infected (" + found_name + "): shown with its link and a note");
                    notes[i] = std::string(kNotePrefix) + kNoteVirus + found_name + kNoteVirusEnd;
                    continue;
                }
                if (v == ScanVerdict::unavailable) {
                    // Temporary: held back as if still downloading (fetcher.hold_max).
                    missing.waiting = true;
                    missing.unscanned.push_back(i);
                    why = tag + " not scanned yet: " + printable(clamd_ok ? found_name : "bad fetcher.clamd");
                    continue;
                }
            }
            try {
                media[i] = open_media_file(path);
            } catch (const std::exception& e) {
                why = "media " + h.sha256.substr(0, 16) + ": " + printable(e.what());
                return false;
            }
        } else if (st == MediaState::refused) {
            log_info("media " + h.sha256.substr(0, 16) + " not fetched (URL scheme, address or cache_quota " +
                     "not allowed): shown with its link");
        } else if ((st == MediaState::pending || st == MediaState::waiting) && !opt.ask) {
            // Only a transfer under way is worth a login's wait (fetcher.login_wait).
            if (st == MediaState::pending)
                missing.downloading.push_back(i);
            else
                missing.waiting = true;
            why = "media " + h.sha256.substr(0, 16) + " not yet downloaded";
        }
    }
    return true;
}

/// fetcher.max_message_size: whether the mail rebuilt with every file it waits
/// for (given or downloading) stays within the cap. If not, none goes back:
/// each valid location part stays, with a note, and media is set to nullptr.
bool within_message_cap(const std::string& raw, const std::vector<FoundHandle>& found,
                        std::vector<std::unique_ptr<MediaInput>>& media, const Missing& missing,
                        const SyncOptions& opt, std::vector<std::string>& notes)
{
    std::vector<bool> replace(media.size());
    bool any = false;
    for (size_t i = 0; i < media.size(); ++i)
        any |= replace[i] = media[i] != nullptr;
    for (size_t i : missing.downloading)
        any |= replace[i] = true;
    if (!any)
        return true;
    const uint64_t slack = uint64_t{64} << 20;
    const uint64_t cap = opt.max_message_size ? opt.max_message_size
                                              : (opt.max_size > UINT64_MAX - slack ? UINT64_MAX : opt.max_size + slack);
    ReinsertLayout layout;
    std::string err;
    if (!reinsert_layout(raw, replace, layout, err))
        return true;   // reinsert_media will say why
    if (layout.size <= cap)
        return true;
    log_warning("mail would be " + std::to_string(layout.size) + " octets with its media, over fetcher.max_message_size " +
                std::to_string(cap) + ": shown with its links");
    for (size_t i = 0; i < media.size(); ++i) {
        media[i].reset();
        if (found[i].parsed.error == HandleError::none && notes[i].empty())
            notes[i] = std::string(kNotePrefix) + kNoteSize;
    }
    return false;
}

/// Whether a mail has waited fetcher.hold_max for its media: the raw copy's age
/// is the time since we first read the message.
bool held_too_long(const std::string& raw, const SyncOptions& opt)
{
    struct stat st;
    return stat(raw.c_str(), &st) == 0 && time(nullptr) - st.st_mtime >= static_cast<time_t>(opt.hold_max.count());
}

/// Re-inserts `media` (nullptr: that location part stays) into the raw copy and
/// puts the presented file in place, to be made durable soon (background_fsync.h).
/// `following`: some inputs follow downloads still under way, so a failure
/// leaves the mail pending rather than held.
Presented place_presented(const std::string& raw, const std::string& presented,
                          const std::vector<std::unique_ptr<MediaInput>>& media, const std::vector<std::string>& notes,
                          bool following, std::string& why)
{
    const bool any = std::any_of(media.begin(), media.end(), [](const auto& m) { return m != nullptr; }) ||
                     std::any_of(notes.begin(), notes.end(), [](const auto& n) { return !n.empty(); });
    const std::string tmp = presented + ".tmp" + random_hex(4);
    if (!any) {
        // No media: the presented file is the raw message, byte for byte (already
        // CRLF), and as durable as the raw copy was.
        if (rename(raw.c_str(), presented.c_str()) != 0 || !fsync_dir_of(presented)) {
            why = std::string("cannot keep ") + raw + ": " + std::strerror(errno);
            return Presented::held;
        }
        return Presented::shown;
    }
    const std::string rebuilt = presented + ".rebuilt" + random_hex(4);
    std::string err;
    bool ok = false, crlf = false;
    std::vector<MediaInput*> inputs;
    for (const auto& m : media)
        inputs.push_back(m.get());
    try {
        ok = reinsert_media(raw, inputs, notes, rebuilt, err, &crlf);
    } catch (const std::exception& e) {
        err = e.what();
    }
    if (!ok) {
        unlink(rebuilt.c_str());
        if (following) {
            // Nothing shown: the downloader goes on, and the next poll uses its file.
            log_info("re-insertion alongside the download given up: " + printable(err));
            return Presented::pending;
        }
        why = "reinsert failed: " + printable(err);
        return Presented::held;
    }
    // What RETR sends must be CRLF throughout (normalise_crlf); mail from SMTP is already.
    bool norm = crlf ? rename(rebuilt.c_str(), tmp.c_str()) == 0 : normalise_crlf(rebuilt, tmp);
    unlink(rebuilt.c_str());
    // In place now, durable soon: the raw copy goes only then (BackgroundFsync),
    // because re-inserting a big video again costs seconds to minutes.
    if (!norm || rename(tmp.c_str(), presented.c_str()) != 0) {
        unlink(tmp.c_str());
        why = "cannot write presented file";
        return Presented::held;
    }
    background_fsync().add(presented, raw);
    return Presented::shown;
}

constexpr size_t kMaxShownHeader = 998;   // of From, Subject, Message-ID kept for the status page

/// The held mail as the status page shows it (status.h): from its raw copy's
/// header block (bounded read) and its location parts.
void report_held(const std::string& base, const std::string& raw)
{
    std::vector<FoundHandle> found;
    try {
        found = find_handles(raw);
    } catch (const std::exception&) {
        // Held for some other reason than its media: still listed, without them.
    }
    const std::string headers = read_header_block(raw);
    HeldMail m;
    m.key = base.substr(base.rfind('/') + 1);
    m.raw_path = raw;
    m.sender = header_value(headers, "From").substr(0, kMaxShownHeader);
    m.subject = header_value(headers, "Subject").substr(0, kMaxShownHeader);
    m.message_id = header_value(headers, "Message-ID").substr(0, kMaxShownHeader);
    for (const auto& f : found)
        if (f.parsed.error == HandleError::none) {
            const Handle& h = f.parsed.handle;
            m.media.push_back(HeldMedia{h.name.substr(0, kMaxShownHeader), h.type.substr(0, 200), h.sha256,
                                        item_id_of_url(h.url), h.size});
        }
    fetcher_status().held(std::move(m));
}

/// The trace line of a mail whose media went back in (core/log.h, kv).
void log_put_back(const std::string& raw, const std::vector<FoundHandle>& found,
                  const std::vector<std::unique_ptr<MediaInput>>& media)
{
    std::string items, hashes;
    for (size_t i = 0; i < found.size() && i < media.size(); ++i) {
        if (!media[i])
            continue;
        const Handle& h = found[i].parsed.handle;
        std::string item = item_id_of_url(h.url);
        items += (items.empty() ? "" : ",") + (item.empty() ? std::string("-") : item);
        hashes += (hashes.empty() ? "" : ",") + h.sha256.substr(0, 12);
    }
    if (hashes.empty())
        return;
    fetcher_status().mails_put_back++;
    log_info("media put back" + kv("message_id", header_value(read_header_block(raw), "Message-ID")) +
             kv("item", items) + kv("hash", hashes));
}

Presented present_mail(const std::string& base, const std::string& user, const SyncOptions& opt, std::string& why,
                       std::shared_ptr<GrowingMessage>& growing, unsigned& put_back);

} // namespace

Presented present_raw(const std::string& base, const std::string& user, const SyncOptions& opt, std::string& why,
                      std::shared_ptr<GrowingMessage>& growing, unsigned* put_back)
{
    // Listed before the downloads are asked for, so that their log lines
    // already find the mail's Message-ID (media_trace).
    report_held(base, base + ".raw");
    unsigned back = 0;
    Presented p = present_mail(base, user, opt, why, growing, back);
    if (put_back)
        *put_back = back;
    if (p == Presented::shown)
        fetcher_status().released(base.substr(base.rfind('/') + 1));
    return p;
}

namespace {

Presented present_mail(const std::string& base, const std::string& user, const SyncOptions& opt, std::string& why,
                       std::shared_ptr<GrowingMessage>& growing, unsigned& put_back)
{
    put_back = 0;
    const std::string presented = base + ".eml";
    const std::string raw = base + ".raw";
    if (auto b = GrowingMessage::find(presented)) {
        growing = std::move(b);   // streamed to another reader already, or just now
        return Presented::shown;
    }
    std::vector<FoundHandle> found;
    try {
        found = find_handles(raw);
    } catch (const std::exception& e) {
        // A message GMime cannot walk is still a message: show it as it came
        // rather than hide mail from its recipient.
        log_warning("find_handles failed, presenting as is: " + printable(e.what()));
        found.clear();
    }
    // One input per location part: the verified file, a download followed while
    // it arrives, or none (the location part stays).
    std::vector<std::unique_ptr<MediaInput>> media(found.size());
    std::vector<std::string> notes(found.size());
    Missing missing;
    if (!ask_for_media(found, raw, user, opt, media, notes, missing, why))
        return Presented::held;
    if (!within_message_cap(raw, found, media, missing, opt, notes))
        missing = {};   // every file stays a link: nothing to wait for
    bool following = false;
    if (missing.any()) {
        if (!held_too_long(raw, opt)) {
            // A login re-inserts while the downloads arrive, when they all are under
            // way: the message is ready moments after its last media is verified.
            // Not with fetcher.clamd: a file is scanned whole before it goes back.
            following = !missing.waiting && opt.clamd.empty() && std::chrono::steady_clock::now() < opt.follow_until;
            if (!following)
                return missing.downloading.empty() ? Presented::held : Presented::pending;
            if (opt.stream && std::all_of(notes.begin(), notes.end(), [](const auto& n) { return n.empty(); })) {
                // Listed once its first segment checks out: a download that
                // cannot even start (gateway down, bad bytes) holds the mail
                // back as it always did, and the login's loop tries again.
                std::string failed;
                growing = start_streamed(base, found, media, missing.downloading, opt, failed);
                if (growing && growing->wait_started(failed, opt.follow_until))
                    return Presented::shown;
                if (growing) {
                    growing.reset();
                    why = failed;
                    return Presented::pending;
                }
                if (!failed.empty()) {
                    why = failed;
                    return Presented::held;
                }
            }
            for (size_t i : missing.downloading)
                media[i] = std::make_unique<GrowingMedia>(*opt.downloader, found[i].parsed.handle, opt.follow_until,
                                                          opt.stop);
        } else {
            log_warning("held longer than fetcher.hold_max, shown with the link: " + why);
            for (size_t i : missing.unscanned)
                notes[i] = std::string(kNotePrefix) + kNoteUnscanned;
        }
    }
    if (following)
        for (size_t i : missing.downloading)
            media[i] = std::make_unique<SniffedMedia>(std::move(media[i]), lower_ascii(found[i].parsed.handle.type),
                                                      found[i].parsed.handle.size);
    Presented p = place_presented(raw, presented, media, notes, following, why);
    if (p == Presented::shown) {
        put_back = static_cast<unsigned>(std::count_if(media.begin(), media.end(), [](const auto& m) { return m != nullptr; }));
        log_put_back(presented, found, media);
    }   // the raw copy may be gone: the same headers are here
    return p;
}

} // namespace

bool sender_matches(const std::string& address, const std::vector<std::string>& list)
{
    size_t at = address.rfind('@');
    if (at == std::string::npos)
        return false;
    std::string domain = address.substr(at + 1);
    for (std::string e : list) {
        for (char& c : e)
            c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        if (e.empty())
            continue;
        if (e[0] == '@') {
            if (e.substr(1) == domain)
                return true;
        } else if (e.find('@') != std::string::npos) {
            if (e == address)
                return true;
        } else if (e == domain) {
            return true;
        }
    }
    return false;
}

} // namespace mm
