#include "vault/audit/retention.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <system_error>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "vault/audit/audit_record.hpp"

namespace kw::vault::audit {

namespace {

// Reads `digits.size()` decimal digits; nullopt when any is not a digit.
std::optional<int> ReadDigits(std::string_view digits) {
  int value = 0;
  for (const char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  return value;
}

}  // namespace

std::optional<TimePoint> ParseRfc3339(std::string_view text) {
  // The fixed part: "YYYY-MM-DDTHH:MM:SS".
  if (text.size() < 20) return std::nullopt;
  if (text[4] != '-' || text[7] != '-' || text[13] != ':' || text[16] != ':') return std::nullopt;
  if (text[10] != 'T' && text[10] != 't') return std::nullopt;
  const auto year = ReadDigits(text.substr(0, 4));
  const auto month = ReadDigits(text.substr(5, 2));
  const auto day = ReadDigits(text.substr(8, 2));
  const auto hour = ReadDigits(text.substr(11, 2));
  const auto minute = ReadDigits(text.substr(14, 2));
  const auto second = ReadDigits(text.substr(17, 2));
  if (!year || !month || !day || !hour || !minute || !second) return std::nullopt;
  const std::chrono::year_month_day date{std::chrono::year(*year),
                                         std::chrono::month(static_cast<unsigned>(*month)),
                                         std::chrono::day(static_cast<unsigned>(*day))};
  if (!date.ok() || *hour > 23 || *minute > 59 || *second > 59) return std::nullopt;

  std::string_view rest = text.substr(19);
  std::chrono::nanoseconds fraction{0};
  if (!rest.empty() && rest.front() == '.') {
    std::size_t digits = 1;
    while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') ++digits;
    const std::size_t count = digits - 1;
    if (count == 0 || count > 9) return std::nullopt;
    long long nanos = *ReadDigits(rest.substr(1, count));
    for (std::size_t i = count; i < 9; ++i) nanos *= 10;
    fraction = std::chrono::nanoseconds(nanos);
    rest.remove_prefix(digits);
  }

  std::chrono::minutes offset{0};
  if (rest == "Z" || rest == "z") {
    // UTC
  } else if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':') {
    const auto offset_hours = ReadDigits(rest.substr(1, 2));
    const auto offset_minutes = ReadDigits(rest.substr(4, 2));
    if (!offset_hours || !offset_minutes || *offset_hours > 23 || *offset_minutes > 59) {
      return std::nullopt;
    }
    offset = std::chrono::hours(*offset_hours) + std::chrono::minutes(*offset_minutes);
    if (rest[0] == '-') offset = -offset;
  } else {
    return std::nullopt;
  }

  const auto local = std::chrono::sys_days(date).time_since_epoch() +
                     std::chrono::hours(*hour) + std::chrono::minutes(*minute) +
                     std::chrono::seconds(*second);
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(local - offset + fraction));
}

namespace detail {

Bytes PruneMarkerMacMessage(const PruneMarker& marker) {
  const std::string text =
      "keyward-audit-pruned:" + std::to_string(marker.sequence) + ":" + marker.hash;
  Bytes message;
  message.reserve(text.size() + 1);
  message.push_back(0xFF);
  message.insert(message.end(), text.begin(), text.end());
  return message;
}

Result<Bytes> ComputePruneMarkerMac(hsm::Token& token, hsm::KeyHandle key,
                                    const PruneMarker& marker) {
  return token.HmacSha256(key, PruneMarkerMacMessage(marker));
}

Result<bool> IsPruneMarkerMacValid(hsm::Token& token, hsm::KeyHandle key,
                                   const StoredPruneMarker& stored) {
  KW_ASSIGN_OR_RETURN(const Bytes expected, ComputePruneMarkerMac(token, key, stored.marker));
  if (expected.size() != stored.mac.size()) return false;
  return sodium_memcmp(expected.data(), stored.mac.data(), expected.size()) == 0;
}

std::string EncodePruneMarker(const PruneMarker& marker, ByteSpan mac) {
  const nlohmann::json stored = {
      {"seq", marker.sequence}, {"hash", marker.hash}, {"mac", ToHex(mac)}};
  return CanonicalJson(stored);
}

Result<StoredPruneMarker> DecodePruneMarker(ByteSpan stored) {
  KW_ASSIGN_OR_RETURN(StoredHead decoded, DecodeSequenceHashMac(stored, "audit prune marker"));
  // Record 0 does not exist, so a marker naming it was never written by a prune.
  if (decoded.head.sequence == 0) {
    return DataLoss("audit prune marker field seq is missing or not a positive integer");
  }
  StoredPruneMarker result;
  result.marker.sequence = decoded.head.sequence;
  result.marker.hash = std::move(decoded.head.hash);
  result.mac = std::move(decoded.mac);
  return result;
}

Result<PruneMarker> AuthenticatePruneMarker(hsm::Token& token, hsm::KeyHandle key,
                                            ByteSpan stored) {
  KW_ASSIGN_OR_RETURN(StoredPruneMarker decoded, DecodePruneMarker(stored));
  KW_ASSIGN_OR_RETURN(const bool valid, IsPruneMarkerMacValid(token, key, decoded));
  if (!valid) {
    return DataLoss("audit prune marker MAC invalid (it names record " +
                    std::to_string(decoded.marker.sequence) + ")");
  }
  return std::move(decoded.marker);
}

Result<std::optional<PruneMarker>> LoadPruneMarker(storage::Storage& storage, hsm::Token& token,
                                                   hsm::KeyHandle key) {
  KW_ASSIGN_OR_RETURN(const std::optional<Bytes> bytes, storage.Get(kPrunedKey));
  if (!bytes) return std::optional<PruneMarker>();
  KW_ASSIGN_OR_RETURN(PruneMarker marker, AuthenticatePruneMarker(token, key, *bytes));
  return std::optional<PruneMarker>(std::move(marker));
}

}  // namespace detail

namespace {

using detail::PruneMarker;

std::string ErrnoText(int error) { return std::system_category().message(error); }

// Owns one file descriptor.
class FileDescriptor {
 public:
  FileDescriptor() = default;
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(FileDescriptor&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  FileDescriptor& operator=(FileDescriptor&& other) noexcept {
    if (this != &other) {
      Close();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() { Close(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

  // Closes the descriptor and returns close's errno, 0 on success.
  int Close() {
    if (fd_ < 0) return 0;
    const int result = ::close(std::exchange(fd_, -1));
    return result == 0 ? 0 : errno;
  }

 private:
  int fd_ = -1;
};

// Creates the missing components of `path` with mode 0700, then opens it and checks that it
// is a directory that not everyone may write to.
Result<FileDescriptor> OpenArchiveDir(const std::string& path) {
  if (path.empty()) return InvalidArgument("archive_dir is empty; set it to an absolute path");
  const std::filesystem::path dir(path);
  if (!dir.is_absolute()) {
    return InvalidArgument("archive_dir \"" + path + "\" is not an absolute path");
  }

  std::filesystem::path partial;
  for (const auto& component : dir) {
    partial /= component;
    if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
      return FailedPrecondition("archive_dir: cannot create \"" + partial.string() +
                                "\": " + ErrnoText(errno));
    }
  }

  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) {
    return FailedPrecondition("archive_dir \"" + path + "\" cannot be opened as a directory: " +
                              ErrnoText(errno));
  }
  struct stat status {};
  if (::fstat(fd.get(), &status) != 0) {
    return FailedPrecondition("archive_dir \"" + path + "\": fstat failed: " + ErrnoText(errno));
  }
  if ((status.st_mode & S_IWOTH) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(status.st_mode & 07777));
    return FailedPrecondition("archive_dir \"" + path + "\" is world-writable (mode " + mode +
                              "); use a directory that only the server's user can write");
  }
  return fd;
}

// Writes all of `data`, retrying after EINTR and short writes.
Status WriteAll(int fd, std::string_view data, const std::string& name) {
  while (!data.empty()) {
    const ssize_t written = ::write(fd, data.data(), data.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      return Unavailable("write " + name + ": " + ErrnoText(errno));
    }
    data.remove_prefix(static_cast<std::size_t>(written));
  }
  return OkStatus();
}

// Returns whether two open files have the same content, reading both from the start.
Result<bool> SameContent(int first, int second, const std::string& name) {
  std::array<char, 64 * 1024> first_buffer{};
  std::array<char, 64 * 1024> second_buffer{};
  if (::lseek(first, 0, SEEK_SET) != 0 || ::lseek(second, 0, SEEK_SET) != 0) {
    return Unavailable("compare " + name + ": lseek failed: " + ErrnoText(errno));
  }
  while (true) {
    // Regular files return short reads only at their end.
    const ssize_t first_read = ::read(first, first_buffer.data(), first_buffer.size());
    const ssize_t second_read = ::read(second, second_buffer.data(), second_buffer.size());
    if (first_read < 0 || second_read < 0) {
      return Unavailable("compare " + name + ": read failed: " + ErrnoText(errno));
    }
    if (first_read != second_read) return false;
    if (first_read == 0) return true;
    if (std::memcmp(first_buffer.data(), second_buffer.data(),
                    static_cast<std::size_t>(first_read)) != 0) {
      return false;
    }
  }
}

// The archive of one run: lines go to "<name>.tmp" in the archive directory, and Publish
// moves them to "<name>" or keeps an identical file already there.
class ArchiveWriter {
 public:
  ArchiveWriter(FileDescriptor dir, std::string dir_path)
      : dir_(std::move(dir)), dir_path_(std::move(dir_path)) {}
  ArchiveWriter(const ArchiveWriter&) = delete;
  ArchiveWriter& operator=(const ArchiveWriter&) = delete;
  ~ArchiveWriter() { Discard(); }

  Status Open(std::string temporary_name) {
    temporary_name_ = std::move(temporary_name);
    file_ = FileDescriptor(::openat(dir_.get(), temporary_name_.c_str(),
                                    O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!file_.valid()) {
      return Unavailable("create " + Path(temporary_name_) + ": " + ErrnoText(errno));
    }
    // A .tmp file left by a crashed run may carry another mode; the umask may narrow 0600.
    if (::fchmod(file_.get(), 0600) != 0) {
      return Unavailable("chmod " + Path(temporary_name_) + ": " + ErrnoText(errno));
    }
    return OkStatus();
  }

  // Appends `line` and a newline.
  Status AddLine(std::string_view line) {
    buffer_.append(line);
    buffer_.push_back('\n');
    if (buffer_.size() >= kFlushSize) return Flush();
    return OkStatus();
  }

  // Makes the archive durable under `name`. Returns true when an existing file of that name
  // already contained exactly these bytes and was kept. failed_precondition when it contains
  // other bytes.
  Result<bool> Publish(const std::string& name) {
    KW_RETURN_IF_ERROR(Flush());
    if (::fsync(file_.get()) != 0) {
      return Unavailable("fsync " + Path(temporary_name_) + ": " + ErrnoText(errno));
    }

    FileDescriptor existing(::openat(dir_.get(), name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (existing.valid()) {
      KW_ASSIGN_OR_RETURN(const bool same, SameContent(file_.get(), existing.get(), Path(name)));
      if (!same) {
        return FailedPrecondition("archive " + Path(name) +
                                  " already exists with other content; move it out of "
                                  "archive_dir and prune again");
      }
      // The earlier run may have crashed before its directory fsync.
      if (::fsync(existing.get()) != 0) {
        return Unavailable("fsync " + Path(name) + ": " + ErrnoText(errno));
      }
      Discard();
      KW_RETURN_IF_ERROR(SyncDirectory());
      return true;
    }
    if (errno != ENOENT) return Unavailable("open " + Path(name) + ": " + ErrnoText(errno));

    if (const int error = file_.Close(); error != 0) {
      return Unavailable("close " + Path(temporary_name_) + ": " + ErrnoText(error));
    }
    if (::renameat(dir_.get(), temporary_name_.c_str(), dir_.get(), name.c_str()) != 0) {
      return Unavailable("rename " + Path(temporary_name_) + " to " + name + ": " +
                         ErrnoText(errno));
    }
    temporary_name_.clear();
    KW_RETURN_IF_ERROR(SyncDirectory());
    return false;
  }

  std::string Path(std::string_view name) const {
    return (std::filesystem::path(dir_path_) / name).string();
  }

 private:
  static constexpr std::size_t kFlushSize = 1 << 20;

  Status Flush() {
    KW_RETURN_IF_ERROR(WriteAll(file_.get(), buffer_, Path(temporary_name_)));
    buffer_.clear();
    return OkStatus();
  }

  Status SyncDirectory() {
    if (::fsync(dir_.get()) != 0) {
      return Unavailable("fsync archive_dir " + dir_path_ + ": " + ErrnoText(errno));
    }
    return OkStatus();
  }

  // Removes the .tmp file, if any is left. Best effort: a leftover is overwritten by the next
  // run that starts at the same record.
  void Discard() {
    file_.Close();
    if (!temporary_name_.empty()) ::unlinkat(dir_.get(), temporary_name_.c_str(), 0);
    temporary_name_.clear();
  }

  FileDescriptor dir_;
  std::string dir_path_;
  std::string temporary_name_;  // empty once renamed or removed
  FileDescriptor file_;
  std::string buffer_;
};

std::string Padded(std::uint64_t number) {
  char digits[21];
  std::snprintf(digits, sizeof digits, "%020llu", static_cast<unsigned long long>(number));
  return digits;
}

std::string ArchiveName(std::uint64_t first, std::uint64_t last) {
  return "keyward-audit-" + Padded(first) + "-" + Padded(last) + ".jsonl";
}

std::string Record(std::uint64_t sequence) { return "record " + std::to_string(sequence); }

// Reads the stored checkpoints in tree-size order, a page at a time, from the first size
// after `after`.
class CheckpointCursor {
 public:
  CheckpointCursor(storage::Storage& storage, std::uint64_t after)
      : storage_(storage), start_after_(detail::CheckpointKey(after)) {}

  // Returns the note of every checkpoint of size <= `size` not returned before, in order.
  Result<std::vector<std::string>> TakeUpTo(std::uint64_t size) {
    std::vector<std::string> notes;
    while (true) {
      if (next_ == page_.size()) {
        if (exhausted_) return notes;
        KW_RETURN_IF_ERROR(LoadPage());
        if (page_.empty()) return notes;
      }
      const storage::Entry& entry = page_[next_];
      const std::optional<std::uint64_t> entry_size = detail::ParseCheckpointKey(entry.key);
      if (!entry_size) return DataLoss("checkpoint key \"" + entry.key + "\" is malformed");
      if (*entry_size > size) return notes;
      notes.emplace_back(AsText(entry.value));
      ++next_;
    }
  }

 private:
  static constexpr std::size_t kPageSize = 100;

  Status LoadPage() {
    KW_ASSIGN_OR_RETURN(page_, storage_.Scan(detail::kCheckpointPrefix, start_after_, kPageSize));
    next_ = 0;
    exhausted_ = page_.size() < kPageSize;
    if (!page_.empty()) start_after_ = page_.back().key;
    return OkStatus();
  }

  storage::Storage& storage_;
  std::string start_after_;
  std::vector<storage::Entry> page_;
  std::size_t next_ = 0;
  bool exhausted_ = false;
};

// One record as retention reads it.
struct StoredRecord {
  std::uint64_t sequence = 0;
  TimePoint time;
  std::string prev_hash;
};

Result<StoredRecord> ParseStoredRecord(std::uint64_t sequence, std::string_view bytes) {
  const nlohmann::json record = nlohmann::json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (record.is_discarded() || !record.is_object()) {
    return DataLoss(Record(sequence) + " does not parse as a JSON object");
  }
  const auto stored_sequence = record.find("seq");
  if (stored_sequence == record.end() || !stored_sequence->is_number_unsigned() ||
      stored_sequence->get<std::uint64_t>() != sequence) {
    return DataLoss(Record(sequence) + ": field seq is missing or does not match its key");
  }
  const auto time = record.find("time");
  std::optional<TimePoint> parsed_time;
  if (time != record.end() && time->is_string()) {
    parsed_time = ParseRfc3339(time->get_ref<const std::string&>());
  }
  if (!parsed_time) {
    return DataLoss(Record(sequence) + ": field time is missing or not an RFC 3339 timestamp");
  }
  const auto prev_hash = record.find("prev_hash");
  if (prev_hash == record.end() || !prev_hash->is_string()) {
    return DataLoss(Record(sequence) + ": field prev_hash is missing or not a string");
  }
  return StoredRecord{sequence, *parsed_time, prev_hash->get<std::string>()};
}

// The records one run prunes, as the archive phase found them.
struct Selection {
  std::uint64_t first = 0;
  std::uint64_t last = 0;  // 0 when nothing was selected
  std::uint64_t checkpoints = 0;
  // The marker each deletion commit writes, one per kPruneBatchSize records, in order.
  std::vector<PruneMarker> batch_ends;
};

// The work of one PruneAuditRecords call.
class Pruner {
 public:
  Pruner(storage::Storage& storage, hsm::Token& token, hsm::KeyHandle key, TimePoint cutoff)
      : storage_(storage), token_(token), key_(key), cutoff_(cutoff) {}

  Result<PruneReport> Run(const std::string& archive_dir);

 private:
  // Reads where the stored log starts and ends and checks it against the prune marker.
  Status LoadBounds();
  // Returns whether the first stored record is old enough and not the newest.
  Result<bool> HasWork();
  // Streams the records to prune (and their checkpoints) into `archive`, checking that they
  // chain onto the prune marker.
  Result<Selection> WriteArchive(ArchiveWriter& archive);
  // Deletes the selected records in commits of kPruneBatchSize, each moving the marker.
  Status DeleteRecords(const Selection& selection);

  storage::Storage& storage_;
  hsm::Token& token_;
  const hsm::KeyHandle key_;
  const TimePoint cutoff_;

  std::optional<Bytes> marker_bytes_;      // the stored marker, for the commits' Expect
  PruneMarker marker_{0, std::string(detail::kGenesisHash)};  // seq 0: nothing pruned yet
  std::optional<storage::Entry> first_record_;  // the first record still stored
  std::uint64_t newest_ = 0;               // the newest record's seq, never pruned
};

Status Pruner::LoadBounds() {
  KW_ASSIGN_OR_RETURN(marker_bytes_, storage_.Get(detail::kPrunedKey));
  if (marker_bytes_) {
    KW_ASSIGN_OR_RETURN(marker_, detail::AuthenticatePruneMarker(token_, key_, *marker_bytes_));
  }

  KW_ASSIGN_OR_RETURN(std::vector<storage::Entry> first,
                      storage_.Scan(detail::kLogPrefix, "", 1));
  KW_ASSIGN_OR_RETURN(const std::optional<storage::Entry> newest,
                      storage_.Last(detail::kLogPrefix));
  if (first.empty() || !newest) return OkStatus();

  const std::optional<std::uint64_t> first_sequence = detail::ParseRecordKey(first[0].key);
  const std::optional<std::uint64_t> newest_sequence = detail::ParseRecordKey(newest->key);
  if (!first_sequence || !newest_sequence) {
    return DataLoss("audit record key \"" + (first_sequence ? newest->key : first[0].key) +
                    "\" is malformed");
  }
  if (*first_sequence != marker_.sequence + 1) {
    return DataLoss("the first stored audit record is " + std::to_string(*first_sequence) +
                    " but the prune marker expects " + Record(marker_.sequence + 1) +
                    "; run keyward audit verify");
  }
  first_record_ = std::move(first[0]);
  newest_ = *newest_sequence;
  return OkStatus();
}

Result<bool> Pruner::HasWork() {
  if (!first_record_ || marker_.sequence + 1 >= newest_) return false;
  KW_ASSIGN_OR_RETURN(const StoredRecord record,
                      ParseStoredRecord(marker_.sequence + 1, AsText(first_record_->value)));
  return record.time < cutoff_;
}

Result<Selection> Pruner::WriteArchive(ArchiveWriter& archive) {
  Selection selection;
  selection.first = marker_.sequence + 1;
  CheckpointCursor checkpoints(storage_, marker_.sequence);
  std::string previous_hash = marker_.hash;
  std::string start_after = detail::RecordKey(marker_.sequence);
  bool done = false;
  while (!done) {
    KW_ASSIGN_OR_RETURN(const std::vector<storage::Entry> page,
                        storage_.Scan(detail::kLogPrefix, start_after, kPruneBatchSize));
    if (page.empty()) break;
    start_after = page.back().key;
    for (const storage::Entry& entry : page) {
      const std::uint64_t expected = selection.last == 0 ? selection.first : selection.last + 1;
      if (expected >= newest_) {
        done = true;
        break;
      }
      if (detail::ParseRecordKey(entry.key) != expected) {
        return DataLoss(Record(expected) + " missing (found key \"" + entry.key + "\")");
      }
      const std::string_view bytes = AsText(entry.value);
      KW_ASSIGN_OR_RETURN(const StoredRecord record, ParseStoredRecord(expected, bytes));
      if (record.time >= cutoff_) {
        done = true;
        break;
      }
      if (record.prev_hash != previous_hash) {
        return DataLoss(Record(expected) + ": previous hash mismatch (" +
                        (expected == 1 ? std::string("must be 64 zeros")
                                       : Record(expected - 1) + " changed?") +
                        "); nothing was pruned");
      }

      KW_RETURN_IF_ERROR(archive.AddLine(bytes));
      KW_ASSIGN_OR_RETURN(const std::vector<std::string> notes, checkpoints.TakeUpTo(expected));
      for (const std::string& note : notes) {
        KW_RETURN_IF_ERROR(archive.AddLine(detail::CanonicalJson({{"checkpoint", note}})));
        ++selection.checkpoints;
      }

      previous_hash = detail::RecordHash(bytes);
      selection.last = expected;
      if ((selection.last - selection.first + 1) % kPruneBatchSize == 0) {
        selection.batch_ends.push_back(PruneMarker{selection.last, previous_hash});
      }
    }
  }
  if (selection.last != 0 &&
      (selection.batch_ends.empty() || selection.batch_ends.back().sequence != selection.last)) {
    selection.batch_ends.push_back(PruneMarker{selection.last, previous_hash});
  }
  return selection;
}

Status Pruner::DeleteRecords(const Selection& selection) {
  std::uint64_t next = selection.first;
  for (const PruneMarker& end : selection.batch_ends) {
    KW_ASSIGN_OR_RETURN(const Bytes mac, detail::ComputePruneMarkerMac(token_, key_, end));
    const std::string marker = detail::EncodePruneMarker(end, mac);

    storage::WriteBatch batch;
    // Two runs at once (another process on the same storage) could delete each other's
    // ranges without archiving them. The first to commit wins, and the other stops here.
    batch.Expect(std::string(detail::kPrunedKey), marker_bytes_);
    for (; next <= end.sequence; ++next) batch.Delete(detail::RecordKey(next));
    batch.Put(std::string(detail::kPrunedKey), Bytes(marker.begin(), marker.end()));
    Status committed = storage_.Commit(std::move(batch));
    if (!committed) {
      return tl::unexpected(committed.error().WithContext(
          "delete records up to " + std::to_string(end.sequence)));
    }
    marker_bytes_ = Bytes(marker.begin(), marker.end());
  }
  return OkStatus();
}

Result<PruneReport> Pruner::Run(const std::string& archive_dir) {
  KW_ASSIGN_OR_RETURN(FileDescriptor dir, OpenArchiveDir(archive_dir));
  KW_RETURN_IF_ERROR(LoadBounds());
  KW_ASSIGN_OR_RETURN(const bool has_work, HasWork());
  PruneReport report;
  if (!has_work) return report;

  // The final name needs the last record, known only after the scan, so the .tmp file is
  // named after the first. A run that starts at the same record overwrites a leftover.
  ArchiveWriter archive(std::move(dir), archive_dir);
  KW_RETURN_IF_ERROR(
      archive.Open("keyward-audit-" + Padded(marker_.sequence + 1) + ".jsonl.tmp"));
  KW_ASSIGN_OR_RETURN(const Selection selection, WriteArchive(archive));
  const std::string name = ArchiveName(selection.first, selection.last);
  KW_ASSIGN_OR_RETURN(report.archive_reused, archive.Publish(name));

  KW_RETURN_IF_ERROR(DeleteRecords(selection));
  report.pruned = selection.last - selection.first + 1;
  report.first_seq = selection.first;
  report.last_seq = selection.last;
  report.checkpoints = selection.checkpoints;
  report.archive = archive.Path(name);
  return report;
}

// Serialises runs within the process (the sweeper and sys/audit/prune), which share the .tmp
// file name.
std::mutex prune_mutex;

}  // namespace

Result<PruneReport> PruneAuditRecords(storage::Storage& storage, hsm::Token& token,
                                      hsm::KeyHandle hmac_key, const Clock& clock,
                                      std::chrono::seconds older_than,
                                      const std::string& archive_dir) {
  if (older_than <= std::chrono::seconds::zero()) {
    return InvalidArgument("older_than must be a positive duration, got " +
                           std::to_string(older_than.count()) + "s");
  }
  std::lock_guard lock(prune_mutex);
  Pruner pruner(storage, token, hmac_key, clock.Now() - older_than);
  Result<PruneReport> report = pruner.Run(archive_dir);
  if (!report) return tl::unexpected(report.error().WithContext("prune audit records"));
  return report;
}

}  // namespace kw::vault::audit
