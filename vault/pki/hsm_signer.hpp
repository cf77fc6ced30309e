#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "base/bytes.hpp"
#include "base/result.hpp"
#include "hsm/token.hpp"
#include "vault/pki/signer.hpp"

namespace kw::vault::pki {

// A Signer whose private key is an ECDSA P-256 key pair on the HSM token, found by label.
// Each SignDigest is one CKM_ECDSA call on the token. Thread-safe; the token must outlive it.
class HsmSigner final : public Signer {
 public:
  // Generates a new non-extractable key pair labelled `label` on `token`.
  static Result<std::unique_ptr<HsmSigner>> Generate(hsm::Token& token, std::string label);
  // Finds the existing key pair labelled `label`.
  static Result<std::unique_ptr<HsmSigner>> Load(hsm::Token& token, std::string label);

  Result<Bytes> SignDigest(ByteSpan sha256_digest) const override;
  const Bytes& PublicKeySpki() const override { return spki_; }

  const std::string& label() const { return label_; }
  hsm::KeyHandle key() const { return key_; }

 private:
  HsmSigner(hsm::Token& token, std::string label, hsm::KeyHandle key, Bytes spki)
      : token_(token), label_(std::move(label)), key_(key), spki_(std::move(spki)) {}

  hsm::Token& token_;
  std::string label_;
  hsm::KeyHandle key_;
  Bytes spki_;
};

}  // namespace kw::vault::pki
