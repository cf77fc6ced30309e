#include <doctest/doctest.h>

#include <filesystem>

#include "vault/auth/token_format.hpp"
#include "vault/auth/token_store.hpp"
#include "vault/vault_test_env.hpp"

TEST_SUITE("vault/auth") {
  TEST_CASE("generated token has valid checksum") {
    kw::SecretBuffer token = kw::vault::auth::GenerateToken();
    const std::string_view text = token.RevealText();
    CHECK(text.starts_with("kw."));
    CHECK(text.size() == 3 + 43 + 6);
    CHECK(kw::vault::auth::HasValidChecksum(text));
  }

  TEST_CASE("checksum detects a changed character") {
    kw::SecretBuffer token = kw::vault::auth::GenerateToken();
    std::string text(token.RevealText());
    text[10] = text[10] == 'a' ? 'b' : 'a';
    CHECK_FALSE(kw::vault::auth::HasValidChecksum(text));
    CHECK_FALSE(kw::vault::auth::HasValidChecksum("kw.short"));
    CHECK_FALSE(kw::vault::auth::HasValidChecksum("hvs.CAESIJ"));
  }

  TEST_CASE("root token authenticates and others do not") {
    kw::testing::VaultTestEnv env;
    kw::vault::auth::TokenStore store(*env.store, *env.barrier, env.clock);
    REQUIRE(store.Load().has_value());
    CHECK_FALSE(store.Authenticate("anything", "", nullptr).has_value());

    kw::storage::WriteBatch batch;
    auto accessor =
        store.StageRootToken(kw::SecretBuffer::CopyFrom(std::string_view("root-id")), batch);
    REQUIRE(accessor.has_value());
    REQUIRE(env.store->Commit(std::move(batch)).has_value());
    REQUIRE(store.Load().has_value());

    auto identity = store.Authenticate("root-id", "", nullptr);
    REQUIRE(identity.has_value());
    CHECK(identity->root);
    CHECK(identity->accessor == *accessor);

    auto wrong = store.Authenticate("root-ie", "", nullptr);
    REQUIRE_FALSE(wrong.has_value());
    CHECK(wrong.error().code() == kw::Code::kUnauthenticated);
    auto missing = store.Authenticate("", "", nullptr);
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().code() == kw::Code::kUnauthenticated);
  }

  TEST_CASE("root token stored only as hash") {
    kw::testing::VaultTestEnv env;
    kw::vault::auth::TokenStore store(*env.store, *env.barrier, env.clock);
    kw::storage::WriteBatch batch;
    REQUIRE(store.StageRootToken(
        kw::SecretBuffer::CopyFrom(std::string_view("plain-root-token-value")), batch));
    REQUIRE(env.store->Commit(std::move(batch)).has_value());
    // No stored key or value holds the token; its hash appears only as the index key.
    auto all = env.store->Scan("", "", 1000);
    REQUIRE(all.has_value());
    const std::string hash = kw::vault::auth::HashToken("plain-root-token-value");
    bool indexed = false;
    for (const auto& entry : *all) {
      CHECK(entry.key.find("plain-root-token-value") == std::string::npos);
      CHECK(kw::AsText(entry.value).find("plain-root-token-value") == std::string_view::npos);
      CHECK(kw::AsText(entry.value).find(hash) == std::string_view::npos);
      if (entry.key == "sys/token/hash/" + hash) indexed = true;
    }
    CHECK(indexed);
  }

  TEST_CASE("tampered root pointer fails to load, tampered token record fails closed") {
    kw::testing::VaultTestEnv env;
    kw::vault::auth::TokenStore store(*env.store, *env.barrier, env.clock);
    kw::storage::WriteBatch batch;
    REQUIRE(store.StageRootToken(kw::SecretBuffer::CopyFrom(std::string_view("root-id")), batch));
    REQUIRE(env.store->Commit(std::move(batch)).has_value());
    auto stored = env.store->Get("sys/token/root");
    REQUIRE(stored.has_value());
    REQUIRE(stored->has_value());
    kw::Bytes edited = **stored;
    edited.back() ^= 1;
    kw::storage::WriteBatch tamper;
    tamper.Put("sys/token/root", edited);
    REQUIRE(env.store->Commit(std::move(tamper)).has_value());
    auto loaded = store.Load();
    REQUIRE_FALSE(loaded.has_value());
    CHECK(loaded.error().code() == kw::Code::kDataLoss);

    auto identity = store.Authenticate("root-id", "", nullptr);
    REQUIRE(identity.has_value());
    const std::string key = "sys/token/accessor/" + identity->accessor;
    auto record = env.store->Get(key);
    REQUIRE(record.has_value());
    REQUIRE(record->has_value());
    kw::Bytes flipped = **record;
    flipped[flipped.size() / 2] ^= 1;
    kw::storage::WriteBatch damage;
    damage.Put(key, flipped);
    REQUIRE(env.store->Commit(std::move(damage)).has_value());
    auto refused = store.Authenticate("root-id", "", nullptr);
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.error().code() == kw::Code::kDataLoss);
  }
}
