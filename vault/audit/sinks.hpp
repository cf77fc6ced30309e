#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.hpp"
#include "base/result.hpp"
#include "storage/storage.hpp"
#include "vault/audit/audit_settings.hpp"

// Audit sinks: replicas of the audit log outside the database (a JSON-lines file, syslog).
// The database stays the durable copy; a sink is written after the commit and catches up from
// the records in storage whenever it fell behind.
namespace kw::vault::audit {

// A record larger than this many bytes goes to syslog as {"seq":N,"sha256":<hex>,
// "truncated":true}, so that one huge body cannot exceed the datagram limit of the receiver.
inline constexpr std::size_t kMaxSyslogRecordBytes = 60 * 1024;

// A failed sink is reopened and caught up at most this often.
inline constexpr std::chrono::seconds kSinkRecoveryInterval{1};

// The state of one sink. sys/health shows name, type, required and healthy.
struct SinkStatus {
  std::string name;
  std::string type;  // "file" or "syslog"
  bool required = true;
  bool healthy = false;
  std::uint64_t next_sequence = 0;  // the record the sink writes next
  std::string error;                // why the sink failed; empty when healthy
};

// Returns the syslog facility code of `name` (kern, user, mail, daemon, auth, syslog, lpr,
// news, uucp, cron, authpriv, ftp, local0 ... local7); nullopt for any other name.
std::optional<int> SyslogFacilityCode(std::string_view name);

// Returns true when `tag` can be an RFC 5424 APP-NAME: 1 to 48 printable ASCII characters
// without spaces.
bool IsValidSyslogTag(std::string_view tag);

// The end of a destination's content, as the destination reports it when opened.
struct SinkPosition {
  // The last record in the destination; nullopt when it has none or cannot tell (syslog).
  std::optional<std::uint64_t> last_sequence;
  // The destination ends with the checkpoint line for a tree of last_sequence records.
  bool ends_with_checkpoint = false;
  // The destination open until now was deleted, so a new empty one starts with every record
  // still in the database instead of the next one.
  bool replaces_deleted = false;
};

// One destination. SinkSet serialises every call; implementations need no locking.
class Sink {
 public:
  virtual ~Sink() = default;

  // Opens the destination, or opens it again, switching over only once the new one is open.
  // A file loses a torn last line (a crash in the middle of a write) here.
  virtual Result<SinkPosition> Open() = 0;

  // Writes `line` (one JSON value, without the newline). `sequence` is the record's, or the
  // tree size for a checkpoint line. Returns the error at once and never retries; a failed
  // write leaves no partial line behind. A file that was deleted fails without a write.
  virtual Status Write(std::uint64_t sequence, std::string_view line, bool checkpoint) = 0;

  // Returns true when the destination keeps what was written (a file), so that a new one
  // starts with every record still in the database. Syslog starts at the next record.
  virtual bool KeepsHistory() const = 0;
};

// Returns a sink for `config`. invalid_argument for an unknown type, facility or tag, or a
// relative path. Nothing is opened yet. `clock` must outlive the sink.
Result<std::unique_ptr<Sink>> MakeSink(const SinkConfig& config, const Clock& clock);

// The configured sinks and, for each, the next record it needs. Delivery runs in sequence
// order under one mutex. A sink that falls behind (a record it never saw, a failure, a
// restart) catches up by reading the records and checkpoints from storage. A failed sink is
// skipped until CheckRequired recovers it. Thread-safe. `storage` and `clock` must outlive
// the set.
class SinkSet {
 public:
  // Opens every sink and catches it up with the records in `storage`. invalid_argument for a
  // bad config; unavailable when a required sink cannot be opened. A best-effort sink that
  // cannot be opened, or any sink that fails while catching up, starts failed and recovers
  // like any failed sink.
  static Result<std::unique_ptr<SinkSet>> Open(const std::vector<SinkConfig>& configs,
                                               storage::Storage& storage, const Clock& clock);

  ~SinkSet();
  SinkSet(const SinkSet&) = delete;
  SinkSet& operator=(const SinkSet&) = delete;

  // Writes committed record `sequence` (its stored bytes `canonical`) to every healthy sink
  // that has not written it yet, after the records before it that the sink missed.
  // unavailable naming every failed required sink, including ones that failed earlier.
  Status Deliver(std::uint64_t sequence, std::string_view canonical);

  // Catches every healthy sink up to record `size`, then writes the checkpoint line
  // {"checkpoint":<note>} after it. A sink that already wrote records beyond `size` gets no
  // line, because the line must follow record `size`. Errors as Deliver.
  Status DeliverCheckpoint(std::uint64_t size, std::string_view note);

  // Returns OK when every required sink is healthy. Otherwise tries to reopen and catch up
  // each failed sink, at most once per kSinkRecoveryInterval per sink, and returns
  // unavailable naming the failed required sinks. While no sink is failed it reads one atomic
  // counter and takes no lock.
  Status CheckRequired();

  // Opens every sink again (SIGHUP, after logrotate renamed the file) and catches it up.
  // A sink that cannot be reopened is marked failed.
  void Reopen();

  // Returns the state of every sink, in configuration order.
  std::vector<SinkStatus> Health() const;

  // Returns the configured sink names, in configuration order.
  std::vector<std::string> Names() const;

 private:
  struct SinkState;

  explicit SinkSet(storage::Storage& storage);

  // The calls below run with mutex_ held. Each marks the sink failed when it returns an error.

  // Opens the sink and adopts the position it reports. A destination that reports none
  // starts, at start-up or in place of a deleted file, at record 1 (a file) or after the last
  // stored record (syslog). Otherwise it continues at the in-memory next record.
  Status OpenAtPosition(SinkState& state, std::uint64_t database_last, bool at_start);
  // Reopens the sink and catches it up with the last stored record; marks it healthy on success.
  Status Recover(SinkState& state);
  // Writes the stored records from the sink's next one through `through`, each followed by
  // its stored checkpoint line. Records that retention pruned are skipped.
  Status CatchUp(SinkState& state, std::uint64_t through);
  Status WriteLine(SinkState& state, std::uint64_t sequence, std::string_view line,
                   bool checkpoint);
  // Records `error` as the sink's and returns it. Logs the first failure, and a later error
  // only when its message differs from the last one, so a failing recovery logs once per cause.
  Status MarkFailed(SinkState& state, const Error& error);
  // Returns unavailable naming every failed required sink; OK when there is none.
  Status FailedRequiredStatus() const;

  storage::Storage& storage_;
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<SinkState>> sinks_;  // guarded by mutex_
  // The number of failed sinks, so that CheckRequired skips the mutex while it is zero.
  std::atomic<int> failed_count_{0};
};

}  // namespace kw::vault::audit
