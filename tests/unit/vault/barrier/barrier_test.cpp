#include "vault/barrier/barrier.hpp"

#include <doctest/doctest.h>

#include "vault/vault_test_env.hpp"

TEST_SUITE("vault/barrier") {
  TEST_CASE("round trip with aad") {
    kw::testing::VaultTestEnv env;
    auto sealed = env.barrier->Encrypt(kw::AsBytes("s3cr3t"), "where");
    REQUIRE(sealed.has_value());
    auto plain = env.barrier->Decrypt(*sealed, "where");
    REQUIRE(plain.has_value());
    CHECK(plain->RevealText() == "s3cr3t");
  }

  TEST_CASE("other aad fails as data loss") {
    kw::testing::VaultTestEnv env;
    auto sealed = env.barrier->Encrypt(kw::AsBytes("s3cr3t"), "here");
    REQUIRE(sealed.has_value());
    auto plain = env.barrier->Decrypt(*sealed, "there");
    REQUIRE_FALSE(plain.has_value());
    CHECK(plain.error().code() == kw::Code::kDataLoss);
  }

  TEST_CASE("rotation keeps old records readable") {
    kw::testing::VaultTestEnv env;
    auto old_record = env.barrier->Encrypt(kw::AsBytes("v1 data"), "a");
    REQUIRE(old_record.has_value());
    auto rotated = env.barrier->Rotate();
    REQUIRE(rotated.has_value());
    CHECK(*rotated == 2);
    CHECK(env.barrier->current_version() == 2);
    auto new_record = env.barrier->Encrypt(kw::AsBytes("v2 data"), "a");
    REQUIRE(new_record.has_value());
    CHECK((*new_record)[3] == 2);
    CHECK((*old_record)[3] == 1);
    auto old_plain = env.barrier->Decrypt(*old_record, "a");
    REQUIRE(old_plain.has_value());
    CHECK(old_plain->RevealText() == "v1 data");
  }

  TEST_CASE("unknown key version is data loss") {
    kw::testing::VaultTestEnv env;
    auto sealed = env.barrier->Encrypt(kw::AsBytes("x"), "a");
    REQUIRE(sealed.has_value());
    (*sealed)[3] = 9;
    auto plain = env.barrier->Decrypt(*sealed, "a");
    REQUIRE_FALSE(plain.has_value());
    CHECK(plain.error().code() == kw::Code::kDataLoss);
  }

  TEST_CASE("load without data key fails") {
    kw::testing::SoftHsmFixture hsm;
    auto token = hsm.Open();
    REQUIRE(token.has_value());
    auto barrier = kw::vault::Barrier::Load(**token);
    REQUIRE_FALSE(barrier.has_value());
    CHECK(barrier.error().code() == kw::Code::kFailedPrecondition);
  }
}
