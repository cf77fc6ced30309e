#pragma once

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

// Test-only certificate issuing with OpenSSL's C API: CAs, intermediates and leaves with
// chosen extensions, so tests can build every valid and broken case they need. Header-only,
// depending on OpenSSL alone, so both the unit and the end-to-end suites can include it.
// Throws std::runtime_error when OpenSSL fails.
namespace kw::testing {

struct PkeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct CertDeleter {
  void operator()(X509* certificate) const { X509_free(certificate); }
};

// What to put into a certificate. Extension values use OpenSSL's configuration syntax
// ("critical,digitalSignature", "URI:spiffe://td/x"); an empty string leaves it out.
struct CertSpec {
  std::string common_name;
  std::string subject_alt_name;  // such as "URI:spiffe://example.org/web"
  std::string basic_constraints = "critical,CA:FALSE";
  std::string key_usage = "critical,digitalSignature";
  std::string extended_key_usage = "serverAuth,clientAuth";
  std::time_t not_before = 0;  // Unix seconds
  std::time_t not_after = 0;
};

// A certificate with its private key.
struct TestCert {
  std::shared_ptr<EVP_PKEY> key;
  std::shared_ptr<X509> cert;

  std::string Pem() const {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    PEM_write_bio_X509(bio.get(), cert.get());
    return ReadBio(bio.get());
  }
  std::string KeyPem() const {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr);
    return ReadBio(bio.get());
  }
  std::string Der() const {
    unsigned char* bytes = nullptr;
    const int length = i2d_X509(cert.get(), &bytes);
    std::string der(reinterpret_cast<const char*>(bytes), static_cast<std::size_t>(length));
    OPENSSL_free(bytes);
    return der;
  }

 private:
  static std::string ReadBio(BIO* bio) {
    char* data = nullptr;
    const long length = BIO_get_mem_data(bio, &data);
    return std::string(data, static_cast<std::size_t>(length));
  }
};

inline void AddExtension(X509* certificate, X509* issuer, int nid, const std::string& value) {
  if (value.empty()) return;
  X509V3_CTX context;
  X509V3_set_ctx(&context, issuer, certificate, nullptr, nullptr, 0);
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &context, nid, value.c_str());
  if (extension == nullptr) throw std::runtime_error("bad extension value: " + value);
  X509_add_ext(certificate, extension, -1);
  X509_EXTENSION_free(extension);
}

// Issues a certificate for `spec` with a new P-256 key, signed by `issuer` (self-signed when
// null).
inline TestCert IssueCert(const CertSpec& spec, const TestCert* issuer = nullptr) {
  TestCert out;
  out.key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), PkeyDeleter());
  out.cert.reset(X509_new(), CertDeleter());
  if (!out.key || !out.cert) throw std::runtime_error("OpenSSL allocation failed");
  X509* certificate = out.cert.get();
  X509_set_version(certificate, 2);
  static long serial = 1000;
  ASN1_INTEGER_set(X509_get_serialNumber(certificate), ++serial);
  ASN1_TIME_set(X509_getm_notBefore(certificate), spec.not_before);
  ASN1_TIME_set(X509_getm_notAfter(certificate), spec.not_after);
  X509_set_pubkey(certificate, out.key.get());
  X509_NAME* name = X509_get_subject_name(certificate);
  if (!spec.common_name.empty()) {
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(spec.common_name.c_str()),
                               -1, -1, 0);
  }
  X509* issuer_cert = issuer != nullptr ? issuer->cert.get() : certificate;
  X509_set_issuer_name(certificate, X509_get_subject_name(issuer_cert));
  AddExtension(certificate, issuer_cert, NID_basic_constraints, spec.basic_constraints);
  AddExtension(certificate, issuer_cert, NID_key_usage, spec.key_usage);
  AddExtension(certificate, issuer_cert, NID_ext_key_usage, spec.extended_key_usage);
  AddExtension(certificate, issuer_cert, NID_subject_alt_name, spec.subject_alt_name);
  AddExtension(certificate, issuer_cert, NID_subject_key_identifier, "hash");
  AddExtension(certificate, issuer_cert, NID_authority_key_identifier, "keyid:always");
  EVP_PKEY* signing_key = issuer != nullptr ? issuer->key.get() : out.key.get();
  if (X509_sign(certificate, signing_key, EVP_sha256()) <= 0) {
    throw std::runtime_error("X509_sign failed");
  }
  return out;
}

// Issues a CA certificate valid from `not_before` to `not_after`.
inline TestCert IssueCa(const std::string& common_name, std::time_t not_before,
                        std::time_t not_after, const TestCert* issuer = nullptr) {
  CertSpec spec;
  spec.common_name = common_name;
  spec.basic_constraints = "critical,CA:TRUE";
  spec.key_usage = "critical,keyCertSign,cRLSign";
  spec.extended_key_usage = "";
  spec.not_before = not_before;
  spec.not_after = not_after;
  return IssueCert(spec, issuer);
}

// Returns a leaf spec for an X.509-SVID with `spiffe_id` (empty: no URI SAN, `common_name`
// only) that follows every X.509-SVID rule.
inline CertSpec LeafSpec(const std::string& spiffe_id, const std::string& common_name,
                         std::time_t not_before, std::time_t not_after) {
  CertSpec spec;
  spec.common_name = common_name;
  if (!spiffe_id.empty()) spec.subject_alt_name = "URI:" + spiffe_id;
  spec.not_before = not_before;
  spec.not_after = not_after;
  return spec;
}

}  // namespace kw::testing
