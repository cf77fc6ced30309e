#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <string>

#include "fakes/forwarding_storage.hpp"
#include "vault/auth/token_format.hpp"
#include "vault/auth/token_store.hpp"
#include "vault/vault_test_env.hpp"

namespace {

using kw::vault::auth::CreatedToken;
using kw::vault::auth::TokenEntry;
using kw::vault::auth::TokenRequest;
using kw::vault::auth::TokenStore;

// A token store on a fresh vault with a root token "root-id".
struct TokenFixture {
  TokenFixture() : store(*env.store, *env.barrier, env.clock) {
    kw::storage::WriteBatch batch;
    REQUIRE(store.StageRootToken(kw::SecretBuffer::CopyFrom(std::string_view("root-id")), batch));
    REQUIRE(env.store->Commit(std::move(batch)).has_value());
    auto identity = store.Authenticate("root-id", "", nullptr);
    REQUIRE(identity.has_value());
    root = identity->entry;
  }

  kw::Result<CreatedToken> Create(const TokenEntry& parent, TokenRequest request) {
    kw::storage::WriteBatch batch;
    auto created = store.Create(parent, std::move(request), batch);
    if (!created) return created;
    if (auto committed = env.store->Commit(std::move(batch)); !committed) {
      return tl::unexpected(committed.error());
    }
    return created;
  }

  // Authenticates `token` as a request would, committing the use it takes.
  kw::Result<kw::vault::auth::Identity> Use(const CreatedToken& token,
                                            std::string_view address = "127.0.0.1") {
    kw::storage::WriteBatch batch;
    auto identity = store.Authenticate(token.token.RevealText(), address, &batch);
    if (identity) REQUIRE(env.store->Commit(std::move(batch)).has_value());
    return identity;
  }

  std::vector<std::string> Revoke(const TokenEntry& entry, bool orphan_children = false) {
    kw::storage::WriteBatch batch;
    auto revoked = store.Revoke(entry.accessor, orphan_children, batch);
    REQUIRE(revoked.has_value());
    REQUIRE(env.store->Commit(std::move(batch)).has_value());
    return *revoked;
  }

  void Advance(std::chrono::seconds by) { env.clock.Advance(by); }

  kw::testing::VaultTestEnv env;
  TokenStore store;
  std::shared_ptr<const TokenEntry> root;
};

// Counts Get calls, so a test can compare the storage work of two failed authentications.
class CountingStorage final : public kw::testing::ForwardingStorage {
 public:
  using ForwardingStorage::ForwardingStorage;
  kw::Result<std::optional<kw::Bytes>> Get(std::string_view key) override {
    gets += 1;
    return inner_.Get(key);
  }
  int gets = 0;
};

TokenRequest WithPolicies(std::vector<std::string> policies) {
  TokenRequest request;
  request.policies = std::move(policies);
  return request;
}

}  // namespace

TEST_SUITE("vault/auth/token_store") {
  TEST_CASE("unknown and revoked tokens cost the same") {
    TokenFixture f;
    auto revoked = f.Create(*f.root, WithPolicies({"ops"}));
    REQUIRE(revoked.has_value());
    f.Revoke(*revoked->entry);
    auto live = f.Create(*f.root, WithPolicies({"ops"}));
    REQUIRE(live.has_value());

    // A store of its own over the same data, so that only these calls are counted.
    CountingStorage storage(*f.env.store);
    TokenStore store(storage, *f.env.barrier, f.env.clock);
    const auto gets_of = [&](std::string_view token) {
      const int before = storage.gets;
      auto identity = store.Authenticate(token, "127.0.0.1", nullptr);
      return std::make_pair(identity.has_value(), storage.gets - before);
    };

    // The lookup key is the token's SHA-256 hash: a failure costs one index read whatever
    // the token, and the record is never decrypted.
    const std::string unknown(revoked->token.RevealText().size(), 'x');
    const auto [unknown_ok, unknown_gets] = gets_of(unknown);
    const auto [revoked_ok, revoked_gets] = gets_of(revoked->token.RevealText());
    const auto [live_ok, live_gets] = gets_of(live->token.RevealText());
    CHECK_FALSE(unknown_ok);
    CHECK_FALSE(revoked_ok);
    CHECK(live_ok);
    CHECK(unknown_gets == 1);
    CHECK(revoked_gets == unknown_gets);
    // A valid token reads its record too, so the counter can tell the cases apart.
    CHECK(live_gets == 2);
  }

  TEST_CASE("a created token authenticates with its policies and default") {
    TokenFixture f;
    auto created = f.Create(*f.root, WithPolicies({" App-Read ", "app-read", "ops"}));
    REQUIRE(created.has_value());
    CHECK(kw::vault::auth::HasValidChecksum(created->token.RevealText()));
    auto identity = f.Use(*created);
    REQUIRE(identity.has_value());
    CHECK(identity->policies == std::vector<std::string>{"app-read", "default", "ops"});
    CHECK_FALSE(identity->root);
    CHECK(identity->entry->parent == f.root->accessor);
    CHECK(identity->entry->chain ==
          std::vector<std::string>{f.root->accessor, identity->accessor});
  }

  TEST_CASE("root in any spelling cannot be attached") {
    TokenFixture f;
    for (const char* name : {"root", "ROOT", " Root "}) {
      auto created = f.Create(*f.root, WithPolicies({name}));
      REQUIRE_FALSE(created.has_value());
      CHECK(created.error().code() == kw::Code::kPermissionDenied);
    }
    // No policies asked for: the root parent's root policy is not inherited.
    auto inherited = f.Create(*f.root, TokenRequest{});
    REQUIRE(inherited.has_value());
    CHECK(inherited->entry->policies == std::vector<std::string>{"default"});
  }

  TEST_CASE("a child gets only a subset of its parent's policies") {
    TokenFixture f;
    auto parent = f.Create(*f.root, WithPolicies({"a", "b"}));
    REQUIRE(parent.has_value());
    auto subset = f.Create(*parent->entry, WithPolicies({"a"}));
    REQUIRE(subset.has_value());
    CHECK(subset->entry->policies == std::vector<std::string>{"a", "default"});
    auto wider = f.Create(*parent->entry, WithPolicies({"a", "c"}));
    REQUIRE_FALSE(wider.has_value());
    CHECK(wider.error().code() == kw::Code::kPermissionDenied);
    CHECK(wider.error().message().find("\"c\"") != std::string::npos);
    auto inherit = f.Create(*parent->entry, TokenRequest{});
    REQUIRE(inherit.has_value());
    CHECK(inherit->entry->policies == parent->entry->policies);
  }

  TEST_CASE("a child's TTL and max TTL are capped at the parent's remaining life") {
    TokenFixture f;
    TokenRequest parent_request = WithPolicies({"a"});
    parent_request.ttl = 3600;
    auto parent = f.Create(*f.root, std::move(parent_request));
    REQUIRE(parent.has_value());
    f.Advance(std::chrono::seconds(3000));
    TokenRequest child_request = WithPolicies({"a"});
    child_request.ttl = 7200;
    child_request.explicit_max_ttl = 86400;
    auto child = f.Create(*parent->entry, std::move(child_request));
    REQUIRE(child.has_value());
    CHECK(child->entry->expire_time == parent->entry->expire_time);
    CHECK(child->entry->max_expire_time == parent->entry->expire_time);
    CHECK(child->entry->creation_ttl == 600);
  }

  TEST_CASE("num_uses is capped at the parent's and counted per use") {
    TokenFixture f;
    TokenRequest parent_request = WithPolicies({"a"});
    parent_request.num_uses = 3;
    auto parent = f.Create(*f.root, std::move(parent_request));
    REQUIRE(parent.has_value());
    TokenRequest child_request = WithPolicies({"a"});
    child_request.num_uses = 10;
    // The create request itself takes one of the parent's 3 uses.
    auto child = f.Create(*parent->entry, std::move(child_request));
    REQUIRE(child.has_value());
    CHECK(child->entry->num_uses == 2);
    auto unlimited = f.Create(*parent->entry, WithPolicies({"a"}));
    REQUIRE(unlimited.has_value());
    CHECK(unlimited->entry->num_uses == 2);

    CHECK(f.Use(*parent).has_value());
    CHECK(f.Use(*parent).has_value());
    CHECK(f.Use(*parent).has_value());
    auto exhausted = f.Use(*parent);
    REQUIRE_FALSE(exhausted.has_value());
    CHECK(exhausted.error().code() == kw::Code::kUnauthenticated);
    // The last use revoked the parent and so its children.
    CHECK_FALSE(f.Use(*child).has_value());
    CHECK_FALSE(f.Use(*unlimited).has_value());
  }

  TEST_CASE("revoking a parent revokes children and grandchildren; orphans survive") {
    TokenFixture f;
    auto parent = f.Create(*f.root, WithPolicies({"a"}));
    REQUIRE(parent.has_value());
    auto child = f.Create(*parent->entry, WithPolicies({"a"}));
    REQUIRE(child.has_value());
    auto grandchild = f.Create(*child->entry, WithPolicies({"a"}));
    REQUIRE(grandchild.has_value());
    TokenRequest orphan_request = WithPolicies({"a"});
    orphan_request.orphan = true;
    auto orphan = f.Create(*parent->entry, std::move(orphan_request));
    REQUIRE(orphan.has_value());
    CHECK(orphan->entry->orphan());
    CHECK(grandchild->entry->chain.size() == 4);

    const auto revoked = f.Revoke(*parent->entry);
    CHECK(revoked.size() == 3);
    CHECK_FALSE(f.Use(*parent).has_value());
    CHECK_FALSE(f.Use(*child).has_value());
    CHECK_FALSE(f.Use(*grandchild).has_value());
    CHECK(f.Use(*orphan).has_value());
    auto leftovers = f.env.store->Scan("sys/token/children/", "", 100);
    REQUIRE(leftovers.has_value());
    CHECK(leftovers->empty());
  }

  TEST_CASE("a child created during a revocation aborts it") {
    TokenFixture f;
    auto parent = f.Create(*f.root, WithPolicies({"a"}));
    REQUIRE(parent.has_value());
    auto child = f.Create(*parent->entry, WithPolicies({"a"}));
    REQUIRE(child.has_value());
    for (const auto& creator : {parent->entry, child->entry}) {
      // The revocation lists the tree, then a new token under `creator` commits first.
      kw::storage::WriteBatch revoke;
      REQUIRE(f.store.Revoke(parent->entry->accessor, false, revoke).has_value());
      auto late = f.Create(*creator, WithPolicies({"a"}));
      REQUIRE(late.has_value());
      auto committed = f.env.store->Commit(std::move(revoke));
      REQUIRE_FALSE(committed.has_value());
      CHECK(committed.error().code() == kw::Code::kAborted);
    }
    // Retried, the revocation takes the late children as well.
    CHECK(f.Revoke(*parent->entry).size() == 4);
    auto leftovers = f.env.store->Scan("sys/token/accessor/", "", 100);
    REQUIRE(leftovers.has_value());
    CHECK(leftovers->size() == 1);  // the root token
  }

  TEST_CASE("an orphan keeps its non-root creator's limits") {
    TokenFixture f;
    TokenRequest bounded = WithPolicies({"a"});
    bounded.ttl = 600;
    bounded.num_uses = 5;
    bounded.bound_paths = {"secret/data/app/*"};
    bounded.bound_cidrs = {"127.0.0.1/32"};
    auto creator = f.Create(*f.root, std::move(bounded));
    REQUIRE(creator.has_value());
    TokenRequest orphan_request = WithPolicies({"a"});
    orphan_request.orphan = true;
    orphan_request.ttl = 86400;
    auto orphan = f.Create(*creator->entry, std::move(orphan_request));
    REQUIRE(orphan.has_value());
    CHECK(orphan->entry->orphan());
    CHECK(orphan->entry->expire_time == creator->entry->expire_time);
    CHECK(orphan->entry->num_uses == 4);
    CHECK(orphan->entry->bound_paths == creator->entry->bound_paths);
    CHECK(orphan->entry->bound_cidrs == std::vector<std::string>{"127.0.0.1/32"});
    CHECK(orphan->entry->chain ==
          std::vector<std::string>{f.root->accessor, creator->entry->accessor,
                                   orphan->entry->accessor});
    // Revoking the creator leaves the orphan.
    f.Revoke(*creator->entry);
    CHECK(f.Use(*orphan).has_value());
  }

  TEST_CASE("a child cannot widen its parent's CIDRs or use bad bound paths") {
    TokenFixture f;
    TokenRequest pinned = WithPolicies({"a"});
    pinned.bound_cidrs = {"127.0.0.1/32"};
    auto parent = f.Create(*f.root, std::move(pinned));
    REQUIRE(parent.has_value());
    for (const char* wider : {"127.0.0.0/8", "0.0.0.0/0", "10.0.0.1/32"}) {
      TokenRequest request = WithPolicies({"a"});
      request.bound_cidrs = {wider};
      auto child = f.Create(*parent->entry, std::move(request));
      REQUIRE_FALSE(child.has_value());
      CHECK(child.error().code() == kw::Code::kPermissionDenied);
    }
    TokenRequest same = WithPolicies({"a"});
    same.bound_cidrs = {"127.0.0.1/32"};
    CHECK(f.Create(*parent->entry, std::move(same)).has_value());
    for (const char* glob : {"secret/data/*/db", "secret/data/app/*x*", ""}) {
      TokenRequest request = WithPolicies({"a"});
      request.bound_paths = {glob};
      auto child = f.Create(*f.root, std::move(request));
      REQUIRE_FALSE(child.has_value());
      CHECK(child.error().code() == kw::Code::kInvalidArgument);
    }
    TokenRequest trailing = WithPolicies({"a"});
    trailing.bound_paths = {"secret/data/app/db/"};
    auto normalised = f.Create(*f.root, std::move(trailing));
    REQUIRE(normalised.has_value());
    CHECK(normalised->entry->bound_paths[0] == std::vector<std::string>{"secret/data/app/db"});
  }

  TEST_CASE("revoke-orphan keeps the children as orphans") {
    TokenFixture f;
    auto parent = f.Create(*f.root, WithPolicies({"a"}));
    REQUIRE(parent.has_value());
    auto child = f.Create(*parent->entry, WithPolicies({"a"}));
    REQUIRE(child.has_value());
    auto grandchild = f.Create(*child->entry, WithPolicies({"a"}));
    REQUIRE(grandchild.has_value());
    CHECK(f.Revoke(*parent->entry, /*orphan_children=*/true).size() == 1);
    auto identity = f.Use(*child);
    REQUIRE(identity.has_value());
    CHECK(identity->entry->orphan());
    CHECK(f.Use(*grandchild).has_value());
    CHECK(f.Revoke(*identity->entry).size() == 2);
    CHECK_FALSE(f.Use(*grandchild).has_value());
  }

  TEST_CASE("an expired token is refused and the sweeper removes its tree") {
    TokenFixture f;
    TokenRequest request = WithPolicies({"a"});
    request.ttl = 60;
    auto parent = f.Create(*f.root, std::move(request));
    REQUIRE(parent.has_value());
    auto child = f.Create(*parent->entry, WithPolicies({"a"}));
    REQUIRE(child.has_value());
    TokenRequest long_request = WithPolicies({"a"});
    long_request.ttl = 3600;
    auto other = f.Create(*f.root, std::move(long_request));
    REQUIRE(other.has_value());

    f.Advance(std::chrono::seconds(59));
    CHECK(f.Use(*parent).has_value());
    f.Advance(std::chrono::seconds(1));
    auto expired = f.Use(*parent);
    REQUIRE_FALSE(expired.has_value());
    CHECK(expired.error().code() == kw::Code::kUnauthenticated);
    CHECK_FALSE(f.Use(*child).has_value());

    kw::storage::WriteBatch batch;
    auto swept = f.store.SweepExpired(100, batch);
    REQUIRE(swept.has_value());
    REQUIRE(f.env.store->Commit(std::move(batch)).has_value());
    CHECK(swept->size() == 2);
    CHECK_FALSE(f.store.LookupAccessor(parent->entry->accessor).has_value());
    auto remaining = f.env.store->Scan("sys/token/accessor/", "", 100);
    REQUIRE(remaining.has_value());
    CHECK(remaining->size() == 2);  // root and `other`
    CHECK(f.Use(*other).has_value());
  }

  TEST_CASE("renewal extends up to the max TTL; non-renewable and root tokens refuse") {
    TokenFixture f;
    TokenRequest request = WithPolicies({"a"});
    request.ttl = 600;
    request.explicit_max_ttl = 1000;
    auto token = f.Create(*f.root, std::move(request));
    REQUIRE(token.has_value());
    f.Advance(std::chrono::seconds(500));
    kw::storage::WriteBatch batch;
    auto renewed = f.store.Renew(token->entry->accessor, 0, batch);
    REQUIRE(renewed.has_value());
    REQUIRE(f.env.store->Commit(std::move(batch)).has_value());
    CHECK((*renewed)->expire_time == token->entry->creation_time + 1000);
    f.Advance(std::chrono::seconds(499));
    CHECK(f.Use(*token).has_value());
    f.Advance(std::chrono::seconds(1));
    CHECK_FALSE(f.Use(*token).has_value());

    TokenRequest fixed = WithPolicies({"a"});
    fixed.renewable = false;
    auto fixed_token = f.Create(*f.root, std::move(fixed));
    REQUIRE(fixed_token.has_value());
    kw::storage::WriteBatch refused;
    auto not_renewable = f.store.Renew(fixed_token->entry->accessor, 60, refused);
    REQUIRE_FALSE(not_renewable.has_value());
    CHECK(not_renewable.error().code() == kw::Code::kInvalidArgument);
    CHECK_FALSE(f.store.Renew(f.root->accessor, 60, refused).has_value());
  }

  TEST_CASE("a periodic token renews by its period without a max TTL") {
    TokenFixture f;
    TokenRequest request = WithPolicies({"a"});
    request.period = 100;
    auto token = f.Create(*f.root, std::move(request));
    REQUIRE(token.has_value());
    for (int round = 0; round < 5; ++round) {
      f.Advance(std::chrono::seconds(90));
      kw::storage::WriteBatch batch;
      auto renewed = f.store.Renew(token->entry->accessor, 5000, batch);
      REQUIRE(renewed.has_value());
      REQUIRE(f.env.store->Commit(std::move(batch)).has_value());
      CHECK((*renewed)->Ttl(std::chrono::duration_cast<std::chrono::seconds>(
                                f.env.clock.Now().time_since_epoch())
                                .count()) == 100);
    }
    CHECK(f.Use(*token).has_value());
  }

  TEST_CASE("bound paths and CIDRs carry over to children") {
    TokenFixture f;
    TokenRequest request = WithPolicies({"a"});
    request.bound_paths = {"secret/data/app/*"};
    request.bound_cidrs = {"127.0.0.0/8"};
    auto parent = f.Create(*f.root, std::move(request));
    REQUIRE(parent.has_value());
    TokenRequest narrower = WithPolicies({"a"});
    narrower.bound_paths = {"secret/data/app/db"};
    auto child = f.Create(*parent->entry, std::move(narrower));
    REQUIRE(child.has_value());
    REQUIRE(child->entry->bound_paths.size() == 2);
    CHECK(child->entry->bound_paths[0] == std::vector<std::string>{"secret/data/app/*"});
    CHECK(child->entry->bound_cidrs == std::vector<std::string>{"127.0.0.0/8"});
    CHECK(f.Use(*child, "127.0.0.1").has_value());
    CHECK_FALSE(f.Use(*child, "10.1.2.3").has_value());
    CHECK(f.Use(*child, "::ffff:127.0.0.1").has_value());
  }

  TEST_CASE("a forged hash index row grants nothing") {
    TokenFixture f;
    // Point the hash of a token of the attacker's choosing at the root token's record.
    const std::string forged = "kw.forged-by-someone-who-can-write-the-database";
    kw::storage::WriteBatch batch;
    batch.Put("sys/token/hash/" + kw::vault::auth::HashToken(forged),
              kw::Bytes(f.root->accessor.begin(), f.root->accessor.end()));
    REQUIRE(f.env.store->Commit(std::move(batch)).has_value());
    auto identity = f.store.Authenticate(forged, "", nullptr);
    REQUIRE_FALSE(identity.has_value());
    CHECK(identity.error().code() == kw::Code::kUnauthenticated);

    kw::storage::WriteBatch tidy;
    auto removed = f.store.Tidy(tidy);
    REQUIRE(removed.has_value());
    CHECK(*removed == 1);
  }

  TEST_CASE("login tokens are orphans and refuse root") {
    TokenFixture f;
    TokenRequest request = WithPolicies({"app"});
    request.display_name = "approle";
    request.path = "auth/approle/login";
    kw::storage::WriteBatch batch;
    auto created = f.store.CreateForLogin(std::move(request), batch);
    REQUIRE(created.has_value());
    REQUIRE(f.env.store->Commit(std::move(batch)).has_value());
    CHECK(created->entry->orphan());
    CHECK(created->entry->display_name == "approle");
    CHECK(created->entry->policies == std::vector<std::string>{"app", "default"});
    kw::storage::WriteBatch refused;
    CHECK_FALSE(f.store.CreateForLogin(WithPolicies({"Root"}), refused).has_value());
  }
}
