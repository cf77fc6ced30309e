// ECDSA P-256 key pairs on a real SoftHSM token: signatures verified by OpenSSL, and the
// private key's protection attributes.
#include <doctest/doctest.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

#include "hsm/detail/pkcs11_token.hpp"
#include "hsm/token.hpp"
#include "tests/unit/fakes/softhsm_fixture.hpp"
#include "tests/unit/hsm/pkcs11_test_util.hpp"

namespace kw::hsm {
namespace {

using kw::testing::ErrorText;
using kw::testing::SoftHsmFixture;

Bytes Sha256Of(std::string_view text) {
  Bytes digest(SHA256_DIGEST_LENGTH);
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest.data());
  return digest;
}

// Verifies a raw r ‖ s signature over `digest` with the public key in `spki`, using OpenSSL.
bool OpenSslVerifies(const Bytes& spki, const Bytes& digest, const Bytes& raw_signature) {
  const unsigned char* cursor = spki.data();
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      d2i_PUBKEY(nullptr, &cursor, static_cast<long>(spki.size())), EVP_PKEY_free);
  if (!key || raw_signature.size() != 64) return false;
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> signature(ECDSA_SIG_new(),
                                                                  ECDSA_SIG_free);
  BIGNUM* r = BN_bin2bn(raw_signature.data(), 32, nullptr);
  BIGNUM* s = BN_bin2bn(raw_signature.data() + 32, 32, nullptr);
  ECDSA_SIG_set0(signature.get(), r, s);
  unsigned char* der = nullptr;
  int der_size = i2d_ECDSA_SIG(signature.get(), &der);
  if (der_size <= 0) return false;
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> context(
      EVP_PKEY_CTX_new(key.get(), nullptr), EVP_PKEY_CTX_free);
  bool ok = context && EVP_PKEY_verify_init(context.get()) == 1 &&
            EVP_PKEY_verify(context.get(), der, der_size, digest.data(), digest.size()) == 1;
  OPENSSL_free(der);
  return ok;
}

TEST_SUITE("hsm/ec") {
  TEST_CASE("a generated P-256 key signs digests that OpenSSL verifies") {
    SoftHsmFixture softhsm;
    auto token = softhsm.Open();
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    auto key = (*token)->GenerateEcP256KeyPair("ca-1");
    REQUIRE_MESSAGE(key, ErrorText(key.error()));
    auto spki = (*token)->GetEcPublicKeySpki("ca-1");
    REQUIRE_MESSAGE(spki, ErrorText(spki.error()));
    CHECK(spki->size() == 91);

    Bytes digest = Sha256Of("to be signed");
    auto signature = (*token)->SignEcdsa(*key, digest);
    REQUIRE_MESSAGE(signature, ErrorText(signature.error()));
    CHECK(signature->size() == 64);
    CHECK(OpenSslVerifies(*spki, digest, *signature));
    CHECK_FALSE(OpenSslVerifies(*spki, Sha256Of("something else"), *signature));

    // ECDSA is randomised: two signatures of one digest differ and both verify.
    auto again = (*token)->SignEcdsa(*key, digest);
    REQUIRE(again);
    CHECK(*again != *signature);
    CHECK(OpenSslVerifies(*spki, digest, *again));

    // A reopened token finds the same key pair by label.
    token->reset();
    auto reopened = softhsm.Open();
    REQUIRE(reopened);
    auto found = (*reopened)->FindPrivateKey("ca-1");
    REQUIRE_MESSAGE(found, ErrorText(found.error()));
    auto signed_later = (*reopened)->SignEcdsa(*found, digest);
    REQUIRE(signed_later);
    CHECK(OpenSslVerifies(*spki, digest, *signed_later));
  }

  TEST_CASE("the private key is sensitive, non-extractable and was born on the token") {
    SoftHsmFixture softhsm;
    auto token = softhsm.Open();
    REQUIRE(token);
    auto key = (*token)->GenerateEcP256KeyPair("ca-attrs");
    REQUIRE_MESSAGE(key, ErrorText(key.error()));
    auto attributes = (*token)->GetKeyAttributes(*key);
    REQUIRE_MESSAGE(attributes, ErrorText(attributes.error()));
    CHECK(attributes->token);
    CHECK(attributes->is_private);
    CHECK(attributes->sensitive);
    CHECK_FALSE(attributes->extractable);
    CHECK(attributes->always_sensitive);
    CHECK(attributes->never_extractable);
    CHECK(attributes->local);

    // Reading the private value fails on the token itself.
    auto* pkcs11 = dynamic_cast<detail::Pkcs11Token*>(token->get());
    REQUIRE(pkcs11 != nullptr);
    CHECK(kw::hsm::testing::ReadKeyValue(*pkcs11, pkcs11->TokenObjectOf(*key)) ==
          CKR_ATTRIBUTE_SENSITIVE);
  }

  TEST_CASE("errors: duplicate label, unknown label, wrong digest size") {
    SoftHsmFixture softhsm;
    auto token = softhsm.Open();
    REQUIRE(token);
    auto key = (*token)->GenerateEcP256KeyPair("dup");
    REQUIRE(key);
    auto duplicate = (*token)->GenerateEcP256KeyPair("dup");
    REQUIRE_FALSE(duplicate);
    CHECK(duplicate.error().code() == Code::kAlreadyExists);

    auto missing = (*token)->FindPrivateKey("absent");
    REQUIRE_FALSE(missing);
    CHECK(missing.error().code() == Code::kNotFound);
    auto missing_public = (*token)->GetEcPublicKeySpki("absent");
    REQUIRE_FALSE(missing_public);
    CHECK(missing_public.error().code() == Code::kNotFound);

    Bytes short_digest(20, 0x01);
    auto refused = (*token)->SignEcdsa(*key, short_digest);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code() == Code::kInvalidArgument);

    // An AES key cannot sign with ECDSA.
    auto aes = (*token)->GenerateAesKey("not-ec");
    REQUIRE(aes);
    CHECK_FALSE((*token)->SignEcdsa(*aes, Sha256Of("x")));
  }
}

}  // namespace
}  // namespace kw::hsm
