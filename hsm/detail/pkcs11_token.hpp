#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <p11-kit/pkcs11.h>

#include "hsm/detail/module.hpp"
#include "hsm/detail/session_pool.hpp"
#include "hsm/token.hpp"

namespace kw::hsm::detail {

// The Token implementation. Besides the session pool it keeps one long-lived session, the
// object session, which logs in and owns the session-object copies (CKA_TOKEN false,
// CKA_MODIFIABLE false) that FindKey, FindPrivateKey and Generate*Key return. SoftHSM 2.6 checks
// a token object's file on every use, so it runs AES-GCM about twice as fast with a session
// object. Session objects are visible to every session of the process. The copies keep
// CKA_SENSITIVE true and CKA_EXTRACTABLE false and die with the object session.
//
// SoftHSM will not copy a CKA_MODIFIABLE = false object with CKA_TOKEN changed, so the token
// objects that keyward generates are modifiable. That gives nothing away: CKA_SENSITIVE and
// CKA_EXTRACTABLE can only ever be strengthened, and a user with the PIN, which modifying a key
// needs, can already use or destroy it. Keys generated unmodifiable by earlier versions are used as token
// objects. Thread-safe. Tests include this header for direct PKCS#11 calls.
class Pkcs11Token final : public Token {
 public:
  static Result<std::unique_ptr<Pkcs11Token>> Open(const TokenConfig& config,
                                                   const SecretBuffer& pin);
  ~Pkcs11Token() override;

  Result<KeyHandle> FindKey(std::string_view label) override;
  Result<std::vector<std::string>> ListKeyLabels(std::string_view prefix) override;
  Result<KeyHandle> GenerateAesKey(std::string_view label) override;
  Result<KeyHandle> GenerateHmacKey(std::string_view label) override;
  Result<Bytes> EncryptGcm(KeyHandle key, ByteSpan plaintext, ByteSpan aad) override;
  Result<SecretBuffer> DecryptGcm(KeyHandle key, ByteSpan sealed, ByteSpan aad) override;
  Result<Bytes> HmacSha256(KeyHandle key, ByteSpan data) override;
  Result<KeyHandle> GenerateEcP256KeyPair(std::string_view label) override;
  Result<KeyHandle> FindPrivateKey(std::string_view label) override;
  Result<Bytes> GetEcPublicKeySpki(std::string_view label) override;
  Result<Bytes> SignEcdsa(KeyHandle key, ByteSpan digest) override;
  Result<KeyHandle> GenerateEd25519KeyPair(std::string_view label) override;
  Result<Bytes> GetEd25519PublicKey(std::string_view label) override;
  Result<Bytes> SignEd25519(KeyHandle key, ByteSpan message) override;
  // For a session copy, reports the token object it was copied from, so CKA_TOKEN and CKA_LOCAL
  // describe where the key lives and how it was born rather than the copy.
  Result<KeyAttributes> GetKeyAttributes(KeyHandle key) override;

  CK_FUNCTION_LIST* functions() const { return module_->functions(); }
  CK_SLOT_ID slot() const { return slot_; }

  // Checks out a pooled session for a direct PKCS#11 call.
  Result<SessionLease> CheckoutSession() { return pool_->Checkout(); }

  // Returns the token object that `key` is a session copy of, or `key` itself.
  CK_OBJECT_HANDLE TokenObjectOf(KeyHandle key);

 private:
  // Generates a non-extractable signing key pair of `key_type` with `mechanism` on the token,
  // both halves labelled `label` (token_ec.cpp). `key_type_name` names it in the log.
  Result<KeyHandle> GenerateSigningKeyPair(std::string_view label, CK_MECHANISM_TYPE mechanism,
                                           CK_KEY_TYPE key_type, ByteSpan ec_params,
                                           std::string_view key_type_name);

  Pkcs11Token(std::shared_ptr<Module> module, CK_SLOT_ID slot, CK_SESSION_HANDLE object_session,
              std::size_t max_sessions);

  // Runs `call(lease)` on a pooled session. When `retry_if_lost` and the call failed because the
  // session was lost, runs it once more on another session. Use it only for calls that change
  // nothing on the token.
  template <typename Call>
  std::invoke_result_t<Call&, SessionLease&> WithSession(bool retry_if_lost, Call&& call) {
    const int attempts = retry_if_lost ? 2 : 1;
    for (int attempt = 1;; ++attempt) {
      KW_ASSIGN_OR_RETURN(SessionLease lease, pool_->Checkout());
      auto result = call(lease);
      if (result || !lease.lost() || attempt >= attempts) return result;
    }
  }

  // Finds the token objects of class `object_class` labelled `label`.
  Result<std::vector<CK_OBJECT_HANDLE>> FindTokenObjects(SessionLease& lease,
                                                         CK_OBJECT_CLASS object_class,
                                                         std::string_view label);
  // Finds the secret-key token objects labelled `label`.
  Result<std::vector<CK_OBJECT_HANDLE>> FindTokenKeys(SessionLease& lease,
                                                      std::string_view label);
  // Returns the session copy of token object `original`, making it on first use, or
  // `original` itself when the token refuses the copy.
  Result<KeyHandle> SessionCopyOf(CK_OBJECT_HANDLE original);
  // Generates a token key from `key_template` after checking that `label` is free.
  Result<KeyHandle> GenerateKey(std::string_view label, CK_MECHANISM_TYPE mechanism,
                                std::vector<CK_ATTRIBUTE>& key_template);

  std::shared_ptr<Module> module_;
  CK_SLOT_ID slot_;
  std::unique_ptr<SessionPool> pool_;

  std::mutex object_session_mutex_;  // serialises calls on object_session_ after Open
  CK_SESSION_HANDLE object_session_;
  std::map<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE> copy_of_original_;  // guarded by the mutex above
  std::map<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE> original_of_copy_;  // guarded by the mutex above

  std::mutex generate_mutex_;  // makes the label check and C_GenerateKey one step
};

}  // namespace kw::hsm::detail
