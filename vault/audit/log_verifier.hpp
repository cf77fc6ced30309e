#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.hpp"
#include "vault/audit/audit_record.hpp"
#include "vault/audit/merkle.hpp"
#include "vault/audit/signed_note.hpp"

// The one verifier of the audit log, used by the server (over storage) and by
// `keyward audit verify` (over exported files, with neither server nor HSM).
namespace kw::vault::audit {

// A checkpoint whose signature, origin and form were checked.
struct OpenedCheckpoint {
  note::Checkpoint checkpoint;
  std::string signer;  // the name of the key that signed it, equal to the origin
};

// Checks that `note` is a checkpoint signed by a key in `keys` whose name is the checkpoint's
// origin. invalid_argument when the note or its checkpoint text is malformed; permission_denied
// when no such key signed it or its signature fails.
Result<OpenedCheckpoint> OpenCheckpoint(std::string_view note,
                                        std::span<const note::VerifierKey> keys);

// The state after the last record that was verified earlier (or pruned), from which a
// verification resumes. The default is the beginning of the log.
struct VerifierStart {
  std::uint64_t sequence = 0;              // the last record already accounted for
  std::string hash{detail::kGenesisHash};  // that record's hash; genesis for sequence 0
  merkle::CompactRange range;              // the tree of records 1 to sequence
};

// The first problem found, named by the record it concerns.
struct LogProblem {
  // The first record that is missing, changed, out of order or not covered; for a bad
  // checkpoint, the last record it covers.
  std::uint64_t sequence = 0;
  std::string reason;    // such as "record 17: previous hash mismatch (record 16 changed?)"
  std::string location;  // where the input that showed it came from; empty when unknown
};

// The facts about a stored checkpoint besides its note (server only).
struct CheckpointContext {
  // The tree size that the checkpoint's storage key names, which must equal the note's.
  std::optional<std::uint64_t> stored_size;
  // For a checkpoint at or before the start state (the pruned prefix): the root of the tree at
  // its size, from the stored tree nodes, since the records themselves are gone.
  std::optional<merkle::Hash> root_before_start;
};

// Checks a stream of audit records and checkpoints, fed in log order. The sequence numbers
// must run on without a gap, each prev_hash must name the previous record, and each record
// must be canonical JSON. Every checkpoint must be signed by a known key and name the Merkle
// root of the records up to its size. A checkpoint for a size not reached yet waits until the
// records reach it, and Finish reports one the log never reaches. Verification stops at the
// first problem: later input is ignored. Memory stays constant apart from the checkpoints
// still waiting. One thread.
class LogVerifier {
 public:
  // invalid_argument when `start.range` does not have `start.sequence` leaves.
  static Result<LogVerifier> Create(std::vector<note::VerifierKey> keys, VerifierStart start = {});

  // Feeds the stored bytes of the next record. `stored_sequence` is the sequence number its
  // storage key names (server); without it the record's own seq field places it (files).
  void AddRecord(std::string_view canonical, std::string_view location = {},
                 std::optional<std::uint64_t> stored_sequence = std::nullopt);

  // Feeds a signed checkpoint note. Feed it after the record whose sequence equals its size
  // (or earlier: it then waits for that record).
  void AddCheckpoint(std::string_view note, std::string_view location = {},
                     const CheckpointContext& context = {});

  // Feeds one line of a JSON-lines file (without its newline): a record's canonical bytes or
  // {"checkpoint":"<signed note>"}. Any other line is a problem.
  void AddLine(std::string_view line, std::string_view location);

  // Ends the input. A checkpoint still waiting names records that never came: a problem.
  void Finish();

  // Called for every tree node that an accepted record completes, the leaf included, with the
  // arguments of merkle::CompactRange::Append's callback.
  using NodeObserver = std::function<void(int level, std::uint64_t index, const merkle::Hash&)>;
  void set_node_observer(NodeObserver observer) { node_observer_ = std::move(observer); }

  bool ok() const { return !problem_.has_value(); }
  const std::optional<LogProblem>& problem() const { return problem_; }

  // The sequence number of the last record accepted: the tree size.
  std::uint64_t tree_size() const { return range_.size(); }
  merkle::Hash root() const { return range_.Root(); }
  // The tree of records 1 to tree_size().
  const merkle::CompactRange& range() const { return range_; }
  const std::string& last_hash() const { return last_hash_; }
  // Records accepted by this verifier, not counting those of the start state.
  std::uint64_t records_checked() const { return records_checked_; }
  std::uint64_t checkpoints_verified() const { return checkpoints_verified_; }
  // The largest tree size a verified checkpoint covers; the start's sequence before any.
  std::uint64_t covered_size() const { return covered_size_; }
  // The origin of the last checkpoint verified; empty before any.
  const std::string& origin() const { return origin_; }

 private:
  struct Waiting {
    OpenedCheckpoint opened;
    std::string location;
  };

  LogVerifier(std::vector<note::VerifierKey> keys, VerifierStart start);

  void Fail(std::uint64_t sequence, std::string reason, std::string_view location);
  void AcceptRecord(std::string_view canonical, const nlohmann::json& record,
                    std::optional<std::uint64_t> stored_sequence, std::string_view location);
  std::string PlacementProblem(std::uint64_t expected, std::uint64_t found, bool stored) const;
  // Compares a checkpoint for the current tree size with `root`, the records' root.
  void CompareRoot(const OpenedCheckpoint& opened, const merkle::Hash& root,
                   std::string_view location);
  void CompareRootBeforeStart(const OpenedCheckpoint& opened, const merkle::Hash& root,
                              std::string_view location);
  // Compares every waiting checkpoint for the current tree size.
  void CompareWaiting();

  std::vector<note::VerifierKey> keys_;
  std::uint64_t start_sequence_ = 0;
  std::string last_hash_;
  merkle::CompactRange range_;
  std::uint64_t records_checked_ = 0;
  std::uint64_t checkpoints_verified_ = 0;
  std::uint64_t covered_size_ = 0;
  std::string origin_;
  std::multimap<std::uint64_t, Waiting> waiting_;  // by tree size
  std::optional<LogProblem> problem_;
  NodeObserver node_observer_;
};

}  // namespace kw::vault::audit
