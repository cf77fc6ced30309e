#include "tests/unit/hsm/pkcs11_test_util.hpp"

#include <vector>

#include "hsm/detail/ck_error.hpp"

namespace kw::hsm::testing {
namespace {

CK_BBOOL kTrue = CK_TRUE;
CK_BBOOL kFalse = CK_FALSE;
CK_OBJECT_CLASS kSecretKeyClass = CKO_SECRET_KEY;

CK_ATTRIBUTE Bool(CK_ATTRIBUTE_TYPE type, bool value) {
  return CK_ATTRIBUTE{type, value ? &kTrue : &kFalse, sizeof(CK_BBOOL)};
}

}  // namespace

detail::Pkcs11Token& AsPkcs11(Token& token) { return dynamic_cast<detail::Pkcs11Token&>(token); }

Result<CK_OBJECT_HANDLE> ImportSecretKey(detail::Pkcs11Token& token, const ImportedKey& key) {
  KW_ASSIGN_OR_RETURN(detail::SessionLease lease, token.CheckoutSession());
  CK_KEY_TYPE key_type = key.key_type;
  std::vector<CK_ATTRIBUTE> attributes = {
      {CKA_CLASS, &kSecretKeyClass, sizeof(kSecretKeyClass)},
      {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
      {CKA_VALUE, const_cast<std::uint8_t*>(key.value.data()), key.value.size()},
      {CKA_LABEL, const_cast<char*>(key.label.data()), key.label.size()},
      Bool(CKA_TOKEN, key.on_token),
      Bool(CKA_PRIVATE, true),
      Bool(CKA_SENSITIVE, !key.extractable),
      Bool(CKA_EXTRACTABLE, key.extractable),
      Bool(CKA_ENCRYPT, key.for_encryption),
      Bool(CKA_DECRYPT, key.for_encryption),
      Bool(CKA_SIGN, !key.for_encryption),
      Bool(CKA_VERIFY, !key.for_encryption),
      Bool(CKA_WRAP, key.can_wrap),
  };
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  KW_RETURN_IF_ERROR(lease.Check("C_CreateObject",
                                 token.functions()->C_CreateObject(
                                     lease.handle(), attributes.data(), attributes.size(),
                                     &handle)));
  return handle;
}

Result<CK_OBJECT_HANDLE> GenerateWrappingKey(detail::Pkcs11Token& token) {
  KW_ASSIGN_OR_RETURN(detail::SessionLease lease, token.CheckoutSession());
  CK_KEY_TYPE key_type = CKK_AES;
  CK_ULONG size = 32;
  std::vector<CK_ATTRIBUTE> attributes = {
      {CKA_CLASS, &kSecretKeyClass, sizeof(kSecretKeyClass)},
      {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
      {CKA_VALUE_LEN, &size, sizeof(size)},
      Bool(CKA_TOKEN, false),
      Bool(CKA_WRAP, true),
      Bool(CKA_UNWRAP, true),
  };
  CK_MECHANISM mechanism{CKM_AES_KEY_GEN, nullptr, 0};
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  KW_RETURN_IF_ERROR(lease.Check("C_GenerateKey",
                                 token.functions()->C_GenerateKey(
                                     lease.handle(), &mechanism, attributes.data(),
                                     attributes.size(), &handle)));
  return handle;
}

CK_RV ReadKeyValue(detail::Pkcs11Token& token, CK_OBJECT_HANDLE object) {
  auto lease = token.CheckoutSession();
  if (!lease) return CKR_GENERAL_ERROR;
  std::uint8_t value[64] = {};
  CK_ATTRIBUTE attribute{CKA_VALUE, value, sizeof(value)};
  return token.functions()->C_GetAttributeValue(lease->handle(), object, &attribute, 1);
}

CK_RV WrapKey(detail::Pkcs11Token& token, CK_OBJECT_HANDLE wrapping_key, CK_OBJECT_HANDLE key) {
  auto lease = token.CheckoutSession();
  if (!lease) return CKR_GENERAL_ERROR;
  CK_MECHANISM mechanism{CKM_AES_KEY_WRAP, nullptr, 0};
  std::uint8_t wrapped[64] = {};
  CK_ULONG wrapped_size = sizeof(wrapped);
  return token.functions()->C_WrapKey(lease->handle(), &mechanism, wrapping_key, key, wrapped,
                                      &wrapped_size);
}

}  // namespace kw::hsm::testing
