// job_file.h - the download queue as it is kept on disk, cache_dir/jobs: one
// <sha256>.job file per queued media ("key=value" lines, written durably, parsed
// strictly so that a damaged file is set aside rather than half believed), and
// the empty <sha256>.want markers by which "mm-fetcher fetch" asks the running
// fetcher for media of fetcher.mode = ask. Reads no config keys.
#pragma once

#include "mime/handle.h"

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

namespace mm {

/// One queued media file as it is kept in jobs/<sha256>.job.
struct Job {
    enum class State { asked, download, receipt, refused };
    Handle handle;                  // url, sha256, size, pin are what matter here
    State state = State::download;
    bool priority = false;
    unsigned attempts = 0;
    int64_t next_try = 0;           // unix seconds
    std::set<std::string> recipients;   // receipts still to send
    std::string last_error;
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

/// jobs_dir/<sha256>.job and jobs_dir/<sha256>.want.
std::string job_path(const std::string& jobs_dir, const std::string& sha256);
std::string want_path(const std::string& jobs_dir, const std::string& sha256);
/// Whether a directory entry is a job file / a want marker; sets its SHA-256.
bool job_file_name(const std::string& name, std::string& sha256);
bool want_marker_name(const std::string& name, std::string& sha256);

/// Reads (at most kMaxJobFile octets) and parses one job file.
bool load_job(const std::string& path, Job& out);
/// Writes jobs_dir/<sha256>.job durably (temporary name, fsync, rename).
bool save_job(const std::string& jobs_dir, const Job& j);
/// Writes the empty marker jobs_dir/<sha256>.want durably.
bool write_want_marker(const std::string& jobs_dir, const std::string& sha256);

} // namespace mm
