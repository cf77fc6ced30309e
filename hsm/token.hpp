#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.hpp"
#include "base/result.hpp"
#include "base/secret_buffer.hpp"

namespace kw::hsm {

// An object handle on the token, valid while the Token that returned it stays open. Opaque
// above hsm/: it is a CK_OBJECT_HANDLE, but nothing outside hsm/ sees PKCS#11 types.
struct KeyHandle {
  std::uint64_t value = 0;
};

struct TokenConfig {
  std::string module_path;  // the PKCS#11 module, loaded with dlopen
  std::string token_label;  // the token is found by label, never by slot number
  std::size_t max_sessions = 16;
};

// Attributes that prove how a key is protected; read by tests and by `sys` diagnostics.
struct KeyAttributes {
  bool token = false;
  bool is_private = false;
  bool sensitive = false;
  bool extractable = true;
  bool always_sensitive = false;
  bool never_extractable = false;
  bool local = false;
};

// AES-GCM layout used by EncryptGcm and DecryptGcm: 96-bit IV, then ciphertext, then 128-bit tag.
inline constexpr std::size_t kGcmIvSize = 12;
inline constexpr std::size_t kGcmTagSize = 16;

// A logged-in PKCS#11 token: the module (dlopen, C_Initialize with CKF_OS_LOCKING_OK), the
// token found by label, the user login, and a pool of sessions that each call checks out for
// its duration. Every key it generates has CKA_TOKEN, CKA_PRIVATE and CKA_SENSITIVE true and
// CKA_EXTRACTABLE false. Thread-safe. Destroying it logs out, closes every session and
// finalizes the module unless another Token in the process still uses it. Every KeyHandle it
// returned is then invalid.
class Token {
 public:
  // Loads the module, finds the token labelled `config.token_label` and logs in with `pin`.
  // not_found when no token has that label; permission_denied for a wrong PIN; unavailable
  // when the module cannot be loaded or initialised.
  static Result<std::unique_ptr<Token>> Open(const TokenConfig& config, const SecretBuffer& pin);

  virtual ~Token() = default;

  // Finds the key object labelled `label`. not_found when absent. Costs a C_FindObjects: call
  // at unseal, never per request.
  virtual Result<KeyHandle> FindKey(std::string_view label) = 0;

  // Lists the labels of the key objects whose label starts with `prefix`.
  virtual Result<std::vector<std::string>> ListKeyLabels(std::string_view prefix) = 0;

  // Generates a non-extractable AES-256 token key allowed to encrypt and decrypt only.
  // already_exists when a key with `label` exists.
  virtual Result<KeyHandle> GenerateAesKey(std::string_view label) = 0;

  // Generates a non-extractable 32-byte generic secret token key allowed to sign and verify
  // with CKM_SHA256_HMAC only. already_exists when a key with `label` exists.
  virtual Result<KeyHandle> GenerateHmacKey(std::string_view label) = 0;

  // Encrypts with AES-256-GCM under `key`, a fresh random 96-bit IV and `aad`. Returns
  // IV ‖ ciphertext ‖ 128-bit tag.
  virtual Result<Bytes> EncryptGcm(KeyHandle key, ByteSpan plaintext, ByteSpan aad) = 0;

  // Decrypts IV ‖ ciphertext ‖ tag made by EncryptGcm. data_loss when the tag does not verify
  // (wrong key, wrong AAD, modified ciphertext); invalid_argument when `sealed` is too short.
  virtual Result<SecretBuffer> DecryptGcm(KeyHandle key, ByteSpan sealed, ByteSpan aad) = 0;

  // Computes HMAC-SHA256 of `data` under `key` (32 bytes).
  virtual Result<Bytes> HmacSha256(KeyHandle key, ByteSpan data) = 0;

  // Generates a non-extractable ECDSA P-256 key pair on the token, both halves labelled
  // `label`: the private key may only sign (CKA_SENSITIVE true, CKA_EXTRACTABLE false), the
  // public key only verify. Returns the private key, as a session copy where the token allows.
  // already_exists when a private key with `label` exists.
  virtual Result<KeyHandle> GenerateEcP256KeyPair(std::string_view label) = 0;

  // Finds the private key labelled `label`. not_found when absent. Call at unseal or when the
  // key set changes, never per request.
  virtual Result<KeyHandle> FindPrivateKey(std::string_view label) = 0;

  // Reads the public key of the EC key pair labelled `label` as a DER SubjectPublicKeyInfo
  // (id-ecPublicKey, prime256v1). not_found when no public key has that label.
  virtual Result<Bytes> GetEcPublicKeySpki(std::string_view label) = 0;

  // Signs a 32-byte SHA-256 digest with CKM_ECDSA under the private key `key`. Returns the raw
  // signature r ‖ s (64 bytes for P-256). invalid_argument when `digest` is not 32 bytes.
  virtual Result<Bytes> SignEcdsa(KeyHandle key, ByteSpan digest) = 0;

  // Generates a non-extractable Ed25519 key pair on the token (CKM_EC_EDWARDS_KEY_PAIR_GEN),
  // both halves labelled `label`, with the same protection as GenerateEcP256KeyPair: the
  // private key may only sign, the public key only verify. Returns the private key.
  // already_exists when a private key with `label` exists.
  virtual Result<KeyHandle> GenerateEd25519KeyPair(std::string_view label) = 0;

  // Reads the public key of the Ed25519 key pair labelled `label` as the raw 32 bytes of
  // RFC 8032. not_found when no public key has that label; failed_precondition when it is not
  // an Ed25519 key.
  virtual Result<Bytes> GetEd25519PublicKey(std::string_view label) = 0;

  // Signs `message` with pure Ed25519 (CKM_EDDSA without parameters) under the private key
  // `key`. Returns the 64-byte RFC 8032 signature.
  virtual Result<Bytes> SignEd25519(KeyHandle key, ByteSpan message) = 0;

  // Reads the protection attributes of `key`. When FindKey or Generate*Key returned a session
  // copy of a token key, they are the token key's, so `token` and `local` describe the key
  // itself rather than the copy.
  virtual Result<KeyAttributes> GetKeyAttributes(KeyHandle key) = 0;
};

// Initialises a token for development mode and tests: takes a slot whose token is not yet
// initialised (SoftHSM always offers one), names the token `label`, sets the security officer
// PIN `so_pin` and the user PIN `user_pin`. already_exists when a token labelled `label`
// exists; resource_exhausted when no slot is free; unavailable when the module cannot be
// loaded or initialised.
[[nodiscard]] Status InitializeToken(const std::string& module_path, std::string_view label,
                                     const SecretBuffer& so_pin, const SecretBuffer& user_pin);

}  // namespace kw::hsm
