#include "vault/audit/audit_log.hpp"

#include <chrono>
#include <mutex>
#include <utility>

#include "base/log.hpp"
#include "base/metrics.hpp"
#include "vault/audit/audit_record.hpp"
#include "vault/audit/chain_verifier.hpp"
#include "vault/audit/head_mac.hpp"
#include "vault/audit/merkle_store.hpp"
#include "vault/audit/redaction.hpp"

namespace kw::vault::audit {

namespace {

using detail::Head;

// Metrics of audit appends, for sys/metrics.
struct AppendMetrics {
  metrics::HistogramFamily duration{
      metrics::Registry::Global(), "keyward_audit_append_duration_seconds",
      "Time to chain one audit record in its request's transaction: the record and its "
      "Merkle tree nodes. The head MAC is computed once per transaction.",
      metrics::kLatencyBoundsNanos, metrics::kNanosPerSecond};
  metrics::CounterFamily failures{
      metrics::Registry::Global(), "keyward_audit_append_failures_total",
      "Audit records that could not be written, by stage: prepare (damaged log or redaction "
      "failed) or append (chaining it in the transaction failed).",
      metrics::LabelGrid{{{"stage", {"prepare", "append"}}}}};
};

AppendMetrics& Metrics() {
  static AppendMetrics metrics;
  return metrics;
}

// The head as Open found it in storage.
struct LoadedHead {
  Head head;
  std::optional<std::string> stored;  // the bytes at kHeadKey; nullopt when absent
  std::string problem;                // why the head and the records disagree; empty if they agree
};

// Reads the head and the last record and checks that they agree. A disagreement is reported
// in `problem`, not as an error, so that the server can start and report it.
// The problem an initialised vault's log reports when it has neither head nor records.
constexpr std::string_view kErasedProblem =
    "log erased: the vault is initialised but the audit log has no head and no records";

Result<LoadedHead> LoadHead(storage::Storage& storage, hsm::Token& token, hsm::KeyHandle key,
                            bool require_head) {
  LoadedHead loaded;
  KW_ASSIGN_OR_RETURN(const std::optional<Bytes> head_bytes, storage.Get(detail::kHeadKey));
  KW_ASSIGN_OR_RETURN(const std::optional<storage::Entry> last, storage.Last(detail::kLogPrefix));
  if (head_bytes) loaded.stored = std::string(AsText(*head_bytes));
  if (!head_bytes && !last) {
    if (require_head) loaded.problem = std::string(kErasedProblem);
    return loaded;  // an empty log
  }
  if (!head_bytes) {
    loaded.problem = "head missing although records exist";
    return loaded;
  }

  Result<detail::StoredHead> decoded = detail::DecodeHead(*head_bytes);
  if (!decoded) {
    loaded.problem = decoded.error().message();
    return loaded;
  }
  KW_ASSIGN_OR_RETURN(const bool mac_valid, detail::IsHeadMacValid(token, key, *decoded));
  const Head& head = decoded->head;
  const std::string names = "head names record " + std::to_string(head.sequence);
  if (!mac_valid) {
    loaded.problem = "head MAC invalid";
  } else if (!last) {
    loaded.problem = names + " but the log is empty";
  } else if (detail::ParseRecordKey(last->key) != head.sequence) {
    loaded.problem = names + " but the last record key is " + last->key;
  } else if (detail::RecordHash(AsText(last->value)) != head.hash) {
    loaded.problem = names + " but that record's hash differs";
  } else {
    loaded.head = head;
  }
  return loaded;
}

// Parses a stored signed checkpoint. With `key`, its signature must verify under it: a
// checkpoint the signer cannot vouch for is damage, reported as data_loss.
Result<std::optional<CheckpointInfo>> ReadCheckpoint(std::string_view signed_note,
                                                     const note::VerifierKey* key) {
  std::string text;
  if (key) {
    Result<std::string> opened = note::OpenNote(signed_note, std::span(key, 1));
    if (!opened) {
      return DataLoss("stored audit checkpoint does not verify: " + opened.error().message());
    }
    text = std::move(*opened);
  } else {
    const std::size_t end = signed_note.find("\n\n");
    if (end == std::string_view::npos) return DataLoss("stored audit checkpoint is malformed");
    text = std::string(signed_note.substr(0, end + 1));
  }
  Result<note::Checkpoint> checkpoint = note::ParseCheckpoint(text);
  if (!checkpoint) {
    return DataLoss("stored audit checkpoint is malformed: " + checkpoint.error().message());
  }
  return std::optional<CheckpointInfo>(
      CheckpointInfo{std::string(signed_note), checkpoint->size, checkpoint->root});
}

// Returns the compact range of the first `size` records. A log from before the tree existed
// (no leaf stored for record 1) gets its tree built from the records, 1000 per commit. A
// range of another size means nodes are missing: the caller reports the damage.
Result<merkle::CompactRange> LoadTree(storage::Storage& storage, std::uint64_t size) {
  if (size == 0) return merkle::CompactRange();
  KW_ASSIGN_OR_RETURN(const std::optional<Bytes> first_leaf,
                      storage.Get(merkle::TreeNodeKey(0, 0)));
  if (first_leaf) {
    Result<merkle::CompactRange> loaded = merkle::LoadCompactRange(storage, size);
    if (loaded) return loaded;
    if (loaded.error().code() != Code::kDataLoss) return loaded;
    log::Error("audit tree nodes missing", {{log::kError, loaded.error().message()}});
    return merkle::CompactRange();
  }

  log::Info("building the audit Merkle tree over the existing records", {{"records", size}});
  merkle::CompactRange range;
  std::string start_after;
  while (range.size() < size) {
    KW_ASSIGN_OR_RETURN(const std::vector<storage::Entry> page,
                        storage.Scan(detail::kLogPrefix, start_after, detail::kVerifyPageSize));
    if (page.empty()) break;
    std::vector<Bytes> leaves;
    for (const storage::Entry& entry : page) {
      if (detail::ParseRecordKey(entry.key) != range.size() + leaves.size() + 1) break;
      leaves.push_back(entry.value);
    }
    if (leaves.empty()) break;
    storage::WriteBatch batch;
    auto shared_range = std::make_shared<merkle::CompactRange>(range);
    batch.finalizer = [shared_range, leaves = std::move(leaves)](
                          storage::Transaction& transaction) -> Status {
      for (const Bytes& leaf : leaves) {
        KW_RETURN_IF_ERROR(merkle::AppendLeaf(transaction, *shared_range, merkle::LeafHash(leaf)));
      }
      return OkStatus();
    };
    KW_RETURN_IF_ERROR(storage.Commit(std::move(batch)));
    range = *shared_range;
    start_after = page.back().key;
  }
  return range;
}

class AuditLogImpl final : public AuditLog {
 public:
  AuditLogImpl(storage::Storage& storage, hsm::Token& token, hsm::KeyHandle hmac_key,
               const Clock& clock, LoadedHead loaded, merkle::CompactRange range,
               std::unique_ptr<note::NoteSigner> signer,
               std::optional<CheckpointInfo> last_checkpoint)
      : storage_(storage),
        token_(token),
        hmac_key_(hmac_key),
        clock_(clock),
        signer_(std::move(signer)),
        head_problem_(std::move(loaded.problem)),
        head_(std::move(loaded.head)),
        head_stored_(std::move(loaded.stored)),
        range_(std::move(range)),
        last_checkpoint_(std::move(last_checkpoint)) {}

  Status Attach(const AuditEntry& entry, storage::WriteBatch& batch,
                std::shared_ptr<AppendedRecord>& appended) override;
  Result<std::string> Hash(std::string_view value) override;
  Result<VerifyReport> Verify() override;
  Result<std::optional<CheckpointInfo>> MakeCheckpoint() override;
  Result<std::optional<CheckpointInfo>> LatestCheckpoint() override;
  const note::VerifierKey* checkpoint_key() const override {
    return signer_ ? &signer_->key() : nullptr;
  }
  Result<std::uint64_t> CommittedSize() override;

 private:
  Result<nlohmann::json> BuildRecord(const AuditEntry& entry);
  // The in-memory head before one append, kept until the append's transaction commits.
  struct HeadState {
    Head head;
    std::optional<std::string> stored;
    merkle::CompactRange range;
  };

  Status AppendRecord(storage::Transaction& transaction, nlohmann::json& record,
                      AppendedRecord& appended, std::optional<HeadState>& before);
  // Puts the in-memory head back to `before` after the append's transaction failed to commit.
  void UndoAppend(std::optional<HeadState>& before, AppendedRecord& appended);
  Status StoreHead(storage::Transaction& transaction);

  storage::Storage& storage_;
  hsm::Token& token_;
  const hsm::KeyHandle hmac_key_;
  const Clock& clock_;
  const std::unique_ptr<note::NoteSigner> signer_;
  // Set by Open when the stored head and the last record disagree, or the tree does not
  // match them; Attach then fails.
  const std::string head_problem_;

  std::mutex head_mutex_;
  Head head_;                               // guarded by head_mutex_
  std::optional<std::string> head_stored_;  // guarded by head_mutex_; the bytes at kHeadKey
  merkle::CompactRange range_;              // guarded by head_mutex_; size() == head_.sequence

  std::mutex checkpoint_mutex_;                  // one MakeCheckpoint at a time
  std::optional<CheckpointInfo> last_checkpoint_;  // guarded by checkpoint_mutex_
};

Result<nlohmann::json> AuditLogImpl::BuildRecord(const AuditEntry& entry) {
  detail::Redactor redactor(token_, hmac_key_);
  KW_ASSIGN_OR_RETURN(nlohmann::json request,
                      redactor.Redact(entry.request_body, detail::BodyKind::kRequest));
  const std::optional<nlohmann::json> summary =
      detail::SummarizeResponse(entry.path, entry.response_body);
  KW_ASSIGN_OR_RETURN(nlohmann::json response,
                      redactor.Redact(summary ? *summary : entry.response_body,
                                      detail::BodyKind::kResponse));

  // An entry without a time gets the time it is attached.
  const TimePoint time = entry.time == TimePoint{} ? clock_.Now() : entry.time;
  return nlohmann::json{
      {"time", FormatRfc3339(time)},
      {"request_id", entry.request_id},
      {"client_address", entry.client_address},
      {"client_spiffe_id", entry.client_spiffe_id},
      {"mount", entry.mount},
      {"error", entry.error},
      {"accessor", entry.accessor},
      {"delegation_chain", entry.delegation_chain},
      {"operation", entry.operation},
      {"method", entry.method},
      {"path", entry.path},
      {"status", entry.status},
      {"request", std::move(request)},
      {"response", std::move(response)},
  };
}

Status AuditLogImpl::Attach(const AuditEntry& entry, storage::WriteBatch& batch,
                            std::shared_ptr<AppendedRecord>& appended) {
  if (!head_problem_.empty()) {
    Metrics().failures.At({0}).Increment();
    return DataLoss("audit log: the stored head does not match the records (" + head_problem_ +
                    "); appends are rejected to keep the evidence, run keyward audit verify");
  }
  Result<nlohmann::json> record = BuildRecord(entry);
  if (!record) {
    Metrics().failures.At({0}).Increment();
    return tl::unexpected(record.error().WithContext("audit log: redact entry"));
  }

  // The finalizer runs on the writer thread after Attach returns; the record stays alive in
  // the shared_ptr that the std::function (which must be copyable) holds.
  auto shared_record = std::make_shared<nlohmann::json>(std::move(*record));
  appended = std::make_shared<AppendedRecord>();
  auto before = std::make_shared<std::optional<HeadState>>();
  std::function<Status(storage::Transaction&)> append =
      [this, shared_record, appended, before](storage::Transaction& transaction) {
        const auto started = std::chrono::steady_clock::now();  // metrics
        Status status = AppendRecord(transaction, *shared_record, *appended, *before);
        Metrics().duration.At(0).Observe(metrics::NanosSince(started));
        if (!status) Metrics().failures.At({1}).Increment();
        return status;
      };
  batch.before_commit = [this](storage::Transaction& transaction) {
    const Status stored = StoreHead(transaction);
    if (!stored) Metrics().failures.At({1}).Increment();
    return stored;
  };
  // The audit append ran last, so it is undone first.
  batch.on_rollback = [this, appended, before, caller_undo = std::move(batch.on_rollback)] {
    UndoAppend(*before, *appended);
    if (caller_undo) caller_undo();
  };
  if (!batch.finalizer) {
    batch.finalizer = std::move(append);
    return OkStatus();
  }
  batch.finalizer = [caller = std::move(batch.finalizer),
                     append = std::move(append)](storage::Transaction& transaction) -> Status {
    KW_RETURN_IF_ERROR(caller(transaction));
    return append(transaction);
  };
  return OkStatus();
}

// Runs on the writer thread inside the batch's savepoint. The in-memory head advances only
// after the record and tree Puts succeeded, so a failure here, which rolls the batch back, leaves it as it
// was. Should the whole transaction then fail to commit, the storage calls UndoAppend, which
// restores the head saved in `before`.
Status AuditLogImpl::AppendRecord(storage::Transaction& transaction, nlohmann::json& record,
                                  AppendedRecord& appended, std::optional<HeadState>& before) {
  std::lock_guard<std::mutex> lock(head_mutex_);

  // The stored head must be the one this log wrote or loaded last. Otherwise another writer
  // appended (a second AuditLog on the same storage) or an append was lost, and chaining onto
  // the in-memory head would fork the chain.
  KW_ASSIGN_OR_RETURN(const std::optional<Bytes> stored, transaction.Get(detail::kHeadKey));
  const bool stored_matches = stored.has_value() == head_stored_.has_value() &&
                              (!stored || AsText(*stored) == *head_stored_);
  if (!stored_matches) {
    const std::string in_memory = "record " + std::to_string(head_.sequence);
    return DataLoss("audit log: the stored head changed behind this process (in-memory head is " +
                    in_memory + "); restart to reload it");
  }

  Head next;
  next.sequence = head_.sequence + 1;
  record["seq"] = next.sequence;
  record["prev_hash"] = head_.hash;
  const std::string canonical = detail::CanonicalJson(record);
  next.hash = detail::RecordHash(canonical);

  const std::string context = "audit log: append record " + std::to_string(next.sequence);
  Status put_record = transaction.Put(detail::RecordKey(next.sequence), AsBytes(canonical));
  if (!put_record) return tl::unexpected(put_record.error().WithContext(context));

  // The tree grows on a copy, which replaces range_ only once every put succeeded.
  merkle::CompactRange range = range_;
  Status put_nodes = merkle::AppendLeaf(transaction, range, merkle::LeafHash(AsBytes(canonical)));
  if (!put_nodes) return tl::unexpected(put_nodes.error().WithContext(context + ": tree"));

  // The signed head is stored once per transaction, by StoreHead.
  appended.sequence = next.sequence;
  appended.canonical = canonical;
  before = HeadState{std::move(head_), head_stored_, std::move(range_)};
  head_ = std::move(next);
  range_ = std::move(range);
  return OkStatus();
}

// Runs on the writer thread once per transaction, after its last record: one HSM MAC and one
// Put per transaction instead of per record. A failure rolls back the whole transaction, and
// the storage then calls each record's UndoAppend.
Status AuditLogImpl::StoreHead(storage::Transaction& transaction) {
  std::lock_guard<std::mutex> lock(head_mutex_);
  const std::string context = "audit log: store head " + std::to_string(head_.sequence);
  Result<Bytes> mac = detail::ComputeHeadMac(token_, hmac_key_, head_);
  if (!mac) return tl::unexpected(mac.error().WithContext(context + ": MAC"));
  std::string head_bytes = detail::EncodeHead(head_, *mac);
  Status put_head = transaction.Put(detail::kHeadKey, AsBytes(head_bytes));
  if (!put_head) return tl::unexpected(put_head.error().WithContext(context));
  head_stored_ = std::move(head_bytes);
  return OkStatus();
}

void AuditLogImpl::UndoAppend(std::optional<HeadState>& before, AppendedRecord& appended) {
  if (!before) return;
  std::lock_guard<std::mutex> lock(head_mutex_);
  log::Warn("audit record not committed; the in-memory audit head goes back to the stored one",
            {{"sequence", appended.sequence}, {"head", before->head.sequence}});
  head_ = std::move(before->head);
  head_stored_ = std::move(before->stored);
  range_ = std::move(before->range);
  before.reset();
  appended = AppendedRecord{};
}

Result<std::uint64_t> AuditLogImpl::CommittedSize() {
  KW_ASSIGN_OR_RETURN(const std::optional<Bytes> stored, storage_.Get(detail::kHeadKey));
  if (!stored) return 0;
  KW_ASSIGN_OR_RETURN(const detail::StoredHead head, detail::DecodeHead(*stored));
  return head.head.sequence;
}

Result<std::optional<CheckpointInfo>> AuditLogImpl::MakeCheckpoint() {
  if (!signer_) return FailedPrecondition("audit log: no checkpoint signing key is configured");
  if (!head_problem_.empty()) {
    return DataLoss("audit log: no checkpoint is signed for a damaged log (" + head_problem_ +
                    ")");
  }
  std::lock_guard<std::mutex> turn(checkpoint_mutex_);
  KW_ASSIGN_OR_RETURN(const std::uint64_t committed, CommittedSize());
  if (committed == 0 || (last_checkpoint_ && last_checkpoint_->size >= committed)) {
    return std::optional<CheckpointInfo>();
  }

  // The tree is read inside the commit, on the writer thread, after every record committed
  // before it: the checkpoint then names exactly what is durable with it.
  auto signed_checkpoint = std::make_shared<std::optional<CheckpointInfo>>();
  storage::WriteBatch batch;
  batch.finalizer = [this, signed_checkpoint](storage::Transaction& transaction) -> Status {
    merkle::CompactRange range;
    {
      std::lock_guard<std::mutex> lock(head_mutex_);
      range = range_;
    }
    if (range.size() == 0 || (last_checkpoint_ && range.size() <= last_checkpoint_->size)) {
      return OkStatus();
    }
    note::Checkpoint checkpoint;
    checkpoint.origin = signer_->key().name;
    checkpoint.size = range.size();
    checkpoint.root = range.Root();
    KW_ASSIGN_OR_RETURN(std::string signed_note,
                        note::SignNote(note::FormatCheckpoint(checkpoint), *signer_));
    KW_RETURN_IF_ERROR(
        transaction.Put(detail::CheckpointKey(checkpoint.size), AsBytes(signed_note)));
    *signed_checkpoint = CheckpointInfo{std::move(signed_note), checkpoint.size, checkpoint.root};
    return OkStatus();
  };
  if (Status committed_batch = storage_.Commit(std::move(batch)); !committed_batch) {
    return tl::unexpected(committed_batch.error().WithContext("audit log: store checkpoint"));
  }
  if (*signed_checkpoint) last_checkpoint_ = **signed_checkpoint;
  return *signed_checkpoint;
}

Result<std::optional<CheckpointInfo>> AuditLogImpl::LatestCheckpoint() {
  KW_ASSIGN_OR_RETURN(const std::optional<storage::Entry> stored,
                      storage_.Last(detail::kCheckpointPrefix));
  if (!stored) return std::optional<CheckpointInfo>();
  return ReadCheckpoint(AsText(stored->value), checkpoint_key());
}

Result<std::string> AuditLogImpl::Hash(std::string_view value) {
  return detail::HmacValue(token_, hmac_key_, value);
}

Result<VerifyReport> AuditLogImpl::Verify() {
  std::span<const note::VerifierKey> keys;
  if (signer_) keys = std::span(&signer_->key(), 1);
  Result<VerifyReport> report = detail::VerifyChain(storage_, token_, hmac_key_, keys);
  if (!report) return tl::unexpected(report.error().WithContext("audit log: verify"));
  // An empty chain verifies by itself, and only Open can tell that this log must not be empty.
  if (report->ok && report->records_checked == 0 && head_problem_ == kErasedProblem) {
    report->ok = false;
    report->first_broken_sequence = 1;
    report->reason = head_problem_;
  }
  return report;
}

}  // namespace

std::string MountOf(std::string_view path) {
  for (const std::string_view mount : {"auth/token/", "auth/approle/", "auth/cert/", "secret/",
                                       "database/", "pki/", "sys/"}) {
    if (path.starts_with(mount) || path == mount.substr(0, mount.size() - 1)) {
      return std::string(mount);
    }
  }
  return {};
}

Result<std::unique_ptr<AuditLog>> AuditLog::Open(storage::Storage& storage, hsm::Token& token,
                                                 hsm::KeyHandle hmac_key, const Clock& clock,
                                                 bool require_head,
                                                 std::unique_ptr<note::NoteSigner> signer) {
  (void)Metrics();  // registers the append metrics, so that a scrape lists them from unseal on
  Result<LoadedHead> loaded = LoadHead(storage, token, hmac_key, require_head);
  if (!loaded) return tl::unexpected(loaded.error().WithContext("audit log: open"));
  merkle::CompactRange range;
  if (loaded->problem.empty()) {
    Result<merkle::CompactRange> tree = LoadTree(storage, loaded->head.sequence);
    if (!tree) return tl::unexpected(tree.error().WithContext("audit log: open"));
    if (tree->size() == loaded->head.sequence) {
      range = std::move(*tree);
    } else {
      loaded->problem = "the Merkle tree nodes do not cover the " +
                        std::to_string(loaded->head.sequence) + " records";
    }
  }
  if (!loaded->problem.empty()) {
    log::Error("audit log head does not match its records; appends will be rejected",
               {{log::kError, loaded->problem}});
  }

  std::optional<CheckpointInfo> last_checkpoint;
  KW_ASSIGN_OR_RETURN(const std::optional<storage::Entry> stored_checkpoint,
                      storage.Last(detail::kCheckpointPrefix));
  if (stored_checkpoint && signer) {
    Result<std::optional<CheckpointInfo>> read =
        ReadCheckpoint(AsText(stored_checkpoint->value), &signer->key());
    if (!read) return tl::unexpected(read.error().WithContext("audit log: open"));
    last_checkpoint = std::move(*read);
  }
  return std::make_unique<AuditLogImpl>(storage, token, hmac_key, clock, std::move(*loaded),
                                        std::move(range), std::move(signer),
                                        std::move(last_checkpoint));
}

}  // namespace kw::vault::audit
