// AES-GCM and HMAC-SHA256 through a real SoftHSM token, checked against OpenSSL and a fixed HMAC vector.
#include <doctest/doctest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>

#include "hsm/token.hpp"
#include "tests/unit/fakes/softhsm_fixture.hpp"
#include "tests/unit/hsm/pkcs11_test_util.hpp"

namespace kw::hsm {
namespace {

using kw::testing::ErrorText;
using kw::testing::SoftHsmFixture;

// Decrypts IV ‖ ciphertext ‖ tag with OpenSSL's AES-256-GCM; nullopt when the tag fails.
std::optional<Bytes> OpenSslDecrypt(ByteSpan key, ByteSpan sealed, ByteSpan aad) {
  if (sealed.size() < kGcmIvSize + kGcmTagSize) return std::nullopt;
  ByteSpan iv = sealed.first(kGcmIvSize);
  ByteSpan ciphertext = sealed.subspan(kGcmIvSize, sealed.size() - kGcmIvSize - kGcmTagSize);
  ByteSpan tag = sealed.last(kGcmTagSize);

  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> context(EVP_CIPHER_CTX_new(),
                                                                          EVP_CIPHER_CTX_free);
  Bytes plaintext(ciphertext.size() + 16);
  int length = 0;
  int total = 0;
  bool ok = EVP_DecryptInit_ex(context.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(context.get(), EVP_CTRL_GCM_SET_IVLEN, kGcmIvSize, nullptr) == 1 &&
            EVP_DecryptInit_ex(context.get(), nullptr, nullptr, key.data(), iv.data()) == 1 &&
            EVP_DecryptUpdate(context.get(), nullptr, &length, aad.data(),
                              static_cast<int>(aad.size())) == 1 &&
            EVP_DecryptUpdate(context.get(), plaintext.data(), &length, ciphertext.data(),
                              static_cast<int>(ciphertext.size())) == 1;
  if (!ok) return std::nullopt;
  total = length;
  Bytes tag_copy(tag.begin(), tag.end());
  if (EVP_CIPHER_CTX_ctrl(context.get(), EVP_CTRL_GCM_SET_TAG, kGcmTagSize, tag_copy.data()) != 1 ||
      EVP_DecryptFinal_ex(context.get(), plaintext.data() + total, &length) != 1) {
    return std::nullopt;
  }
  plaintext.resize(total + length);
  return plaintext;
}

// A fixture with an open token and one generated AES key.
struct AesKeyFixture {
  AesKeyFixture() {
    auto opened = softhsm.Open();
    REQUIRE_MESSAGE(opened, ErrorText(opened.error()));
    token = std::move(*opened);
    auto generated = token->GenerateAesKey("data-key");
    REQUIRE_MESSAGE(generated, ErrorText(generated.error()));
    key = *generated;
  }

  SoftHsmFixture softhsm;
  std::unique_ptr<Token> token;
  KeyHandle key;
};

TEST_SUITE("hsm/crypto") {
  TEST_CASE("encrypt and decrypt round trip") {
    AesKeyFixture fixture;
    SUBCASE("with data and AAD") {
      const std::string plaintext = "secret value";
      auto sealed = fixture.token->EncryptGcm(fixture.key, AsBytes(plaintext), AsBytes("kv/a/1"));
      REQUIRE_MESSAGE(sealed, ErrorText(sealed.error()));
      CHECK(sealed->size() == kGcmIvSize + plaintext.size() + kGcmTagSize);

      auto opened = fixture.token->DecryptGcm(fixture.key, *sealed, AsBytes("kv/a/1"));
      REQUIRE_MESSAGE(opened, ErrorText(opened.error()));
      CHECK(opened->RevealText() == plaintext);
    }
    SUBCASE("empty plaintext and AAD") {
      auto sealed = fixture.token->EncryptGcm(fixture.key, ByteSpan(), ByteSpan());
      REQUIRE_MESSAGE(sealed, ErrorText(sealed.error()));
      CHECK(sealed->size() == kGcmIvSize + kGcmTagSize);

      auto opened = fixture.token->DecryptGcm(fixture.key, *sealed, ByteSpan());
      REQUIRE_MESSAGE(opened, ErrorText(opened.error()));
      CHECK(opened->empty());
    }
    SUBCASE("large plaintext") {
      Bytes plaintext = RandomBytes(100000);
      auto sealed = fixture.token->EncryptGcm(fixture.key, plaintext, AsBytes("aad"));
      REQUIRE_MESSAGE(sealed, ErrorText(sealed.error()));
      auto opened = fixture.token->DecryptGcm(fixture.key, *sealed, AsBytes("aad"));
      REQUIRE_MESSAGE(opened, ErrorText(opened.error()));
      CHECK(opened->Equals(plaintext));
    }
  }

  TEST_CASE("encrypt uses a fresh IV each time") {
    AesKeyFixture fixture;
    auto first = fixture.token->EncryptGcm(fixture.key, AsBytes("same"), AsBytes("aad"));
    auto second = fixture.token->EncryptGcm(fixture.key, AsBytes("same"), AsBytes("aad"));
    REQUIRE(first);
    REQUIRE(second);
    CHECK_FALSE(std::equal(first->begin(), first->begin() + kGcmIvSize, second->begin()));
    CHECK(*first != *second);
  }

  TEST_CASE("decrypt with wrong AAD is data_loss") {
    AesKeyFixture fixture;
    auto sealed = fixture.token->EncryptGcm(fixture.key, AsBytes("value"), AsBytes("kv/a/1"));
    REQUIRE(sealed);
    auto opened = fixture.token->DecryptGcm(fixture.key, *sealed, AsBytes("kv/b/1"));
    REQUIRE_FALSE(opened);
    CHECK(opened.error().code() == Code::kDataLoss);
    CHECK(opened.error().message().starts_with("decrypt failed: authentication failed"));
  }

  TEST_CASE("decrypt with flipped bit is data_loss") {
    AesKeyFixture fixture;
    auto sealed = fixture.token->EncryptGcm(fixture.key, AsBytes("value"), AsBytes("aad"));
    REQUIRE(sealed);
    SUBCASE("in the tag") { sealed->back() ^= 0x01; }
    SUBCASE("in the ciphertext") { (*sealed)[kGcmIvSize] ^= 0x80; }
    SUBCASE("in the IV") { (*sealed)[0] ^= 0x01; }
    auto opened = fixture.token->DecryptGcm(fixture.key, *sealed, AsBytes("aad"));
    REQUIRE_FALSE(opened);
    CHECK(opened.error().code() == Code::kDataLoss);
  }

  TEST_CASE("decrypt with wrong key is data_loss") {
    AesKeyFixture fixture;
    auto other_key = fixture.token->GenerateAesKey("other-key");
    REQUIRE_MESSAGE(other_key, ErrorText(other_key.error()));
    auto sealed = fixture.token->EncryptGcm(fixture.key, AsBytes("value"), AsBytes("aad"));
    REQUIRE(sealed);
    auto opened = fixture.token->DecryptGcm(*other_key, *sealed, AsBytes("aad"));
    REQUIRE_FALSE(opened);
    CHECK(opened.error().code() == Code::kDataLoss);
  }

  TEST_CASE("decrypt of too short input is invalid_argument") {
    AesKeyFixture fixture;
    Bytes sealed(kGcmIvSize + kGcmTagSize - 1, 0);
    auto opened = fixture.token->DecryptGcm(fixture.key, sealed, AsBytes("aad"));
    REQUIRE_FALSE(opened);
    CHECK(opened.error().code() == Code::kInvalidArgument);
  }

  TEST_CASE("GCM layout matches OpenSSL AES-256-GCM") {
    SoftHsmFixture softhsm;
    auto token = softhsm.Open();
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    detail::Pkcs11Token& pkcs11 = testing::AsPkcs11(**token);

    // An extractable key with a known value, for this test only.
    Bytes key_value(32);
    for (std::size_t i = 0; i < key_value.size(); ++i) key_value[i] = static_cast<std::uint8_t>(i);
    testing::ImportedKey imported;
    imported.key_type = CKK_AES;
    imported.value = key_value;
    imported.label = "known-aes-key";
    auto created = testing::ImportSecretKey(pkcs11, imported);
    REQUIRE_MESSAGE(created, ErrorText(created.error()));
    auto key = (*token)->FindKey("known-aes-key");
    REQUIRE_MESSAGE(key, ErrorText(key.error()));

    const std::string plaintext = "known-answer plaintext";
    const std::string aad = "mount=kv path=a version=1";
    auto sealed = (*token)->EncryptGcm(*key, AsBytes(plaintext), AsBytes(aad));
    REQUIRE_MESSAGE(sealed, ErrorText(sealed.error()));

    std::optional<Bytes> opened = OpenSslDecrypt(key_value, *sealed, AsBytes(aad));
    REQUIRE(opened.has_value());
    CHECK(AsText(*opened) == plaintext);

    std::optional<Bytes> wrong_aad = OpenSslDecrypt(key_value, *sealed, AsBytes("other"));
    CHECK_FALSE(wrong_aad.has_value());
  }

  TEST_CASE("HMAC-SHA256 known answer") {
    SoftHsmFixture softhsm;
    auto token = softhsm.Open();
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    detail::Pkcs11Token& pkcs11 = testing::AsPkcs11(**token);

    Bytes key_value(32, 0x0b);
    testing::ImportedKey imported;
    imported.key_type = CKK_GENERIC_SECRET;
    imported.value = key_value;
    imported.label = "known-hmac-key";
    imported.for_encryption = false;
    imported.extractable = false;
    auto created = testing::ImportSecretKey(pkcs11, imported);
    REQUIRE_MESSAGE(created, ErrorText(created.error()));
    auto key = (*token)->FindKey("known-hmac-key");
    REQUIRE_MESSAGE(key, ErrorText(key.error()));

    auto mac = (*token)->HmacSha256(*key, AsBytes("Hi There"));
    REQUIRE_MESSAGE(mac, ErrorText(mac.error()));
    CHECK(ToHex(*mac) == "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7");
  }

  TEST_CASE("HMAC with a generated key is deterministic") {
    SoftHsmFixture softhsm;
    auto token = softhsm.Open();
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    auto key = (*token)->GenerateHmacKey("audit-hmac");
    REQUIRE_MESSAGE(key, ErrorText(key.error()));

    auto first = (*token)->HmacSha256(*key, AsBytes("record"));
    auto again = (*token)->HmacSha256(*key, AsBytes("record"));
    auto other = (*token)->HmacSha256(*key, AsBytes("record2"));
    REQUIRE(first);
    REQUIRE(again);
    REQUIRE(other);
    CHECK(first->size() == 32);
    CHECK(*first == *again);
    CHECK(*first != *other);
  }
}

}  // namespace
}  // namespace kw::hsm
