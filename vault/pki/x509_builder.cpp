#include "vault/pki/x509_builder.hpp"

#include <array>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "vault/auth/spiffe_id.hpp"

namespace kw::vault::pki {
namespace {

using detail::EvpPkeyPtr;
using detail::X509Ptr;

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* object) const { Free(object); }
};
template <typename T, void (*Free)(T*)>
using Owned = std::unique_ptr<T, Deleter<T, Free>>;

using BioPtr = Owned<BIO, BIO_free_all>;
using BignumPtr = Owned<BIGNUM, BN_free>;
using EcdsaSigPtr = Owned<ECDSA_SIG, ECDSA_SIG_free>;
using IntegerPtr = Owned<ASN1_INTEGER, ASN1_INTEGER_free>;
using TimePtr = Owned<ASN1_TIME, ASN1_TIME_free>;
using NamePtr = Owned<X509_NAME, X509_NAME_free>;
using RequestPtr = Owned<X509_REQ, X509_REQ_free>;
using CrlPtr = Owned<X509_CRL, X509_CRL_free>;
using RevokedPtr = Owned<X509_REVOKED, X509_REVOKED_free>;
using BitStringPtr = Owned<ASN1_BIT_STRING, ASN1_BIT_STRING_free>;
using OctetStringPtr = Owned<ASN1_OCTET_STRING, ASN1_OCTET_STRING_free>;
using BasicConstraintsPtr = Owned<BASIC_CONSTRAINTS, BASIC_CONSTRAINTS_free>;
using AuthorityKeyIdPtr = Owned<AUTHORITY_KEYID, AUTHORITY_KEYID_free>;
using GeneralNamesPtr = Owned<GENERAL_NAMES, GENERAL_NAMES_free>;
using PubkeyPtr = Owned<X509_PUBKEY, X509_PUBKEY_free>;

// Largest raw ECDSA signature accepted: P-521, 2 x 66 bytes.
constexpr std::size_t kMaxRawSignatureBytes = 132;
constexpr std::size_t kSerialBytes = 16;
// RFC 5280 ub-common-name.
constexpr std::size_t kMaxCommonNameBytes = 64;
// RFC 5280 caps serial numbers at 20 octets.
constexpr std::size_t kMaxSerialBytes = 20;
// DER AlgorithmIdentifier of ecdsa-with-SHA256 (1.2.840.10045.4.3.2), parameters absent.
constexpr std::array<std::uint8_t, 12> kEcdsaWithSha256 = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                                           0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};

// Clears OpenSSL's error queue so one failure does not leak into a later, unrelated check.
tl::unexpected<Error> OpenSslFailure(std::string_view call) {
  ERR_clear_error();
  return Internal(std::string(call) + " failed");
}

// ---- DER assembly of the signed structure ----

void AppendTlv(Bytes& out, std::uint8_t tag, ByteSpan content) {
  out.push_back(tag);
  const std::size_t size = content.size();
  if (size < 0x80) {
    out.push_back(static_cast<std::uint8_t>(size));
  } else {
    Bytes length;
    for (std::size_t rest = size; rest > 0; rest >>= 8) {
      length.insert(length.begin(), static_cast<std::uint8_t>(rest & 0xff));
    }
    out.push_back(static_cast<std::uint8_t>(0x80 | length.size()));
    out.insert(out.end(), length.begin(), length.end());
  }
  out.insert(out.end(), content.begin(), content.end());
}

// Signs the DER `tbs` with one SignDigest call and returns
// SEQUENCE { tbs, ecdsa-with-SHA256, BIT STRING { DER ECDSA-Sig-Value } }.
Result<Bytes> SignTbs(ByteSpan tbs, const Signer& signer) {
  const Bytes digest = Sha256(tbs);
  auto raw = signer.SignDigest(digest);
  if (!raw) return tl::unexpected(raw.error().WithContext("sign"));
  if (raw->size() != 64) {
    return Internal("sign: the signer returned " + std::to_string(raw->size()) +
                    " bytes, expected a 64-byte P-256 signature");
  }
  KW_ASSIGN_OR_RETURN(Bytes signature, EcdsaRawToDer(*raw));

  Bytes bit_string = {0x00};  // no unused bits
  bit_string.insert(bit_string.end(), signature.begin(), signature.end());
  Bytes content(tbs.begin(), tbs.end());
  content.insert(content.end(), kEcdsaWithSha256.begin(), kEcdsaWithSha256.end());
  AppendTlv(content, 0x03, bit_string);
  Bytes signed_der;
  AppendTlv(signed_der, 0x30, content);
  return signed_der;
}

// Signs `object` through `signer`. OpenSSL offers no public setter for the TBS signature
// AlgorithmIdentifier of a certificate or CRL, so a throw-away P-256 key signs first: that
// writes ecdsa-with-SHA256 with absent parameters into the TBS. The TBS is then re-encoded,
// signed by `signer`, and wrapped with the real signature; the placeholder signature is
// dropped. The caller verifies the result with the signer's key.
template <typename T>
Result<Bytes> SignWithSigner(T* object, int (*sign)(T*, EVP_PKEY*, const EVP_MD*),
                             int (*encode_tbs)(T*, unsigned char**), const Signer& signer) {
  EvpPkeyPtr placeholder(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!placeholder) return OpenSslFailure("EVP_PKEY_Q_keygen (placeholder key)");
  if (sign(object, placeholder.get(), EVP_sha256()) <= 0) {
    return OpenSslFailure("placeholder signing");
  }
  unsigned char* tbs = nullptr;
  const int length = encode_tbs(object, &tbs);
  if (length <= 0) return OpenSslFailure("encoding the TBS structure");
  Bytes tbs_der(tbs, tbs + length);
  OPENSSL_free(tbs);
  return SignTbs(tbs_der, signer);
}

// ---- Field helpers ----

Result<EvpPkeyPtr> SignerKey(const Signer& signer) {
  auto key = detail::ParseSpki(signer.PublicKeySpki());
  if (!key) return Internal("the signer's public key does not parse as a SubjectPublicKeyInfo");
  return key;
}

// A random positive serial of exactly kSerialBytes octets: the top bit is cleared (positive)
// and the next one set, so no leading zero octet is dropped. 126 bits are random.
Result<IntegerPtr> RandomSerial() {
  Bytes bytes = RandomBytes(kSerialBytes);
  bytes[0] = static_cast<std::uint8_t>((bytes[0] & 0x7f) | 0x40);
  BignumPtr number(BN_bin2bn(bytes.data(), static_cast<int>(bytes.size()), nullptr));
  if (!number) return OpenSslFailure("BN_bin2bn");
  IntegerPtr serial(BN_to_ASN1_INTEGER(number.get(), nullptr));
  if (!serial) return OpenSslFailure("BN_to_ASN1_INTEGER");
  return serial;
}

// Parses a colon-separated hex serial ("3a:0f:...") into an INTEGER.
Result<IntegerPtr> ParseSerial(std::string_view text) {
  // Octets are exactly two hex digits each, separated by single colons: 3n - 1 characters.
  std::string hex;
  bool well_formed = text.size() % 3 == 2;
  for (std::size_t i = 0; well_formed && i < text.size(); i += 3) {
    hex.append(text.substr(i, 2));
    well_formed = i + 2 == text.size() || text[i + 2] == ':';
  }
  if (!well_formed) {
    return InvalidArgument("invalid serial number \"" + std::string(text) +
                           "\": expected colon-separated hex octets such as \"3a:0f\"");
  }
  auto bytes = FromHex(hex);
  if (!bytes || bytes->empty() || bytes->size() > kMaxSerialBytes) {
    return InvalidArgument("invalid serial number \"" + std::string(text) +
                           "\": expected 1 to 20 colon-separated hex octets");
  }
  BignumPtr number(BN_bin2bn(bytes->data(), static_cast<int>(bytes->size()), nullptr));
  if (!number) return OpenSslFailure("BN_bin2bn");
  IntegerPtr serial(BN_to_ASN1_INTEGER(number.get(), nullptr));
  if (!serial) return OpenSslFailure("BN_to_ASN1_INTEGER");
  return serial;
}

Result<TimePtr> MakeTime(std::int64_t unix_seconds) {
  TimePtr time(ASN1_TIME_set(nullptr, static_cast<time_t>(unix_seconds)));
  if (!time) return OpenSslFailure("ASN1_TIME_set");
  return time;
}

// "O=keyward", followed by "CN=<common_name>" when one is given.
Result<NamePtr> KeywardName(std::string_view common_name) {
  NamePtr name(X509_NAME_new());
  if (!name) return OpenSslFailure("X509_NAME_new");
  const auto add = [&](const char* field, std::string_view value) {
    return X509_NAME_add_entry_by_txt(name.get(), field, MBSTRING_UTF8,
                                      reinterpret_cast<const unsigned char*>(value.data()),
                                      static_cast<int>(value.size()), -1, 0) == 1;
  };
  if (!add("O", "keyward")) return OpenSslFailure("X509_NAME_add_entry_by_txt");
  if (!common_name.empty() && !add("CN", common_name)) {
    return OpenSslFailure("X509_NAME_add_entry_by_txt");
  }
  return name;
}

// RFC 5280 key identifier method 1: SHA-1 of the subjectPublicKey BIT STRING's value.
Result<Bytes> KeyIdentifier(ByteSpan spki) {
  const unsigned char* cursor = spki.data();
  PubkeyPtr pubkey(d2i_X509_PUBKEY(nullptr, &cursor, static_cast<long>(spki.size())));
  const unsigned char* key_bits = nullptr;
  int key_bits_length = 0;
  if (!pubkey || X509_PUBKEY_get0_param(nullptr, &key_bits, &key_bits_length, nullptr,
                                        pubkey.get()) != 1) {
    ERR_clear_error();
    return InvalidArgument("invalid public key: not a DER SubjectPublicKeyInfo");
  }
  Bytes digest(EVP_MAX_MD_SIZE);
  unsigned int digest_length = 0;
  if (EVP_Digest(key_bits, static_cast<std::size_t>(key_bits_length), digest.data(),
                 &digest_length, EVP_sha1(), nullptr) != 1) {
    return OpenSslFailure("EVP_Digest (SHA-1 key identifier)");
  }
  digest.resize(digest_length);
  return digest;
}

// ---- Extensions ----

// An owned list of extensions, added in order to a certificate, CSR or CRL.
class Extensions {
 public:
  Extensions() = default;
  Extensions(const Extensions&) = delete;
  Extensions& operator=(const Extensions&) = delete;
  ~Extensions() { sk_X509_EXTENSION_pop_free(list_, X509_EXTENSION_free); }

  // Encodes `value` (the extension's OpenSSL structure, still owned by the caller).
  Status Add(int nid, void* value, bool critical) {
    if (value == nullptr ||
        X509V3_add1_i2d(&list_, nid, value, critical ? 1 : 0, X509V3_ADD_APPEND) != 1) {
      return OpenSslFailure(std::string("encoding the ") + OBJ_nid2sn(nid) + " extension");
    }
    return OkStatus();
  }

  Status BasicConstraints(bool ca) {
    BasicConstraintsPtr value(BASIC_CONSTRAINTS_new());
    if (value) value->ca = ca ? 0xff : 0;
    return Add(NID_basic_constraints, value.get(), true);
  }

  // `bits` are keyUsage bit numbers (0 digitalSignature, 2 keyEncipherment, 5 keyCertSign,
  // 6 cRLSign). OpenSSL drops trailing zero bits when it encodes, as DER requires.
  Status KeyUsage(std::initializer_list<int> bits) {
    BitStringPtr value(ASN1_BIT_STRING_new());
    for (const int bit : bits) {
      if (!value || ASN1_BIT_STRING_set_bit(value.get(), bit, 1) != 1) {
        return OpenSslFailure("ASN1_BIT_STRING_set_bit");
      }
    }
    return Add(NID_key_usage, value.get(), true);
  }

  Status UriSan(std::string_view uri) {
    GeneralNamesPtr names(GENERAL_NAMES_new());
    GENERAL_NAME* name = GENERAL_NAME_new();
    ASN1_IA5STRING* text = ASN1_IA5STRING_new();
    if (!names || name == nullptr || text == nullptr ||
        ASN1_STRING_set(text, uri.data(), static_cast<int>(uri.size())) != 1) {
      GENERAL_NAME_free(name);
      ASN1_IA5STRING_free(text);
      return OpenSslFailure("building the subjectAltName");
    }
    GENERAL_NAME_set0_value(name, GEN_URI, text);
    if (sk_GENERAL_NAME_push(names.get(), name) <= 0) {
      GENERAL_NAME_free(name);
      return OpenSslFailure("sk_GENERAL_NAME_push");
    }
    return Add(NID_subject_alt_name, names.get(), false);
  }

  Status ServerAndClientAuth() {
    Owned<EXTENDED_KEY_USAGE, EXTENDED_KEY_USAGE_free> value(sk_ASN1_OBJECT_new_null());
    if (!value || sk_ASN1_OBJECT_push(value.get(), OBJ_nid2obj(NID_server_auth)) <= 0 ||
        sk_ASN1_OBJECT_push(value.get(), OBJ_nid2obj(NID_client_auth)) <= 0) {
      return OpenSslFailure("building the extendedKeyUsage");
    }
    return Add(NID_ext_key_usage, value.get(), false);
  }

  Status SubjectKeyId(ByteSpan key_id) {
    OctetStringPtr value(ASN1_OCTET_STRING_new());
    if (!value || ASN1_OCTET_STRING_set(value.get(), key_id.data(),
                                        static_cast<int>(key_id.size())) != 1) {
      return OpenSslFailure("ASN1_OCTET_STRING_set");
    }
    return Add(NID_subject_key_identifier, value.get(), false);
  }

  Status AuthorityKeyId(ByteSpan key_id) {
    AuthorityKeyIdPtr value(AUTHORITY_KEYID_new());
    if (value) value->keyid = ASN1_OCTET_STRING_new();
    if (!value || value->keyid == nullptr ||
        ASN1_OCTET_STRING_set(value->keyid, key_id.data(), static_cast<int>(key_id.size())) != 1) {
      return OpenSslFailure("building the authorityKeyIdentifier");
    }
    return Add(NID_authority_key_identifier, value.get(), false);
  }

  Status CrlNumber(std::uint64_t number) {
    IntegerPtr value(ASN1_INTEGER_new());
    if (!value || ASN1_INTEGER_set_uint64(value.get(), number) != 1) {
      return OpenSslFailure("ASN1_INTEGER_set_uint64");
    }
    return Add(NID_crl_number, value.get(), false);
  }

  const STACK_OF(X509_EXTENSION) * list() const { return list_; }

  Status AddTo(X509* certificate) const {
    for (int i = 0; i < sk_X509_EXTENSION_num(list_); ++i) {
      if (X509_add_ext(certificate, sk_X509_EXTENSION_value(list_, i), -1) != 1) {
        return OpenSslFailure("X509_add_ext");
      }
    }
    return OkStatus();
  }

  Status AddTo(X509_CRL* crl) const {
    for (int i = 0; i < sk_X509_EXTENSION_num(list_); ++i) {
      if (X509_CRL_add_ext(crl, sk_X509_EXTENSION_value(list_, i), -1) != 1) {
        return OpenSslFailure("X509_CRL_add_ext");
      }
    }
    return OkStatus();
  }

 private:
  STACK_OF(X509_EXTENSION)* list_ = nullptr;
};

// ---- Shared steps of the builders ----

Status ValidateCaSpec(const CaCertSpec& spec, bool check_validity) {
  auto id = auth::ParseSpiffeId("spiffe://" + spec.trust_domain);
  if (!id || !id->root()) {
    return InvalidArgument("invalid trust_domain \"" + spec.trust_domain +
                           "\": use a lower-case host name of a-z 0-9 . - _");
  }
  if (spec.trust_domain.size() > auth::kMaxTrustDomainBytes) {
    return InvalidArgument("invalid trust_domain: longer than 255 bytes");
  }
  if (spec.common_name.empty() || spec.common_name.size() > kMaxCommonNameBytes) {
    return InvalidArgument("invalid common_name: use 1 to 64 bytes");
  }
  if (check_validity && spec.not_after <= spec.not_before) {
    return InvalidArgument("invalid validity: not_after must be later than not_before");
  }
  return OkStatus();
}

// Sets version 3, a random serial, the names, the validity and the public key.
Status SetCertificateBasics(X509* certificate, const X509_NAME* subject, const X509_NAME* issuer,
                            std::int64_t not_before, std::int64_t not_after, EVP_PKEY* key) {
  KW_ASSIGN_OR_RETURN(IntegerPtr serial, RandomSerial());
  KW_ASSIGN_OR_RETURN(TimePtr start, MakeTime(not_before));
  KW_ASSIGN_OR_RETURN(TimePtr end, MakeTime(not_after));
  if (X509_set_version(certificate, X509_VERSION_3) != 1 ||
      X509_set_serialNumber(certificate, serial.get()) != 1 ||
      X509_set_subject_name(certificate, subject) != 1 ||
      X509_set_issuer_name(certificate, issuer) != 1 ||
      X509_set1_notBefore(certificate, start.get()) != 1 ||
      X509_set1_notAfter(certificate, end.get()) != 1 || X509_set_pubkey(certificate, key) != 1) {
    return OpenSslFailure("setting the certificate fields");
  }
  return OkStatus();
}

// Signs `certificate`, parses the result back and verifies it with the signer's key.
Result<Bytes> SignAndVerifyCertificate(X509* certificate, const Signer& signer,
                                       EVP_PKEY* signer_key) {
  KW_ASSIGN_OR_RETURN(Bytes der,
                      SignWithSigner<X509>(certificate, X509_sign, i2d_re_X509_tbs, signer));
  auto parsed = detail::ParseX509(der);
  if (!parsed) return Internal("the signed certificate does not parse back");
  const bool verified = X509_verify(parsed->get(), signer_key) == 1;
  ERR_clear_error();
  if (!verified) return Internal("the signed certificate does not verify with the signer's key");
  return der;
}

// Parses the issuer and checks that its public key is the signer's key.
Result<X509Ptr> ParseIssuerOfSigner(ByteSpan issuer_der, const Signer& signer) {
  auto issuer = detail::ParseX509(issuer_der);
  if (!issuer) return tl::unexpected(issuer.error().WithContext("issuer"));
  if (detail::CertificateSpki(issuer->get()) != signer.PublicKeySpki()) {
    return FailedPrecondition("the issuer certificate's public key is not the signer's key");
  }
  return issuer;
}

Result<Bytes> IssuerKeyId(X509* issuer) {
  const ASN1_OCTET_STRING* key_id = X509_get0_subject_key_id(issuer);
  if (key_id != nullptr && ASN1_STRING_length(key_id) > 0) {
    const unsigned char* data = ASN1_STRING_get0_data(key_id);
    return Bytes(data, data + ASN1_STRING_length(key_id));
  }
  // NOTE: an issuer without an SKI gets an AKI computed with method 1 from its key.
  return KeyIdentifier(detail::CertificateSpki(issuer));
}

}  // namespace

Result<Bytes> EcdsaRawToDer(ByteSpan raw) {
  if (raw.empty() || raw.size() % 2 != 0 || raw.size() > kMaxRawSignatureBytes) {
    return InvalidArgument("invalid raw ECDSA signature: " + std::to_string(raw.size()) +
                           " bytes, expected two equal halves of at most 66 bytes");
  }
  const int half = static_cast<int>(raw.size() / 2);
  BignumPtr r(BN_bin2bn(raw.data(), half, nullptr));
  BignumPtr s(BN_bin2bn(raw.data() + half, half, nullptr));
  if (!r || !s) return OpenSslFailure("BN_bin2bn");
  if (BN_is_zero(r.get()) || BN_is_zero(s.get())) {
    return InvalidArgument("invalid raw ECDSA signature: r and s must be non-zero");
  }
  EcdsaSigPtr signature(ECDSA_SIG_new());
  if (!signature || ECDSA_SIG_set0(signature.get(), r.get(), s.get()) != 1) {
    return OpenSslFailure("ECDSA_SIG_set0");
  }
  r.release();  // owned by `signature` now
  s.release();
  unsigned char* der = nullptr;
  const int length = i2d_ECDSA_SIG(signature.get(), &der);
  if (length <= 0) return OpenSslFailure("i2d_ECDSA_SIG");
  Bytes result(der, der + length);
  OPENSSL_free(der);
  return result;
}

Result<Bytes> EcdsaDerToRaw(ByteSpan der, std::size_t half_size) {
  if (half_size == 0 || half_size * 2 > kMaxRawSignatureBytes) {
    return InvalidArgument("invalid ECDSA half size " + std::to_string(half_size));
  }
  const unsigned char* cursor = der.data();
  EcdsaSigPtr signature(d2i_ECDSA_SIG(nullptr, &cursor, static_cast<long>(der.size())));
  ERR_clear_error();
  if (!signature || cursor != der.data() + der.size()) {
    return InvalidArgument("invalid DER ECDSA signature: not one ECDSA-Sig-Value");
  }
  // Re-encoding must give the input back, so BER variants (long lengths, padded integers)
  // are rejected.
  unsigned char* encoded = nullptr;
  const int length = i2d_ECDSA_SIG(signature.get(), &encoded);
  const bool strict = length == static_cast<int>(der.size()) &&
                      std::equal(der.begin(), der.end(), encoded);
  OPENSSL_free(encoded);
  if (!strict) return InvalidArgument("invalid DER ECDSA signature: not strict DER");

  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(signature.get(), &r, &s);
  Bytes raw(half_size * 2);
  const int size = static_cast<int>(half_size);
  if (BN_is_negative(r) || BN_is_negative(s) || BN_bn2binpad(r, raw.data(), size) != size ||
      BN_bn2binpad(s, raw.data() + half_size, size) != size) {
    ERR_clear_error();
    return InvalidArgument("invalid DER ECDSA signature: r or s does not fit " +
                           std::to_string(half_size) + " bytes");
  }
  return raw;
}

Result<Bytes> BuildSelfSignedCa(const CaCertSpec& spec, const Signer& signer) {
  KW_RETURN_IF_ERROR(ValidateCaSpec(spec, true));
  KW_ASSIGN_OR_RETURN(EvpPkeyPtr key, SignerKey(signer));
  KW_ASSIGN_OR_RETURN(NamePtr name, KeywardName(spec.common_name));
  KW_ASSIGN_OR_RETURN(Bytes key_id, KeyIdentifier(signer.PublicKeySpki()));

  X509Ptr certificate(X509_new());
  if (!certificate) return OpenSslFailure("X509_new");
  KW_RETURN_IF_ERROR(SetCertificateBasics(certificate.get(), name.get(), name.get(),
                                          spec.not_before, spec.not_after, key.get()));
  Extensions extensions;
  KW_RETURN_IF_ERROR(extensions.BasicConstraints(true));
  KW_RETURN_IF_ERROR(extensions.KeyUsage({5, 6}));
  KW_RETURN_IF_ERROR(extensions.SubjectKeyId(key_id));
  KW_RETURN_IF_ERROR(extensions.AuthorityKeyId(key_id));
  KW_RETURN_IF_ERROR(extensions.UriSan("spiffe://" + spec.trust_domain));
  KW_RETURN_IF_ERROR(extensions.AddTo(certificate.get()));
  return SignAndVerifyCertificate(certificate.get(), signer, key.get());
}

Result<Bytes> BuildCaCsr(const CaCertSpec& spec, const Signer& signer) {
  KW_RETURN_IF_ERROR(ValidateCaSpec(spec, false));
  KW_ASSIGN_OR_RETURN(EvpPkeyPtr key, SignerKey(signer));
  KW_ASSIGN_OR_RETURN(NamePtr name, KeywardName(spec.common_name));

  RequestPtr request(X509_REQ_new());
  if (!request || X509_REQ_set_version(request.get(), X509_REQ_VERSION_1) != 1 ||
      X509_REQ_set_subject_name(request.get(), name.get()) != 1 ||
      X509_REQ_set_pubkey(request.get(), key.get()) != 1) {
    return OpenSslFailure("setting the CSR fields");
  }
  Extensions extensions;
  KW_RETURN_IF_ERROR(extensions.BasicConstraints(true));
  KW_RETURN_IF_ERROR(extensions.KeyUsage({5, 6}));
  KW_RETURN_IF_ERROR(extensions.UriSan("spiffe://" + spec.trust_domain));
  if (X509_REQ_add_extensions(request.get(), extensions.list()) != 1) {
    return OpenSslFailure("X509_REQ_add_extensions");
  }

  KW_ASSIGN_OR_RETURN(Bytes der, SignWithSigner<X509_REQ>(request.get(), X509_REQ_sign,
                                                          i2d_re_X509_REQ_tbs, signer));
  const unsigned char* cursor = der.data();
  RequestPtr parsed(d2i_X509_REQ(nullptr, &cursor, static_cast<long>(der.size())));
  const bool verified = parsed && X509_REQ_verify(parsed.get(), key.get()) == 1;
  ERR_clear_error();
  if (!verified) return Internal("the signed CSR does not verify with the signer's key");
  return der;
}

Result<IssuedCertificate> BuildLeaf(const LeafSpec& spec, ByteSpan issuer_der,
                                    const Signer& signer) {
  auto id = auth::ParseSpiffeId(spec.spiffe_id);
  if (!id) return tl::unexpected(id.error().WithContext("invalid spiffe_id"));
  if (id->root() || spec.spiffe_id.size() > auth::kMaxSpiffeIdBytes) {
    return InvalidArgument("invalid spiffe_id \"" + spec.spiffe_id +
                           "\": a workload ID needs a path and at most 2048 bytes");
  }
  KW_ASSIGN_OR_RETURN(X509Ptr issuer, ParseIssuerOfSigner(issuer_der, signer));
  const std::uint32_t issuer_flags = X509_get_extension_flags(issuer.get());
  if ((issuer_flags & EXFLAG_CA) == 0) {
    return FailedPrecondition("the issuer certificate is not a CA (basicConstraints cA false)");
  }
  if (spec.not_after <= spec.not_before) {
    return InvalidArgument("invalid validity: not_after must be later than not_before");
  }
  KW_ASSIGN_OR_RETURN(TimePtr leaf_end, MakeTime(spec.not_after));
  int days = 0;
  int seconds = 0;
  if (ASN1_TIME_diff(&days, &seconds, X509_get0_notAfter(issuer.get()), leaf_end.get()) != 1) {
    return OpenSslFailure("ASN1_TIME_diff");
  }
  if (days > 0 || seconds > 0) {
    return InvalidArgument(
        "invalid validity: not_after is later than the issuing CA's notAfter; request a "
        "shorter ttl");
  }
  KW_ASSIGN_OR_RETURN(EvpPkeyPtr subject_key, detail::ParseSpki(spec.subject_spki));
  auto subject_type = detail::PublicKeyType(subject_key.get());
  if (!subject_type) return tl::unexpected(subject_type.error().WithContext("subject key"));
  KW_ASSIGN_OR_RETURN(Bytes subject_key_id, KeyIdentifier(spec.subject_spki));
  KW_ASSIGN_OR_RETURN(Bytes authority_key_id, IssuerKeyId(issuer.get()));
  KW_ASSIGN_OR_RETURN(NamePtr subject, KeywardName(""));

  X509Ptr certificate(X509_new());
  if (!certificate) return OpenSslFailure("X509_new");
  KW_RETURN_IF_ERROR(SetCertificateBasics(certificate.get(), subject.get(),
                                          X509_get_subject_name(issuer.get()), spec.not_before,
                                          spec.not_after, subject_key.get()));
  Extensions extensions;
  KW_RETURN_IF_ERROR(extensions.BasicConstraints(false));
  if (spec.key_encipherment) {
    KW_RETURN_IF_ERROR(extensions.KeyUsage({0, 2}));
  } else {
    KW_RETURN_IF_ERROR(extensions.KeyUsage({0}));
  }
  KW_RETURN_IF_ERROR(extensions.ServerAndClientAuth());
  KW_RETURN_IF_ERROR(extensions.SubjectKeyId(subject_key_id));
  KW_RETURN_IF_ERROR(extensions.AuthorityKeyId(authority_key_id));
  KW_RETURN_IF_ERROR(extensions.UriSan(spec.spiffe_id));
  KW_RETURN_IF_ERROR(extensions.AddTo(certificate.get()));

  IssuedCertificate issued;
  KW_ASSIGN_OR_RETURN(issued.der, SignAndVerifyCertificate(certificate.get(), signer,
                                                           X509_get0_pubkey(issuer.get())));
  auto chained = VerifySignedBy(issued.der, issuer_der);
  if (!chained) return Internal("the signed leaf does not chain to its issuer");
  issued.serial = detail::FormatSerial(X509_get0_serialNumber(certificate.get()));
  return issued;
}

Result<Bytes> BuildCrl(ByteSpan issuer_der, const std::vector<RevokedEntry>& revoked,
                       std::int64_t this_update, std::int64_t next_update,
                       std::uint64_t crl_number, const Signer& signer) {
  if (next_update <= this_update) {
    return InvalidArgument("invalid CRL validity: next_update must be later than this_update");
  }
  KW_ASSIGN_OR_RETURN(X509Ptr issuer, ParseIssuerOfSigner(issuer_der, signer));
  KW_ASSIGN_OR_RETURN(Bytes authority_key_id, IssuerKeyId(issuer.get()));
  KW_ASSIGN_OR_RETURN(TimePtr last, MakeTime(this_update));
  KW_ASSIGN_OR_RETURN(TimePtr next, MakeTime(next_update));

  CrlPtr crl(X509_CRL_new());
  if (!crl || X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2) != 1 ||
      X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(issuer.get())) != 1 ||
      X509_CRL_set1_lastUpdate(crl.get(), last.get()) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), next.get()) != 1) {
    return OpenSslFailure("setting the CRL fields");
  }
  for (const RevokedEntry& entry : revoked) {
    KW_ASSIGN_OR_RETURN(IntegerPtr serial, ParseSerial(entry.serial));
    KW_ASSIGN_OR_RETURN(TimePtr when, MakeTime(entry.revoked_at));
    RevokedPtr item(X509_REVOKED_new());
    if (!item || X509_REVOKED_set_serialNumber(item.get(), serial.get()) != 1 ||
        X509_REVOKED_set_revocationDate(item.get(), when.get()) != 1 ||
        X509_CRL_add0_revoked(crl.get(), item.get()) != 1) {
      return OpenSslFailure("adding a revoked entry");
    }
    item.release();  // owned by `crl` now
  }
  if (X509_CRL_sort(crl.get()) != 1) return OpenSslFailure("X509_CRL_sort");
  Extensions extensions;
  KW_RETURN_IF_ERROR(extensions.CrlNumber(crl_number));
  KW_RETURN_IF_ERROR(extensions.AuthorityKeyId(authority_key_id));
  KW_RETURN_IF_ERROR(extensions.AddTo(crl.get()));

  KW_ASSIGN_OR_RETURN(Bytes der, SignWithSigner<X509_CRL>(crl.get(), X509_CRL_sign,
                                                          i2d_re_X509_CRL_tbs, signer));
  const unsigned char* cursor = der.data();
  CrlPtr parsed(d2i_X509_CRL(nullptr, &cursor, static_cast<long>(der.size())));
  const bool verified = parsed && X509_CRL_verify(parsed.get(), X509_get0_pubkey(issuer.get())) == 1;
  ERR_clear_error();
  if (!verified) return Internal("the signed CRL does not verify with the signer's key");
  return der;
}

Result<WorkloadKey> GenerateWorkloadKey(KeyType type) {
  EvpPkeyPtr key;
  switch (type) {
    case KeyType::kEcP256:
      key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
      break;
    case KeyType::kEcP384:
      key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"));
      break;
    case KeyType::kRsa2048:
    case KeyType::kRsa3072:
    case KeyType::kRsa4096:
      key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA",
                                  static_cast<std::size_t>(KeyBits(type))));
      break;
  }
  if (!key) return OpenSslFailure("EVP_PKEY_Q_keygen (workload key)");

  // A secure-memory BIO wipes its buffer when freed, so the PEM text is not left behind.
  BioPtr bio(BIO_new(BIO_s_secmem()));
  if (!bio || PEM_write_bio_PKCS8PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr,
                                            nullptr) != 1) {
    return OpenSslFailure("PEM_write_bio_PKCS8PrivateKey");
  }
  char* pem = nullptr;
  const long pem_length = BIO_get_mem_data(bio.get(), &pem);
  if (pem == nullptr || pem_length <= 0) return OpenSslFailure("BIO_get_mem_data");

  WorkloadKey result;
  result.private_key_pem =
      SecretBuffer::CopyFrom(std::string_view(pem, static_cast<std::size_t>(pem_length)));
  unsigned char* spki = nullptr;
  const int spki_length = i2d_PUBKEY(key.get(), &spki);
  if (spki_length <= 0) return OpenSslFailure("i2d_PUBKEY");
  result.spki.assign(spki, spki + spki_length);
  OPENSSL_free(spki);
  return result;
}

}  // namespace kw::vault::pki
