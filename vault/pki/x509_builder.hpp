#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/bytes.hpp"
#include "base/result.hpp"
#include "base/secret_buffer.hpp"
#include "vault/pki/signer.hpp"
#include "vault/pki/x509_parse.hpp"

// Building the SPIFFE CA's certificates, CSRs and CRLs. Every builder signs through one
// Signer::SignDigest call, parses its own output back and verifies the signature with the
// signer's public key before returning, so no unverified DER leaves this module.
namespace kw::vault::pki {

// Converts a raw ECDSA signature r ‖ s (two equal big-endian halves) into a DER
// ECDSA-Sig-Value SEQUENCE { r INTEGER, s INTEGER } with minimal integers.
// invalid_argument when the size is odd, zero or over 132 bytes, or r or s is zero.
Result<Bytes> EcdsaRawToDer(ByteSpan raw);

// Converts a DER ECDSA-Sig-Value into raw r ‖ s, each half left-padded to `half_size` bytes
// (32 for P-256). invalid_argument when the DER is not strict or a value exceeds `half_size`.
Result<Bytes> EcdsaDerToRaw(ByteSpan der, std::size_t half_size);

// A CA certificate or CA CSR for the trust domain. Subject "O=keyward, CN=<common_name>".
struct CaCertSpec {
  std::string trust_domain;  // URI SAN "spiffe://<trust_domain>"; must be a valid trust domain
  std::string common_name;   // 1 to 64 characters
  std::int64_t not_before = 0;  // Unix seconds; unused by BuildCaCsr
  std::int64_t not_after = 0;
};

// Builds a self-signed v3 root CA certificate (DER) for `signer`'s key: random positive
// 16-octet serial, basicConstraints critical cA TRUE, keyUsage critical keyCertSign | cRLSign,
// SKI (SHA-1 of the public key bits), AKI equal to the SKI, URI SAN "spiffe://<trust_domain>".
// invalid_argument for a bad spec; internal when signing or the final verification fails.
Result<Bytes> BuildSelfSignedCa(const CaCertSpec& spec, const Signer& signer);

// Builds a PKCS#10 CSR (DER) for an intermediate CA with the same subject and an
// extensionRequest for basicConstraints cA TRUE, keyUsage keyCertSign | cRLSign and the URI SAN.
Result<Bytes> BuildCaCsr(const CaCertSpec& spec, const Signer& signer);

// A workload (leaf) X.509-SVID to issue.
struct LeafSpec {
  std::string spiffe_id;  // a valid SPIFFE ID with a non-root path
  Bytes subject_spki;     // DER SubjectPublicKeyInfo: EC P-256/P-384 or RSA 2048/3072/4096
  bool key_encipherment = false;  // set for RSA keys
  std::int64_t not_before = 0;    // Unix seconds
  std::int64_t not_after = 0;     // at most the issuer's notAfter
};

struct IssuedCertificate {
  Bytes der;
  std::string serial;  // colon-separated lower-case hex, as Vault prints serial numbers
};

// Builds a v3 X.509-SVID signed by the CA `issuer_der`, whose private key `signer` uses.
// The issuer name is copied from the issuer and the serial is a random positive 16 octets.
// Subject "O=keyward", a non-critical SAN with exactly the one URI, basicConstraints critical
// cA FALSE, keyUsage critical digitalSignature (+ keyEncipherment), EKU serverAuth and
// clientAuth, SKI of the subject key, AKI equal to the issuer's SKI.
// failed_precondition when the issuer's public key is not the signer's or the issuer is not a
// CA. invalid_argument for a bad spec, including a not_after past the issuer's notAfter.
Result<IssuedCertificate> BuildLeaf(const LeafSpec& spec, ByteSpan issuer_der,
                                    const Signer& signer);

struct RevokedEntry {
  std::string serial;  // colon-separated hex, as in IssuedCertificate
  std::int64_t revoked_at = 0;  // Unix seconds
};

// Builds a v2 CRL (DER) of `issuer_der`, whose private key `signer` uses, listing `revoked` with a
// CRL number and an AKI extension. failed_precondition when the issuer's key is not the
// signer's; invalid_argument for a malformed serial or next_update <= this_update.
Result<Bytes> BuildCrl(ByteSpan issuer_der, const std::vector<RevokedEntry>& revoked,
                       std::int64_t this_update, std::int64_t next_update,
                       std::uint64_t crl_number, const Signer& signer);

// A freshly generated software workload key.
struct WorkloadKey {
  SecretBuffer private_key_pem;  // unencrypted PKCS#8 PEM ("BEGIN PRIVATE KEY")
  Bytes spki;                    // DER SubjectPublicKeyInfo
};

// Generates a workload key of `type` with OpenSSL's default random generator. Intermediate
// copies of the private key are wiped.
Result<WorkloadKey> GenerateWorkloadKey(KeyType type);

}  // namespace kw::vault::pki
