// ECDSA P-256 key pairs on the token: generation, lookup, public key export and CKM_ECDSA
// signing. The private key never leaves the token; only its signatures and public half do.
#include <algorithm>
#include <array>

#include "base/log.hpp"
#include "hsm/detail/ck_error.hpp"
#include "hsm/detail/pkcs11_token.hpp"

namespace kw::hsm::detail {
namespace {

constexpr CK_BBOOL kTrue = CK_TRUE;
constexpr CK_BBOOL kFalse = CK_FALSE;
constexpr CK_OBJECT_CLASS kPrivateKeyClass = CKO_PRIVATE_KEY;
constexpr CK_OBJECT_CLASS kPublicKeyClass = CKO_PUBLIC_KEY;
constexpr CK_KEY_TYPE kEcKeyType = CKK_EC;

// CKA_EC_PARAMS for P-256: the DER OID 1.2.840.10045.3.1.7 (prime256v1).
constexpr std::array<CK_BYTE, 10> kP256Params = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                                 0xce, 0x3d, 0x03, 0x01, 0x07};
// The DER SubjectPublicKeyInfo of a P-256 key up to the uncompressed point: SEQUENCE {
// SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) }.
constexpr std::array<CK_BYTE, 26> kP256SpkiPrefix = {
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
constexpr std::size_t kP256PointSize = 65;  // 0x04 ‖ X ‖ Y
constexpr std::size_t kP256SignatureSize = 64;
constexpr std::size_t kSha256Size = 32;

CK_ATTRIBUTE Attribute(CK_ATTRIBUTE_TYPE type, const void* value, std::size_t size) {
  return CK_ATTRIBUTE{type, const_cast<void*>(value), static_cast<CK_ULONG>(size)};
}

CK_ATTRIBUTE BoolAttribute(CK_ATTRIBUTE_TYPE type, bool value) {
  return Attribute(type, value ? &kTrue : &kFalse, sizeof(CK_BBOOL));
}

// Returns the uncompressed point inside CKA_EC_POINT. PKCS#11 wraps it in a DER OCTET
// STRING (04 41 04‖X‖Y); some modules return the bare point, which is accepted too.
Result<Bytes> UncompressedPoint(const Bytes& ec_point) {
  if (ec_point.size() == kP256PointSize + 2 && ec_point[0] == 0x04 &&
      ec_point[1] == kP256PointSize && ec_point[2] == 0x04) {
    return Bytes(ec_point.begin() + 2, ec_point.end());
  }
  if (ec_point.size() == kP256PointSize && ec_point[0] == 0x04) return ec_point;
  return DataLoss("CKA_EC_POINT is " + std::to_string(ec_point.size()) +
                  " bytes and not an uncompressed P-256 point");
}

}  // namespace

Result<KeyHandle> Pkcs11Token::GenerateSigningKeyPair(std::string_view label,
                                                      CK_MECHANISM_TYPE mechanism,
                                                      CK_KEY_TYPE key_type, ByteSpan ec_params,
                                                      std::string_view key_type_name) {
  if (label.empty()) return InvalidArgument("key label is empty");
  std::lock_guard<std::mutex> lock(generate_mutex_);
  KW_ASSIGN_OR_RETURN(std::vector<CK_OBJECT_HANDLE> existing,
                      WithSession(true, [&](SessionLease& lease) {
                        return FindTokenObjects(lease, kPrivateKeyClass, label);
                      }));
  if (!existing.empty()) {
    return AlreadyExists("a private key labelled \"" + std::string(label) + "\" already exists");
  }

  // Every attribute is set, because defaults differ between tokens.
  std::vector<CK_ATTRIBUTE> public_template = {
      Attribute(CKA_CLASS, &kPublicKeyClass, sizeof(kPublicKeyClass)),
      Attribute(CKA_KEY_TYPE, &key_type, sizeof(key_type)),
      Attribute(CKA_EC_PARAMS, ec_params.data(), ec_params.size()),
      BoolAttribute(CKA_TOKEN, true),
      BoolAttribute(CKA_PRIVATE, false),
      BoolAttribute(CKA_MODIFIABLE, false),
      BoolAttribute(CKA_VERIFY, true),
      BoolAttribute(CKA_ENCRYPT, false),
      BoolAttribute(CKA_WRAP, false),
      BoolAttribute(CKA_DERIVE, false),
      Attribute(CKA_LABEL, label.data(), label.size()),
      Attribute(CKA_ID, label.data(), label.size()),
  };
  std::vector<CK_ATTRIBUTE> private_template = {
      Attribute(CKA_CLASS, &kPrivateKeyClass, sizeof(kPrivateKeyClass)),
      Attribute(CKA_KEY_TYPE, &key_type, sizeof(key_type)),
      BoolAttribute(CKA_TOKEN, true),
      BoolAttribute(CKA_PRIVATE, true),
      BoolAttribute(CKA_SENSITIVE, true),
      BoolAttribute(CKA_EXTRACTABLE, false),
      // Modifiable so that SoftHSM copies it into a session object (see SessionCopyOf).
      BoolAttribute(CKA_MODIFIABLE, true),
      BoolAttribute(CKA_SIGN, true),
      BoolAttribute(CKA_DECRYPT, false),
      BoolAttribute(CKA_UNWRAP, false),
      BoolAttribute(CKA_DERIVE, false),
      Attribute(CKA_LABEL, label.data(), label.size()),
      Attribute(CKA_ID, label.data(), label.size()),
  };

  // Not retried: a lost session leaves unknown whether the pair was made.
  KW_ASSIGN_OR_RETURN(
      CK_OBJECT_HANDLE private_key,
      WithSession(false, [&](SessionLease& lease) -> Result<CK_OBJECT_HANDLE> {
        CK_MECHANISM generate{mechanism, nullptr, 0};
        CK_OBJECT_HANDLE public_handle = CK_INVALID_HANDLE;
        CK_OBJECT_HANDLE private_handle = CK_INVALID_HANDLE;
        KW_RETURN_IF_ERROR(lease.Check(
            "C_GenerateKeyPair",
            lease.functions()->C_GenerateKeyPair(
                lease.handle(), &generate, public_template.data(), public_template.size(),
                private_template.data(), private_template.size(), &public_handle,
                &private_handle)));
        return private_handle;
      }));
  log::Info("HSM key pair generated", {{"key_label", std::string(label)}, {"key_type", std::string(key_type_name)}});
  return SessionCopyOf(private_key);
}

Result<KeyHandle> Pkcs11Token::GenerateEcP256KeyPair(std::string_view label) {
  return GenerateSigningKeyPair(label, CKM_EC_KEY_PAIR_GEN, kEcKeyType,
                                ByteSpan(kP256Params.data(), kP256Params.size()), "ec-p256");
}

Result<KeyHandle> Pkcs11Token::FindPrivateKey(std::string_view label) {
  if (label.empty()) return InvalidArgument("key label is empty");
  KW_ASSIGN_OR_RETURN(std::vector<CK_OBJECT_HANDLE> found,
                      WithSession(true, [&](SessionLease& lease) {
                        return FindTokenObjects(lease, kPrivateKeyClass, label);
                      }));
  if (found.empty()) {
    return NotFound("no private key is labelled \"" + std::string(label) + "\" on the token");
  }
  if (found.size() > 1) {
    return FailedPrecondition(std::to_string(found.size()) + " private keys are labelled \"" +
                              std::string(label) + "\" on the token; delete the extra ones");
  }
  return SessionCopyOf(found.front());
}

Result<Bytes> Pkcs11Token::GetEcPublicKeySpki(std::string_view label) {
  if (label.empty()) return InvalidArgument("key label is empty");
  return WithSession(true, [&](SessionLease& lease) -> Result<Bytes> {
    KW_ASSIGN_OR_RETURN(std::vector<CK_OBJECT_HANDLE> found,
                        FindTokenObjects(lease, kPublicKeyClass, label));
    if (found.empty()) {
      return NotFound("no public key is labelled \"" + std::string(label) + "\" on the token");
    }
    if (found.size() > 1) {
      return FailedPrecondition(std::to_string(found.size()) + " public keys are labelled \"" +
                                std::string(label) + "\" on the token; delete the extra ones");
    }
    CK_FUNCTION_LIST* functions = lease.functions();
    Bytes params(32);
    Bytes point(kP256PointSize + 8);
    CK_ATTRIBUTE read[2] = {Attribute(CKA_EC_PARAMS, params.data(), params.size()),
                            Attribute(CKA_EC_POINT, point.data(), point.size())};
    KW_RETURN_IF_ERROR(lease.Check(
        "C_GetAttributeValue",
        functions->C_GetAttributeValue(lease.handle(), found.front(), read, 2)));
    params.resize(read[0].ulValueLen);
    point.resize(read[1].ulValueLen);
    if (!std::equal(params.begin(), params.end(), kP256Params.begin(), kP256Params.end())) {
      return FailedPrecondition("the key pair labelled \"" + std::string(label) +
                                "\" is not on curve P-256");
    }
    KW_ASSIGN_OR_RETURN(Bytes uncompressed, UncompressedPoint(point));
    Bytes spki(kP256SpkiPrefix.begin(), kP256SpkiPrefix.end());
    spki.insert(spki.end(), uncompressed.begin(), uncompressed.end());
    return spki;
  });
}

Result<Bytes> Pkcs11Token::SignEcdsa(KeyHandle key, ByteSpan digest) {
  if (key.value == CK_INVALID_HANDLE) return InvalidArgument("key handle is empty");
  if (digest.size() != kSha256Size) {
    return InvalidArgument("the digest is " + std::to_string(digest.size()) +
                           " bytes; ECDSA signing takes a 32-byte SHA-256 digest");
  }
  return WithSession(true, [&](SessionLease& lease) -> Result<Bytes> {
    CK_MECHANISM mechanism{CKM_ECDSA, nullptr, 0};
    CK_FUNCTION_LIST* functions = lease.functions();
    KW_RETURN_IF_ERROR(
        lease.Check("C_SignInit", functions->C_SignInit(lease.handle(), &mechanism, key.value)));
    Bytes signature(kP256SignatureSize);
    CK_ULONG written = signature.size();
    KW_RETURN_IF_ERROR(lease.Check(
        "C_Sign", functions->C_Sign(lease.handle(), const_cast<CK_BYTE*>(digest.data()),
                                    digest.size(), signature.data(), &written)));
    if (written != kP256SignatureSize) {
      return Internal("C_Sign returned " + std::to_string(written) +
                      " bytes; a P-256 ECDSA signature is 64");
    }
    return signature;
  });
}

}  // namespace kw::hsm::detail
