#include "vault/audit/log_verifier.hpp"

#include <algorithm>
#include <utility>

#include <nlohmann/json.hpp>

namespace kw::vault::audit {

namespace {

std::string Record(std::uint64_t sequence) { return "record " + std::to_string(sequence); }

// Returns "record A" or "records A to B".
std::string RecordRange(std::uint64_t first, std::uint64_t last) {
  if (first == last) return Record(first);
  return "records " + std::to_string(first) + " to " + std::to_string(last);
}

std::string KnownKeyNames(std::span<const note::VerifierKey> keys) {
  if (keys.empty()) return "no key was given";
  std::string names = "known keys: ";
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (i > 0) names += ", ";
    names += note::FormatVkey(keys[i]);
  }
  return names;
}

// Returns the checkpoint that the text part of `note` claims, without checking a signature.
// Returns nullopt when there is no text part or it is malformed.
std::optional<note::Checkpoint> ClaimedCheckpoint(std::string_view note) {
  const std::size_t end = note.find("\n\n");
  if (end == std::string_view::npos) return std::nullopt;
  Result<note::Checkpoint> claimed = note::ParseCheckpoint(note.substr(0, end + 1));
  if (!claimed) return std::nullopt;
  return std::move(*claimed);
}

std::string CheckpointName(std::uint64_t size, std::string_view signer) {
  return "the checkpoint for size " + std::to_string(size) + " (signed by " + std::string(signer) +
         ")";
}

}  // namespace

Result<OpenedCheckpoint> OpenCheckpoint(std::string_view note,
                                        std::span<const note::VerifierKey> keys) {
  // The key must be the one named after the origin, so the text is parsed first to learn it.
  // OpenNote then checks the signatures and returns the text it verified.
  const std::size_t end = note.find("\n\n");
  if (end == std::string_view::npos) {
    return InvalidArgument("checkpoint note has no empty line between its text and signatures");
  }
  Result<note::Checkpoint> claimed = note::ParseCheckpoint(note.substr(0, end + 1));
  if (!claimed) return tl::unexpected(claimed.error().WithContext("checkpoint"));

  std::vector<note::VerifierKey> candidates;
  for (const note::VerifierKey& key : keys) {
    if (key.name == claimed->origin) candidates.push_back(key);
  }
  if (candidates.empty()) {
    return PermissionDenied("checkpoint origin \"" + claimed->origin +
                            "\" is not the name of a known key (" + KnownKeyNames(keys) + ")");
  }

  Result<std::string> text = note::OpenNote(note, candidates);
  if (!text) return tl::unexpected(text.error().WithContext("checkpoint signature"));
  Result<note::Checkpoint> checkpoint = note::ParseCheckpoint(*text);
  if (!checkpoint) return tl::unexpected(checkpoint.error().WithContext("checkpoint"));
  std::string signer = checkpoint->origin;
  return OpenedCheckpoint{std::move(*checkpoint), std::move(signer)};
}

Result<LogVerifier> LogVerifier::Create(std::vector<note::VerifierKey> keys, VerifierStart start) {
  if (start.range.size() != start.sequence) {
    return InvalidArgument("verifier start: the tree has " + std::to_string(start.range.size()) +
                           " leaves but the start names " + Record(start.sequence));
  }
  if (!merkle::HashFromHex(start.hash)) {
    return InvalidArgument("verifier start: hash is not 64 lower-case hex digits");
  }
  return LogVerifier(std::move(keys), std::move(start));
}

LogVerifier::LogVerifier(std::vector<note::VerifierKey> keys, VerifierStart start)
    : keys_(std::move(keys)),
      start_sequence_(start.sequence),
      last_hash_(std::move(start.hash)),
      range_(std::move(start.range)),
      covered_size_(start.sequence) {}

void LogVerifier::Fail(std::uint64_t sequence, std::string reason, std::string_view location) {
  if (problem_) return;
  problem_ = LogProblem{sequence, std::move(reason), std::string(location)};
}

void LogVerifier::AddRecord(std::string_view canonical, std::string_view location,
                            std::optional<std::uint64_t> stored_sequence) {
  if (problem_) return;
  if (detail::NestsDeeperThan(canonical, detail::kMaxRecordDepth)) {
    const std::uint64_t sequence = stored_sequence.value_or(tree_size() + 1);
    return Fail(sequence,
                "record " + std::to_string(sequence) + " nests deeper than " +
                    std::to_string(detail::kMaxRecordDepth) +
                    " levels, which no stored record does (edited by hand?)",
                location);
  }
  const nlohmann::json record =
      nlohmann::json::parse(canonical, nullptr, /*allow_exceptions=*/false);
  AcceptRecord(canonical, record, stored_sequence, location);
}

// Checks one record and, when sound, appends it to the chain and the tree. The checks run in
// the order that names the most precise cause: placement, then the link, then the form.
void LogVerifier::AcceptRecord(std::string_view canonical, const nlohmann::json& record,
                               std::optional<std::uint64_t> stored_sequence,
                               std::string_view location) {
  const std::uint64_t expected = tree_size() + 1;
  if (stored_sequence && *stored_sequence != expected) {
    return Fail(expected, Record(expected) + " missing", location);
  }
  if (record.is_discarded() || !record.is_object()) {
    return Fail(expected, Record(expected) + " does not parse as a JSON object", location);
  }

  const auto sequence_field = record.find("seq");
  if (sequence_field == record.end() || !sequence_field->is_number_unsigned()) {
    return Fail(expected, Record(expected) + ": field seq is missing or not an unsigned integer",
                location);
  }
  const std::uint64_t sequence = sequence_field->get<std::uint64_t>();
  if (sequence != expected) {
    return Fail(expected, PlacementProblem(expected, sequence, stored_sequence.has_value()),
                location);
  }

  const auto prev_hash = record.find("prev_hash");
  if (prev_hash == record.end() || !prev_hash->is_string()) {
    return Fail(expected, Record(expected) + ": field prev_hash is missing or not a string",
                location);
  }
  if (prev_hash->get_ref<const std::string&>() != last_hash_) {
    const std::string cause =
        expected == 1 ? "must be 64 zeros" : Record(expected - 1) + " changed?";
    return Fail(expected, Record(expected) + ": previous hash mismatch (" + cause + ")", location);
  }

  if (detail::CanonicalJson(record) != canonical) {
    return Fail(expected, Record(expected) + " is not in canonical JSON form (edited by hand?)",
                location);
  }

  last_hash_ = detail::RecordHash(canonical);
  range_.Append(merkle::LeafHash(AsBytes(canonical)), node_observer_);
  ++records_checked_;
  CompareWaiting();
}

// Names what a record with the wrong seq field means where record `expected` belongs.
std::string LogVerifier::PlacementProblem(std::uint64_t expected, std::uint64_t found,
                                          bool stored) const {
  if (stored) {
    return Record(expected) + ": sequence out of order (the record stored there names " +
           std::to_string(found) + ")";
  }
  if (found < expected) {
    return Record(found) + " out of order (found where " + Record(expected) + " belongs)";
  }
  // A file cannot tell a deleted record from one moved further down, so both are named.
  const std::string missing = RecordRange(expected, found - 1) + " missing";
  if (expected == 1) {
    return missing + " (the first record given is " + std::to_string(found) +
           "; were the archives of pruned records left out?)";
  }
  return missing + " (" + Record(found) + " follows " + Record(expected - 1) + ")";
}

void LogVerifier::AddCheckpoint(std::string_view note, std::string_view location,
                                const CheckpointContext& context) {
  if (problem_) return;

  Result<OpenedCheckpoint> opened = OpenCheckpoint(note, keys_);
  if (!opened) {
    const std::optional<note::Checkpoint> claimed = ClaimedCheckpoint(note);
    const std::optional<std::uint64_t> size =
        claimed ? std::optional<std::uint64_t>(claimed->size) : context.stored_size;
    const std::string name =
        size ? "the checkpoint for size " + std::to_string(*size) : std::string("a checkpoint");
    return Fail(size.value_or(tree_size() + 1), name + " is rejected: " + opened.error().message(),
                location);
  }

  const std::uint64_t size = opened->checkpoint.size;
  if (context.stored_size && *context.stored_size != size) {
    return Fail(size,
                "the checkpoint stored for size " + std::to_string(*context.stored_size) +
                    " names size " + std::to_string(size),
                location);
  }

  if (size > tree_size()) {
    waiting_.emplace(size, Waiting{std::move(*opened), std::string(location)});
    return;
  }
  if (size == tree_size()) return CompareRoot(*opened, range_.Root(), location);
  if (size <= start_sequence_ && context.root_before_start) {
    return CompareRootBeforeStart(*opened, *context.root_before_start, location);
  }
  Fail(size,
       CheckpointName(size, opened->signer) + " comes after " + Record(tree_size()) +
           "; it must follow " + (size == 0 ? std::string("no record") : Record(size)),
       location);
}

void LogVerifier::CompareRoot(const OpenedCheckpoint& opened, const merkle::Hash& root,
                              std::string_view location) {
  const std::uint64_t size = opened.checkpoint.size;
  if (root == opened.checkpoint.root) {
    ++checkpoints_verified_;
    covered_size_ = std::max(covered_size_, size);
    origin_ = opened.checkpoint.origin;
    return;
  }

  const std::string checkpoint = CheckpointName(size, opened.signer);
  if (size == 0) {
    return Fail(0, checkpoint + " does not name the root of the empty tree", location);
  }
  // Records up to covered_size_ matched an earlier checkpoint, so the change lies after them,
  // unless this checkpoint and an earlier one for the same records disagree.
  const std::uint64_t first = covered_size_ + 1;
  if (first > size) {
    return Fail(size,
                checkpoint + " names a different root for " + RecordRange(1, size) +
                    " than an earlier verified checkpoint: the log signed two different trees",
                location);
  }
  std::string reason = RecordRange(first, size) + " do not match " + checkpoint;
  if (first == size) {
    reason = Record(size) + " does not match " + checkpoint + ": it was changed or replaced";
  } else {
    reason += ": a record in that range was changed or replaced; " + Record(first) +
              " is the first not covered by an earlier verified checkpoint";
  }
  Fail(first, std::move(reason), location);
}

void LogVerifier::CompareRootBeforeStart(const OpenedCheckpoint& opened, const merkle::Hash& root,
                                         std::string_view location) {
  if (root == opened.checkpoint.root) {
    ++checkpoints_verified_;
    origin_ = opened.checkpoint.origin;
    return;
  }
  const std::uint64_t size = opened.checkpoint.size;
  Fail(size,
       CheckpointName(size, opened.signer) + " does not match the stored tree nodes of the " +
           "pruned " + RecordRange(1, size) + ": a tree node was changed",
       location);
}

void LogVerifier::CompareWaiting() {
  const auto [begin, end] = waiting_.equal_range(tree_size());
  for (auto it = begin; it != end && !problem_; ++it) {
    CompareRoot(it->second.opened, range_.Root(), it->second.location);
  }
  waiting_.erase(begin, end);
}

void LogVerifier::AddLine(std::string_view line, std::string_view location) {
  if (problem_) return;
  const std::uint64_t next = tree_size() + 1;
  if (line.empty()) {
    return Fail(next, "empty line: every line must hold a record or a checkpoint", location);
  }

  if (detail::NestsDeeperThan(line, detail::kMaxRecordDepth)) {
    return Fail(next,
                "record " + std::to_string(next) + " nests deeper than " +
                    std::to_string(detail::kMaxRecordDepth) +
                    " levels, which no stored record does (edited by hand?)",
                location);
  }
  const nlohmann::json parsed = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_object() && parsed.size() == 1 && parsed.contains("checkpoint")) {
    const nlohmann::json& note = parsed["checkpoint"];
    if (!note.is_string()) {
      return Fail(next, "checkpoint line: field checkpoint is not a string", location);
    }
    return AddCheckpoint(note.get_ref<const std::string&>(), location);
  }
  if (parsed.is_object() && !parsed.contains("seq")) {
    return Fail(next,
                "line is neither an audit record (it has no seq field) nor a checkpoint line "
                "(an object with the single field checkpoint)",
                location);
  }
  AcceptRecord(line, parsed, std::nullopt, location);
}

void LogVerifier::Finish() {
  if (problem_ || waiting_.empty()) return;
  const auto& [size, waiting] = *waiting_.begin();
  const std::uint64_t last = tree_size();
  const std::string ends = last == 0 ? "log holds no record" : "log ends after " + Record(last);
  const std::string missing = RecordRange(last + 1, size) + (last + 1 == size ? " is" : " are");
  Fail(last + 1,
       ends + " but " + CheckpointName(size, waiting.opened.signer) + " names " +
           std::to_string(size) + " records (" + missing + " missing)",
       waiting.location);
}

}  // namespace kw::vault::audit
