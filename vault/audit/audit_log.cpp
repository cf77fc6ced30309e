#include "vault/audit/audit_log.hpp"

#include <mutex>
#include <utility>

#include "base/log.hpp"
#include "vault/audit/audit_record.hpp"
#include "vault/audit/chain_verifier.hpp"
#include "vault/audit/head_mac.hpp"
#include "vault/audit/redaction.hpp"

namespace kw::vault::audit {

namespace {

using detail::Head;

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

class AuditLogImpl final : public AuditLog {
 public:
  AuditLogImpl(storage::Storage& storage, hsm::Token& token, hsm::KeyHandle hmac_key,
               const Clock& clock, LoadedHead loaded)
      : storage_(storage),
        token_(token),
        hmac_key_(hmac_key),
        clock_(clock),
        head_problem_(std::move(loaded.problem)),
        head_(std::move(loaded.head)),
        head_stored_(std::move(loaded.stored)) {}

  Status Attach(const AuditEntry& entry, storage::WriteBatch& batch) override;
  Result<std::string> Hash(std::string_view value) override;
  Result<VerifyReport> Verify() override;

 private:
  Result<nlohmann::json> BuildRecord(const AuditEntry& entry);
  Status AppendRecord(storage::Transaction& transaction, nlohmann::json& record);

  storage::Storage& storage_;
  hsm::Token& token_;
  const hsm::KeyHandle hmac_key_;
  const Clock& clock_;
  // Set by Open when the stored head and the last record disagree; Attach then fails.
  const std::string head_problem_;

  std::mutex head_mutex_;
  Head head_;                               // guarded by head_mutex_
  std::optional<std::string> head_stored_;  // guarded by head_mutex_; the bytes at kHeadKey
};

Result<nlohmann::json> AuditLogImpl::BuildRecord(const AuditEntry& entry) {
  detail::Redactor redactor(token_, hmac_key_);
  KW_ASSIGN_OR_RETURN(nlohmann::json request, redactor.Redact(entry.request_body, detail::BodyKind::kRequest));
  KW_ASSIGN_OR_RETURN(nlohmann::json response, redactor.Redact(entry.response_body, detail::BodyKind::kResponse));

  // An entry without a time gets the time it is attached.
  const TimePoint time = entry.time == TimePoint{} ? clock_.Now() : entry.time;
  return nlohmann::json{
      {"time", FormatRfc3339(time)},
      {"request_id", entry.request_id},
      {"client_address", entry.client_address},
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

Status AuditLogImpl::Attach(const AuditEntry& entry, storage::WriteBatch& batch) {
  if (!head_problem_.empty()) {
    return DataLoss("audit log: the stored head does not match the records (" + head_problem_ +
                    "); appends are rejected to keep the evidence, run keyward audit verify");
  }
  Result<nlohmann::json> record = BuildRecord(entry);
  if (!record) return tl::unexpected(record.error().WithContext("audit log: redact entry"));

  // The finalizer runs on the writer thread after Attach returns; the record stays alive in
  // the shared_ptr that the std::function (which must be copyable) holds.
  auto shared_record = std::make_shared<nlohmann::json>(std::move(*record));
  std::function<Status(storage::Transaction&)> append =
      [this, shared_record](storage::Transaction& transaction) {
        return AppendRecord(transaction, *shared_record);
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
// after both Puts succeeded, so a failure here, which rolls the batch back, leaves it as it
// was. NOTE: if the whole transaction then fails to commit, the in-memory head is ahead of
// the disk. The storage then rejects every later write until it is reopened. Should another
// write get through, the comparison with the stored head below fails closed.
Status AuditLogImpl::AppendRecord(storage::Transaction& transaction, nlohmann::json& record) {
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

  Result<Bytes> mac = detail::ComputeHeadMac(token_, hmac_key_, next);
  if (!mac) return tl::unexpected(mac.error().WithContext(context + ": head MAC"));
  std::string head_bytes = detail::EncodeHead(next, *mac);
  Status put_head = transaction.Put(detail::kHeadKey, AsBytes(head_bytes));
  if (!put_head) return tl::unexpected(put_head.error().WithContext(context + ": head"));

  head_ = std::move(next);
  head_stored_ = std::move(head_bytes);
  return OkStatus();
}

Result<std::string> AuditLogImpl::Hash(std::string_view value) {
  return detail::HmacValue(token_, hmac_key_, value);
}

Result<VerifyReport> AuditLogImpl::Verify() {
  Result<VerifyReport> report = detail::VerifyChain(storage_, token_, hmac_key_);
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

Result<std::unique_ptr<AuditLog>> AuditLog::Open(storage::Storage& storage, hsm::Token& token,
                                                 hsm::KeyHandle hmac_key, const Clock& clock,
                                                 bool require_head) {
  Result<LoadedHead> loaded = LoadHead(storage, token, hmac_key, require_head);
  if (!loaded) return tl::unexpected(loaded.error().WithContext("audit log: open"));
  if (!loaded->problem.empty()) {
    log::Error("audit log head does not match its records; appends will be rejected",
               {{log::kError, loaded->problem}});
  }
  return std::make_unique<AuditLogImpl>(storage, token, hmac_key, clock, std::move(*loaded));
}

}  // namespace kw::vault::audit
