#include "vault/auth/token_counts.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "vault/auth/token_store.hpp"
#include "vault/vault_test_env.hpp"

namespace {

using kw::vault::auth::CreatedToken;
using kw::vault::auth::ReadTokenCounts;
using kw::vault::auth::TokenEntry;
using kw::vault::auth::TokenRequest;
using kw::vault::auth::TokenStore;

// A token store on a fresh vault with a root token "root-id".
struct CountFixture {
  CountFixture() : store(*env.store, *env.barrier, env.clock) {
    kw::storage::WriteBatch batch;
    REQUIRE(store.StageRootToken(kw::SecretBuffer::CopyFrom(std::string_view("root-id")), batch));
    REQUIRE(env.store->Commit(std::move(batch)).has_value());
    auto identity = store.Authenticate("root-id", "", nullptr);
    REQUIRE(identity.has_value());
    root = identity->entry;
  }

  // Returns the stored count of `mount` and `role`; -1 when there is none.
  std::int64_t Count(const std::string& mount, const std::string& role) {
    auto counts = ReadTokenCounts(*env.store);
    REQUIRE(counts.has_value());
    for (const auto& count : *counts) {
      if (count.mount == mount && count.role == role) return count.count;
    }
    return -1;
  }

  CreatedToken CreateChild(const std::string& role) {
    TokenRequest request;
    request.policies = {"default"};
    request.role = role;
    kw::storage::WriteBatch batch;
    auto created = store.Create(*root, std::move(request), batch);
    REQUIRE(created.has_value());
    REQUIRE(env.store->Commit(std::move(batch)).has_value());
    return std::move(*created);
  }

  kw::testing::VaultTestEnv env;
  TokenStore store;
  std::shared_ptr<const TokenEntry> root;
};

TokenRequest AppRoleLogin(const std::string& role) {
  TokenRequest request;
  request.policies = {"default"};
  request.path = "auth/approle/login";
  request.meta["role_name"] = role;
  request.orphan = true;
  return request;
}

}  // namespace

TEST_SUITE("vault/auth/token_counts") {
  TEST_CASE("mount and role come from the creation path") {
    TokenEntry entry;
    entry.path = "auth/token/create/ci";
    entry.role = "ci";
    CHECK(kw::vault::auth::TokenMountOf(entry) == "token");
    CHECK(kw::vault::auth::TokenRoleOf(entry) == "ci");

    entry.path = "auth/approle/login";
    entry.meta["role_name"] = "web";
    CHECK(kw::vault::auth::TokenMountOf(entry) == "approle");
    CHECK(kw::vault::auth::TokenRoleOf(entry) == "web");

    entry.path = "auth/cert/login";
    entry.meta["cert_name"] = "svc";
    entry.entity_id = "cert:spiffe://example.org/client-chosen";
    CHECK(kw::vault::auth::TokenMountOf(entry) == "cert");
    CHECK(kw::vault::auth::TokenRoleOf(entry) == "svc");

    entry.path = "auth/unknown/login";
    CHECK(kw::vault::auth::TokenMountOf(entry) == "other");
    CHECK(kw::vault::auth::TokenRoleOf(entry).empty());
  }

  TEST_CASE("creation and revocation move the counts") {
    CountFixture f;
    CHECK(f.Count("token", "") == 1);  // the root token
    const CreatedToken first = f.CreateChild("ci");
    f.CreateChild("ci");
    f.CreateChild("deploy");
    CHECK(f.Count("token", "ci") == 2);
    CHECK(f.Count("token", "deploy") == 1);

    kw::storage::WriteBatch batch;
    REQUIRE(f.store.Revoke(first.entry->accessor, false, batch).has_value());
    REQUIRE(f.env.store->Commit(std::move(batch)).has_value());
    CHECK(f.Count("token", "ci") == 1);
  }

  TEST_CASE("revoking a tree lowers every count in one batch") {
    CountFixture f;
    constexpr int kChildren = 300;
    for (int i = 0; i < kChildren; ++i) f.CreateChild(i % 2 == 0 ? "even" : "odd");
    CHECK(f.Count("token", "even") == kChildren / 2);
    CHECK(f.Count("token", "odd") == kChildren / 2);

    kw::storage::WriteBatch batch;
    auto revoked = f.store.Revoke(f.root->accessor, false, batch);
    REQUIRE(revoked.has_value());
    CHECK(revoked->size() == kChildren + 1);
    REQUIRE(f.env.store->Commit(std::move(batch)).has_value());
    CHECK(f.Count("token", "even") == 0);
    CHECK(f.Count("token", "odd") == 0);
    CHECK(f.Count("token", "") == 0);
  }

  TEST_CASE("an uncommitted or aborted batch leaves the counts") {
    CountFixture f;
    f.CreateChild("ci");

    SUBCASE("dropped") {
      kw::storage::WriteBatch batch;
      TokenRequest request;
      request.policies = {"default"};
      request.role = "ci";
      REQUIRE(f.store.Create(*f.root, std::move(request), batch).has_value());
    }
    SUBCASE("aborted") {
      kw::storage::WriteBatch batch;
      TokenRequest request;
      request.policies = {"default"};
      request.role = "ci";
      REQUIRE(f.store.Create(*f.root, std::move(request), batch).has_value());
      batch.Expect("test/absent", kw::Bytes{1});
      auto committed = f.env.store->Commit(std::move(batch));
      REQUIRE_FALSE(committed.has_value());
      CHECK(committed.error().code() == kw::Code::kAborted);
    }
    CHECK(f.Count("token", "ci") == 1);
  }

  TEST_CASE("an earlier finalizer still runs first") {
    CountFixture f;
    kw::storage::WriteBatch batch;
    std::vector<std::string> order;
    batch.finalizer = [&order](kw::storage::Transaction& transaction) -> kw::Status {
      order.push_back("earlier");
      return transaction.Put("test/marker", kw::AsBytes("set"));
    };
    TokenRequest request;
    request.policies = {"default"};
    request.role = "ci";
    REQUIRE(f.store.Create(*f.root, std::move(request), batch).has_value());
    // A finalizer wrapped around the count, as the audit log wraps it, runs after it.
    batch.finalizer = [&order, inner = std::move(batch.finalizer)](
                          kw::storage::Transaction& transaction) -> kw::Status {
      KW_RETURN_IF_ERROR(inner(transaction));
      order.push_back("later");
      return kw::OkStatus();
    };
    REQUIRE(f.env.store->Commit(std::move(batch)).has_value());

    CHECK(order == std::vector<std::string>{"earlier", "later"});
    auto marker = f.env.store->Get("test/marker");
    REQUIRE(marker.has_value());
    CHECK(marker->has_value());
    CHECK(f.Count("token", "ci") == 1);
  }

  TEST_CASE("concurrent logins never abort on the count") {
    CountFixture f;
    constexpr int kThreads = 8;
    constexpr int kPerThread = 25;
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < kPerThread; ++i) {
          kw::storage::WriteBatch batch;
          if (!f.store.CreateForLogin(AppRoleLogin("web"), batch)) {
            ++failures;
            continue;
          }
          if (!f.env.store->Commit(std::move(batch))) ++failures;
        }
      });
    }
    for (auto& thread : threads) thread.join();
    CHECK(failures.load() == 0);
    CHECK(f.Count("approle", "web") == kThreads * kPerThread);
  }

  TEST_CASE("a count never goes below zero") {
    CountFixture f;
    TokenEntry unknown;
    unknown.path = "auth/token/create";
    unknown.role = "gone";
    kw::storage::WriteBatch batch;
    kw::vault::auth::StageTokenCountChange(unknown, -1, batch);
    REQUIRE(f.env.store->Commit(std::move(batch)).has_value());
    CHECK(f.Count("token", "gone") == 0);
  }
}
