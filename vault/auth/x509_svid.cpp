#include "vault/auth/x509_svid.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

namespace kw::vault::auth {
namespace {

struct GeneralNamesDeleter {
  void operator()(GENERAL_NAMES* names) const { GENERAL_NAMES_free(names); }
};
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, GeneralNamesDeleter>;

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};

tl::unexpected<Error> LeafRule(std::string_view rule) {
  return InvalidArgument("X.509-SVID leaf rule broken: " + std::string(rule));
}

bool ExtensionCritical(X509* certificate, int nid) {
  const int index = X509_get_ext_by_NID(certificate, nid, -1);
  if (index < 0) return false;
  return X509_EXTENSION_get_critical(X509_get_ext(certificate, index)) == 1;
}

Status CheckLeafKeyUsage(X509* leaf, std::uint32_t flags) {
  if ((flags & EXFLAG_KUSAGE) == 0) return LeafRule("the keyUsage extension is missing");
  if (!ExtensionCritical(leaf, NID_key_usage)) {
    return LeafRule("the keyUsage extension must be critical");
  }
  const std::uint32_t usage = X509_get_key_usage(leaf);
  if ((usage & KU_DIGITAL_SIGNATURE) == 0) {
    return LeafRule("the leaf certificate must have 'digitalSignature' set as key usage");
  }
  if ((usage & KU_KEY_CERT_SIGN) != 0) {
    return LeafRule("the leaf certificate must not have 'keyCertSign' set as key usage");
  }
  if ((usage & KU_CRL_SIGN) != 0) {
    return LeafRule("the leaf certificate must not have 'cRLSign' set as key usage");
  }
  return OkStatus();
}

}  // namespace

Result<X509Ptr> ParseDerCertificate(std::string_view der) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* cursor = bytes;
  X509Ptr certificate(d2i_X509(nullptr, &cursor, static_cast<long>(der.size())));
  ERR_clear_error();
  if (!certificate) return InvalidArgument("invalid certificate: the DER encoding does not parse");
  if (cursor != bytes + der.size()) {
    return InvalidArgument("invalid certificate: trailing bytes after the DER certificate");
  }
  return certificate;
}

Result<std::vector<X509Ptr>> ParsePemCertificates(std::string_view pem) {
  std::unique_ptr<BIO, BioDeleter> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return Internal("BIO_new_mem_buf failed");
  std::vector<X509Ptr> certificates;
  while (true) {
    X509Ptr certificate(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!certificate) break;
    certificates.push_back(std::move(certificate));
  }
  // The loop ends at the end of the text (PEM_R_NO_START_LINE) or at a block that fails.
  const unsigned long error = ERR_peek_last_error();
  ERR_clear_error();
  const bool clean_end =
      ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE;
  if (error != 0 && !clean_end) {
    return InvalidArgument("invalid PEM certificate bundle: certificate " +
                           std::to_string(certificates.size() + 1) + " does not parse");
  }
  if (certificates.empty()) {
    return InvalidArgument("invalid PEM certificate bundle: no \"BEGIN CERTIFICATE\" block found");
  }
  return certificates;
}

std::string CertificateDer(X509* certificate) {
  unsigned char* bytes = nullptr;
  const int length = i2d_X509(certificate, &bytes);
  if (length <= 0) return {};
  std::string der(reinterpret_cast<const char*>(bytes), static_cast<std::size_t>(length));
  OPENSSL_free(bytes);
  return der;
}

std::vector<std::string> UriSans(X509* certificate) {
  std::vector<std::string> uris;
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(certificate, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return uris;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type != GEN_URI) continue;
    const ASN1_IA5STRING* uri = name->d.uniformResourceIdentifier;
    uris.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                      static_cast<std::size_t>(ASN1_STRING_length(uri)));
  }
  return uris;
}

std::string CommonName(X509* certificate) {
  X509_NAME* subject = X509_get_subject_name(certificate);
  const int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index < 0) return {};
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
  unsigned char* utf8 = nullptr;
  const int length = ASN1_STRING_to_UTF8(&utf8, data);
  if (length < 0) return {};
  std::string name(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(length));
  OPENSSL_free(utf8);
  return name;
}

Result<SpiffeId> CheckX509SvidLeaf(X509* leaf) {
  const std::vector<std::string> uris = UriSans(leaf);
  if (uris.empty()) return LeafRule("the certificate contains no URI SAN");
  if (uris.size() > 1) return LeafRule("the certificate contains more than one URI SAN");
  auto id = ParseSpiffeId(uris.front());
  if (!id) return LeafRule("the URI SAN is not a valid SPIFFE ID: " + id.error().message());
  if (id->root()) return LeafRule("the SPIFFE ID of a leaf certificate must have a path");

  const std::uint32_t flags = X509_get_extension_flags(leaf);
  if ((flags & EXFLAG_INVALID) != 0) return LeafRule("the certificate has invalid extensions");
  if ((flags & EXFLAG_CA) != 0) {
    return LeafRule("the leaf certificate must not have the CA flag set to true");
  }
  KW_RETURN_IF_ERROR(CheckLeafKeyUsage(leaf, flags));
  if ((flags & EXFLAG_XKUSAGE) != 0) {
    const std::uint32_t extended = X509_get_extended_key_usage(leaf);
    if ((extended & XKU_SSL_SERVER) == 0 || (extended & XKU_SSL_CLIENT) == 0) {
      return LeafRule("an extKeyUsage extension must contain both serverAuth and clientAuth");
    }
  }
  if (X509_NAME_entry_count(X509_get_subject_name(leaf)) == 0 &&
      !ExtensionCritical(leaf, NID_subject_alt_name)) {
    return LeafRule("a certificate with an empty subject must mark subjectAltName critical");
  }
  return std::move(*id);
}

Status CheckX509SvidSigningCertificate(X509* certificate) {
  const std::uint32_t flags = X509_get_extension_flags(certificate);
  if ((flags & EXFLAG_INVALID) != 0) {
    return InvalidArgument("X.509-SVID signing certificate rule broken: invalid extensions");
  }
  if ((flags & EXFLAG_CA) == 0) {
    return InvalidArgument(
        "X.509-SVID signing certificate rule broken: the CA flag must be set to true");
  }
  if ((flags & EXFLAG_KUSAGE) == 0 || (X509_get_key_usage(certificate) & KU_KEY_CERT_SIGN) == 0) {
    return InvalidArgument(
        "X.509-SVID signing certificate rule broken: 'keyCertSign' must be set as key usage");
  }
  for (const std::string& uri : UriSans(certificate)) {
    if (!uri.starts_with("spiffe:")) continue;
    auto id = ParseSpiffeId(uri);
    if (!id || !id->root()) {
      return InvalidArgument(
          "X.509-SVID signing certificate rule broken: its SPIFFE ID must be a valid ID "
          "without a path");
    }
  }
  return OkStatus();
}

Result<SpiffeId> CheckX509Svid(std::span<X509* const> chain) {
  if (chain.empty()) return InvalidArgument("empty certificate chain");
  KW_ASSIGN_OR_RETURN(SpiffeId id, CheckX509SvidLeaf(chain.front()));
  for (std::size_t i = 1; i < chain.size(); ++i) {
    auto checked = CheckX509SvidSigningCertificate(chain[i]);
    if (!checked) {
      return tl::unexpected(
          checked.error().WithContext("certificate " + std::to_string(i + 1) + " of the chain"));
    }
  }
  return id;
}

}  // namespace kw::vault::auth
