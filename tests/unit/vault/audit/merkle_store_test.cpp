#include "vault/audit/merkle_store.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "base/bytes.hpp"
#include "storage/sqlite/sqlite_storage.hpp"
#include "storage/storage.hpp"
#include "tests/unit/fakes/softhsm_fixture.hpp"
#include "tests/unit/fakes/temp_dir.hpp"
#include "vault/audit/merkle.hpp"

namespace kw::vault::audit::merkle {
namespace {

using kw::testing::ErrorText;
using kw::testing::TempDir;

Hash TestLeaf(std::uint64_t number) {
  return LeafHash(AsBytes("record-" + std::to_string(number)));
}

// Returns the compact range of leaves TestLeaf(0) .. TestLeaf(size - 1), built in memory.
CompactRange MemoryRange(std::uint64_t size) {
  CompactRange range;
  for (std::uint64_t leaf = 0; leaf < size; ++leaf) range.Append(TestLeaf(leaf));
  return range;
}

// A SQLite storage in a temporary directory that can be closed and reopened.
class TreeStorage {
 public:
  TreeStorage() { Open(); }

  storage::Storage& get() { return *storage_; }

  void Open() {
    storage_.reset();
    storage::sqlite::SqliteOptions options;
    options.path = dir_.File("keyward.db");
    auto opened = storage::sqlite::Open(options);
    REQUIRE_MESSAGE(opened.has_value(), ErrorText(opened.error()));
    storage_ = std::move(*opened);
  }

  // Appends the next `count` test leaves to `range` in one commit, as the audit log does from
  // its finalizer. `range` changes only when the commit succeeds.
  Status CommitLeaves(CompactRange& range, std::uint64_t count) {
    auto pending = std::make_shared<CompactRange>(range);
    storage::WriteBatch batch;
    batch.finalizer = [pending, count](storage::Transaction& transaction) -> Status {
      for (std::uint64_t i = 0; i < count; ++i) {
        KW_RETURN_IF_ERROR(AppendLeaf(transaction, *pending, TestLeaf(pending->size())));
      }
      return OkStatus();
    };
    KW_RETURN_IF_ERROR(storage_->Commit(std::move(batch)));
    range = *pending;
    return OkStatus();
  }

  void Commit(storage::WriteBatch batch) {
    const Status committed = storage_->Commit(std::move(batch));
    REQUIRE_MESSAGE(committed.has_value(), ErrorText(committed.error()));
  }

 private:
  TempDir dir_{"kw-merkle-store"};
  std::unique_ptr<storage::Storage> storage_;
};

// A Transaction that forwards to another but fails its `fail_at`-th Put (1-based).
class FailingPutTransaction final : public storage::Transaction {
 public:
  FailingPutTransaction(storage::Transaction& inner, int fail_at)
      : inner_(inner), fail_at_(fail_at) {}

  int puts() const { return puts_; }

  Result<std::optional<Bytes>> Get(std::string_view key) override { return inner_.Get(key); }
  Status Put(std::string_view key, ByteSpan value) override {
    if (++puts_ == fail_at_) return Unavailable("injected failure: put " + std::string(key));
    return inner_.Put(key, value);
  }
  Status Delete(std::string_view key) override { return inner_.Delete(key); }

 private:
  storage::Transaction& inner_;
  int fail_at_;
  int puts_ = 0;
};

void CheckSameRange(const CompactRange& loaded, const CompactRange& expected) {
  CHECK(loaded.size() == expected.size());
  CHECK(loaded.pieces() == expected.pieces());
  CHECK(loaded.Root() == expected.Root());
}

TEST_SUITE("vault/audit/merkle_store") {
  TEST_CASE("tree node keys") {
    CHECK(TreeNodeKey(0, 0) == "sys/audit/tree/00/00000000000000000000");
    CHECK(TreeNodeKey(13, 12345) == "sys/audit/tree/13/00000000000000012345");
    CHECK(TreeNodeKey(63, std::numeric_limits<std::uint64_t>::max()) ==
          "sys/audit/tree/63/18446744073709551615");
    CHECK(TreeNodeKey(0, 9) < TreeNodeKey(0, 10));
    CHECK(TreeNodeKey(1, 0).starts_with(kTreePrefix));
  }

  TEST_CASE("thousand leaves round trip through sqlite") {
    constexpr std::uint64_t kLeaves = 1000;
    TreeStorage storage;
    CompactRange range;

    // Batches of 1 to 7 leaves, so that nodes complete both inside and across commits.
    for (std::uint64_t batch = 1; range.size() < kLeaves; batch = batch % 7 + 1) {
      const std::uint64_t count = std::min(batch, kLeaves - range.size());
      const Status committed = storage.CommitLeaves(range, count);
      REQUIRE_MESSAGE(committed.has_value(), ErrorText(committed.error()));
    }
    CheckSameRange(range, MemoryRange(kLeaves));

    // Every complete node is stored once: n / 2^level nodes on each level.
    const auto nodes = storage.get().Scan(kTreePrefix, "", 10 * kLeaves);
    REQUIRE_MESSAGE(nodes.has_value(), ErrorText(nodes.error()));
    CHECK(nodes->size() == 2 * kLeaves - std::popcount(kLeaves));
    for (const storage::Entry& node : *nodes) CHECK(node.value.size() == 32);

    storage.Open();
    for (const std::uint64_t size : {0, 1, 2, 3, 7, 8, 100, 511, 512, 513, 999, 1000}) {
      CAPTURE(size);
      const CompactRange expected = MemoryRange(size);
      const Result<CompactRange> loaded = LoadCompactRange(storage.get(), size);
      REQUIRE_MESSAGE(loaded.has_value(), ErrorText(loaded.error()));
      CheckSameRange(*loaded, expected);

      const Result<Hash> root = RootAt(size, StorageNodeReader(storage.get()));
      REQUIRE_MESSAGE(root.has_value(), ErrorText(root.error()));
      CHECK(*root == expected.Root());
    }

    const NodeReader reader = StorageNodeReader(storage.get());
    const Hash root = range.Root();
    for (const std::uint64_t index : {0, 1, 499, 511, 512, 998, 999}) {
      CAPTURE(index);
      const Result<std::vector<Hash>> proof = InclusionProof(index, kLeaves, reader);
      REQUIRE_MESSAGE(proof.has_value(), ErrorText(proof.error()));
      const Status verified = VerifyInclusion(index, kLeaves, TestLeaf(index), *proof, root);
      CHECK_MESSAGE(verified.has_value(), ErrorText(verified.error()));
    }
    for (const std::uint64_t first : {1, 7, 100, 512, 513, 999}) {
      CAPTURE(first);
      const Result<std::vector<Hash>> proof = ConsistencyProof(first, kLeaves, reader);
      REQUIRE_MESSAGE(proof.has_value(), ErrorText(proof.error()));
      const Status verified =
          VerifyConsistency(first, kLeaves, MemoryRange(first).Root(), root, *proof);
      CHECK_MESSAGE(verified.has_value(), ErrorText(verified.error()));
    }
  }

  TEST_CASE("failed put leaves range unchanged") {
    TreeStorage storage;
    CompactRange range;
    REQUIRE(storage.CommitLeaves(range, 3).has_value());
    const CompactRange before = range;

    // Leaf 3 completes three nodes: the leaf, (1, 1) and (2, 0). The second put fails.
    int puts = 0;
    storage::WriteBatch batch;
    batch.finalizer = [&range, &puts](storage::Transaction& transaction) -> Status {
      FailingPutTransaction failing(transaction, 2);
      const Status appended = AppendLeaf(failing, range, TestLeaf(3));
      puts = failing.puts();
      return appended;
    };
    const Status committed = storage.get().Commit(std::move(batch));
    REQUIRE_FALSE(committed.has_value());
    CHECK(committed.error().code() == Code::kUnavailable);
    CHECK(committed.error().message().find(TreeNodeKey(1, 1)) != std::string::npos);
    CHECK(puts == 2);
    CheckSameRange(range, before);

    // The transaction rolled back, so the leaf put before the failure is gone as well.
    const auto leaf = storage.get().Get(TreeNodeKey(0, 3));
    REQUIRE(leaf.has_value());
    CHECK_FALSE(leaf->has_value());

    REQUIRE(storage.CommitLeaves(range, 1).has_value());
    CheckSameRange(range, MemoryRange(4));
    const Result<CompactRange> loaded = LoadCompactRange(storage.get(), 4);
    REQUIRE_MESSAGE(loaded.has_value(), ErrorText(loaded.error()));
    CheckSameRange(*loaded, MemoryRange(4));
  }

  TEST_CASE("missing node is data loss") {
    TreeStorage storage;
    CompactRange range;
    REQUIRE(storage.CommitLeaves(range, 13).has_value());

    // 13 = 8 + 4 + 1: the pieces are (3, 0), (2, 2) and (0, 12).
    const std::string key = TreeNodeKey(2, 2);
    storage::WriteBatch batch;
    batch.Delete(key);
    storage.Commit(std::move(batch));

    const Result<CompactRange> loaded = LoadCompactRange(storage.get(), 13);
    REQUIRE_FALSE(loaded.has_value());
    CHECK(loaded.error().code() == Code::kDataLoss);
    CHECK(loaded.error().message() == "audit tree node " + key + " is missing");

    const Result<Hash> node = StorageNodeReader(storage.get())(2, 2);
    REQUIRE_FALSE(node.has_value());
    CHECK(node.error().code() == Code::kDataLoss);
    CHECK(node.error().message().find(key) != std::string::npos);

    const Result<std::vector<Hash>> proof = InclusionProof(0, 13, StorageNodeReader(storage.get()));
    REQUIRE_FALSE(proof.has_value());
    CHECK(proof.error().code() == Code::kDataLoss);

    // Sizes whose pieces avoid the deleted node still load.
    const Result<CompactRange> smaller = LoadCompactRange(storage.get(), 9);
    REQUIRE_MESSAGE(smaller.has_value(), ErrorText(smaller.error()));
    CheckSameRange(*smaller, MemoryRange(9));
  }

  TEST_CASE("node of wrong length is data loss") {
    TreeStorage storage;
    CompactRange range;
    REQUIRE(storage.CommitLeaves(range, 13).has_value());

    const std::string key = TreeNodeKey(0, 12);
    storage::WriteBatch batch;
    batch.Put(key, Bytes(31, 0xab));
    storage.Commit(std::move(batch));

    const Result<CompactRange> loaded = LoadCompactRange(storage.get(), 13);
    REQUIRE_FALSE(loaded.has_value());
    CHECK(loaded.error().code() == Code::kDataLoss);
    CHECK(loaded.error().message() == "audit tree node " + key + " has 31 bytes, expected 32");

    const Result<Hash> node = StorageNodeReader(storage.get())(0, 12);
    REQUIRE_FALSE(node.has_value());
    CHECK(node.error().code() == Code::kDataLoss);
    CHECK(node.error().message().find(key) != std::string::npos);
  }
}

}  // namespace
}  // namespace kw::vault::audit::merkle
