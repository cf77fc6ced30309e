// Token::Open, InitializeToken, key generation and lookup against a real SoftHSM token.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "hsm/token.hpp"
#include "tests/unit/fakes/softhsm_fixture.hpp"

namespace kw::hsm {
namespace {

using kw::testing::ErrorText;
using kw::testing::SoftHsmFixture;

TEST_SUITE("hsm/token") {
  TEST_CASE("open with correct PIN succeeds") {
    SoftHsmFixture fixture;
    auto token = fixture.Open();
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    CHECK(*token != nullptr);
  }

  TEST_CASE("open with wrong PIN is permission_denied") {
    SoftHsmFixture fixture;
    auto token = Token::Open(fixture.Config(), SecretBuffer::CopyFrom(std::string_view("wrong")));
    REQUIRE_FALSE(token);
    CHECK(token.error().code() == Code::kPermissionDenied);
    CHECK(token.error().message().find("CKR_PIN_INCORRECT") != std::string::npos);
  }

  TEST_CASE("open with wrong PIN while logged in is permission_denied") {
    // SoftHSM returns CKR_USER_ALREADY_LOGGED_IN without checking the PIN once a session of the
    // process is logged in, so the second Open must check the PIN itself.
    SoftHsmFixture fixture;
    auto first = fixture.Open();
    REQUIRE_MESSAGE(first, ErrorText(first.error()));
    auto second =
        Token::Open(fixture.Config(), SecretBuffer::CopyFrom(std::string_view("wrong-pin")));
    REQUIRE_FALSE(second);
    CHECK(second.error().code() == Code::kPermissionDenied);

    auto third = fixture.Open();
    CHECK_MESSAGE(third, ErrorText(third.error()));
  }

  TEST_CASE("open with unknown label is not_found") {
    SoftHsmFixture fixture;
    TokenConfig config = fixture.Config();
    config.token_label = "no-such-token";
    auto token = Token::Open(config, fixture.pin());
    REQUIRE_FALSE(token);
    CHECK(token.error().code() == Code::kNotFound);
  }

  TEST_CASE("open with a bad module path is unavailable") {
    SoftHsmFixture fixture;
    TokenConfig config = fixture.Config();
    config.module_path = fixture.dir() + "/missing-module.so";
    auto token = Token::Open(config, fixture.pin());
    REQUIRE_FALSE(token);
    CHECK(token.error().code() == Code::kUnavailable);
  }

  TEST_CASE("open rejects invalid config") {
    SoftHsmFixture fixture;
    SUBCASE("zero sessions") {
      auto token = fixture.Open(0);
      REQUIRE_FALSE(token);
      CHECK(token.error().code() == Code::kInvalidArgument);
    }
    SUBCASE("label longer than 32 bytes") {
      TokenConfig config = fixture.Config();
      config.token_label = std::string(33, 'x');
      auto token = Token::Open(config, fixture.pin());
      REQUIRE_FALSE(token);
      CHECK(token.error().code() == Code::kInvalidArgument);
    }
    SUBCASE("empty PIN") {
      auto token = Token::Open(fixture.Config(), SecretBuffer());
      REQUIRE_FALSE(token);
      CHECK(token.error().code() == Code::kInvalidArgument);
    }
  }

  TEST_CASE("open, close and open again") {
    SoftHsmFixture fixture;
    const std::string plaintext = "survives a reopen";
    Bytes sealed;
    {
      auto token = fixture.Open();
      REQUIRE_MESSAGE(token, ErrorText(token.error()));
      auto key = (*token)->GenerateAesKey("data-key-1");
      REQUIRE_MESSAGE(key, ErrorText(key.error()));
      auto encrypted = (*token)->EncryptGcm(*key, AsBytes(plaintext), AsBytes("aad"));
      REQUIRE_MESSAGE(encrypted, ErrorText(encrypted.error()));
      sealed = *encrypted;
    }
    // No Token is left, so the module was finalised and this Open initialises it again.
    auto token = fixture.Open();
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    auto key = (*token)->FindKey("data-key-1");
    REQUIRE_MESSAGE(key, ErrorText(key.error()));
    auto decrypted = (*token)->DecryptGcm(*key, sealed, AsBytes("aad"));
    REQUIRE_MESSAGE(decrypted, ErrorText(decrypted.error()));
    CHECK(decrypted->RevealText() == plaintext);
  }

  TEST_CASE("initialize token with existing label is already_exists") {
    SoftHsmFixture fixture;
    Status status = InitializeToken(fixture.module_path(), fixture.label(), fixture.so_pin(),
                                    fixture.pin());
    REQUIRE_FALSE(status);
    CHECK(status.error().code() == Code::kAlreadyExists);
  }

  TEST_CASE("generate key with taken label is already_exists") {
    SoftHsmFixture fixture;
    auto token = fixture.Open();
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    REQUIRE((*token)->GenerateAesKey("taken"));

    auto aes = (*token)->GenerateAesKey("taken");
    REQUIRE_FALSE(aes);
    CHECK(aes.error().code() == Code::kAlreadyExists);
    auto hmac = (*token)->GenerateHmacKey("taken");
    REQUIRE_FALSE(hmac);
    CHECK(hmac.error().code() == Code::kAlreadyExists);
  }

  TEST_CASE("find key") {
    SoftHsmFixture fixture;
    auto token = fixture.Open();
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    auto generated = (*token)->GenerateAesKey("findable");
    REQUIRE_MESSAGE(generated, ErrorText(generated.error()));

    SUBCASE("returns the handle that generate returned") {
      auto found = (*token)->FindKey("findable");
      REQUIRE_MESSAGE(found, ErrorText(found.error()));
      CHECK(found->value == generated->value);
    }
    SUBCASE("unknown label is not_found") {
      auto found = (*token)->FindKey("missing");
      REQUIRE_FALSE(found);
      CHECK(found.error().code() == Code::kNotFound);
    }
    SUBCASE("empty label is invalid_argument") {
      auto found = (*token)->FindKey("");
      REQUIRE_FALSE(found);
      CHECK(found.error().code() == Code::kInvalidArgument);
    }
  }

  TEST_CASE("list key labels by prefix") {
    SoftHsmFixture fixture;
    auto token = fixture.Open();
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    REQUIRE((*token)->GenerateAesKey("data/2"));
    REQUIRE((*token)->GenerateAesKey("data/1"));
    REQUIRE((*token)->GenerateHmacKey("audit/hmac"));

    auto data = (*token)->ListKeyLabels("data/");
    REQUIRE_MESSAGE(data, ErrorText(data.error()));
    CHECK(*data == std::vector<std::string>{"data/1", "data/2"});

    auto all = (*token)->ListKeyLabels("");
    REQUIRE_MESSAGE(all, ErrorText(all.error()));
    CHECK(*all == std::vector<std::string>{"audit/hmac", "data/1", "data/2"});

    auto none = (*token)->ListKeyLabels("pki/");
    REQUIRE_MESSAGE(none, ErrorText(none.error()));
    CHECK(none->empty());
  }

  TEST_CASE("generated keys report their protections") {
    SoftHsmFixture fixture;
    auto token = fixture.Open();
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    auto aes = (*token)->GenerateAesKey("aes");
    REQUIRE_MESSAGE(aes, ErrorText(aes.error()));
    auto hmac = (*token)->GenerateHmacKey("hmac");
    REQUIRE_MESSAGE(hmac, ErrorText(hmac.error()));

    for (KeyHandle key : {*aes, *hmac}) {
      auto attributes = (*token)->GetKeyAttributes(key);
      REQUIRE_MESSAGE(attributes, ErrorText(attributes.error()));
      CHECK(attributes->token);
      CHECK(attributes->is_private);
      CHECK(attributes->sensitive);
      CHECK_FALSE(attributes->extractable);
      CHECK(attributes->always_sensitive);
      CHECK(attributes->never_extractable);
      CHECK(attributes->local);
    }
  }

  TEST_CASE("keys are limited to their usage") {
    SoftHsmFixture fixture;
    auto token = fixture.Open();
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    auto aes = (*token)->GenerateAesKey("aes");
    REQUIRE_MESSAGE(aes, ErrorText(aes.error()));
    auto hmac = (*token)->GenerateHmacKey("hmac");
    REQUIRE_MESSAGE(hmac, ErrorText(hmac.error()));

    auto mac_with_aes_key = (*token)->HmacSha256(*aes, AsBytes("data"));
    CHECK_FALSE(mac_with_aes_key);
    auto encrypt_with_hmac_key = (*token)->EncryptGcm(*hmac, AsBytes("data"), AsBytes(""));
    CHECK_FALSE(encrypt_with_hmac_key);
  }

  TEST_CASE("get attributes of an empty handle is invalid_argument") {
    SoftHsmFixture fixture;
    auto token = fixture.Open();
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    auto attributes = (*token)->GetKeyAttributes(KeyHandle{});
    REQUIRE_FALSE(attributes);
    CHECK(attributes.error().code() == Code::kInvalidArgument);
  }
}

}  // namespace
}  // namespace kw::hsm
