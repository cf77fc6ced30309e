// Ed25519 key pairs on the token: generation, lookup of the public key and CKM_EDDSA signing.
// The private key never leaves the token; only its signatures and public half do.
#include <algorithm>
#include <array>

#include "base/log.hpp"
#include "hsm/detail/ck_error.hpp"
#include "hsm/detail/pkcs11_token.hpp"

namespace kw::hsm::detail {
namespace {

constexpr CK_OBJECT_CLASS kPublicKeyClass = CKO_PUBLIC_KEY;
constexpr CK_KEY_TYPE kEdwardsKeyType = CKK_EC_EDWARDS;

// The two CKA_EC_PARAMS encodings of edwards25519: the DER OID 1.3.101.112 (id-Ed25519,
// RFC 8410) and the DER PrintableString "edwards25519". SoftHSM 2.6.1 generates keys with
// either, so keyward generates with the OID and reads both.
constexpr std::array<CK_BYTE, 5> kEd25519OidParams = {0x06, 0x03, 0x2b, 0x65, 0x70};
constexpr std::array<CK_BYTE, 14> kEd25519NameParams = {
    0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd', 's', '2', '5', '5', '1', '9'};

constexpr std::size_t kEd25519PublicKeySize = 32;
constexpr std::size_t kEd25519SignatureSize = 64;

CK_ATTRIBUTE Attribute(CK_ATTRIBUTE_TYPE type, const void* value, std::size_t size) {
  return CK_ATTRIBUTE{type, const_cast<void*>(value), static_cast<CK_ULONG>(size)};
}

bool IsEd25519Params(const Bytes& params) {
  return std::equal(params.begin(), params.end(), kEd25519OidParams.begin(),
                    kEd25519OidParams.end()) ||
         std::equal(params.begin(), params.end(), kEd25519NameParams.begin(),
                    kEd25519NameParams.end());
}

// Returns the 32-byte key inside CKA_EC_POINT. PKCS#11 wraps it in a DER OCTET STRING
// (04 20 ‖ key); some modules return the bare key, which is accepted too.
Result<Bytes> RawEd25519Key(const Bytes& ec_point) {
  if (ec_point.size() == kEd25519PublicKeySize + 2 && ec_point[0] == 0x04 &&
      ec_point[1] == kEd25519PublicKeySize) {
    return Bytes(ec_point.begin() + 2, ec_point.end());
  }
  if (ec_point.size() == kEd25519PublicKeySize) return ec_point;
  return DataLoss("CKA_EC_POINT is " + std::to_string(ec_point.size()) +
                  " bytes and not an Ed25519 public key");
}

}  // namespace

Result<KeyHandle> Pkcs11Token::GenerateEd25519KeyPair(std::string_view label) {
  return GenerateSigningKeyPair(label, CKM_EC_EDWARDS_KEY_PAIR_GEN, kEdwardsKeyType,
                                ByteSpan(kEd25519OidParams.data(), kEd25519OidParams.size()),
                                "ed25519");
}

Result<Bytes> Pkcs11Token::GetEd25519PublicKey(std::string_view label) {
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
    CK_KEY_TYPE key_type = CKK_VENDOR_DEFINED;
    CK_ATTRIBUTE read_type = Attribute(CKA_KEY_TYPE, &key_type, sizeof(key_type));
    KW_RETURN_IF_ERROR(lease.Check(
        "C_GetAttributeValue",
        functions->C_GetAttributeValue(lease.handle(), found.front(), &read_type, 1)));
    if (key_type != CKK_EC_EDWARDS) {
      return FailedPrecondition("the public key labelled \"" + std::string(label) +
                                "\" is not an Ed25519 key");
    }

    // Large enough for Ed448 too, so that its parameters are rejected below by value.
    Bytes params(64);
    Bytes point(128);
    CK_ATTRIBUTE read[2] = {Attribute(CKA_EC_PARAMS, params.data(), params.size()),
                            Attribute(CKA_EC_POINT, point.data(), point.size())};
    KW_RETURN_IF_ERROR(lease.Check(
        "C_GetAttributeValue",
        functions->C_GetAttributeValue(lease.handle(), found.front(), read, 2)));
    params.resize(read[0].ulValueLen);
    point.resize(read[1].ulValueLen);
    if (!IsEd25519Params(params)) {
      return FailedPrecondition("the key pair labelled \"" + std::string(label) +
                                "\" is an Edwards key but not on curve edwards25519");
    }
    return RawEd25519Key(point);
  });
}

Result<Bytes> Pkcs11Token::SignEd25519(KeyHandle key, ByteSpan message) {
  if (key.value == CK_INVALID_HANDLE) return InvalidArgument("key handle is empty");
  return WithSession(true, [&](SessionLease& lease) -> Result<Bytes> {
    // Without a parameter, CKM_EDDSA is pure Ed25519 of RFC 8032 (no prehash, no context).
    CK_MECHANISM mechanism{CKM_EDDSA, nullptr, 0};
    CK_FUNCTION_LIST* functions = lease.functions();
    KW_RETURN_IF_ERROR(
        lease.Check("C_SignInit", functions->C_SignInit(lease.handle(), &mechanism, key.value)));
    // An empty span may have a null data pointer, which SoftHSM 2.6.1 rejects with
    // CKR_ARGUMENTS_BAD, so an empty message points at a placeholder byte instead.
    CK_BYTE placeholder = 0;
    CK_BYTE* data = message.empty() ? &placeholder : const_cast<CK_BYTE*>(message.data());
    Bytes signature(kEd25519SignatureSize);
    CK_ULONG written = signature.size();
    KW_RETURN_IF_ERROR(lease.Check("C_Sign", functions->C_Sign(lease.handle(), data, message.size(),
                                                               signature.data(), &written)));
    if (written != kEd25519SignatureSize) {
      return Internal("C_Sign returned " + std::to_string(written) +
                      " bytes; an Ed25519 signature is 64");
    }
    return signature;
  });
}

}  // namespace kw::hsm::detail
