#include "vault/audit/chain_verifier.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "vault/audit/audit_record.hpp"
#include "vault/audit/head_mac.hpp"
#include "vault/audit/log_verifier.hpp"
#include "vault/audit/merkle_store.hpp"
#include "vault/audit/retention.hpp"

namespace kw::vault::audit::detail {

namespace {

// A break found outside LogVerifier: the first sequence concerned and the reason.
struct Break {
  std::uint64_t sequence = 0;
  std::string reason;
};

std::string Record(std::uint64_t sequence) { return "record " + std::to_string(sequence); }

struct HeadState {
  std::optional<StoredHead> stored;  // nullopt when absent or unparsable
  bool present = false;
  bool trusted = false;  // parsed and its MAC verified
  std::string problem;   // why it is not trusted
};

Result<HeadState> ReadHead(storage::Storage& storage, hsm::Token& token, hsm::KeyHandle key) {
  HeadState state;
  KW_ASSIGN_OR_RETURN(const std::optional<Bytes> bytes, storage.Get(kHeadKey));
  if (!bytes) return state;
  state.present = true;

  Result<StoredHead> decoded = DecodeHead(*bytes);
  if (!decoded) {
    state.problem = "head MAC invalid (" + decoded.error().message() + ")";
    return state;
  }
  state.stored = std::move(*decoded);
  KW_ASSIGN_OR_RETURN(state.trusted, IsHeadMacValid(token, key, *state.stored));
  if (!state.trusted) state.problem = "head MAC invalid";
  return state;
}

// Returns where verification starts: after the records the prune marker names, whose tree
// comes from the stored nodes, or at record 1 without a marker. A marker that does not parse
// or fails its MAC, or missing tree nodes, are a break.
Result<std::variant<VerifierStart, Break>> LoadStart(storage::Storage& storage, hsm::Token& token,
                                                     hsm::KeyHandle key) {
  KW_ASSIGN_OR_RETURN(const std::optional<Bytes> stored, storage.Get(kPrunedKey));
  if (!stored) return VerifierStart();

  Result<StoredPruneMarker> decoded = DecodePruneMarker(*stored);
  if (!decoded) return Break{1, "prune marker invalid (" + decoded.error().message() + ")"};
  const PruneMarker& marker = decoded->marker;
  KW_ASSIGN_OR_RETURN(const bool valid, IsPruneMarkerMacValid(token, key, *decoded));
  if (!valid) return Break{marker.sequence + 1, "prune marker MAC invalid"};

  Result<merkle::CompactRange> range = merkle::LoadCompactRange(storage, marker.sequence);
  if (!range) {
    if (range.error().code() != Code::kDataLoss) return tl::unexpected(range.error());
    return Break{marker.sequence + 1, "tree of the pruned records 1 to " +
                                          std::to_string(marker.sequence) + ": " +
                                          range.error().message()};
  }
  return VerifierStart{marker.sequence, marker.hash, std::move(*range)};
}

// Pages through the stored checkpoints in size order, so that each reaches the verifier right
// after the record whose sequence equals its size.
class CheckpointFeed {
 public:
  explicit CheckpointFeed(storage::Storage& storage) : storage_(storage) {}

  // Returns the size of the next checkpoint not fed yet; nullopt when none is left.
  Result<std::optional<std::uint64_t>> NextSize() {
    KW_ASSIGN_OR_RETURN(const bool available, Fill());
    if (!available) return std::optional<std::uint64_t>();
    return ParseCheckpointKey(page_[next_].key);
  }

  // Feeds every stored checkpoint for a size up to `size`. A checkpoint for a size before the
  // verifier's tree size (the pruned records) is checked against the stored tree nodes.
  // Returns a break for a malformed key or missing tree nodes.
  Result<std::optional<Break>> FeedUpTo(std::uint64_t size, LogVerifier& verifier) {
    while (verifier.ok()) {
      KW_ASSIGN_OR_RETURN(const bool available, Fill());
      if (!available) return std::nullopt;
      const storage::Entry& entry = page_[next_];
      const std::optional<std::uint64_t> stored_size = ParseCheckpointKey(entry.key);
      if (!stored_size) {
        return Break{verifier.tree_size() + 1, "checkpoint key \"" + entry.key + "\" is malformed"};
      }
      if (*stored_size > size) return std::nullopt;

      CheckpointContext context;
      context.stored_size = stored_size;
      if (*stored_size < verifier.tree_size()) {
        Result<merkle::Hash> root =
            merkle::RootAt(*stored_size, merkle::StorageNodeReader(storage_));
        if (!root) {
          if (root.error().code() != Code::kDataLoss) return tl::unexpected(root.error());
          return Break{*stored_size, "tree of the pruned records, for the checkpoint for size " +
                                         std::to_string(*stored_size) + ": " +
                                         root.error().message()};
        }
        context.root_before_start = *root;
      }
      verifier.AddCheckpoint(AsText(entry.value), entry.key, context);
      ++next_;
    }
    return std::nullopt;
  }

 private:
  // Makes page_[next_] the next checkpoint, reading a page when needed. Returns false at the end.
  Result<bool> Fill() {
    if (next_ < page_.size()) return true;
    if (end_) return false;
    KW_ASSIGN_OR_RETURN(page_, storage_.Scan(kCheckpointPrefix, start_after_, kVerifyPageSize));
    next_ = 0;
    end_ = page_.size() < kVerifyPageSize;
    if (page_.empty()) return false;
    start_after_ = page_.back().key;
    return true;
  }

  storage::Storage& storage_;
  std::vector<storage::Entry> page_;
  std::size_t next_ = 0;
  std::string start_after_;
  bool end_ = false;
};

// Compares every tree node that the verified records complete with the node stored for it,
// reading each level's nodes in pages as the records reach them. Nodes of a start state
// (pruned records) were loaded from storage and are not checked again.
class StoredTreeCheck {
 public:
  StoredTreeCheck(storage::Storage& storage, std::uint64_t start_size) : storage_(storage) {
    for (int level = 0; level < kLevels; ++level) {
      const std::uint64_t first = level < 64 ? start_size >> level : 0;
      if (first > 0) levels_[level].start_after = merkle::TreeNodeKey(level, first - 1);
    }
  }

  // Compares node (level, index), which the verifier computed as `hash`, with the stored one.
  void Observe(int level, std::uint64_t index, const merkle::Hash& hash) {
    if (error_ || found_) return;
    Result<std::optional<Bytes>> stored = ReadNext(level, index);
    if (!stored) {
      error_ = stored.error();
      return;
    }
    const std::uint64_t first = (index << level) + 1;
    const std::uint64_t last = (index + 1) << level;
    const std::string records = "records " + std::to_string(first) + " to " + std::to_string(last);
    const std::string key = merkle::TreeNodeKey(level, index);
    if (!*stored) {
      found_ = Break{first, "stored Merkle tree node " + key + " over " + records + " is missing"};
    } else if (!std::equal(hash.begin(), hash.end(), (*stored)->begin(), (*stored)->end())) {
      found_ = Break{first, "stored Merkle tree node " + key + " does not match " + records +
                                " (a tree node was changed)"};
    }
  }

  // Returns the storage error met, else the first node that is missing or differs.
  Result<std::optional<Break>> Outcome() const {
    if (error_) return tl::unexpected(*error_);
    return found_;
  }

 private:
  static constexpr int kLevels = 64;
  static constexpr std::size_t kIndexDigits = 20;  // TreeNodeKey ends in the index, 20 digits

  struct Cursor {
    std::vector<storage::Entry> page;
    std::size_t next = 0;
    std::string start_after;
    bool end = false;
  };

  // Returns the stored value of node (level, index), passing over stored nodes before it;
  // nullopt when it is missing. Indexes must rise from one call to the next on a level.
  Result<std::optional<Bytes>> ReadNext(int level, std::uint64_t index) {
    Cursor& cursor = levels_[level];
    const std::string key = merkle::TreeNodeKey(level, index);
    const std::string prefix = key.substr(0, key.size() - kIndexDigits);
    while (true) {
      if (cursor.next == cursor.page.size()) {
        if (cursor.end) return std::optional<Bytes>();
        KW_ASSIGN_OR_RETURN(cursor.page,
                            storage_.Scan(prefix, cursor.start_after, kVerifyPageSize));
        cursor.next = 0;
        cursor.end = cursor.page.size() < kVerifyPageSize;
        if (cursor.page.empty()) return std::optional<Bytes>();
        cursor.start_after = cursor.page.back().key;
      }
      const storage::Entry& entry = cursor.page[cursor.next];
      if (entry.key > key) return std::optional<Bytes>();
      ++cursor.next;
      if (entry.key == key) return std::optional<Bytes>(entry.value);
    }
  }

  storage::Storage& storage_;
  std::array<Cursor, kLevels> levels_;
  std::optional<Error> error_;
  std::optional<Break> found_;
};

// Compares the stored tree nodes of the first `range.size()` records with `range`, which the
// verifier built from the records. A mismatch names the records below the first differing
// node.
Result<std::optional<Break>> CompareStoredTree(storage::Storage& storage,
                                               const merkle::CompactRange& range) {
  Result<merkle::CompactRange> stored = merkle::LoadCompactRange(storage, range.size());
  if (!stored) {
    if (stored.error().code() != Code::kDataLoss) return tl::unexpected(stored.error());
    return Break{range.size(), "stored Merkle tree of records 1 to " +
                                   std::to_string(range.size()) + ": " + stored.error().message()};
  }

  // Pieces run largest first; piece i covers the leaves after those of the pieces before it.
  std::uint64_t first_leaf = 0;
  int level = 64;
  for (std::size_t i = 0; i < range.pieces().size(); ++i) {
    do {
      --level;
    } while (((range.size() >> level) & 1) == 0);
    const std::uint64_t leaves = std::uint64_t{1} << level;
    if (stored->pieces()[i] != range.pieces()[i]) {
      return Break{first_leaf + 1, "stored Merkle tree nodes over records " +
                                       std::to_string(first_leaf + 1) + " to " +
                                       std::to_string(first_leaf + leaves) +
                                       " do not match those records (a node under " +
                                       std::string(merkle::kTreePrefix) + " was changed)"};
    }
    first_leaf += leaves;
  }
  return std::nullopt;
}

// Carries the report and the verifier through the steps of VerifyChain.
class ChainCheck {
 public:
  ChainCheck(VerifyReport& report, LogVerifier& verifier) : report_(report), verifier_(verifier) {}

  // Copies the verifier's counters into the report and returns it, marked broken by `found`.
  VerifyReport Broken(const Break& found) {
    VerifyReport report = Finish();
    report.ok = false;
    report.first_broken_sequence = found.sequence;
    report.reason = found.reason;
    return report;
  }
  VerifyReport BrokenByVerifier() {
    return Broken(Break{verifier_.problem()->sequence, verifier_.problem()->reason});
  }
  VerifyReport Ok() {
    VerifyReport report = Finish();
    report.ok = true;
    return report;
  }

 private:
  VerifyReport Finish() {
    VerifyReport report = report_;
    report.records_checked = verifier_.records_checked();
    report.tree_size = verifier_.tree_size();
    report.root = ToBase64(verifier_.root());
    report.checkpoints_verified = verifier_.checkpoints_verified();
    return report;
  }

  VerifyReport& report_;
  LogVerifier& verifier_;
};

// Feeds the stored records after `verifier`'s start, up to `bound`, with the checkpoints met
// on the way. Returns a break for a malformed key. The verifier reports any other problem.
Result<std::optional<Break>> ScanRecords(storage::Storage& storage, std::uint64_t bound,
                                         LogVerifier& verifier, CheckpointFeed& checkpoints) {
  KW_ASSIGN_OR_RETURN(std::optional<Break> found,
                      checkpoints.FeedUpTo(verifier.tree_size(), verifier));
  if (found) return found;

  std::string start_after = verifier.tree_size() == 0 ? "" : RecordKey(verifier.tree_size());
  while (verifier.ok()) {
    KW_ASSIGN_OR_RETURN(const std::vector<storage::Entry> page,
                        storage.Scan(kLogPrefix, start_after, kVerifyPageSize));
    for (const storage::Entry& entry : page) {
      const std::optional<std::uint64_t> sequence = ParseRecordKey(entry.key);
      if (!sequence) {
        return Break{verifier.tree_size() + 1, "record key \"" + entry.key + "\" is malformed"};
      }
      if (*sequence > bound) return std::nullopt;
      verifier.AddRecord(AsText(entry.value), entry.key, *sequence);
      KW_ASSIGN_OR_RETURN(found, checkpoints.FeedUpTo(verifier.tree_size(), verifier));
      if (found) return found;
      if (!verifier.ok()) return std::nullopt;
    }
    if (page.size() < kVerifyPageSize) return std::nullopt;
    start_after = page.back().key;
  }
  return std::nullopt;
}

// Checks the last record against the authenticated head. Returns the break, if any.
std::optional<Break> CheckHead(const HeadState& head, const LogVerifier& verifier) {
  const std::uint64_t last = verifier.tree_size();
  if (!head.present) {
    if (last == 0) return std::nullopt;
    return Break{last + 1,
                 "head missing although the log holds " + std::to_string(last) + " records"};
  }
  if (!head.trusted) return Break{last + 1, head.problem};

  const Head& trusted = head.stored->head;
  if (trusted.sequence > last) {
    return Break{last + 1, "log truncated after " + Record(last) + " (head names " +
                               Record(trusted.sequence) + ")"};
  }
  if (trusted.hash != verifier.last_hash()) {
    return Break{last,
                 Record(last) + " does not match the head hash (" + Record(last) + " changed?)"};
  }
  return std::nullopt;
}

// A record past the head is only sound if a head committed since then covers it, because a
// record and the head naming it commit in one transaction.
Result<std::optional<Break>> CheckBeyondHead(storage::Storage& storage, hsm::Token& token,
                                             hsm::KeyHandle key, std::uint64_t last) {
  KW_ASSIGN_OR_RETURN(const std::optional<storage::Entry> tail, storage.Last(kLogPrefix));
  if (!tail) return std::nullopt;
  const std::optional<std::uint64_t> tail_sequence = ParseRecordKey(tail->key);
  if (!tail_sequence) return Break{last + 1, "record key \"" + tail->key + "\" is malformed"};
  if (*tail_sequence <= last) return std::nullopt;

  KW_ASSIGN_OR_RETURN(const HeadState newer, ReadHead(storage, token, key));
  if (!newer.trusted || newer.stored->head.sequence < *tail_sequence) {
    return Break{last + 1, Record(*tail_sequence) + " lies beyond the head (head names " +
                               Record(last) + ")"};
  }
  return std::nullopt;
}

// A checkpoint beyond the head read at the start was either signed while the scan ran, and a
// newer head covers it, or it shows that the log was rolled back to an older genuine head. In
// the second case it is fed to the verifier, which reports the records it names as missing.
Result<std::optional<Break>> FeedBeyondHead(storage::Storage& storage, hsm::Token& token,
                                            hsm::KeyHandle key, LogVerifier& verifier,
                                            CheckpointFeed& checkpoints) {
  KW_ASSIGN_OR_RETURN(const std::optional<std::uint64_t> next, checkpoints.NextSize());
  if (!next) return std::nullopt;
  KW_ASSIGN_OR_RETURN(const HeadState newer, ReadHead(storage, token, key));
  if (newer.trusted && newer.stored->head.sequence >= *next) return std::nullopt;
  return checkpoints.FeedUpTo(std::numeric_limits<std::uint64_t>::max(), verifier);
}

}  // namespace

Result<VerifyReport> VerifyChain(storage::Storage& storage, hsm::Token& token,
                                 hsm::KeyHandle hmac_key,
                                 std::span<const note::VerifierKey> checkpoint_keys) {
  VerifyReport report;

  // The head is read first. Records and checkpoints added while the scan runs lie beyond it
  // and are checked by the next verification.
  KW_ASSIGN_OR_RETURN(const HeadState head, ReadHead(storage, token, hmac_key));
  if (head.stored) report.head_sequence = head.stored->head.sequence;
  const std::uint64_t bound =
      head.trusted ? head.stored->head.sequence : std::numeric_limits<std::uint64_t>::max();

  KW_ASSIGN_OR_RETURN(auto start, LoadStart(storage, token, hmac_key));
  if (const Break* found = std::get_if<Break>(&start)) {
    report.first_broken_sequence = found->sequence;
    report.reason = found->reason;
    return report;
  }
  Result<LogVerifier> created = LogVerifier::Create(
      std::vector<note::VerifierKey>(checkpoint_keys.begin(), checkpoint_keys.end()),
      std::move(std::get<VerifierStart>(start)));
  if (!created) {
    report.first_broken_sequence = 1;
    report.reason = "prune marker invalid (" + created.error().message() + ")";
    return report;
  }
  LogVerifier& verifier = *created;
  ChainCheck check(report, verifier);
  StoredTreeCheck tree(storage, verifier.tree_size());
  verifier.set_node_observer([&tree](int level, std::uint64_t index, const merkle::Hash& hash) {
    tree.Observe(level, index, hash);
  });

  CheckpointFeed checkpoints(storage);
  KW_ASSIGN_OR_RETURN(std::optional<Break> found,
                      ScanRecords(storage, bound, verifier, checkpoints));
  if (found) return check.Broken(*found);
  if (!verifier.ok()) return check.BrokenByVerifier();

  // Checkpoints beyond the last record wait in the verifier. Finish reports them after the head
  // checks, whose messages name a truncated tail more precisely.
  KW_ASSIGN_OR_RETURN(found, checkpoints.FeedUpTo(bound, verifier));
  if (found) return check.Broken(*found);
  if (!verifier.ok()) return check.BrokenByVerifier();
  if (std::optional<Break> head_break = CheckHead(head, verifier)) {
    return check.Broken(*head_break);
  }
  KW_ASSIGN_OR_RETURN(found, FeedBeyondHead(storage, token, hmac_key, verifier, checkpoints));
  if (found) return check.Broken(*found);
  verifier.Finish();
  if (!verifier.ok()) return check.BrokenByVerifier();

  // A node that differs is reported after the records, the head and the checkpoints, since an
  // edited record changes its nodes too and the checks above name it more precisely.
  KW_ASSIGN_OR_RETURN(found, tree.Outcome());
  if (found) return check.Broken(*found);
  KW_ASSIGN_OR_RETURN(found, CompareStoredTree(storage, verifier.range()));
  if (found) return check.Broken(*found);
  KW_ASSIGN_OR_RETURN(found, CheckBeyondHead(storage, token, hmac_key, verifier.tree_size()));
  if (found) return check.Broken(*found);
  return check.Ok();
}

}  // namespace kw::vault::audit::detail
