#pragma once

#include <string_view>

#include <p11-kit/pkcs11.h>

#include "base/bytes.hpp"
#include "base/result.hpp"
#include "hsm/detail/pkcs11_token.hpp"
#include "hsm/token.hpp"

// Direct PKCS#11 calls for hsm/ tests, made through the module and sessions of an open Token.
namespace kw::hsm::testing {

// Returns the Pkcs11Token behind `token`; every Token::Open result is one.
detail::Pkcs11Token& AsPkcs11(Token& token);

// Options for ImportSecretKey. Imported keys are never used by keyward itself: they exist for
// known-answer tests, which need a key of known value.
struct ImportedKey {
  CK_KEY_TYPE key_type = CKK_AES;
  ByteSpan value;
  std::string_view label;
  bool for_encryption = true;  // ENCRYPT/DECRYPT, else SIGN/VERIFY
  bool extractable = true;
  bool on_token = true;
  bool can_wrap = false;
};

// Creates a secret key object with C_CreateObject and returns its handle.
Result<CK_OBJECT_HANDLE> ImportSecretKey(detail::Pkcs11Token& token, const ImportedKey& key);

// Generates an AES-256 session key with CKA_WRAP true, for wrapping tests.
Result<CK_OBJECT_HANDLE> GenerateWrappingKey(detail::Pkcs11Token& token);

// Calls C_GetAttributeValue for CKA_VALUE of `object` and returns its return value.
CK_RV ReadKeyValue(detail::Pkcs11Token& token, CK_OBJECT_HANDLE object);

// Calls C_WrapKey (CKM_AES_KEY_WRAP) of `key` under `wrapping_key`; returns its return value.
CK_RV WrapKey(detail::Pkcs11Token& token, CK_OBJECT_HANDLE wrapping_key, CK_OBJECT_HANDLE key);

}  // namespace kw::hsm::testing
