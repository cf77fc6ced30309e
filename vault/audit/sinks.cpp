#include "vault/audit/sinks.hpp"

#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <map>
#include <system_error>
#include <utility>

#include <nlohmann/json.hpp>

#include "base/bytes.hpp"
#include "base/log.hpp"
#include "vault/audit/audit_record.hpp"
#include "vault/audit/retention.hpp"

namespace kw::vault::audit {

namespace {

// Records and checkpoints read from storage per Scan while catching up.
constexpr std::size_t kCatchUpPage = 1000;
// Bytes read per step while searching a file backwards for its last line.
constexpr std::size_t kTailChunk = 64 * 1024;
// RFC 5424 severity "informational".
constexpr int kSyslogSeverity = 6;

std::string ErrnoText(int error) { return std::system_category().message(error); }

// Owns a file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  ~UniqueFd() {
    if (fd_ >= 0) ::close(fd_);
  }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Returns the offset of the last '\n' before `limit` in `fd`; nullopt when there is none.
Result<std::optional<off_t>> FindLastNewline(int fd, off_t limit, const std::string& path) {
  std::string chunk;
  while (limit > 0) {
    const off_t start = limit > static_cast<off_t>(kTailChunk) ? limit - kTailChunk : 0;
    chunk.resize(static_cast<std::size_t>(limit - start));
    const ssize_t read = ::pread(fd, chunk.data(), chunk.size(), start);
    if (read != static_cast<ssize_t>(chunk.size())) {
      return Unavailable("read " + path + ": " + (read < 0 ? ErrnoText(errno) : "short read"));
    }
    const void* found = ::memrchr(chunk.data(), '\n', chunk.size());
    if (found != nullptr) {
      return std::optional<off_t>(start + (static_cast<const char*>(found) - chunk.data()));
    }
    limit = start;
  }
  return std::optional<off_t>();
}

// Returns the tree size named by a signed note: its second line.
std::optional<std::uint64_t> NoteTreeSize(std::string_view note) {
  const std::size_t first = note.find('\n');
  if (first == std::string_view::npos) return std::nullopt;
  const std::size_t second = note.find('\n', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  const std::string_view digits = note.substr(first + 1, second - first - 1);
  if (digits.empty() || digits.size() > 20) return std::nullopt;
  std::uint64_t size = 0;
  for (const char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    size = size * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return size;
}

// Returns the position that the last complete line of a JSON-lines file names.
Result<SinkPosition> PositionFromLine(std::string_view line, const std::string& path) {
  const nlohmann::json parsed = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_object()) {
    const auto seq = parsed.find("seq");
    if (seq != parsed.end() && seq->is_number_unsigned()) {
      return SinkPosition{seq->get<std::uint64_t>(), false};
    }
    const auto checkpoint = parsed.find("checkpoint");
    if (checkpoint != parsed.end() && checkpoint->is_string()) {
      if (auto size = NoteTreeSize(checkpoint->get_ref<const std::string&>())) {
        return SinkPosition{*size, true};
      }
    }
  }
  return DataLoss("the last line of " + path +
                  " is neither an audit record nor a checkpoint; move the file aside");
}

// A JSON-lines file written with O_APPEND, one write(2) per line and no fsync.
//
// The sink distinguishes a deleted file from a renamed one by the link count of the open file
// alone. `rm` of the file or `rm -rf` of its directory drops the count to 0, and writes would
// then go to an inode that no path reaches. A rename (logrotate) keeps the count at 1 while the
// path names another file or none until SIGHUP, so a check of the path would fail a rotation.
// NOTE: the Linux NFS client renames a deleted file that is still open to .nfsXXXX instead of
// unlinking it, so on NFS the count stays 1 and a deletion is not detected.
class FileSink final : public Sink {
 public:
  explicit FileSink(std::string path) : path_(std::move(path)) {}

  Result<SinkPosition> Open() override {
    const bool replaces_deleted = fd_.valid() && IsDeleted(fd_.get());
    UniqueFd opened(::open(path_.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
    if (!opened.valid()) return Unavailable("open " + path_ + ": " + ErrnoText(errno));
    struct stat status {};
    if (::fstat(opened.get(), &status) != 0) {
      return Unavailable("fstat " + path_ + ": " + ErrnoText(errno));
    }
    if (!S_ISREG(status.st_mode)) return InvalidArgument(path_ + " is not a regular file");
    KW_ASSIGN_OR_RETURN(SinkPosition position, ReadPosition(opened.get(), status.st_size));
    position.replaces_deleted = replaces_deleted;
    fd_ = std::move(opened);
    return position;
  }

  Status Write(std::uint64_t /*sequence*/, std::string_view line, bool /*checkpoint*/) override {
    if (!fd_.valid()) return Unavailable("write " + path_ + ": the file is not open");
    struct stat before {};
    if (::fstat(fd_.get(), &before) != 0) {
      return Unavailable("fstat " + path_ + ": " + ErrnoText(errno));
    }
    if (before.st_nlink == 0) return Unavailable(path_ + " was deleted");
    char newline = '\n';
    std::array<iovec, 2> parts = {iovec{const_cast<char*>(line.data()), line.size()},
                                  iovec{&newline, 1}};
    const std::size_t total = line.size() + 1;
    const ssize_t written = ::writev(fd_.get(), parts.data(), static_cast<int>(parts.size()));
    if (written == static_cast<ssize_t>(total)) return OkStatus();

    std::string failure = written < 0 ? ErrnoText(errno)
                                       : "wrote only " + std::to_string(written) + " of " +
                                             std::to_string(total) + " bytes";
    // A short write leaves part of the line, so the file is cut back to where it was.
    if (written > 0 && ::ftruncate(fd_.get(), before.st_size) != 0) {
      failure += "; removing the partial line failed: " + ErrnoText(errno);
    }
    return Unavailable("write " + path_ + ": " + failure);
  }

  bool KeepsHistory() const override { return true; }

 private:
  // Returns true when no path links to the open file any more. An fstat error counts as not
  // deleted, because the next Write reports it.
  static bool IsDeleted(int fd) {
    struct stat status {};
    return ::fstat(fd, &status) == 0 && status.st_nlink == 0;
  }

  // Removes a torn last line (a crash in the middle of a write) and reads the position from
  // the last complete line.
  Result<SinkPosition> ReadPosition(int fd, off_t size) {
    if (size == 0) return SinkPosition{};
    char last = 0;
    if (::pread(fd, &last, 1, size - 1) != 1) {
      return Unavailable("read " + path_ + ": " + ErrnoText(errno));
    }
    off_t end = size;  // just past the last complete line's newline
    if (last != '\n') {
      KW_ASSIGN_OR_RETURN(const std::optional<off_t> newline, FindLastNewline(fd, size, path_));
      end = newline ? *newline + 1 : 0;
      if (::ftruncate(fd, end) != 0) {
        return Unavailable("remove the torn last line of " + path_ + ": " + ErrnoText(errno));
      }
      log::Warn("audit file sink: removed a torn last line",
                {{log::kPath, path_}, {"bytes", size - end}});
      if (end == 0) return SinkPosition{};
    }
    KW_ASSIGN_OR_RETURN(const std::optional<off_t> previous, FindLastNewline(fd, end - 1, path_));
    const off_t start = previous ? *previous + 1 : 0;
    std::string line(static_cast<std::size_t>(end - 1 - start), '\0');
    if (::pread(fd, line.data(), line.size(), start) != static_cast<ssize_t>(line.size())) {
      return Unavailable("read " + path_ + ": " + ErrnoText(errno));
    }
    return PositionFromLine(line, path_);
  }

  const std::string path_;
  UniqueFd fd_;
};

// Returns `text` with every byte outside printable ASCII removed, or "-" when nothing is left:
// the NILVALUE of RFC 5424.
std::string PrintableOrNil(std::string_view text, std::size_t max_length) {
  std::string printable;
  for (const char c : text) {
    if (c >= 33 && c <= 126 && printable.size() < max_length) printable.push_back(c);
  }
  return printable.empty() ? "-" : printable;
}

// Returns `time` as an RFC 5424 TIMESTAMP: UTC with microseconds, the most it allows.
std::string SyslogTimestamp(TimePoint time) {
  const auto since_epoch = time.time_since_epoch();
  const auto seconds = std::chrono::floor<std::chrono::seconds>(since_epoch);
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(since_epoch - seconds);
  const time_t whole = static_cast<time_t>(seconds.count());
  struct tm utc {};
  ::gmtime_r(&whole, &utc);
  char text[64];
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                static_cast<long long>(micros.count()));
  return text;
}

// RFC 5424 messages over a Unix datagram socket, sent without blocking.
class SyslogSink final : public Sink {
 public:
  SyslogSink(std::string path, int facility, std::string tag, const Clock& clock)
      : path_(std::move(path)), facility_(facility), tag_(std::move(tag)), clock_(clock) {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
    hostname_ = PrintableOrNil(host, 255);
  }

  Result<SinkPosition> Open() override {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path_.size() >= sizeof address.sun_path) {
      return InvalidArgument("syslog socket path " + path_ + " is longer than " +
                             std::to_string(sizeof address.sun_path - 1) + " bytes");
    }
    std::memcpy(address.sun_path, path_.data(), path_.size());
    UniqueFd opened(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!opened.valid()) return Unavailable("socket for " + path_ + ": " + ErrnoText(errno));
    if (::connect(opened.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
      return Unavailable("connect to " + path_ + ": " + ErrnoText(errno));
    }
    fd_ = std::move(opened);
    return SinkPosition{};
  }

  Status Write(std::uint64_t sequence, std::string_view line, bool checkpoint) override {
    if (!fd_.valid()) return Unavailable("send to " + path_ + ": the socket is not open");
    std::string message = Header(checkpoint ? "checkpoint" : "record");
    if (!checkpoint && line.size() > kMaxSyslogRecordBytes) {
      message += detail::CanonicalJson({{"seq", sequence},
                                        {"sha256", ToHex(Sha256(AsBytes(line)))},
                                        {"truncated", true}});
    } else {
      message.append(line);
    }
    const ssize_t sent = ::send(fd_.get(), message.data(), message.size(),
                                MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent == static_cast<ssize_t>(message.size())) return OkStatus();
    return Unavailable("send to " + path_ + ": " +
                       (sent < 0 ? ErrnoText(errno) : std::string("short send")));
  }

  bool KeepsHistory() const override { return false; }

 private:
  // "<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA ", with no structured data.
  std::string Header(std::string_view message_id) const {
    return "<" + std::to_string(facility_ * 8 + kSyslogSeverity) + ">1 " +
           SyslogTimestamp(clock_.Now()) + " " + hostname_ + " " + tag_ + " " +
           std::to_string(::getpid()) + " " + std::string(message_id) + " - ";
  }

  const std::string path_;
  const int facility_;
  const std::string tag_;
  const Clock& clock_;
  std::string hostname_;
  UniqueFd fd_;
};

// Returns the sequence number of the last record in storage; 0 when there is none.
Result<std::uint64_t> LastStoredSequence(storage::Storage& storage) {
  KW_ASSIGN_OR_RETURN(const std::optional<storage::Entry> last, storage.Last(detail::kLogPrefix));
  if (!last) return std::uint64_t{0};
  const std::optional<std::uint64_t> sequence = detail::ParseRecordKey(last->key);
  if (!sequence) return DataLoss("malformed audit record key " + last->key);
  return *sequence;
}

// Returns the last record that retention removed from storage; 0 when none was. The marker's
// MAC is not checked here: a sink only needs to know where the stored records begin.
Result<std::uint64_t> PrunedThrough(storage::Storage& storage) {
  KW_ASSIGN_OR_RETURN(const std::optional<Bytes> stored, storage.Get(detail::kPrunedKey));
  if (!stored) return std::uint64_t{0};
  const nlohmann::json marker = nlohmann::json::parse(AsText(*stored), nullptr, false);
  if (!marker.is_object() || !marker.contains("seq") || !marker["seq"].is_number_unsigned()) {
    return DataLoss("the prune marker " + std::string(detail::kPrunedKey) + " has no valid seq");
  }
  return marker["seq"].get<std::uint64_t>();
}

Error MissingRecord(std::uint64_t sequence) {
  return Error(Code::kDataLoss,
               "catch up: record " + std::to_string(sequence) + " is missing from the database");
}

std::string CheckpointLine(std::string_view note) {
  return detail::CanonicalJson({{"checkpoint", note}});
}

}  // namespace

std::optional<int> SyslogFacilityCode(std::string_view name) {
  static const std::map<std::string_view, int> kFacilities = {
      {"kern", 0},     {"user", 1},     {"mail", 2},     {"daemon", 3},   {"auth", 4},
      {"syslog", 5},   {"lpr", 6},      {"news", 7},     {"uucp", 8},     {"cron", 9},
      {"authpriv", 10}, {"ftp", 11},    {"local0", 16},  {"local1", 17},  {"local2", 18},
      {"local3", 19},  {"local4", 20},  {"local5", 21},  {"local6", 22},  {"local7", 23}};
  const auto found = kFacilities.find(name);
  if (found == kFacilities.end()) return std::nullopt;
  return found->second;
}

bool IsValidSyslogTag(std::string_view tag) {
  if (tag.empty() || tag.size() > 48) return false;
  for (const char c : tag) {
    if (c < 33 || c > 126) return false;
  }
  return true;
}

Result<std::unique_ptr<Sink>> MakeSink(const SinkConfig& config, const Clock& clock) {
  const std::string context = "audit sink \"" + config.name + "\": ";
  if (config.type == "file") {
    if (!config.path.starts_with('/')) {
      return InvalidArgument(context + "path \"" + config.path + "\" must be absolute");
    }
    return std::unique_ptr<Sink>(std::make_unique<FileSink>(config.path));
  }
  if (config.type == "syslog") {
    const std::string path = config.path.empty() ? "/dev/log" : config.path;
    if (!path.starts_with('/')) {
      return InvalidArgument(context + "path \"" + path + "\" must be absolute");
    }
    const std::optional<int> facility = SyslogFacilityCode(config.facility);
    if (!facility) {
      return InvalidArgument(context + "unknown syslog facility \"" + config.facility +
                             "\"; use auth, authpriv, daemon, user or local0 to local7");
    }
    if (!IsValidSyslogTag(config.tag)) {
      return InvalidArgument(context + "tag must be 1 to 48 printable ASCII characters "
                             "without spaces");
    }
    return std::unique_ptr<Sink>(
        std::make_unique<SyslogSink>(path, *facility, config.tag, clock));
  }
  return InvalidArgument(context + "unknown type \"" + config.type + "\"; use file or syslog");
}

struct SinkSet::SinkState {
  SinkConfig config;
  std::unique_ptr<Sink> sink;
  std::uint64_t next = 1;             // the record this sink writes next
  std::uint64_t last_checkpoint = 0;  // tree size of the last checkpoint line written
  bool healthy = true;
  std::string error;  // why the sink failed; empty when healthy
  std::chrono::steady_clock::time_point last_attempt{};  // the failure or last recovery attempt
  std::uint64_t failed_attempts = 0;                     // recovery attempts since the failure
};

SinkSet::SinkSet(storage::Storage& storage) : storage_(storage) {}

SinkSet::~SinkSet() = default;

Result<std::unique_ptr<SinkSet>> SinkSet::Open(const std::vector<SinkConfig>& configs,
                                               storage::Storage& storage, const Clock& clock) {
  std::unique_ptr<SinkSet> set(new SinkSet(storage));
  std::lock_guard lock(set->mutex_);
  for (const SinkConfig& config : configs) {
    auto state = std::make_unique<SinkState>();
    state->config = config;
    KW_ASSIGN_OR_RETURN(state->sink, MakeSink(config, clock));
    set->sinks_.push_back(std::move(state));
  }
  KW_ASSIGN_OR_RETURN(const std::uint64_t database_last, LastStoredSequence(storage));
  for (auto& state : set->sinks_) {
    Status opened = set->OpenAtPosition(*state, database_last, /*at_start=*/true);
    if (!opened && state->config.required) {
      return Unavailable("audit sink \"" + state->config.name + "\" (" + state->config.type +
                         "): " + opened.error().message());
    }
    if (opened) (void)set->CatchUp(*state, database_last);
  }
  return set;
}

Status SinkSet::OpenAtPosition(SinkState& state, std::uint64_t database_last, bool at_start) {
  Result<SinkPosition> position = state.sink->Open();
  if (!position) {
    return MarkFailed(state, position.error());
  }
  if (position->last_sequence) {
    state.next = *position->last_sequence + 1;
    state.last_checkpoint = position->ends_with_checkpoint ? *position->last_sequence : 0;
  } else if (at_start || position->replaces_deleted) {
    state.next = state.sink->KeepsHistory() ? 1 : database_last + 1;
    state.last_checkpoint = 0;
    if (position->replaces_deleted) {
      log::Warn("audit sink file was deleted; the new file starts with the first stored record",
                {{"sink", state.config.name}, {log::kPath, state.config.path}});
    }
  }
  // A reopened destination that is empty (a file renamed away) continues at the in-memory
  // next record.
  if (state.next > database_last + 1) {
    return MarkFailed(state, Error(Code::kDataLoss,
                                   state.config.path + " ends at record " +
                                       std::to_string(state.next - 1) +
                                       ", after the last record in the database (" +
                                       std::to_string(database_last) + "); move it aside"));
  }

  // A crash between a record and its checkpoint line leaves the line out: add it now.
  const bool ends_with_record = position->last_sequence && !position->ends_with_checkpoint;
  if (ends_with_record && *position->last_sequence > 0) {
    const std::uint64_t size = *position->last_sequence;
    Result<std::optional<Bytes>> note = storage_.Get(detail::CheckpointKey(size));
    if (!note) {
      return MarkFailed(state, note.error());
    }
    if (*note) KW_RETURN_IF_ERROR(WriteLine(state, size, CheckpointLine(AsText(**note)), true));
  }
  return OkStatus();
}

Status SinkSet::CatchUp(SinkState& state, std::uint64_t through) {
  if (state.next > through) return OkStatus();
  Result<std::uint64_t> pruned = PrunedThrough(storage_);
  if (!pruned) {
    return MarkFailed(state, pruned.error());
  }
  if (state.next <= *pruned) {
    log::Warn("audit sink skips records that retention removed from the database",
              {{"sink", state.config.name}, {"first", state.next}, {"last", *pruned}});
    state.next = *pruned + 1;
  }

  while (state.next <= through) {
    Result<std::vector<storage::Entry>> records =
        storage_.Scan(detail::kLogPrefix, detail::RecordKey(state.next - 1), kCatchUpPage);
    Result<std::vector<storage::Entry>> checkpoints = storage_.Scan(
        detail::kCheckpointPrefix, detail::CheckpointKey(state.next - 1), kCatchUpPage);
    for (const auto* scanned : {&records, &checkpoints}) {
      if (!*scanned) {
        return MarkFailed(state, scanned->error());
      }
    }
    std::map<std::uint64_t, std::string_view> notes;
    for (const storage::Entry& entry : *checkpoints) {
      if (auto size = detail::ParseCheckpointKey(entry.key)) notes[*size] = AsText(entry.value);
    }

    if (records->empty()) return MarkFailed(state, MissingRecord(state.next));
    for (const storage::Entry& record : *records) {
      if (state.next > through) return OkStatus();
      if (detail::ParseRecordKey(record.key) != state.next) {
        return MarkFailed(state, MissingRecord(state.next));
      }
      const std::uint64_t sequence = state.next;
      KW_RETURN_IF_ERROR(WriteLine(state, sequence, AsText(record.value), false));
      const auto note = notes.find(sequence);
      if (note != notes.end() && state.last_checkpoint != sequence) {
        KW_RETURN_IF_ERROR(WriteLine(state, sequence, CheckpointLine(note->second), true));
      }
    }
  }
  return OkStatus();
}

Status SinkSet::WriteLine(SinkState& state, std::uint64_t sequence, std::string_view line,
                          bool checkpoint) {
  Status written = state.sink->Write(sequence, line, checkpoint);
  if (!written) return MarkFailed(state, written.error());
  if (checkpoint) {
    state.last_checkpoint = sequence;
  } else {
    state.next = sequence + 1;
  }
  return OkStatus();
}

Status SinkSet::MarkFailed(SinkState& state, const Error& error) {
  if (!state.healthy) {
    if (state.error != error.message()) {
      state.error = error.message();
      log::Warn("audit sink still failed", {{"sink", state.config.name},
                                            {"required", state.config.required},
                                            {"attempts", state.failed_attempts},
                                            {log::kError, state.error}});
    }
    return tl::unexpected(error);
  }
  state.error = error.message();
  state.healthy = false;
  state.failed_attempts = 0;
  state.last_attempt = std::chrono::steady_clock::now();
  failed_count_.fetch_add(1);
  log::Error("audit sink failed", {{"sink", state.config.name},
                                   {"required", state.config.required},
                                   {"next_sequence", state.next},
                                   {log::kError, state.error}});
  return tl::unexpected(error);
}

Status SinkSet::Recover(SinkState& state) {
  state.last_attempt = std::chrono::steady_clock::now();
  ++state.failed_attempts;
  Result<std::uint64_t> database_last = LastStoredSequence(storage_);
  if (!database_last) {
    return MarkFailed(state, database_last.error());
  }
  KW_RETURN_IF_ERROR(OpenAtPosition(state, *database_last, /*at_start=*/false));
  KW_RETURN_IF_ERROR(CatchUp(state, *database_last));
  if (!state.healthy) {
    state.healthy = true;
    state.error.clear();
    failed_count_.fetch_sub(1);
    log::Info("audit sink recovered", {{"sink", state.config.name},
                                       {"next_sequence", state.next},
                                       {"attempts", state.failed_attempts}});
  }
  return OkStatus();
}

Status SinkSet::FailedRequiredStatus() const {
  std::string message;
  int failed = 0;
  for (const auto& state : sinks_) {
    if (state->healthy || !state->config.required) continue;
    if (!message.empty()) message += "; ";
    message += "audit sink \"" + state->config.name + "\" failed: " + state->error;
    ++failed;
  }
  if (failed == 0) return OkStatus();
  return Unavailable(message + (failed == 1 ? "; requests are refused until it recovers"
                                            : "; requests are refused until they recover"));
}

Status SinkSet::Deliver(std::uint64_t sequence, std::string_view canonical) {
  std::lock_guard lock(mutex_);
  for (auto& state : sinks_) {
    if (!state->healthy || sequence < state->next) continue;
    // Records committed by other requests, or by the server itself, that this sink missed.
    if (sequence > state->next && !CatchUp(*state, sequence - 1)) continue;
    (void)WriteLine(*state, sequence, canonical, false);
  }
  return FailedRequiredStatus();
}

Status SinkSet::DeliverCheckpoint(std::uint64_t size, std::string_view note) {
  const std::string line = CheckpointLine(note);
  std::lock_guard lock(mutex_);
  for (auto& state : sinks_) {
    if (!state->healthy) continue;
    if (state->next <= size && !CatchUp(*state, size)) continue;
    // NOTE: when a request delivered record size + 1 first, this sink goes without the line.
    // The checkpoint stays in the database.
    if (state->next != size + 1 || state->last_checkpoint == size) continue;
    (void)WriteLine(*state, size, line, true);
  }
  return FailedRequiredStatus();
}

Status SinkSet::CheckRequired() {
  if (failed_count_.load() == 0) return OkStatus();
  std::lock_guard lock(mutex_);
  const auto now = std::chrono::steady_clock::now();
  for (auto& state : sinks_) {
    if (state->healthy || now - state->last_attempt < kSinkRecoveryInterval) continue;
    (void)Recover(*state);
  }
  return FailedRequiredStatus();
}

void SinkSet::Reopen() {
  std::lock_guard lock(mutex_);
  for (auto& state : sinks_) {
    if (Status reopened = Recover(*state); !reopened) continue;
    log::Info("audit sink reopened",
              {{"sink", state->config.name}, {"next_sequence", state->next}});
  }
}

std::vector<SinkStatus> SinkSet::Health() const {
  std::lock_guard lock(mutex_);
  std::vector<SinkStatus> statuses;
  for (const auto& state : sinks_) {
    statuses.push_back({state->config.name, state->config.type, state->config.required,
                        state->healthy, state->next, state->error});
  }
  return statuses;
}

std::vector<std::string> SinkSet::Names() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> names;
  for (const auto& state : sinks_) names.push_back(state->config.name);
  return names;
}

}  // namespace kw::vault::audit
