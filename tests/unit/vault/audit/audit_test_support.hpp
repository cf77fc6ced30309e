#pragma once

#include <sqlite3.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "base/bytes.hpp"
#include "base/clock.hpp"
#include "base/result.hpp"
#include "hsm/token.hpp"
#include "storage/sqlite/sqlite_storage.hpp"
#include "storage/storage.hpp"
#include "tests/unit/fakes/forwarding_storage.hpp"
#include "tests/unit/fakes/softhsm_fixture.hpp"
#include "tests/unit/fakes/temp_dir.hpp"
#include "vault/audit/audit_log.hpp"
#include "vault/audit/audit_record.hpp"

// Helpers shared by the audit log tests: a SoftHSM token with an HMAC key, a SQLite file in
// a temporary directory, and direct SQLite access for tampering with the stored chain.
namespace kw::vault::audit::testing {

// A Token that forwards to another and counts HmacSha256 calls.
class CountingToken final : public hsm::Token {
 public:
  explicit CountingToken(hsm::Token& inner) : inner_(inner) {}

  int hmac_calls() const { return hmac_calls_.load(); }

  Result<hsm::KeyHandle> FindKey(std::string_view label) override { return inner_.FindKey(label); }
  Result<std::vector<std::string>> ListKeyLabels(std::string_view prefix) override {
    return inner_.ListKeyLabels(prefix);
  }
  Result<hsm::KeyHandle> GenerateAesKey(std::string_view label) override {
    return inner_.GenerateAesKey(label);
  }
  Result<hsm::KeyHandle> GenerateHmacKey(std::string_view label) override {
    return inner_.GenerateHmacKey(label);
  }
  Result<Bytes> EncryptGcm(hsm::KeyHandle key, ByteSpan plaintext, ByteSpan aad) override {
    return inner_.EncryptGcm(key, plaintext, aad);
  }
  Result<SecretBuffer> DecryptGcm(hsm::KeyHandle key, ByteSpan sealed, ByteSpan aad) override {
    return inner_.DecryptGcm(key, sealed, aad);
  }
  Result<Bytes> HmacSha256(hsm::KeyHandle key, ByteSpan data) override {
    ++hmac_calls_;
    return inner_.HmacSha256(key, data);
  }
  Result<hsm::KeyHandle> GenerateEcP256KeyPair(std::string_view label) override {
    return inner_.GenerateEcP256KeyPair(label);
  }
  Result<hsm::KeyHandle> FindPrivateKey(std::string_view label) override {
    return inner_.FindPrivateKey(label);
  }
  Result<Bytes> GetEcPublicKeySpki(std::string_view label) override {
    return inner_.GetEcPublicKeySpki(label);
  }
  Result<Bytes> SignEcdsa(hsm::KeyHandle key, ByteSpan digest) override {
    return inner_.SignEcdsa(key, digest);
  }
  Result<hsm::KeyHandle> GenerateEd25519KeyPair(std::string_view label) override {
    return inner_.GenerateEd25519KeyPair(label);
  }
  Result<Bytes> GetEd25519PublicKey(std::string_view label) override {
    return inner_.GetEd25519PublicKey(label);
  }
  Result<Bytes> SignEd25519(hsm::KeyHandle key, ByteSpan message) override {
    return inner_.SignEd25519(key, message);
  }
  Result<hsm::KeyAttributes> GetKeyAttributes(hsm::KeyHandle key) override {
    return inner_.GetKeyAttributes(key);
  }

 private:
  hsm::Token& inner_;
  std::atomic<int> hmac_calls_{0};
};

// A Storage that forwards to another but makes the audit log's Put of the head, which runs
// once per transaction after the records were put, fail while `fail_head_put` is set.
class FailingHeadPutStorage final : public kw::testing::ForwardingStorage {
 public:
  using ForwardingStorage::ForwardingStorage;

  bool fail_head_put = false;

  Status Commit(storage::WriteBatch batch) override {
    if (fail_head_put && batch.before_commit) {
      batch.before_commit = [inner = std::move(batch.before_commit)](
                                storage::Transaction& transaction) {
        FailingTransaction failing(transaction);
        return inner(failing);
      };
    }
    return ForwardingStorage::Commit(std::move(batch));
  }

 private:
  class FailingTransaction final : public storage::Transaction {
   public:
    explicit FailingTransaction(storage::Transaction& inner) : inner_(inner) {}
    Result<std::optional<Bytes>> Get(std::string_view key) override { return inner_.Get(key); }
    Status Put(std::string_view key, ByteSpan value) override {
      if (key == detail::kHeadKey) return Unavailable("injected failure: put " + std::string(key));
      return inner_.Put(key, value);
    }
    Status Delete(std::string_view key) override { return inner_.Delete(key); }

   private:
    storage::Transaction& inner_;
  };
};

using TempDir = kw::testing::TempDir;

// A clock that stays where the test puts it.
class FixedClock final : public Clock {
 public:
  explicit FixedClock(TimePoint now) : now_(now) {}
  TimePoint Now() const override { return now_; }

 private:
  TimePoint now_;
};

// Returns a plain entry numbered `n`; its bodies hold no secret of interest.
inline AuditEntry MakeEntry(int n) {
  AuditEntry entry;
  entry.request_id = "request-" + std::to_string(n);
  entry.time = TimePoint(std::chrono::seconds(1'780'000'000 + n));
  entry.client_address = "127.0.0.1";
  entry.accessor = "accessor-" + std::to_string(n);
  entry.operation = "update";
  entry.method = "POST";
  entry.path = "secret/data/app" + std::to_string(n);
  entry.status = 200;
  entry.request_body = {{"data", {{"password", "pw-" + std::to_string(n)}}}};
  entry.response_body = {{"data", {{"version", n}}}};
  return entry;
}

// Reads a whole file; empty when it does not exist.
inline std::string ReadFileBytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A SoftHSM token with an HMAC key, a SQLite storage in a temporary directory and an AuditLog
// over both. Storage and log can be closed and reopened to tamper with the file in between.
class AuditHarness {
 public:
  AuditHarness() {
    auto token = hsm_.Open();
    REQUIRE_MESSAGE(token.has_value(), kw::testing::ErrorText(token.error()));
    token_ = std::move(*token);
    auto key = token_->GenerateHmacKey("audit-hmac");
    REQUIRE_MESSAGE(key.has_value(), kw::testing::ErrorText(key.error()));
    key_ = *key;
    OpenStorage();
    OpenLog();
  }

  hsm::Token& token() { return *token_; }
  hsm::KeyHandle key() const { return key_; }
  storage::Storage& storage() { return *storage_; }
  AuditLog& log() { return *log_; }
  std::filesystem::path db_path() const { return dir_.path() / "keyward.db"; }

  void OpenStorage() {
    storage::sqlite::SqliteOptions options;
    options.path = db_path().string();
    auto opened = storage::sqlite::Open(options);
    REQUIRE(opened.has_value());
    storage_ = std::move(*opened);
  }

  void OpenLog() { OpenLogOver(*storage_, *token_); }

  void OpenLogOver(storage::Storage& storage, hsm::Token& token) {
    auto opened = AuditLog::Open(storage, token, key_, clock_);
    REQUIRE(opened.has_value());
    log_ = std::move(*opened);
  }

  // Closes the log and the storage, so that the file can be edited directly.
  void Close() {
    log_.reset();
    storage_.reset();
  }

  void Reopen() {
    Close();
    OpenStorage();
    OpenLog();
  }

  // Attaches `entry` to a batch of its own and commits it.
  Status Append(const AuditEntry& entry) {
    storage::WriteBatch batch;
    KW_RETURN_IF_ERROR(log_->Attach(entry, batch));
    return storage_->Commit(std::move(batch));
  }

  // Appends entries 1..count, `per_batch` records to a batch.
  void AppendMany(int count, int per_batch = 1) {
    for (int first = 1; first <= count; first += per_batch) {
      storage::WriteBatch batch;
      for (int n = first; n < first + per_batch && n <= count; ++n) {
        REQUIRE(log_->Attach(MakeEntry(n), batch).has_value());
      }
      REQUIRE(storage_->Commit(std::move(batch)).has_value());
    }
  }

  VerifyReport Verify() {
    auto report = log_->Verify();
    REQUIRE(report.has_value());
    return *report;
  }

  // Returns the stored record `sequence` parsed.
  nlohmann::json Record(std::uint64_t sequence) {
    auto stored = storage_->Get(detail::RecordKey(sequence));
    REQUIRE(stored.has_value());
    REQUIRE(stored->has_value());
    return nlohmann::json::parse(AsText(**stored));
  }

 private:
  kw::testing::SoftHsmFixture hsm_;
  std::unique_ptr<hsm::Token> token_;
  hsm::KeyHandle key_;
  TempDir dir_;
  FixedClock clock_{TimePoint(std::chrono::seconds(1'790'000'000))};
  std::unique_ptr<storage::Storage> storage_;
  std::unique_ptr<AuditLog> log_;
};

// Direct access to the SQLite file behind a closed storage, to play the attacker.
class RawDatabase {
 public:
  explicit RawDatabase(const std::filesystem::path& path) {
    REQUIRE(sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
  }
  RawDatabase(const RawDatabase&) = delete;
  RawDatabase& operator=(const RawDatabase&) = delete;
  ~RawDatabase() { sqlite3_close(db_); }

  std::optional<std::string> Get(const std::string& key) {
    sqlite3_stmt* statement = Prepare("SELECT value FROM kv WHERE key = ?1");
    sqlite3_bind_text(statement, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    std::optional<std::string> value;
    if (sqlite3_step(statement) == SQLITE_ROW) {
      const auto* data = static_cast<const char*>(sqlite3_column_blob(statement, 0));
      value = std::string(data, static_cast<std::size_t>(sqlite3_column_bytes(statement, 0)));
    }
    sqlite3_finalize(statement);
    return value;
  }

  void Put(const std::string& key, std::string_view value) {
    sqlite3_stmt* statement = Prepare("INSERT OR REPLACE INTO kv(key, value) VALUES (?1, ?2)");
    sqlite3_bind_text(statement, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    sqlite3_bind_blob(statement, 2, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
    REQUIRE(sqlite3_step(statement) == SQLITE_DONE);
    sqlite3_finalize(statement);
  }

  void Delete(const std::string& key) {
    sqlite3_stmt* statement = Prepare("DELETE FROM kv WHERE key = ?1");
    sqlite3_bind_text(statement, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    REQUIRE(sqlite3_step(statement) == SQLITE_DONE);
    REQUIRE(sqlite3_changes(db_) == 1);
    sqlite3_finalize(statement);
  }

  // Replaces the first `from` in the value at `key` with `to`.
  void Edit(const std::string& key, std::string_view from, std::string_view to) {
    std::optional<std::string> value = Get(key);
    REQUIRE(value.has_value());
    const std::size_t at = value->find(from);
    REQUIRE(at != std::string::npos);
    value->replace(at, from.size(), to);
    Put(key, *value);
  }

 private:
  sqlite3_stmt* Prepare(const char* sql) {
    sqlite3_stmt* statement = nullptr;
    REQUIRE(sqlite3_prepare_v2(db_, sql, -1, &statement, nullptr) == SQLITE_OK);
    return statement;
  }

  sqlite3* db_ = nullptr;
};

}  // namespace kw::vault::audit::testing
