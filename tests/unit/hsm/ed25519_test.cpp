// Ed25519 key pairs on a real SoftHSM token: signatures verified by OpenSSL, the private key's
// protection attributes, and both CKA_EC_PARAMS encodings of edwards25519.
#include <doctest/doctest.h>
#include <openssl/evp.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "hsm/detail/pkcs11_token.hpp"
#include "hsm/token.hpp"
#include "tests/unit/fakes/softhsm_fixture.hpp"
#include "tests/unit/hsm/pkcs11_test_util.hpp"

namespace kw::hsm {
namespace {

using kw::testing::ErrorText;
using kw::testing::SoftHsmFixture;

// Verifies an RFC 8032 Ed25519 signature over `message` with the raw 32-byte `public_key`,
// using OpenSSL.
bool OpenSslVerifies(const Bytes& public_key, ByteSpan message, const Bytes& signature) {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, public_key.data(),
                                  public_key.size()),
      EVP_PKEY_free);
  if (!key) return false;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(),
                                                                  EVP_MD_CTX_free);
  return context &&
         EVP_DigestVerifyInit(context.get(), nullptr, nullptr, nullptr, key.get()) == 1 &&
         EVP_DigestVerify(context.get(), signature.data(), signature.size(), message.data(),
                          message.size()) == 1;
}

// Reads attribute `type` of `object` through a pooled session of `token`.
Bytes ReadAttribute(detail::Pkcs11Token& token, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
  auto lease = token.CheckoutSession();
  REQUIRE(lease);
  Bytes value(256);
  CK_ATTRIBUTE attribute{type, value.data(), static_cast<CK_ULONG>(value.size())};
  REQUIRE(token.functions()->C_GetAttributeValue(lease->handle(), object, &attribute, 1) ==
          CKR_OK);
  value.resize(attribute.ulValueLen);
  return value;
}

// Finds the one token object of class `object_class` labelled `label`.
CK_OBJECT_HANDLE FindObject(detail::Pkcs11Token& token, CK_OBJECT_CLASS object_class,
                            std::string_view label) {
  auto lease = token.CheckoutSession();
  REQUIRE(lease);
  CK_ATTRIBUTE search[2] = {
      {CKA_CLASS, &object_class, sizeof(object_class)},
      {CKA_LABEL, const_cast<char*>(label.data()), static_cast<CK_ULONG>(label.size())}};
  CK_FUNCTION_LIST* functions = token.functions();
  REQUIRE(functions->C_FindObjectsInit(lease->handle(), search, 2) == CKR_OK);
  CK_OBJECT_HANDLE found[2] = {};
  CK_ULONG count = 0;
  CK_RV rv = functions->C_FindObjects(lease->handle(), found, 2, &count);
  functions->C_FindObjectsFinal(lease->handle());
  REQUIRE(rv == CKR_OK);
  REQUIRE(count == 1);
  return found[0];
}

TEST_SUITE("hsm/ed25519") {
  TEST_CASE("generated key signs what OpenSSL verifies") {
    SoftHsmFixture softhsm;
    auto token = softhsm.Open();
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    auto key = (*token)->GenerateEd25519KeyPair("note-1");
    REQUIRE_MESSAGE(key, ErrorText(key.error()));
    auto public_key = (*token)->GetEd25519PublicKey("note-1");
    REQUIRE_MESSAGE(public_key, ErrorText(public_key.error()));
    CHECK(public_key->size() == 32);

    const std::string message = "example.com/log\n1\nroot\n";
    auto signature = (*token)->SignEd25519(*key, AsBytes(message));
    REQUIRE_MESSAGE(signature, ErrorText(signature.error()));
    CHECK(signature->size() == 64);
    CHECK(OpenSslVerifies(*public_key, AsBytes(message), *signature));
    CHECK_FALSE(OpenSslVerifies(*public_key, AsBytes(message + "x"), *signature));

    // Pure Ed25519 is deterministic: the same message gives the same signature.
    auto again = (*token)->SignEd25519(*key, AsBytes(message));
    REQUIRE(again);
    CHECK(*again == *signature);

    auto empty = (*token)->SignEd25519(*key, ByteSpan());
    REQUIRE_MESSAGE(empty, ErrorText(empty.error()));
    CHECK(OpenSslVerifies(*public_key, ByteSpan(), *empty));

    // A reopened token finds the same key pair by label.
    token->reset();
    auto reopened = softhsm.Open();
    REQUIRE(reopened);
    auto found = (*reopened)->FindPrivateKey("note-1");
    REQUIRE_MESSAGE(found, ErrorText(found.error()));
    auto signed_later = (*reopened)->SignEd25519(*found, AsBytes(message));
    REQUIRE(signed_later);
    CHECK(*signed_later == *signature);
    auto public_again = (*reopened)->GetEd25519PublicKey("note-1");
    REQUIRE(public_again);
    CHECK(*public_again == *public_key);
  }

  TEST_CASE("private key is sensitive and non-extractable") {
    SoftHsmFixture softhsm;
    auto token = softhsm.Open();
    REQUIRE(token);
    auto key = (*token)->GenerateEd25519KeyPair("note-attrs");
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

    auto& pkcs11 = kw::hsm::testing::AsPkcs11(**token);
    const CK_OBJECT_HANDLE private_object = pkcs11.TokenObjectOf(*key);
    CHECK(kw::hsm::testing::ReadKeyValue(pkcs11, private_object) == CKR_ATTRIBUTE_SENSITIVE);

    // Sign only. The token object is modifiable so that SoftHSM copies it; the handle in use
    // is an unmodifiable session copy.
    CHECK(ReadAttribute(pkcs11, private_object, CKA_SIGN) == Bytes{CK_TRUE});
    CHECK(ReadAttribute(pkcs11, private_object, CKA_DECRYPT) == Bytes{CK_FALSE});
    CHECK(ReadAttribute(pkcs11, private_object, CKA_DERIVE) == Bytes{CK_FALSE});
    CHECK(ReadAttribute(pkcs11, private_object, CKA_MODIFIABLE) == Bytes{CK_TRUE});
    CHECK(key->value != private_object);
    CHECK(ReadAttribute(pkcs11, key->value, CKA_TOKEN) == Bytes{CK_FALSE});
    CHECK(ReadAttribute(pkcs11, key->value, CKA_MODIFIABLE) == Bytes{CK_FALSE});
    CHECK(ReadAttribute(pkcs11, key->value, CKA_SENSITIVE) == Bytes{CK_TRUE});
    CHECK(ReadAttribute(pkcs11, key->value, CKA_EXTRACTABLE) == Bytes{CK_FALSE});
    auto lease = pkcs11.CheckoutSession();
    REQUIRE(lease);
    CK_BBOOL extractable = CK_TRUE;
    CK_ATTRIBUTE loosen{CKA_EXTRACTABLE, &extractable, sizeof(extractable)};
    CHECK(pkcs11.functions()->C_SetAttributeValue(lease->handle(), private_object, &loosen, 1) !=
          CKR_OK);
  }

  TEST_CASE("public key records the edwards25519 OID") {
    SoftHsmFixture softhsm;
    auto token = softhsm.Open();
    REQUIRE(token);
    REQUIRE((*token)->GenerateEd25519KeyPair("note-params"));
    auto& pkcs11 = kw::hsm::testing::AsPkcs11(**token);
    const CK_OBJECT_HANDLE public_object = FindObject(pkcs11, CKO_PUBLIC_KEY, "note-params");
    CHECK(ReadAttribute(pkcs11, public_object, CKA_EC_PARAMS) ==
          Bytes{0x06, 0x03, 0x2b, 0x65, 0x70});
    Bytes point = ReadAttribute(pkcs11, public_object, CKA_EC_POINT);
    REQUIRE(point.size() == 34);
    CHECK(point[0] == 0x04);
    CHECK(point[1] == 0x20);
  }

  TEST_CASE("key pair with PrintableString parameters is read") {
    // A key pair made outside keyward may name the curve with the PrintableString
    // "edwards25519" instead of the OID.
    SoftHsmFixture softhsm;
    auto token = softhsm.Open();
    REQUIRE(token);
    auto& pkcs11 = kw::hsm::testing::AsPkcs11(**token);
    {
      auto lease = pkcs11.CheckoutSession();
      REQUIRE(lease);
      std::array<CK_BYTE, 14> name_params = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r',
                                             'd',  's',  '2', '5', '5', '1', '9'};
      CK_KEY_TYPE key_type = CKK_EC_EDWARDS;
      CK_BBOOL yes = CK_TRUE;
      std::string label = "named-curve";
      CK_ATTRIBUTE public_template[5] = {
          {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
          {CKA_EC_PARAMS, name_params.data(), name_params.size()},
          {CKA_TOKEN, &yes, sizeof(yes)},
          {CKA_VERIFY, &yes, sizeof(yes)},
          {CKA_LABEL, label.data(), label.size()}};
      CK_ATTRIBUTE private_template[5] = {
          {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
          {CKA_TOKEN, &yes, sizeof(yes)},
          {CKA_SENSITIVE, &yes, sizeof(yes)},
          {CKA_SIGN, &yes, sizeof(yes)},
          {CKA_LABEL, label.data(), label.size()}};
      CK_MECHANISM mechanism{CKM_EC_EDWARDS_KEY_PAIR_GEN, nullptr, 0};
      CK_OBJECT_HANDLE public_handle = CK_INVALID_HANDLE;
      CK_OBJECT_HANDLE private_handle = CK_INVALID_HANDLE;
      REQUIRE(pkcs11.functions()->C_GenerateKeyPair(lease->handle(), &mechanism, public_template,
                                                    5, private_template, 5, &public_handle,
                                                    &private_handle) == CKR_OK);
    }

    auto public_key = (*token)->GetEd25519PublicKey("named-curve");
    REQUIRE_MESSAGE(public_key, ErrorText(public_key.error()));
    CHECK(public_key->size() == 32);
    auto key = (*token)->FindPrivateKey("named-curve");
    REQUIRE_MESSAGE(key, ErrorText(key.error()));
    const std::string message = "signed with a named-curve key\n";
    auto signature = (*token)->SignEd25519(*key, AsBytes(message));
    REQUIRE_MESSAGE(signature, ErrorText(signature.error()));
    CHECK(OpenSslVerifies(*public_key, AsBytes(message), *signature));
  }

  TEST_CASE("errors: duplicate label, unknown label, wrong key type") {
    SoftHsmFixture softhsm;
    auto token = softhsm.Open();
    REQUIRE(token);
    auto key = (*token)->GenerateEd25519KeyPair("dup");
    REQUIRE(key);
    auto duplicate = (*token)->GenerateEd25519KeyPair("dup");
    REQUIRE_FALSE(duplicate);
    CHECK(duplicate.error().code() == Code::kAlreadyExists);

    // The label check covers every private key, not only Ed25519 ones.
    REQUIRE((*token)->GenerateEcP256KeyPair("ec-key"));
    auto over_ec = (*token)->GenerateEd25519KeyPair("ec-key");
    REQUIRE_FALSE(over_ec);
    CHECK(over_ec.error().code() == Code::kAlreadyExists);

    auto empty_label = (*token)->GenerateEd25519KeyPair("");
    REQUIRE_FALSE(empty_label);
    CHECK(empty_label.error().code() == Code::kInvalidArgument);

    auto missing_public = (*token)->GetEd25519PublicKey("absent");
    REQUIRE_FALSE(missing_public);
    CHECK(missing_public.error().code() == Code::kNotFound);

    auto ec_public = (*token)->GetEd25519PublicKey("ec-key");
    REQUIRE_FALSE(ec_public);
    CHECK(ec_public.error().code() == Code::kFailedPrecondition);

    // Neither an EC P-256 key nor an AES key signs with CKM_EDDSA.
    auto ec_private = (*token)->FindPrivateKey("ec-key");
    REQUIRE(ec_private);
    CHECK_FALSE((*token)->SignEd25519(*ec_private, AsBytes("x")));
    auto aes = (*token)->GenerateAesKey("not-ed");
    REQUIRE(aes);
    CHECK_FALSE((*token)->SignEd25519(*aes, AsBytes("x")));
  }
}

}  // namespace
}  // namespace kw::hsm
