// job_file.h - the download queue as it is kept on disk, cache_dir/jobs: one
// <job id>.job file per source of a media file ("key=value" lines, written durably,
// parsed strictly so that a damaged file is set aside rather than half believed),
// and the empty <job id>.want markers by which "mm-fetcher fetch" asks the running
// fetcher for media of fetcher.mode = ask. A job is one (SHA-256, URL, pin): a
// source that fails or is refused never stands in the way of another source of
// the same bytes. Files of the older layout (<sha256>.job) still load; the
// downloader renames them. Reads no config keys.
#pragma once

#include "mime/handle.h"

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

namespace mm {

/// One source of a media file as it is kept in jobs/<job id>.job.
struct Job {
    enum class State { asked, download, receipt, refused };
    Handle handle;                  // url, sha256, size, pin are what matter here
    State state = State::download;
    bool priority = false;
    unsigned attempts = 0;
    int64_t next_try = 0;           // unix seconds
    std::set<std::string> recipients;   // receipts still to send
    std::string last_error;
    // In memory only (not in the file): the Message-ID of the held mail that
    // named the media when its download started, for the trace of the
    // "verified" line, which the mail may no longer be held at.
    std::string message_id;
};

constexpr size_t kMaxJobFile = 64 * 1024;
constexpr size_t kMaxJobRecipients = 64;   // receipts one job keeps

/// The state's word in the file ("asked", "download", ...), also used in logs.
const char* job_state_name(Job::State s);

/// Whether a value can be one line of a job file: no control bytes.
bool job_value_clean(std::string_view v);

/// Serialises a job as "key=value" lines; parse_job is strict (every line known,
/// no control bytes, numbers with from_chars, sha256 hex) and returns false on any doubt.
std::string format_job(const Job& j);
bool parse_job(std::string_view text, Job& out);

/// The job id: hex SHA-256 of (sha256, url, pin) with NUL separators, so that
/// no two sources can be made to share one id.
std::string job_id(const Handle& h);

/// jobs_dir/<id>.job and jobs_dir/<id>.want (id: job_id(), or for a job file of
/// the older layout the media's SHA-256).
std::string job_path(const std::string& jobs_dir, const std::string& id);
std::string want_path(const std::string& jobs_dir, const std::string& id);
/// Whether a directory entry is a job file / a want marker; sets the id it names.
bool job_file_name(const std::string& name, std::string& id);
bool want_marker_name(const std::string& name, std::string& id);

/// How a job file's name stands to its contents: named by its id (current),
/// by its SHA-256 alone (the older layout, to be renamed), or by neither (damaged).
enum class JobFileName { current, old_layout, mismatch };
JobFileName classify_job_file(const std::string& name_id, const Job& j);

/// Reads (at most kMaxJobFile octets) and parses one job file.
bool load_job(const std::string& path, Job& out);
/// Writes jobs_dir/<job id>.job durably (temporary name, fsync, rename).
bool save_job(const std::string& jobs_dir, const Job& j);
/// Writes the empty marker jobs_dir/<id>.want durably.
bool write_want_marker(const std::string& jobs_dir, const std::string& id);

} // namespace mm
