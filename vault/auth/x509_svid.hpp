#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/x509.h>

#include "base/result.hpp"
#include "vault/auth/spiffe_id.hpp"

namespace kw::vault::auth {

struct X509Deleter {
  void operator()(X509* certificate) const { X509_free(certificate); }
};
// One owned OpenSSL certificate.
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

// Parses one DER certificate. invalid_argument when it is not exactly one certificate.
Result<X509Ptr> ParseDerCertificate(std::string_view der);

// Parses every certificate of a PEM bundle, in order. invalid_argument when the text holds
// no certificate, or a certificate block that does not parse.
Result<std::vector<X509Ptr>> ParsePemCertificates(std::string_view pem);

// Returns the DER encoding of `certificate`.
std::string CertificateDer(X509* certificate);

// Returns the URI subjectAltName entries of `certificate`, in order.
std::vector<std::string> UriSans(X509* certificate);

// Returns the subject's first commonName, or an empty string when it has none.
std::string CommonName(X509* certificate);

// Checks the X.509-SVID rules of a leaf (workload) certificate and returns its SPIFFE ID.
// The rules: exactly one URI SAN, holding a valid SPIFFE ID with a non-root path.
// basicConstraints cA false. A critical keyUsage extension with digitalSignature and without
// keyCertSign or cRLSign. An extKeyUsage, when present, with both serverAuth and clientAuth.
// A critical SAN extension when the subject is empty. invalid_argument names the rule broken.
// Signatures and validity dates are not checked here, because path validation does that.
Result<SpiffeId> CheckX509SvidLeaf(X509* leaf);

// Checks the rules of an X.509-SVID signing (CA) certificate: basicConstraints cA true,
// keyUsage with keyCertSign, and a SPIFFE ID without a path when it carries one.
// invalid_argument names the rule broken.
Status CheckX509SvidSigningCertificate(X509* certificate);

// Checks a presented X.509-SVID chain, leaf first: the leaf rules on chain[0] and the signing
// certificate rules on every certificate after it. Returns the leaf's SPIFFE ID.
// invalid_argument names the rule broken and, past the leaf, the certificate's position.
Result<SpiffeId> CheckX509Svid(std::span<X509* const> chain);

}  // namespace kw::vault::auth
