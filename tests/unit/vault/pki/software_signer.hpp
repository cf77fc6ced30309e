#pragma once

#include <memory>
#include <stdexcept>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "vault/pki/signer.hpp"

namespace kw::testing {

// A Signer backed by an in-memory OpenSSL P-256 key, for unit tests. SignDigest returns raw
// r ‖ s (64 bytes), as PKCS#11 CKM_ECDSA does, converted here independently of the code under
// test. The constructor throws std::runtime_error when OpenSSL fails. Not thread-safe.
class SoftwareSigner : public vault::pki::Signer {
 public:
  SoftwareSigner() : key_(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), EVP_PKEY_free) {
    if (!key_) throw std::runtime_error("EVP_PKEY_Q_keygen failed");
    unsigned char* spki = nullptr;
    const int length = i2d_PUBKEY(key_.get(), &spki);
    if (length <= 0) throw std::runtime_error("i2d_PUBKEY failed");
    spki_.assign(spki, spki + length);
    OPENSSL_free(spki);
  }

  Result<Bytes> SignDigest(ByteSpan sha256_digest) const override {
    if (sha256_digest.size() != 32) return InvalidArgument("digest must be 32 bytes");
    std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> context(
        EVP_PKEY_CTX_new(key_.get(), nullptr), EVP_PKEY_CTX_free);
    Bytes der(128);
    std::size_t der_length = der.size();
    if (!context || EVP_PKEY_sign_init(context.get()) != 1 ||
        EVP_PKEY_sign(context.get(), der.data(), &der_length, sha256_digest.data(),
                      sha256_digest.size()) != 1) {
      return Internal("EVP_PKEY_sign failed");
    }
    const unsigned char* cursor = der.data();
    std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> signature(
        d2i_ECDSA_SIG(nullptr, &cursor, static_cast<long>(der_length)), ECDSA_SIG_free);
    if (!signature) return Internal("d2i_ECDSA_SIG failed");
    Bytes raw(64);
    if (BN_bn2binpad(ECDSA_SIG_get0_r(signature.get()), raw.data(), 32) != 32 ||
        BN_bn2binpad(ECDSA_SIG_get0_s(signature.get()), raw.data() + 32, 32) != 32) {
      return Internal("BN_bn2binpad failed");
    }
    return raw;
  }

  const Bytes& PublicKeySpki() const override { return spki_; }

  // The key itself, for tests that sign or export with OpenSSL directly.
  EVP_PKEY* key() const { return key_.get(); }

 private:
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key_;
  Bytes spki_;
};

}  // namespace kw::testing
