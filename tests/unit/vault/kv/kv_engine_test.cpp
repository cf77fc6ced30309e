#include "vault/kv/kv_engine.hpp"

#include <doctest/doctest.h>

#include "vault/vault_test_env.hpp"

namespace {

using kw::vault::kv::KvEngine;

kw::SecretBuffer Json(std::string_view text) { return kw::SecretBuffer::CopyFrom(text); }

// Writes `text` at `path` and commits; returns the version.
std::int64_t Put(kw::testing::VaultTestEnv& env, KvEngine& kv, std::string_view path,
                 std::string_view text, std::optional<std::int64_t> cas = std::nullopt) {
  kw::storage::WriteBatch batch;
  auto written = kv.Write(path, Json(text), cas, batch);
  REQUIRE(written.has_value());
  REQUIRE(env.store->Commit(std::move(batch)).has_value());
  return written->version;
}

template <typename Op>
void Apply(kw::testing::VaultTestEnv& env, Op op) {
  kw::storage::WriteBatch batch;
  REQUIRE(op(batch).has_value());
  REQUIRE(env.store->Commit(std::move(batch)).has_value());
}

}  // namespace

TEST_SUITE("vault/kv") {
  TEST_CASE("write then read versions") {
    kw::testing::VaultTestEnv env;
    KvEngine kv("secret", *env.store, *env.barrier, env.clock);
    CHECK(Put(env, kv, "app/db", R"({"password":"one"})") == 1);
    CHECK(Put(env, kv, "app/db", R"({"password":"two"})") == 2);

    auto current = kv.Read("app/db", 0);
    REQUIRE(current.has_value());
    CHECK(current->version == 2);
    CHECK(current->readable);
    CHECK(current->data.RevealText() == R"({"password":"two"})");

    auto first = kv.Read("app/db", 1);
    REQUIRE(first.has_value());
    CHECK(first->data.RevealText() == R"({"password":"one"})");

    auto missing = kv.Read("app/db", 3);
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().code() == kw::Code::kNotFound);
    auto absent = kv.Read("nothing", 0);
    REQUIRE_FALSE(absent.has_value());
    CHECK(absent.error().code() == kw::Code::kNotFound);
  }

  TEST_CASE("cas rules follow vault") {
    kw::testing::VaultTestEnv env;
    KvEngine kv("secret", *env.store, *env.barrier, env.clock);
    CHECK(Put(env, kv, "p", R"({"a":"1"})", 0) == 1);

    kw::storage::WriteBatch batch;
    auto again = kv.Write("p", Json(R"({"a":"2"})"), 0, batch);
    REQUIRE_FALSE(again.has_value());
    CHECK(again.error().code() == kw::Code::kInvalidArgument);
    CHECK(again.error().message() == "check-and-set parameter did not match the current version");

    CHECK(Put(env, kv, "p", R"({"a":"2"})", 1) == 2);

    Apply(env, [&](auto& b) {
      kw::vault::kv::MetadataUpdate update;
      update.cas_required = true;
      return kv.WriteMetadata("p", update, b);
    });
    kw::storage::WriteBatch batch2;
    auto without = kv.Write("p", Json(R"({"a":"3"})"), std::nullopt, batch2);
    REQUIRE_FALSE(without.has_value());
    CHECK(without.error().message() == "check-and-set parameter required for this call");
  }

  TEST_CASE("concurrent writers lose by abort") {
    kw::testing::VaultTestEnv env;
    KvEngine kv("secret", *env.store, *env.barrier, env.clock);
    Put(env, kv, "race", R"({"v":"0"})");
    kw::storage::WriteBatch first;
    kw::storage::WriteBatch second;
    REQUIRE(kv.Write("race", Json(R"({"v":"1"})"), std::nullopt, first).has_value());
    REQUIRE(kv.Write("race", Json(R"({"v":"2"})"), std::nullopt, second).has_value());
    REQUIRE(env.store->Commit(std::move(first)).has_value());
    auto lost = env.store->Commit(std::move(second));
    REQUIRE_FALSE(lost.has_value());
    CHECK(lost.error().code() == kw::Code::kAborted);
    auto read = kv.Read("race", 0);
    REQUIRE(read.has_value());
    CHECK(read->version == 2);
    CHECK(read->data.RevealText() == R"({"v":"1"})");
  }

  TEST_CASE("delete undelete destroy") {
    kw::testing::VaultTestEnv env;
    KvEngine kv("secret", *env.store, *env.barrier, env.clock);
    Put(env, kv, "d", R"({"k":"1"})");
    Put(env, kv, "d", R"({"k":"2"})");

    Apply(env, [&](auto& b) { return kv.Delete("d", {}, b); });
    auto deleted = kv.Read("d", 0);
    REQUIRE(deleted.has_value());
    CHECK_FALSE(deleted->readable);
    CHECK(deleted->metadata.deletion_time.has_value());

    Apply(env, [&](auto& b) { return kv.Undelete("d", {2}, b); });
    auto restored = kv.Read("d", 0);
    REQUIRE(restored.has_value());
    CHECK(restored->readable);

    Apply(env, [&](auto& b) { return kv.Destroy("d", {1}, b); });
    auto destroyed = kv.Read("d", 1);
    REQUIRE(destroyed.has_value());
    CHECK_FALSE(destroyed->readable);
    CHECK(destroyed->metadata.destroyed);
    Apply(env, [&](auto& b) { return kv.Undelete("d", {1}, b); });
    auto still = kv.Read("d", 1);
    REQUIRE(still.has_value());
    CHECK_FALSE(still->readable);
  }

  TEST_CASE("max versions prunes oldest") {
    kw::testing::VaultTestEnv env;
    KvEngine kv("secret", *env.store, *env.barrier, env.clock);
    Apply(env, [&](auto& b) {
      kw::vault::kv::MetadataUpdate update;
      update.max_versions = 2;
      return kv.WriteMetadata("m", update, b);
    });
    for (int i = 0; i < 4; ++i) Put(env, kv, "m", R"({"i":"x"})");
    auto metadata = kv.ReadMetadata("m");
    REQUIRE(metadata.has_value());
    CHECK(metadata->current_version == 4);
    CHECK(metadata->oldest_version == 3);
    CHECK(metadata->versions.size() == 2);
    auto pruned = kv.Read("m", 1);
    REQUIRE_FALSE(pruned.has_value());
    CHECK(pruned.error().code() == kw::Code::kNotFound);
  }

  TEST_CASE("delete version after hides old versions") {
    kw::testing::VaultTestEnv env;
    KvEngine kv("secret", *env.store, *env.barrier, env.clock);
    Apply(env, [&](auto& b) {
      kw::vault::kv::MetadataUpdate update;
      update.delete_version_after = std::chrono::seconds(60);
      return kv.WriteMetadata("t", update, b);
    });
    Put(env, kv, "t", R"({"a":"b"})");
    auto fresh = kv.Read("t", 0);
    REQUIRE(fresh.has_value());
    CHECK(fresh->readable);
    env.clock.Advance(std::chrono::seconds(61));
    auto expired = kv.Read("t", 0);
    REQUIRE(expired.has_value());
    CHECK_FALSE(expired->readable);
  }

  TEST_CASE("metadata delete removes everything") {
    kw::testing::VaultTestEnv env;
    KvEngine kv("secret", *env.store, *env.barrier, env.clock);
    Put(env, kv, "gone", R"({"a":"b"})");
    Put(env, kv, "gone", R"({"a":"c"})");
    Apply(env, [&](auto& b) { return kv.DeleteMetadata("gone", b); });
    auto read = kv.Read("gone", 0);
    REQUIRE_FALSE(read.has_value());
    CHECK(read.error().code() == kw::Code::kNotFound);
    auto rows = env.store->Scan("kv/secret/", "", 100);
    REQUIRE(rows.has_value());
    CHECK(rows->empty());
  }

  TEST_CASE("damaged metadata can be deleted") {
    kw::testing::VaultTestEnv env;
    KvEngine kv("secret", *env.store, *env.barrier, env.clock);
    Put(env, kv, "broken", R"({"a":"1"})");
    Put(env, kv, "broken", R"({"a":"2"})");
    Put(env, kv, "other", R"({"a":"3"})");
    auto meta = env.store->Get("kv/secret/meta/broken");
    REQUIRE(meta.has_value());
    REQUIRE(meta->has_value());
    kw::Bytes damaged = **meta;
    damaged.back() ^= 1;
    kw::storage::WriteBatch tamper;
    tamper.Put("kv/secret/meta/broken", damaged);
    REQUIRE(env.store->Commit(std::move(tamper)).has_value());
    auto read = kv.Read("broken", 0);
    REQUIRE_FALSE(read.has_value());
    CHECK(read.error().code() == kw::Code::kDataLoss);

    Apply(env, [&](auto& b) { return kv.DeleteMetadata("broken", b); });
    auto rows = env.store->Scan("kv/secret/", "", 100);
    REQUIRE(rows.has_value());
    for (const auto& row : *rows) CHECK(row.key.find("broken") == std::string::npos);
    auto other = kv.Read("other", 0);
    REQUIRE(other.has_value());
    CHECK(other->readable);
  }

  TEST_CASE("list shows children and folders") {
    kw::testing::VaultTestEnv env;
    KvEngine kv("secret", *env.store, *env.barrier, env.clock);
    Put(env, kv, "app", R"({"a":"b"})");
    Put(env, kv, "app/db", R"({"a":"b"})");
    Put(env, kv, "app2", R"({"a":"b"})");
    auto root = kv.List("");
    REQUIRE(root.has_value());
    CHECK(*root == std::vector<std::string>{"app", "app/", "app2"});
    auto nested = kv.List("app/");
    REQUIRE(nested.has_value());
    CHECK(*nested == std::vector<std::string>{"db"});
    auto none = kv.List("nope/");
    REQUIRE_FALSE(none.has_value());
    CHECK(none.error().code() == kw::Code::kNotFound);
  }

  TEST_CASE("ciphertext moved to another path fails") {
    kw::testing::VaultTestEnv env;
    KvEngine kv("secret", *env.store, *env.barrier, env.clock);
    Put(env, kv, "a", R"({"x":"secret-a"})");
    Put(env, kv, "b", R"({"x":"secret-b"})");
    auto rows = env.store->Scan("kv/secret/data/", "", 10);
    REQUIRE(rows.has_value());
    REQUIRE(rows->size() == 2);
    // Copy a's version 1 ciphertext over b's.
    kw::storage::WriteBatch batch;
    batch.Put((*rows)[1].key, (*rows)[0].value);
    REQUIRE(env.store->Commit(std::move(batch)).has_value());
    auto read = kv.Read("b", 1);
    REQUIRE_FALSE(read.has_value());
    CHECK(read.error().code() == kw::Code::kDataLoss);
  }

  TEST_CASE("stored bytes hold no plaintext") {
    kw::testing::VaultTestEnv env;
    KvEngine kv("secret", *env.store, *env.barrier, env.clock);
    Put(env, kv, "plain", R"({"token":"very-distinct-secret-value-123"})");
    auto rows = env.store->Scan("", "", 100);
    REQUIRE(rows.has_value());
    for (const auto& row : *rows) {
      CHECK(kw::AsText(row.value).find("very-distinct-secret-value-123") == std::string_view::npos);
    }
  }
}
