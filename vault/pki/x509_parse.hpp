#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "base/bytes.hpp"
#include "base/result.hpp"

// Reading X.509 certificates, PKCS#10 CSRs and PEM text, and the workload key types the PKI
// accepts. The builders live in x509_builder.hpp, which includes this header.
namespace kw::vault::pki {

// PEM armour around `der`: "-----BEGIN <label>-----", base64 in 64-column lines, END line.
// Labels used here: "CERTIFICATE", "CERTIFICATE REQUEST", "X509 CRL".
std::string DerToPem(ByteSpan der, std::string_view label);

// Decodes every PEM block labelled exactly `label`, in order; blocks with other labels are
// skipped. invalid_argument when there is no such block, or when a block is malformed or
// carries encryption headers.
Result<std::vector<Bytes>> PemToDerList(std::string_view pem, std::string_view label);

// Workload key algorithms that roles may choose and CSRs may carry.
enum class KeyType { kEcP256, kEcP384, kRsa2048, kRsa3072, kRsa4096 };

// Maps a role's key_type ("ec" | "rsa") and key_bits to a KeyType. key_bits 0 picks the
// default: 256 for "ec", 2048 for "rsa". invalid_argument names the field and the allowed values.
Result<KeyType> ParseKeyType(std::string_view type, int bits);
// "ec" or "rsa", as Vault reports private_key_type.
std::string_view KeyTypeName(KeyType type);
// Curve size for EC keys (256, 384), modulus size for RSA keys.
int KeyBits(KeyType type);
bool IsRsa(KeyType type);

// The fields of a parsed certificate that the PKI checks and reports.
struct CertificateInfo {
  Bytes der;
  std::string serial;  // colon-separated lower-case hex of the serial's octets, "3a:0f:..."
  std::int64_t not_before = 0;  // Unix seconds
  std::int64_t not_after = 0;
  bool is_ca = false;  // basicConstraints cA
  // keyUsage bits; all false when the certificate has no keyUsage extension.
  bool key_cert_sign = false;
  bool crl_sign = false;
  bool digital_signature = false;
  bool key_encipherment = false;
  std::vector<std::string> uri_sans;  // URI subjectAltName entries, in order
  Bytes spki;                         // DER SubjectPublicKeyInfo
  Bytes subject_key_id;               // empty when the extension is absent
  Bytes authority_key_id;             // keyIdentifier of the AKI; empty when absent
  std::string subject;                // "O=keyward, CN=name" (one-line form)
  std::string issuer;
  // Issuer name equals subject name and the signature verifies with the certificate's own key.
  bool self_signed = false;
};

// Parses one DER certificate (no trailing bytes). invalid_argument when it does not parse or
// carries invalid or duplicate extensions.
Result<CertificateInfo> ParseCertificateDer(ByteSpan der);

// Checks that `child_der` names `issuer_der`'s subject as its issuer and that its signature
// verifies with the issuer's public key. The invalid_argument message names the failed check.
Status VerifySignedBy(ByteSpan child_der, ByteSpan issuer_der);

// Largest CSR PEM that ParseCsrPem reads.
inline constexpr std::size_t kMaxCsrPemBytes = 64 * 1024;

// The parts of a PKCS#10 CSR that signing uses. The CSR's names and extensions are ignored.
struct CsrInfo {
  Bytes spki;  // DER SubjectPublicKeyInfo
  KeyType key_type;
};

// Parses a PEM CSR ("CERTIFICATE REQUEST" or "NEW CERTIFICATE REQUEST"), checks that its key is
// EC P-256/P-384 or RSA 2048/3072/4096 and that its self-signature verifies (proof of
// possession of the private key). invalid_argument for text over kMaxCsrPemBytes, a CSR that
// does not parse, an unsupported key, or "csr signature does not verify".
Result<CsrInfo> ParseCsrPem(std::string_view pem);

namespace detail {

// Owners of OpenSSL objects, shared by the parser and the builders.
struct X509Deleter {
  void operator()(X509* certificate) const { X509_free(certificate); }
};
struct EvpPkeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyDeleter>;

// Parses exactly one DER certificate. invalid_argument otherwise.
Result<X509Ptr> ParseX509(ByteSpan der);
// Parses exactly one DER SubjectPublicKeyInfo. invalid_argument otherwise.
Result<EvpPkeyPtr> ParseSpki(ByteSpan spki);
// The DER SubjectPublicKeyInfo of `certificate`.
Bytes CertificateSpki(const X509* certificate);
// Maps a public key to the KeyType it is. invalid_argument names an unsupported key.
Result<KeyType> PublicKeyType(EVP_PKEY* key);
// RFC 5280 path validation, as openssl verify -x509_strict does it: `leaf` through
// `intermediates` to `root`, the only trust anchor, at time `at` (Unix seconds), with name
// constraints, key usages, the TLS client and server purposes and security level 1 checked.
// invalid_argument names what fails.
Status VerifyChain(ByteSpan leaf, const std::vector<Bytes>& intermediates, ByteSpan root,
                   std::int64_t at);
// Colon-separated lower-case hex of an INTEGER's magnitude; "-" in front when negative.
std::string FormatSerial(const ASN1_INTEGER* serial);

}  // namespace detail
}  // namespace kw::vault::pki
