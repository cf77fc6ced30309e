// AES-GCM and HMAC-SHA256 through the token: the per-request calls of Pkcs11Token.
#include <sodium.h>

#include "hsm/detail/ck_error.hpp"
#include "hsm/detail/pkcs11_token.hpp"

namespace kw::hsm::detail {
namespace {

constexpr std::size_t kHmacSha256Size = 32;

// SoftHSM may reject a NULL data or AAD pointer even with length 0, so empty inputs point here.
CK_BYTE kEmptyInput[1] = {0};

CK_BYTE* InputPointer(ByteSpan bytes) {
  return bytes.empty() ? kEmptyInput : const_cast<CK_BYTE*>(bytes.data());
}

// p11-kit's CK_GCM_PARAMS has ulIvBits (48 bytes on LP64), the layout SoftHSM 2.6.1 requires;
// SoftHSM reads the IV length from ulIvLen.
CK_GCM_PARAMS GcmParams(const CK_BYTE* iv, ByteSpan aad) {
  CK_GCM_PARAMS params{};
  params.pIv = const_cast<CK_BYTE*>(iv);
  params.ulIvLen = kGcmIvSize;
  params.ulIvBits = kGcmIvSize * 8;
  params.pAAD = InputPointer(aad);
  params.ulAADLen = aad.size();
  params.ulTagBits = kGcmTagSize * 8;
  return params;
}

// True for failures of the module, token or session, which keep their own error code in
// DecryptGcm instead of counting as an authentication failure.
bool IsInfrastructureFailure(CK_RV rv) {
  Code code = RvCode(rv);
  return code == Code::kUnavailable || code == Code::kResourceExhausted ||
         rv == CKR_USER_NOT_LOGGED_IN;
}

Error AuthenticationFailure(std::string_view call, CK_RV rv) {
  // SoftHSM 2.6.1 reports a tag mismatch as CKR_GENERAL_ERROR, so no return value is trusted to
  // tell corruption from other failures.
  return Error(Code::kDataLoss, "decrypt failed: authentication failed (" + std::string(call) +
                                    " returned " + RvName(rv) + ")");
}

}  // namespace

Result<Bytes> Pkcs11Token::EncryptGcm(KeyHandle key, ByteSpan plaintext, ByteSpan aad) {
  if (key.value == CK_INVALID_HANDLE) return InvalidArgument("key handle is empty");
  const std::size_t ciphertext_size = plaintext.size() + kGcmTagSize;
  Bytes sealed(kGcmIvSize + ciphertext_size);

  return WithSession(true, [&](SessionLease& lease) -> Result<Bytes> {
    // A fresh IV for every attempt: a retried call must not reuse one.
    randombytes_buf(sealed.data(), kGcmIvSize);
    CK_GCM_PARAMS params = GcmParams(sealed.data(), aad);
    CK_MECHANISM mechanism{CKM_AES_GCM, &params, sizeof(params)};
    CK_FUNCTION_LIST* functions = lease.functions();

    KW_RETURN_IF_ERROR(lease.Check(
        "C_EncryptInit", functions->C_EncryptInit(lease.handle(), &mechanism, key.value)));
    CK_ULONG written = ciphertext_size;
    KW_RETURN_IF_ERROR(lease.Check(
        "C_Encrypt", functions->C_Encrypt(lease.handle(), InputPointer(plaintext),
                                          plaintext.size(), sealed.data() + kGcmIvSize,
                                          &written)));
    if (written != ciphertext_size) {
      return Internal("C_Encrypt returned " + std::to_string(written) + " bytes; expected " +
                      std::to_string(ciphertext_size));
    }
    return std::move(sealed);
  });
}

Result<SecretBuffer> Pkcs11Token::DecryptGcm(KeyHandle key, ByteSpan sealed, ByteSpan aad) {
  if (key.value == CK_INVALID_HANDLE) return InvalidArgument("key handle is empty");
  if (sealed.size() < kGcmIvSize + kGcmTagSize) {
    return InvalidArgument("sealed data is " + std::to_string(sealed.size()) +
                           " bytes; AES-GCM needs at least " +
                           std::to_string(kGcmIvSize + kGcmTagSize) + " (IV and tag)");
  }
  ByteSpan iv = sealed.first(kGcmIvSize);
  ByteSpan ciphertext = sealed.subspan(kGcmIvSize);  // ciphertext ‖ tag

  return WithSession(true, [&](SessionLease& lease) -> Result<SecretBuffer> {
    CK_GCM_PARAMS params = GcmParams(iv.data(), aad);
    CK_MECHANISM mechanism{CKM_AES_GCM, &params, sizeof(params)};
    CK_FUNCTION_LIST* functions = lease.functions();

    CK_RV rv = functions->C_DecryptInit(lease.handle(), &mechanism, key.value);
    if (rv != CKR_OK && IsInfrastructureFailure(rv)) {
      return tl::unexpected(lease.Check("C_DecryptInit", rv).error());
    }
    if (rv != CKR_OK) return tl::unexpected(AuthenticationFailure("C_DecryptInit", rv));

    // The plaintext is never longer than ciphertext ‖ tag, so one call with this buffer suffices.
    SecretBuffer plaintext(ciphertext.size());
    CK_ULONG written = plaintext.size();
    rv = functions->C_Decrypt(lease.handle(), const_cast<CK_BYTE*>(ciphertext.data()),
                              ciphertext.size(), plaintext.Reveal().data(), &written);
    if (rv != CKR_OK && (IsInfrastructureFailure(rv) || rv == CKR_BUFFER_TOO_SMALL)) {
      return tl::unexpected(lease.Check("C_Decrypt", rv).error());
    }
    if (rv != CKR_OK) return tl::unexpected(AuthenticationFailure("C_Decrypt", rv));
    if (written != ciphertext.size() - kGcmTagSize) {
      return Internal("C_Decrypt returned " + std::to_string(written) + " bytes; expected " +
                      std::to_string(ciphertext.size() - kGcmTagSize));
    }
    plaintext.Truncate(written);
    return plaintext;
  });
}

Result<Bytes> Pkcs11Token::HmacSha256(KeyHandle key, ByteSpan data) {
  if (key.value == CK_INVALID_HANDLE) return InvalidArgument("key handle is empty");
  return WithSession(true, [&](SessionLease& lease) -> Result<Bytes> {
    CK_MECHANISM mechanism{CKM_SHA256_HMAC, nullptr, 0};
    CK_FUNCTION_LIST* functions = lease.functions();
    KW_RETURN_IF_ERROR(
        lease.Check("C_SignInit", functions->C_SignInit(lease.handle(), &mechanism, key.value)));
    Bytes mac(kHmacSha256Size);
    CK_ULONG written = mac.size();
    KW_RETURN_IF_ERROR(lease.Check("C_Sign", functions->C_Sign(lease.handle(), InputPointer(data),
                                                               data.size(), mac.data(),
                                                               &written)));
    if (written != kHmacSha256Size) {
      return Internal("C_Sign returned " + std::to_string(written) + " bytes; expected 32");
    }
    return mac;
  });
}

}  // namespace kw::hsm::detail
