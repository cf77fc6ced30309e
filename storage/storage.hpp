#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.hpp"
#include "base/result.hpp"

namespace kw::storage {

struct Entry {
  std::string key;
  Bytes value;
};

// The writer's view of an open transaction, handed to a WriteBatch finalizer. Reads see the
// writes made earlier in the same transaction. One thread: the writer's.
class Transaction {
 public:
  virtual ~Transaction() = default;
  virtual Result<std::optional<Bytes>> Get(std::string_view key) = 0;
  virtual Status Put(std::string_view key, ByteSpan value) = 0;
  virtual Status Delete(std::string_view key) = 0;
};

// Changes that commit together or not at all. Storage never sees plaintext secrets: callers
// encrypt values before they are put here.
class WriteBatch {
 public:
  struct Op {
    enum class Kind { kPut, kDelete, kExpect };
    Kind kind;
    std::string key;
    std::optional<Bytes> value;  // kPut: the value; kExpect: the expected value, nullopt = absent
  };

  void Put(std::string key, Bytes value) {
    ops_.push_back({Op::Kind::kPut, std::move(key), std::move(value)});
  }
  void Delete(std::string key) { ops_.push_back({Op::Kind::kDelete, std::move(key), std::nullopt}); }
  // Makes the commit fail with aborted, applying nothing, unless `key` holds exactly `value`
  // (nullopt: the key is absent) when the batch is applied. Optimistic concurrency for
  // check-and-set: the caller rereads and redoes its work.
  void Expect(std::string key, std::optional<Bytes> value) {
    ops_.push_back({Op::Kind::kExpect, std::move(key), std::move(value)});
  }

  const std::vector<Op>& ops() const { return ops_; }
  bool empty() const { return ops_.empty() && !finalizer; }

  // Runs on the writer thread after the ops applied, in the same transaction, one batch at a
  // time in commit order. An error rolls back this batch alone. The audit log uses it to
  // chain records in the order they become durable.
  std::function<Status(Transaction&)> finalizer;

  // Runs on the writer thread once per transaction, after every batch in it: of the batches
  // that applied and set it, only the last one's runs. A failure rolls back the whole
  // transaction. For state that each batch's finalizer advances in memory and that only the
  // transaction's final value needs to store, such as the audit log's signed head.
  std::function<Status(Transaction&)> before_commit;

  // Runs on the writer thread when the finalizer succeeded but its transaction then failed to
  // commit, so that the finalizer's owner can undo what it changed in memory. Batches of one
  // transaction are undone in the reverse of their commit order.
  std::function<void()> on_rollback;

 private:
  std::vector<Op> ops_;
};

// Durable key/value storage with byte values and ordered string keys. Thread-safe.
class Storage {
 public:
  virtual ~Storage() = default;

  // Reads the committed value of `key`; nullopt when absent.
  virtual Result<std::optional<Bytes>> Get(std::string_view key) = 0;

  // Lists the names directly below `prefix` (which ends in '/' or is empty), sorted: a key
  // "a/b" gives "b", keys below "a/c/" give "c/" once, as Vault's LIST does.
  virtual Result<std::vector<std::string>> List(std::string_view prefix) = 0;

  // Returns up to `limit` entries whose keys start with `prefix` and sort after
  // `start_after`, in key order, for paging through large ranges.
  virtual Result<std::vector<Entry>> Scan(std::string_view prefix, std::string_view start_after,
                                          std::size_t limit) = 0;

  // Returns the entry with the greatest key starting with `prefix`; nullopt when none.
  virtual Result<std::optional<Entry>> Last(std::string_view prefix) = 0;

  // Applies `batch` atomically and returns once it is durable (fsync). aborted when an
  // expectation failed (nothing of the batch applied). When the commit's durability is
  // unknown (disk full, I/O error) the storage returns unavailable and rejects every later
  // write until it is reopened, so no acknowledged write is ever lost.
  virtual Status Commit(WriteBatch batch) = 0;
};

}  // namespace kw::storage
