#include "vault/pki/x509_parse.hpp"

#include <ctime>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

namespace kw::vault::pki {
namespace {

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
struct X509ReqDeleter {
  void operator()(X509_REQ* request) const { X509_REQ_free(request); }
};
struct GeneralNamesDeleter {
  void operator()(GENERAL_NAMES* names) const { GENERAL_NAMES_free(names); }
};
struct BignumDeleter {
  void operator()(BIGNUM* number) const { BN_free(number); }
};

BioPtr ReadOnlyBio(std::string_view text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

Bytes I2dBytes(int length, unsigned char* data) {
  if (length <= 0 || data == nullptr) return {};
  Bytes bytes(data, data + length);
  OPENSSL_free(data);
  return bytes;
}

Bytes OctetStringBytes(const ASN1_OCTET_STRING* octets) {
  if (octets == nullptr) return {};
  const unsigned char* data = ASN1_STRING_get0_data(octets);
  return Bytes(data, data + ASN1_STRING_length(octets));
}

Result<std::int64_t> UnixSeconds(const ASN1_TIME* time) {
  std::tm parts{};
  if (time == nullptr || ASN1_TIME_to_tm(time, &parts) != 1) {
    ERR_clear_error();
    return InvalidArgument("invalid certificate: a validity time does not parse");
  }
  return static_cast<std::int64_t>(timegm(&parts));
}

// One-line name form without spaces around '=', with UTF-8 left unescaped: "O=keyward, CN=x".
std::string NameText(const X509_NAME* name) {
  const unsigned long flags =
      (XN_FLAG_ONELINE & ~XN_FLAG_SPC_EQ & ~ASN1_STRFLGS_ESC_MSB) | ASN1_STRFLGS_UTF8_CONVERT;
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), name, 0, flags) < 0) return {};
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(length));
}

std::vector<std::string> UriSans(const X509* certificate) {
  std::vector<std::string> uris;
  std::unique_ptr<GENERAL_NAMES, GeneralNamesDeleter> names(static_cast<GENERAL_NAMES*>(
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

}  // namespace

namespace detail {

Result<KeyType> PublicKeyType(EVP_PKEY* key) {
  const int base_id = EVP_PKEY_get_base_id(key);
  const int bits = EVP_PKEY_get_bits(key);
  if (base_id == EVP_PKEY_EC) {
    char encoding[32] = {};
    char group[64] = {};
    std::size_t length = 0;
    const bool named = EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_EC_ENCODING, encoding,
                                                      sizeof(encoding), &length) == 1 &&
                       std::string_view(encoding) == OSSL_PKEY_EC_ENCODING_GROUP;
    const bool has_group = EVP_PKEY_get_group_name(key, group, sizeof(group), &length) == 1;
    ERR_clear_error();
    const int curve = has_group ? OBJ_sn2nid(group) : NID_undef;
    if (named && curve == NID_X9_62_prime256v1) return KeyType::kEcP256;
    if (named && curve == NID_secp384r1) return KeyType::kEcP384;
    return InvalidArgument("unsupported key: EC " +
                           std::string(has_group ? group : "with explicit parameters") +
                           "; accepted keys are EC P-256, EC P-384, RSA 2048, RSA 3072, RSA 4096");
  }
  if (base_id == EVP_PKEY_RSA && bits == 2048) return KeyType::kRsa2048;
  if (base_id == EVP_PKEY_RSA && bits == 3072) return KeyType::kRsa3072;
  if (base_id == EVP_PKEY_RSA && bits == 4096) return KeyType::kRsa4096;
  const char* type_name = EVP_PKEY_get0_type_name(key);
  return InvalidArgument("unsupported key: " + std::string(type_name ? type_name : "unknown") +
                         " " + std::to_string(bits) +
                         " bits; accepted keys are EC P-256, EC P-384, RSA 2048, RSA 3072, RSA 4096");
}

Result<X509Ptr> ParseX509(ByteSpan der) {
  const unsigned char* cursor = der.data();
  X509Ptr certificate(d2i_X509(nullptr, &cursor, static_cast<long>(der.size())));
  ERR_clear_error();
  if (!certificate) return InvalidArgument("invalid certificate: the DER encoding does not parse");
  if (cursor != der.data() + der.size()) {
    return InvalidArgument("invalid certificate: trailing bytes after the DER certificate");
  }
  return certificate;
}

Result<EvpPkeyPtr> ParseSpki(ByteSpan spki) {
  const unsigned char* cursor = spki.data();
  EvpPkeyPtr key(d2i_PUBKEY(nullptr, &cursor, static_cast<long>(spki.size())));
  ERR_clear_error();
  if (!key || cursor != spki.data() + spki.size()) {
    return InvalidArgument("invalid public key: not one DER SubjectPublicKeyInfo");
  }
  return key;
}

Bytes CertificateSpki(const X509* certificate) {
  unsigned char* data = nullptr;
  const int length = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(certificate), &data);
  return I2dBytes(length, data);
}

std::string FormatSerial(const ASN1_INTEGER* serial) {
  std::unique_ptr<BIGNUM, BignumDeleter> number(ASN1_INTEGER_to_BN(serial, nullptr));
  if (!number) return {};
  Bytes magnitude(static_cast<std::size_t>(BN_num_bytes(number.get())));
  BN_bn2bin(number.get(), magnitude.data());
  if (magnitude.empty()) magnitude.push_back(0);
  std::string text = BN_is_negative(number.get()) ? "-" : "";
  const std::string hex = ToHex(magnitude);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    if (i > 0) text += ':';
    text.append(hex, i, 2);
  }
  return text;
}

}  // namespace detail

Status detail::VerifyChain(ByteSpan leaf, const std::vector<Bytes>& intermediates, ByteSpan root,
                           std::int64_t at) {
  KW_ASSIGN_OR_RETURN(X509Ptr leaf_certificate, ParseX509(leaf));
  KW_ASSIGN_OR_RETURN(X509Ptr root_certificate, ParseX509(root));
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(),
                                                                X509_STORE_free);
  struct StackDeleter {
    void operator()(STACK_OF(X509) * stack) const { sk_X509_free(stack); }
  };
  std::unique_ptr<STACK_OF(X509), StackDeleter> chain(sk_X509_new_null());
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> context(X509_STORE_CTX_new(),
                                                                          X509_STORE_CTX_free);
  if (!store || !chain || !context || X509_STORE_add_cert(store.get(), root_certificate.get()) != 1) {
    return Internal("out of memory setting up certificate path validation");
  }
  std::vector<X509Ptr> parsed;
  for (const Bytes& der : intermediates) {
    KW_ASSIGN_OR_RETURN(X509Ptr certificate, ParseX509(der));
    if (sk_X509_push(chain.get(), certificate.get()) == 0) {
      return Internal("out of memory setting up certificate path validation");
    }
    parsed.push_back(std::move(certificate));
  }
  // An SVID authenticates both ends of mutual TLS, so the chain must suit both purposes, at
  // the security level OpenSSL's TLS uses by default (no SHA-1 signatures, no short keys).
  for (int purpose : {X509_PURPOSE_SSL_CLIENT, X509_PURPOSE_SSL_SERVER}) {
    if (X509_STORE_CTX_init(context.get(), store.get(), leaf_certificate.get(), chain.get()) !=
        1) {
      return Internal("certificate path validation could not start");
    }
    X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(context.get());
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_X509_STRICT | X509_V_FLAG_USE_CHECK_TIME);
    X509_VERIFY_PARAM_set_time(param, static_cast<time_t>(at));
    X509_VERIFY_PARAM_set_purpose(param, purpose);
    X509_VERIFY_PARAM_set_auth_level(param, 1);
    const int verified = X509_verify_cert(context.get());
    const int error = X509_STORE_CTX_get_error(context.get());
    X509_STORE_CTX_cleanup(context.get());
    if (verified != 1) {
      return InvalidArgument(std::string("certificate path validation failed: ") +
                             X509_verify_cert_error_string(error));
    }
  }
  return OkStatus();
}

std::string DerToPem(ByteSpan der, std::string_view label) {
  const std::string base64 = ToBase64(der);
  std::string pem = "-----BEGIN " + std::string(label) + "-----\n";
  for (std::size_t i = 0; i < base64.size(); i += 64) {
    pem.append(base64, i, 64);
    pem += '\n';
  }
  pem += "-----END " + std::string(label) + "-----\n";
  return pem;
}

Result<std::vector<Bytes>> PemToDerList(std::string_view pem, std::string_view label) {
  BioPtr bio = ReadOnlyBio(pem);
  if (!bio) return Internal("BIO_new_mem_buf failed");
  std::vector<Bytes> blocks;
  // Each round consumes one block of the finite input, so the loop ends.
  while (true) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long length = 0;
    if (PEM_read_bio(bio.get(), &name, &header, &data, &length) != 1) break;

    const bool matches_label = label == name;
    const bool has_headers = header != nullptr && header[0] != '\0';
    if (matches_label && !has_headers) blocks.emplace_back(data, data + length);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    if (matches_label && has_headers) {
      return InvalidArgument("invalid PEM: a \"" + std::string(label) +
                             "\" block carries headers (encrypted PEM is not accepted)");
    }
  }

  // Reading ends at the end of the text (PEM_R_NO_START_LINE) or at a malformed block.
  const unsigned long error = ERR_peek_last_error();
  ERR_clear_error();
  const bool clean_end =
      ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE;
  if (error != 0 && !clean_end) {
    return InvalidArgument("invalid PEM: block " + std::to_string(blocks.size() + 1) +
                           " is malformed");
  }
  if (blocks.empty()) {
    return InvalidArgument("invalid PEM: no \"BEGIN " + std::string(label) + "\" block found");
  }
  return blocks;
}

Result<KeyType> ParseKeyType(std::string_view type, int bits) {
  if (type == "ec") {
    if (bits == 0 || bits == 256) return KeyType::kEcP256;
    if (bits == 384) return KeyType::kEcP384;
    return InvalidArgument("invalid key_bits " + std::to_string(bits) +
                           " for key_type \"ec\": use 256 or 384");
  }
  if (type == "rsa") {
    if (bits == 0 || bits == 2048) return KeyType::kRsa2048;
    if (bits == 3072) return KeyType::kRsa3072;
    if (bits == 4096) return KeyType::kRsa4096;
    return InvalidArgument("invalid key_bits " + std::to_string(bits) +
                           " for key_type \"rsa\": use 2048, 3072 or 4096");
  }
  return InvalidArgument("invalid key_type \"" + std::string(type) + "\": use \"ec\" or \"rsa\"");
}

std::string_view KeyTypeName(KeyType type) { return IsRsa(type) ? "rsa" : "ec"; }

int KeyBits(KeyType type) {
  switch (type) {
    case KeyType::kEcP256:
      return 256;
    case KeyType::kEcP384:
      return 384;
    case KeyType::kRsa2048:
      return 2048;
    case KeyType::kRsa3072:
      return 3072;
    case KeyType::kRsa4096:
      return 4096;
  }
  return 0;
}

bool IsRsa(KeyType type) { return type != KeyType::kEcP256 && type != KeyType::kEcP384; }

Result<CertificateInfo> ParseCertificateDer(ByteSpan der) {
  KW_ASSIGN_OR_RETURN(detail::X509Ptr certificate, detail::ParseX509(der));
  X509* x = certificate.get();
  const std::uint32_t flags = X509_get_extension_flags(x);
  if ((flags & EXFLAG_INVALID) != 0) {
    return InvalidArgument("invalid certificate: it has invalid or duplicate extensions");
  }

  CertificateInfo info;
  info.der.assign(der.begin(), der.end());
  info.serial = detail::FormatSerial(X509_get0_serialNumber(x));
  KW_ASSIGN_OR_RETURN(info.not_before, UnixSeconds(X509_get0_notBefore(x)));
  KW_ASSIGN_OR_RETURN(info.not_after, UnixSeconds(X509_get0_notAfter(x)));
  info.is_ca = (flags & EXFLAG_CA) != 0;
  if ((flags & EXFLAG_KUSAGE) != 0) {
    const std::uint32_t usage = X509_get_key_usage(x);
    info.key_cert_sign = (usage & KU_KEY_CERT_SIGN) != 0;
    info.crl_sign = (usage & KU_CRL_SIGN) != 0;
    info.digital_signature = (usage & KU_DIGITAL_SIGNATURE) != 0;
    info.key_encipherment = (usage & KU_KEY_ENCIPHERMENT) != 0;
  }
  info.uri_sans = UriSans(x);
  info.spki = detail::CertificateSpki(x);
  info.subject_key_id = OctetStringBytes(X509_get0_subject_key_id(x));
  info.authority_key_id = OctetStringBytes(X509_get0_authority_key_id(x));
  info.subject = NameText(X509_get_subject_name(x));
  info.issuer = NameText(X509_get_issuer_name(x));

  EVP_PKEY* own_key = X509_get0_pubkey(x);
  info.self_signed = X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(x)) == 0 &&
                     own_key != nullptr && X509_verify(x, own_key) == 1;
  ERR_clear_error();
  return info;
}

Status VerifySignedBy(ByteSpan child_der, ByteSpan issuer_der) {
  KW_ASSIGN_OR_RETURN(detail::X509Ptr child, detail::ParseX509(child_der));
  KW_ASSIGN_OR_RETURN(detail::X509Ptr issuer, detail::ParseX509(issuer_der));
  if (X509_NAME_cmp(X509_get_issuer_name(child.get()), X509_get_subject_name(issuer.get())) != 0) {
    return InvalidArgument("the certificate's issuer name does not match the issuer's subject");
  }
  EVP_PKEY* issuer_key = X509_get0_pubkey(issuer.get());
  const bool verified = issuer_key != nullptr && X509_verify(child.get(), issuer_key) == 1;
  ERR_clear_error();
  if (!verified) {
    return InvalidArgument("the certificate's signature does not verify with the issuer's key");
  }
  return OkStatus();
}

Result<CsrInfo> ParseCsrPem(std::string_view pem) {
  if (pem.size() > kMaxCsrPemBytes) {
    return InvalidArgument("invalid csr: larger than " + std::to_string(kMaxCsrPemBytes) +
                           " bytes");
  }
  BioPtr bio = ReadOnlyBio(pem);
  if (!bio) return Internal("BIO_new_mem_buf failed");
  std::unique_ptr<X509_REQ, X509ReqDeleter> request(
      PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (!request) {
    return InvalidArgument("invalid csr: expected a PEM \"CERTIFICATE REQUEST\" block");
  }
  EVP_PKEY* key = X509_REQ_get0_pubkey(request.get());
  ERR_clear_error();
  if (key == nullptr) return InvalidArgument("invalid csr: its public key does not parse");

  auto key_type = detail::PublicKeyType(key);
  if (!key_type) return tl::unexpected(key_type.error().WithContext("invalid csr"));
  const bool verified = X509_REQ_verify(request.get(), key) == 1;
  ERR_clear_error();
  if (!verified) return InvalidArgument("csr signature does not verify");

  CsrInfo info;
  unsigned char* data = nullptr;
  const int length = i2d_PUBKEY(key, &data);
  info.spki = I2dBytes(length, data);
  if (info.spki.empty()) return Internal("i2d_PUBKEY failed for the csr key");
  info.key_type = *key_type;
  return info;
}

}  // namespace kw::vault::pki
