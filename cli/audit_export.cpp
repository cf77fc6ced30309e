// `keyward audit export`: every stored record and checkpoint in the JSON-lines form that
// `keyward audit verify -log` reads, one record per line with each checkpoint after the record
// whose sequence number equals its size.
#include <deque>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "cli/audit_support.hpp"
#include "vault/audit/audit_record.hpp"

namespace kw::cli::detail {

namespace {

// Records and checkpoints requested per call; the server's maximum.
constexpr std::string_view kPageLimit = "1000";

struct StoredCheckpoint {
  std::uint64_t size = 0;
  std::string note;
};

// Fetches the stored checkpoints page by page while the export reaches their sizes.
class CheckpointSource {
 public:
  explicit CheckpointSource(Connection& connection) : connection_(connection) {}

  // Queues every checkpoint stored for a size up to `size`. Checkpoints signed while the
  // export runs are picked up by a later call, which requests the listing again.
  Status FetchThrough(std::uint64_t size) {
    bool more = true;
    while (more && (!cursor_ || *cursor_ < size)) {
      httplib::Params params{{"limit", std::string(kPageLimit)}};
      // Without `after` the listing starts at the empty tree, size 0.
      if (cursor_) params.emplace("after", std::to_string(*cursor_));
      KW_ASSIGN_OR_RETURN(const nlohmann::json data,
                          GetData(connection_, "sys/audit/checkpoints", params));
      KW_RETURN_IF_ERROR(Queue(data));
      const auto next = data.find("next");
      more = next != data.end() && next->is_number_unsigned();
      if (more) cursor_ = std::max(cursor_.value_or(0), next->get<std::uint64_t>());
    }
    return OkStatus();
  }

  // Removes the queued checkpoints for sizes up to `size` and returns them in size order.
  std::vector<StoredCheckpoint> TakeThrough(std::uint64_t size) {
    std::vector<StoredCheckpoint> taken;
    while (!queued_.empty() && queued_.front().size <= size) {
      taken.push_back(std::move(queued_.front()));
      queued_.pop_front();
    }
    return taken;
  }

 private:
  Status Queue(const nlohmann::json& data) {
    const auto checkpoints = data.find("checkpoints");
    if (checkpoints == data.end() || !checkpoints->is_array()) {
      return DataLoss("GET sys/audit/checkpoints: the reply has no checkpoints list");
    }
    for (const nlohmann::json& entry : *checkpoints) {
      if (!entry.is_object() || !entry.contains("size") || !entry["size"].is_number_unsigned() ||
          !entry.contains("note") || !entry["note"].is_string()) {
        return DataLoss("GET sys/audit/checkpoints: an entry lacks its size or note");
      }
      const std::uint64_t size = entry["size"].get<std::uint64_t>();
      if (cursor_ && size <= *cursor_) continue;
      queued_.push_back(StoredCheckpoint{size, entry["note"].get<std::string>()});
      cursor_ = size;
    }
    return OkStatus();
  }

  Connection& connection_;
  std::deque<StoredCheckpoint> queued_;
  std::optional<std::uint64_t> cursor_;  // the largest size queued or skipped so far
};

Result<std::uint64_t> SequenceOf(const std::string& record) {
  const nlohmann::json parsed = nlohmann::json::parse(record, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object() || !parsed.contains("seq") || !parsed["seq"].is_number_unsigned()) {
    return DataLoss("GET sys/audit/records: a record has no seq field");
  }
  const std::uint64_t sequence = parsed["seq"].get<std::uint64_t>();
  if (sequence == 0) return DataLoss("GET sys/audit/records: a record has seq 0");
  return sequence;
}

// Counts of the records and checkpoints written.
struct ExportCounts {
  std::uint64_t records = 0;
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  std::uint64_t checkpoints = 0;
};

// Writes the checkpoints for size `size` out of `taken`; the others belong to records before
// the export (pruned ones) and are left to the archives.
Status WriteCheckpoints(AtomicFile& file, const std::vector<StoredCheckpoint>& taken,
                        std::uint64_t size, ExportCounts& counts) {
  for (const StoredCheckpoint& checkpoint : taken) {
    if (checkpoint.size != size) continue;
    const std::string line =
        vault::audit::detail::CanonicalJson(nlohmann::json{{"checkpoint", checkpoint.note}});
    KW_RETURN_IF_ERROR(file.Write(line + "\n"));
    ++counts.checkpoints;
  }
  return OkStatus();
}

// Writes one page of raw records, each followed by its checkpoints.
Status WriteRecords(AtomicFile& file, const nlohmann::json& records, CheckpointSource& checkpoints,
                    ExportCounts& counts) {
  if (records.empty()) return OkStatus();
  if (!records.back().is_string()) {
    return DataLoss(
        "GET sys/audit/records: records are not raw strings; the server may predate "
        "format=raw");
  }
  KW_ASSIGN_OR_RETURN(const std::uint64_t page_last, SequenceOf(records.back().get<std::string>()));
  KW_RETURN_IF_ERROR(checkpoints.FetchThrough(page_last));

  for (const nlohmann::json& record : records) {
    if (!record.is_string()) return DataLoss("GET sys/audit/records: a record is not a string");
    const std::string& canonical = record.get_ref<const std::string&>();
    KW_ASSIGN_OR_RETURN(const std::uint64_t sequence, SequenceOf(canonical));
    if (counts.records == 0) {
      counts.first = sequence;
      // A checkpoint of the empty tree comes before record 1.
      KW_RETURN_IF_ERROR(WriteCheckpoints(file, checkpoints.TakeThrough(sequence - 1), 0, counts));
    }
    KW_RETURN_IF_ERROR(file.Write(canonical + "\n"));
    KW_RETURN_IF_ERROR(WriteCheckpoints(file, checkpoints.TakeThrough(sequence), sequence, counts));
    counts.last = sequence;
    ++counts.records;
  }
  return OkStatus();
}

Result<ExportCounts> Export(Connection& connection, AtomicFile& file) {
  CheckpointSource checkpoints(connection);
  ExportCounts counts;
  std::optional<std::uint64_t> after;
  while (true) {
    httplib::Params params{{"format", "raw"}, {"limit", std::string(kPageLimit)}};
    if (after) params.emplace("after", std::to_string(*after));
    KW_ASSIGN_OR_RETURN(const nlohmann::json data,
                        GetData(connection, "sys/audit/records", params));
    const auto records = data.find("records");
    if (records == data.end() || !records->is_array()) {
      return DataLoss("GET sys/audit/records: the reply has no records list");
    }
    KW_RETURN_IF_ERROR(WriteRecords(file, *records, checkpoints, counts));

    const auto next = data.find("next");
    if (next == data.end() || !next->is_number_unsigned()) return counts;
    after = next->get<std::uint64_t>();
  }
}

std::string Count(std::uint64_t count, std::string_view noun) {
  return std::to_string(count) + " " + std::string(noun) + (count == 1 ? "" : "s");
}

}  // namespace

int RunExport(Context& context, Connection& connection, const std::string& path) {
  // Records name paths and accessors, so the file is readable by its owner only.
  Result<AtomicFile> file = AtomicFile::Create(path, 0600);
  if (!file) return ReportFailure(file.error(), context.err);
  Result<ExportCounts> counts = Export(connection, *file);
  if (!counts) return ReportFailure(counts.error().WithContext("export"), context.err);
  if (Status committed = file->Commit(); !committed) {
    return ReportFailure(committed.error(), context.err);
  }

  std::ostream& out = context.out;
  out << "Exported " << Count(counts->records, "record");
  if (counts->records > 0) out << " (" << counts->first << " to " << counts->last << ")";
  out << " and " << Count(counts->checkpoints, "checkpoint") << " to " << path << "\n";
  if (counts->first > 1) {
    out << "Records 1 to " << counts->first - 1
        << " were pruned: pass their archive files before this one to keyward audit "
           "verify -log\n";
  }
  return kExitOk;
}

}  // namespace kw::cli::detail
