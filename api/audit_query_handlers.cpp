#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/audit_handlers.hpp"
#include "api/json_fields.hpp"
#include "api/request_path.hpp"
#include "base/log.hpp"
#include "vault/audit/audit_record.hpp"
#include "vault/audit/retention.hpp"

namespace kw::api {
namespace {

namespace audit = vault::audit;

constexpr std::uint64_t kDefaultLimit = 100;
constexpr std::uint64_t kMaxLimit = 1000;
// Records one request examines at most; `next` lets the client continue past them.
constexpr std::uint64_t kMaxScanned = 10'000;
// Records are stored in commit order but stamped with the request time, taken before the
// commit waits for the storage writer, so a record may carry an earlier time than one stored
// before it. A time-bounded scan therefore starts (and ends) this much beyond the requested
// range and filters exactly. NOTE: a record committed more than this after its time was
// taken, or a wall clock stepped back by more, can be missed near the range's edges.
constexpr std::chrono::seconds kTimeMargin{60};

// The query parameters sys/audit/records accepts.
constexpr std::string_view kRecordParameters[] = {
    "from", "to", "accessor", "spiffe_id", "path_prefix", "status",
    "after", "limit", "order", "format"};

// A status filter: one code (403) or a class (4xx).
struct StatusFilter {
  int code = 0;        // set for an exact code
  int class_hundreds = 0;  // 1 to 5 for a class
  bool Matches(int status) const {
    return code != 0 ? status == code : status / 100 == class_hundreds;
  }
};

struct RecordQuery {
  std::optional<TimePoint> from;  // inclusive
  std::optional<TimePoint> to;    // exclusive
  std::optional<std::string> accessor;
  std::optional<std::string> spiffe_id;
  std::optional<std::string> path_prefix;  // without a trailing '/'
  std::optional<StatusFilter> status;
  std::optional<std::uint64_t> after;
  std::uint64_t limit = kDefaultLimit;
  bool descending = false;
  bool raw = false;
};

Status BadParameter(std::string_view name, std::string_view expected) {
  return InvalidArgument("invalid query parameter \"" + std::string(name) + "\": expected " +
                         std::string(expected));
}

Result<std::optional<std::uint64_t>> NumberParameter(const RequestContext& c,
                                                     std::string_view name,
                                                     std::string_view expected) {
  const std::optional<std::string_view> text = c.Query(name);
  if (!text) return std::optional<std::uint64_t>();
  const std::optional<std::int64_t> value = ParseNonNegative(*text);
  if (!value) return tl::unexpected(BadParameter(name, expected).error());
  return std::optional<std::uint64_t>(static_cast<std::uint64_t>(*value));
}

Result<std::optional<TimePoint>> TimeParameter(const RequestContext& c, std::string_view name) {
  const std::optional<std::string_view> text = c.Query(name);
  if (!text) return std::optional<TimePoint>();
  const std::optional<TimePoint> time = audit::ParseRfc3339(*text);
  if (!time) {
    return tl::unexpected(
        BadParameter(name, "an RFC 3339 time such as 2026-05-28T20:26:41Z").error());
  }
  return time;
}

Result<std::optional<std::string>> TextParameter(const RequestContext& c, std::string_view name) {
  const std::optional<std::string_view> text = c.Query(name);
  if (!text) return std::optional<std::string>();
  if (text->empty()) return tl::unexpected(BadParameter(name, "a non-empty value").error());
  return std::optional<std::string>(*text);
}

Result<std::optional<StatusFilter>> StatusParameter(const RequestContext& c) {
  const std::optional<std::string_view> text = c.Query("status");
  if (!text) return std::optional<StatusFilter>();
  constexpr std::string_view kExpected = "an HTTP status code such as 403, or a class such as 4xx";
  if (text->size() != 3 || (*text)[0] < '1' || (*text)[0] > '5') {
    return tl::unexpected(BadParameter("status", kExpected).error());
  }
  StatusFilter filter;
  if (text->substr(1) == "xx" || text->substr(1) == "XX") {
    filter.class_hundreds = (*text)[0] - '0';
    return std::optional<StatusFilter>(filter);
  }
  const std::optional<std::int64_t> code = ParseNonNegative(*text);
  if (!code) return tl::unexpected(BadParameter("status", kExpected).error());
  filter.code = static_cast<int>(*code);
  return std::optional<StatusFilter>(filter);
}

Status RejectUnknownParameters(const RequestContext& c) {
  for (const auto& [name, value] : c.query) {
    const bool known = std::find(std::begin(kRecordParameters), std::end(kRecordParameters),
                                 name) != std::end(kRecordParameters);
    if (!known) {
      // A misspelt filter would otherwise widen the result without notice.
      std::string names;
      for (const std::string_view parameter : kRecordParameters) {
        names += names.empty() ? "" : ", ";
        names += parameter;
      }
      return InvalidArgument("unknown query parameter \"" + Printable(name) + "\"; accepted: " +
                             names);
    }
  }
  return OkStatus();
}

Result<RecordQuery> ParseRecordQuery(const RequestContext& c) {
  KW_RETURN_IF_ERROR(RejectUnknownParameters(c));
  RecordQuery query;
  KW_ASSIGN_OR_RETURN(query.from, TimeParameter(c, "from"));
  KW_ASSIGN_OR_RETURN(query.to, TimeParameter(c, "to"));
  if (query.from && query.to && *query.from >= *query.to) {
    return tl::unexpected(BadParameter("to", "a time after \"from\"").error());
  }
  KW_ASSIGN_OR_RETURN(query.accessor, TextParameter(c, "accessor"));
  KW_ASSIGN_OR_RETURN(query.spiffe_id, TextParameter(c, "spiffe_id"));

  // Whole path segments: "secret" and "secret/" both match "secret" and "secret/data/app",
  // never "secrets/app".
  KW_ASSIGN_OR_RETURN(query.path_prefix, TextParameter(c, "path_prefix"));
  if (query.path_prefix) {
    while (query.path_prefix->ends_with('/')) query.path_prefix->pop_back();
    if (query.path_prefix->empty()) {
      return tl::unexpected(BadParameter("path_prefix", "a path such as secret/data").error());
    }
  }

  KW_ASSIGN_OR_RETURN(query.status, StatusParameter(c));
  KW_ASSIGN_OR_RETURN(query.after,
                      NumberParameter(c, "after", "a record sequence number (the last \"next\")"));
  KW_ASSIGN_OR_RETURN(const std::optional<std::uint64_t> limit,
                      NumberParameter(c, "limit", "an integer from 1 to 1000"));
  if (limit) {
    if (*limit < 1 || *limit > kMaxLimit) {
      return tl::unexpected(BadParameter("limit", "an integer from 1 to 1000").error());
    }
    query.limit = *limit;
  }

  const std::string_view order = c.Query("order").value_or("asc");
  if (order != "asc" && order != "desc") {
    return tl::unexpected(BadParameter("order", "asc or desc").error());
  }
  query.descending = order == "desc";
  const std::string_view format = c.Query("format").value_or("json");
  if (format != "json" && format != "raw") {
    return tl::unexpected(BadParameter("format", "json or raw").error());
  }
  query.raw = format == "raw";
  return query;
}

// The fields of a stored record that the filters read.
struct ParsedRecord {
  nlohmann::json json;
  TimePoint time;
};

Result<ParsedRecord> ParseRecord(std::uint64_t sequence, std::string_view bytes) {
  ParsedRecord record;
  const auto fail = [&] {
    return DataLoss("audit record " + std::to_string(sequence) +
                    " is malformed; run keyward audit verify");
  };
  // A record deeper than any the log writes could exhaust the stack when the reply is
  // serialized.
  if (audit::detail::NestsDeeperThan(bytes, audit::detail::kMaxRecordDepth)) return fail();
  record.json = nlohmann::json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (record.json.is_discarded() || !record.json.is_object()) return fail();
  const auto time = record.json.find("time");
  if (time == record.json.end() || !time->is_string()) return fail();
  const std::optional<TimePoint> parsed = audit::ParseRfc3339(time->get_ref<const std::string&>());
  if (!parsed) return fail();
  record.time = *parsed;
  return record;
}

std::string StringField(const nlohmann::json& record, const char* name) {
  const auto field = record.find(name);
  if (field == record.end() || !field->is_string()) return {};
  return field->get<std::string>();
}

bool Matches(const RecordQuery& query, const ParsedRecord& record) {
  if (query.from && record.time < *query.from) return false;
  if (query.to && record.time >= *query.to) return false;
  const nlohmann::json& json = record.json;
  if (query.accessor) {
    // The delegation chain runs from the root token down to the record's own accessor, so a
    // token matches its own records and those of every token created beneath it.
    bool found = StringField(json, "accessor") == *query.accessor;
    const auto chain = json.find("delegation_chain");
    if (!found && chain != json.end() && chain->is_array()) {
      found = std::find(chain->begin(), chain->end(), *query.accessor) != chain->end();
    }
    if (!found) return false;
  }
  if (query.spiffe_id && StringField(json, "client_spiffe_id") != *query.spiffe_id) return false;
  if (query.path_prefix) {
    const std::string path = StringField(json, "path");
    const std::string& prefix = *query.path_prefix;
    const bool under = path == prefix || (path.size() > prefix.size() &&
                                          path.starts_with(prefix) && path[prefix.size()] == '/');
    if (!under) return false;
  }
  if (query.status) {
    const auto status = json.find("status");
    if (status == json.end() || !status->is_number_integer() ||
        !query.status->Matches(status->get<int>())) {
      return false;
    }
  }
  return true;
}

// The stored range of records: the first one retention kept and the newest. Empty when
// first is 0.
struct StoredRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;
};

Result<StoredRange> LoadStoredRange(storage::Storage& storage) {
  KW_ASSIGN_OR_RETURN(const std::vector<storage::Entry> first,
                      storage.Scan(audit::detail::kLogPrefix, "", 1));
  KW_ASSIGN_OR_RETURN(const std::optional<storage::Entry> last,
                      storage.Last(audit::detail::kLogPrefix));
  StoredRange range;
  if (first.empty() || !last) return range;
  const auto first_sequence = audit::detail::ParseRecordKey(first.front().key);
  const auto last_sequence = audit::detail::ParseRecordKey(last->key);
  if (!first_sequence || !last_sequence) {
    return DataLoss("malformed audit record key; run keyward audit verify");
  }
  range.first = *first_sequence;
  range.last = *last_sequence;
  return range;
}

// Returns the first sequence number in `range` whose record time is at or after `time`, or
// range.last + 1 when none is. Binary search, so it assumes times that rise with sequence
// numbers; the callers widen `time` by kTimeMargin because they rise only nearly.
Result<std::uint64_t> FirstAtOrAfter(storage::Storage& storage, const StoredRange& range,
                                     TimePoint time) {
  std::uint64_t low = range.first;
  std::uint64_t high = range.last + 1;
  while (low < high) {
    const std::uint64_t middle = low + (high - low) / 2;
    KW_ASSIGN_OR_RETURN(const std::optional<Bytes> stored,
                        storage.Get(audit::detail::RecordKey(middle)));
    // A record pruned since the range was read is old, so it counts as before `time`.
    bool before = true;
    if (stored) {
      KW_ASSIGN_OR_RETURN(const ParsedRecord record, ParseRecord(middle, AsText(*stored)));
      before = record.time < time;
    }
    if (before) {
      low = middle + 1;
    } else {
      high = middle;
    }
  }
  return low;
}

// The outcome of one records request.
struct ScanResult {
  nlohmann::json records = nlohmann::json::array();
  std::optional<std::uint64_t> next;
  std::uint64_t scanned = 0;
};

// Examines records in order, collecting matches until the limit, the scan bound or the end of
// the requested range.
class RecordScan {
 public:
  RecordScan(const RecordQuery& query, ScanResult& result) : query_(query), result_(result) {}

  // Examines one record. Returns false when the scan is finished.
  Result<bool> Visit(std::uint64_t sequence, std::string_view bytes) {
    ++result_.scanned;
    KW_ASSIGN_OR_RETURN(ParsedRecord record, ParseRecord(sequence, bytes));
    if (PastRange(record.time)) {
      result_.next.reset();
      return false;
    }
    if (Matches(query_, record)) {
      if (query_.raw) {
        result_.records.push_back(std::string(bytes));
      } else {
        result_.records.push_back(std::move(record.json));
      }
    }
    // Either bound ends this call; the client continues after this record.
    if (result_.records.size() == query_.limit || result_.scanned == kMaxScanned) {
      result_.next = sequence;
      return false;
    }
    return true;
  }

 private:
  // Returns whether `time` lies so far beyond the requested range, in the scan's direction,
  // that no later record can fall inside it.
  bool PastRange(TimePoint time) const {
    if (query_.descending) return query_.from && time < *query_.from - kTimeMargin;
    return query_.to && time >= *query_.to + kTimeMargin;
  }

  const RecordQuery& query_;
  ScanResult& result_;
};

Result<ScanResult> ScanAscending(storage::Storage& storage, const RecordQuery& query,
                                 const StoredRange& range) {
  ScanResult result;
  std::uint64_t start = range.first;
  if (query.after) start = std::max(start, *query.after + 1);
  if (query.from) {
    KW_ASSIGN_OR_RETURN(const std::uint64_t near,
                        FirstAtOrAfter(storage, range, *query.from - kTimeMargin));
    start = std::max(start, near);
  }
  if (start > range.last) return result;

  RecordScan scan(query, result);
  std::string start_after = audit::detail::RecordKey(start - 1);
  while (true) {
    const std::uint64_t page_size =
        std::min<std::uint64_t>(kMaxLimit, kMaxScanned - result.scanned);
    KW_ASSIGN_OR_RETURN(const std::vector<storage::Entry> page,
                        storage.Scan(audit::detail::kLogPrefix, start_after, page_size));
    for (const storage::Entry& entry : page) {
      const auto sequence = audit::detail::ParseRecordKey(entry.key);
      if (!sequence) return DataLoss("malformed audit record key; run keyward audit verify");
      KW_ASSIGN_OR_RETURN(const bool more, scan.Visit(*sequence, AsText(entry.value)));
      if (!more) return result;
    }
    if (page.size() < page_size) return result;  // the newest record was examined
    start_after = page.back().key;
  }
}

Result<ScanResult> ScanDescending(storage::Storage& storage, const RecordQuery& query,
                                  const StoredRange& range) {
  ScanResult result;
  std::uint64_t end = range.last;
  if (query.after) {
    if (*query.after <= range.first) return result;
    end = std::min(end, *query.after - 1);
  }
  if (query.to) {
    KW_ASSIGN_OR_RETURN(const std::uint64_t beyond,
                        FirstAtOrAfter(storage, range, *query.to + kTimeMargin));
    if (beyond <= range.first) return result;
    end = std::min(end, beyond - 1);
  }

  // Storage scans forward only: read windows below `end` and walk each backwards.
  RecordScan scan(query, result);
  while (end >= range.first) {
    const std::uint64_t remaining = kMaxScanned - result.scanned;
    const std::uint64_t window = std::min({kMaxLimit, remaining, end - range.first + 1});
    const std::uint64_t low = end - window + 1;
    KW_ASSIGN_OR_RETURN(const std::vector<storage::Entry> page,
                        storage.Scan(audit::detail::kLogPrefix,
                                     audit::detail::RecordKey(low - 1), window));
    for (auto entry = page.rbegin(); entry != page.rend(); ++entry) {
      const auto sequence = audit::detail::ParseRecordKey(entry->key);
      if (!sequence) return DataLoss("malformed audit record key; run keyward audit verify");
      if (*sequence > end) continue;
      KW_ASSIGN_OR_RETURN(const bool more, scan.Visit(*sequence, AsText(entry->value)));
      if (!more) return result;
    }
    if (low == range.first) break;
    end = low - 1;
  }
  return result;
}

Result<Reply> ListRecords(RequestContext& c) {
  KW_ASSIGN_OR_RETURN(const RecordQuery query, ParseRecordQuery(c));
  storage::Storage& storage = c.core.storage();
  KW_ASSIGN_OR_RETURN(const StoredRange range, LoadStoredRange(storage));
  ScanResult result;
  if (range.first != 0) {
    if (query.descending) {
      KW_ASSIGN_OR_RETURN(result, ScanDescending(storage, query, range));
    } else {
      KW_ASSIGN_OR_RETURN(result, ScanAscending(storage, query, range));
    }
  }
  // In descending order the scan also ends at the first stored record.
  if (result.next && query.descending && *result.next == range.first) result.next.reset();
  if (result.next && !query.descending && *result.next == range.last) result.next.reset();

  nlohmann::json data = {{"records", std::move(result.records)},
                         {"next", result.next ? nlohmann::json(*result.next) : nlohmann::json()},
                         {"scanned", result.scanned}};
  return Reply{200, Envelope(c, std::move(data))};
}

Result<Reply> ListCheckpoints(RequestContext& c) {
  KW_ASSIGN_OR_RETURN(const std::optional<std::uint64_t> after,
                      NumberParameter(c, "after", "a tree size (the last \"next\")"));
  KW_ASSIGN_OR_RETURN(const std::optional<std::uint64_t> requested_limit,
                      NumberParameter(c, "limit", "an integer from 1 to 1000"));
  const std::uint64_t limit = requested_limit.value_or(kDefaultLimit);
  if (limit < 1 || limit > kMaxLimit) {
    return tl::unexpected(BadParameter("limit", "an integer from 1 to 1000").error());
  }

  // One entry beyond the limit shows whether another page follows.
  const std::string start_after = after ? audit::detail::CheckpointKey(*after) : std::string();
  KW_ASSIGN_OR_RETURN(std::vector<storage::Entry> page,
                      c.core.storage().Scan(audit::detail::kCheckpointPrefix, start_after,
                                            limit + 1));
  const bool more = page.size() > limit;
  if (more) page.resize(limit);

  nlohmann::json checkpoints = nlohmann::json::array();
  for (const storage::Entry& entry : page) {
    const auto size = audit::detail::ParseCheckpointKey(entry.key);
    if (!size) return DataLoss("malformed audit checkpoint key \"" + entry.key + "\"");
    checkpoints.push_back({{"size", *size}, {"note", std::string(AsText(entry.value))}});
  }
  nlohmann::json next;
  if (more) next = checkpoints.back().at("size");
  nlohmann::json data = {{"checkpoints", std::move(checkpoints)}, {"next", std::move(next)}};
  return Reply{200, Envelope(c, std::move(data))};
}

Result<Reply> Prune(RequestContext& c) {
  const audit::AuditSettings& settings = c.core.audit_settings();
  KW_ASSIGN_OR_RETURN(const std::optional<std::chrono::seconds> requested,
                      OptionalDuration(c.body, "older_than"));
  const std::chrono::seconds older_than = requested.value_or(settings.retention);
  if (older_than <= std::chrono::seconds::zero()) {
    return InvalidArgument(requested ? "field \"older_than\" must be a positive duration"
                                     : "missing field \"older_than\" (a duration such as "
                                       "\"720h\"), and no audit retention is configured");
  }
  if (settings.archive_dir.empty()) {
    return FailedPrecondition(
        "no audit archive_dir is configured; pruned records must be archived, so set "
        "audit.archive_dir in the server configuration");
  }

  KW_ASSIGN_OR_RETURN(const audit::PruneReport report, c.core.PruneAuditLog(older_than));
  const bool pruned = report.pruned > 0;
  nlohmann::json data = {
      {"pruned", report.pruned},
      {"first_seq", pruned ? nlohmann::json(report.first_seq) : nlohmann::json()},
      {"last_seq", pruned ? nlohmann::json(report.last_seq) : nlohmann::json()},
      {"archive", pruned ? nlohmann::json(report.archive) : nlohmann::json()},
      {"checkpoints", report.checkpoints}};
  return Reply{200, Envelope(c, std::move(data))};
}

}  // namespace

Result<Reply> HandleAuditRecords(RequestContext& c) {
  return c.operation == "read" ? ListRecords(c) : MethodNotAllowed(c);
}

Result<Reply> HandleAuditCheckpoints(RequestContext& c) {
  return c.operation == "read" ? ListCheckpoints(c) : MethodNotAllowed(c);
}

Result<Reply> HandleAuditPrune(RequestContext& c) {
  const bool write = c.operation == "create" || c.operation == "update";
  return write ? Prune(c) : MethodNotAllowed(c);
}

}  // namespace kw::api
