#include "vault/policy/policy_store.hpp"

#include <doctest/doctest.h>

#include <functional>
#include <string>

#include "fakes/forwarding_storage.hpp"
#include "vault/vault_test_env.hpp"

namespace {

namespace policy = kw::vault::policy;
using policy::PolicyStore;

constexpr std::string_view kReaderDocument = R"(path "secret/data/app/*" {
  capabilities = ["read"]
})";
constexpr std::string_view kWriterDocument = R"(path "secret/data/app/*" {
  capabilities = ["update"]
})";

// Parses and stores `document` as policy `name`, commits, and invalidates the cache.
void Put(kw::testing::VaultTestEnv& env, PolicyStore& store, std::string_view name,
         std::string_view document) {
  auto parsed = policy::ParsePolicy(name, document);
  REQUIRE(parsed.has_value());
  kw::storage::WriteBatch batch;
  REQUIRE(store.StagePut(*parsed, batch).has_value());
  REQUIRE(env.store->Commit(std::move(batch)).has_value());
  store.Invalidate(name);
}

std::uint32_t ReadCapabilities(PolicyStore& store, const std::vector<std::string>& names,
                               std::string_view path) {
  auto acl = store.AclFor(names);
  REQUIRE(acl.has_value());
  return (*acl)->Capabilities(path, false);
}

// Runs `hook` once, right after the first read of `key` returns.
class HookedStorage : public kw::testing::ForwardingStorage {
 public:
  HookedStorage(kw::storage::Storage& inner, std::string key, std::function<void()> hook)
      : ForwardingStorage(inner), key_(std::move(key)), hook_(std::move(hook)) {}

  kw::Result<std::optional<kw::Bytes>> Get(std::string_view key) override {
    auto value = inner_.Get(key);
    if (key == key_ && hook_) {
      auto hook = std::move(hook_);
      hook_ = nullptr;
      hook();
    }
    return value;
  }

 private:
  std::string key_;
  std::function<void()> hook_;
};

}  // namespace

TEST_SUITE("vault/policy/store") {
  TEST_CASE("policy store put get list") {
    kw::testing::VaultTestEnv env;
    PolicyStore store(*env.store, *env.barrier, env.clock);
    Put(env, store, "App-Reader", kReaderDocument);

    auto fetched = store.Get(" app-reader ");
    REQUIRE(fetched.has_value());
    CHECK((*fetched)->name == "app-reader");
    CHECK((*fetched)->document == kReaderDocument);
    REQUIRE((*fetched)->rules.size() == 1);
    CHECK((*fetched)->rules[0].capabilities == policy::kRead);

    auto missing = store.Get("nobody");
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().code() == kw::Code::kNotFound);
    auto invalid = store.Get("a/b");
    REQUIRE_FALSE(invalid.has_value());
    CHECK(invalid.error().code() == kw::Code::kInvalidArgument);

    auto names = store.List();
    REQUIRE(names.has_value());
    CHECK(*names == std::vector<std::string>{"app-reader", "default", "root"});
  }

  TEST_CASE("policy store record is encrypted and bound to its name") {
    kw::testing::VaultTestEnv env;
    PolicyStore store(*env.store, *env.barrier, env.clock);
    Put(env, store, "reader", kReaderDocument);

    auto raw = env.store->Get(std::string(policy::kPolicyPrefix) + "reader");
    REQUIRE(raw.has_value());
    REQUIRE(raw->has_value());
    const std::string stored(kw::AsText(**raw));
    CHECK(stored.find("secret/data/app") == std::string::npos);

    // The reader's record copied under another name grants nothing.
    kw::storage::WriteBatch batch;
    batch.Put(std::string(policy::kPolicyPrefix) + "copied", **raw);
    REQUIRE(env.store->Commit(std::move(batch)).has_value());
    auto copied = store.Get("copied");
    REQUIRE_FALSE(copied.has_value());
    CHECK(copied.error().code() == kw::Code::kDataLoss);
    auto acl = store.AclFor({"copied"});
    REQUIRE_FALSE(acl.has_value());
    CHECK(acl.error().code() == kw::Code::kDataLoss);
  }

  TEST_CASE("policy store root and default protected") {
    kw::testing::VaultTestEnv env;
    PolicyStore store(*env.store, *env.barrier, env.clock);
    kw::storage::WriteBatch batch;

    for (std::string_view name : {"root", " ROOT", "Root "}) {
      CAPTURE(name);
      auto put = store.StagePut(policy::Policy{std::string(name), "", {}}, batch);
      REQUIRE_FALSE(put.has_value());
      CHECK(put.error().code() == kw::Code::kInvalidArgument);
      auto removed = store.StageDelete(name, batch);
      REQUIRE_FALSE(removed.has_value());
      CHECK(removed.error().code() == kw::Code::kInvalidArgument);
    }
    auto removed = store.StageDelete(" Default", batch);
    REQUIRE_FALSE(removed.has_value());
    CHECK(removed.error().code() == kw::Code::kInvalidArgument);
    CHECK(batch.ops().empty());

    // A policy whose document does not parse is not staged.
    auto bad = store.StagePut(policy::Policy{"bad", "path {", {}}, batch);
    REQUIRE_FALSE(bad.has_value());
    CHECK(bad.error().code() == kw::Code::kInvalidArgument);
    CHECK(batch.ops().empty());
  }

  TEST_CASE("policy store default built in then replaced") {
    kw::testing::VaultTestEnv env;
    PolicyStore store(*env.store, *env.barrier, env.clock);
    auto builtin = store.Get("default");
    REQUIRE(builtin.has_value());
    CHECK((*builtin)->document == policy::DefaultPolicyDocument());
    CHECK((ReadCapabilities(store, {"default"}, "auth/token/lookup-self") & policy::kRead) != 0);

    Put(env, store, "default", kReaderDocument);
    auto replaced = store.Get("default");
    REQUIRE(replaced.has_value());
    CHECK((*replaced)->document == kReaderDocument);
    CHECK(ReadCapabilities(store, {"default"}, "auth/token/lookup-self") == 0);
    CHECK(ReadCapabilities(store, {"default"}, "secret/data/app/x") == policy::kRead);
  }

  TEST_CASE("policy store acl for names") {
    kw::testing::VaultTestEnv env;
    PolicyStore store(*env.store, *env.barrier, env.clock);
    Put(env, store, "reader", kReaderDocument);
    Put(env, store, "writer", kWriterDocument);

    CHECK(ReadCapabilities(store, {"reader", "writer"}, "secret/data/app/x") ==
          (policy::kRead | policy::kUpdate));
    // Unknown and invalid names grant nothing and do not fail the lookup.
    CHECK(ReadCapabilities(store, {"reader", "gone", "in valid"}, "secret/data/app/x") ==
          policy::kRead);
    CHECK(ReadCapabilities(store, {}, "secret/data/app/x") == 0);

    auto root = store.AclFor({"reader", "Root"});
    REQUIRE(root.has_value());
    CHECK((*root)->root());
  }

  TEST_CASE("policy store cache follows writes and deletes") {
    kw::testing::VaultTestEnv env;
    PolicyStore store(*env.store, *env.barrier, env.clock);
    Put(env, store, "app", kReaderDocument);
    CHECK(ReadCapabilities(store, {"app"}, "secret/data/app/x") == policy::kRead);

    Put(env, store, "app", kWriterDocument);
    CHECK(ReadCapabilities(store, {"app"}, "secret/data/app/x") == policy::kUpdate);

    kw::storage::WriteBatch batch;
    REQUIRE(store.StageDelete("APP", batch).has_value());
    REQUIRE(env.store->Commit(std::move(batch)).has_value());
    store.Invalidate("app");
    CHECK(ReadCapabilities(store, {"app"}, "secret/data/app/x") == 0);
    auto gone = store.Get("app");
    REQUIRE_FALSE(gone.has_value());
    CHECK(gone.error().code() == kw::Code::kNotFound);

    // A policy created after a lookup cached its absence.
    Put(env, store, "app", kReaderDocument);
    CHECK(ReadCapabilities(store, {"app"}, "secret/data/app/x") == policy::kRead);
  }

  TEST_CASE("policy store stale read not cached") {
    kw::testing::VaultTestEnv env;
    PolicyStore writer(*env.store, *env.barrier, env.clock);
    Put(env, writer, "app", kReaderDocument);

    // The reader's store loads the old document, then a commit and its Invalidate happen
    // before the reader would put the document into its cache.
    PolicyStore* reader = nullptr;
    HookedStorage hooked(*env.store, std::string(policy::kPolicyPrefix) + "app", [&] {
      auto parsed = policy::ParsePolicy("app", kWriterDocument);
      REQUIRE(parsed.has_value());
      kw::storage::WriteBatch batch;
      REQUIRE(reader->StagePut(*parsed, batch).has_value());
      REQUIRE(env.store->Commit(std::move(batch)).has_value());
      reader->Invalidate("app");
    });
    PolicyStore store(hooked, *env.barrier, env.clock);
    reader = &store;

    // This lookup raced with the write, so it may still see the old grant.
    CHECK(ReadCapabilities(store, {"app"}, "secret/data/app/x") == policy::kRead);
    // Every later lookup sees the new one.
    CHECK(ReadCapabilities(store, {"app"}, "secret/data/app/x") == policy::kUpdate);
    auto fetched = store.Get("app");
    REQUIRE(fetched.has_value());
    CHECK((*fetched)->document == kWriterDocument);
  }
}
