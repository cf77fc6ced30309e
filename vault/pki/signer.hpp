#pragma once

#include "base/bytes.hpp"
#include "base/result.hpp"

namespace kw::vault::pki {

// An ECDSA P-256 signing key whose private half never reaches the caller. In the server it
// lives in the HSM (HsmSigner), and tests may use a software key. Everything in vault/pki/ that signs
// (certificates, CSRs, CRLs, JWT-SVIDs) goes through this interface, so a certificate or
// token is signed by exactly one call to SignDigest.
class Signer {
 public:
  virtual ~Signer() = default;

  // Signs a 32-byte SHA-256 digest. Returns the raw signature r ‖ s, 64 bytes, each half
  // big-endian and left-padded with zeros (the PKCS#11 CKM_ECDSA and JWS ES256 form).
  // invalid_argument when the digest is not 32 bytes.
  virtual Result<Bytes> SignDigest(ByteSpan sha256_digest) const = 0;

  // The public key as a DER SubjectPublicKeyInfo (id-ecPublicKey, prime256v1).
  virtual const Bytes& PublicKeySpki() const = 0;
};

}  // namespace kw::vault::pki
