#include "vault/pki/trust_bundle.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <set>

#include "vault/auth/spiffe_id.hpp"
#include "vault/pki/jwk.hpp"

namespace kw::vault::pki {
namespace {

using detail::QuoteForMessage;

constexpr std::string_view kX509SvidUse = "x509-svid";
constexpr std::string_view kJwtSvidUse = "jwt-svid";

// Key members of the JWK key types keyward reads (RFC 7518 sections 6.2.1 and 6.3.1).
constexpr const char* kKeyMembers[] = {"crv", "x", "y", "n", "e"};

struct X509Deleter {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

std::string EntryName(std::size_t index) { return "bundle: keys[" + std::to_string(index) + "]"; }

Status ValidateTrustDomain(std::string_view trust_domain) {
  auto id = auth::ParseSpiffeId("spiffe://" + std::string(trust_domain));
  if (!id || !id->root()) {
    return InvalidArgument("bundle: trust domain " + QuoteForMessage(trust_domain) +
                           " is invalid; use a lower-case name such as example.org");
  }
  return OkStatus();
}

// Returns the DER SubjectPublicKeyInfo of a DER certificate, checking the certificate parses
// completely.
Result<Bytes> CertificateSpki(ByteSpan der) {
  const unsigned char* cursor = der.data();
  X509Ptr cert(d2i_X509(nullptr, &cursor, static_cast<long>(der.size())));
  if (cert == nullptr || cursor != der.data() + der.size()) {
    ERR_clear_error();
    return InvalidArgument("not a DER X.509 certificate");
  }
  unsigned char* spki = nullptr;
  const int length = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert.get()), &spki);
  if (length <= 0) {
    ERR_clear_error();
    return InvalidArgument("certificate has no readable public key");
  }
  Bytes out(spki, spki + length);
  OPENSSL_free(spki);
  return out;
}

Result<nlohmann::json> ParseBundleText(std::string_view json_text) {
  if (json_text.size() > kMaxBundleBytes) {
    return InvalidArgument("bundle: larger than " + std::to_string(kMaxBundleBytes) + " bytes");
  }
  auto document = ParseJsonStrict(json_text);
  if (!document) return tl::unexpected(document.error().WithContext("bundle"));
  return document;
}

Status CheckBundleObject(const nlohmann::json& document) {
  if (!document.is_object()) return InvalidArgument("bundle: must be a JSON object");
  auto keys = document.find("keys");
  if (keys == document.end()) return InvalidArgument("bundle: keys is missing");
  if (!keys->is_array()) return InvalidArgument("bundle: keys must be an array");
  if (keys->size() > kMaxBundleKeys) {
    return InvalidArgument("bundle: keys has more than " + std::to_string(kMaxBundleKeys) +
                           " entries");
  }
  return OkStatus();
}

Result<nlohmann::json> ParseBundleObject(std::string_view json_text) {
  KW_ASSIGN_OR_RETURN(nlohmann::json document, ParseBundleText(json_text));
  KW_RETURN_IF_ERROR(CheckBundleObject(document));
  return document;
}

// Reads an optional string member; invalid_argument when present with another type.
Result<std::optional<std::string>> OptionalString(const nlohmann::json& entry,
                                                  const std::string& entry_name,
                                                  const char* member) {
  auto it = entry.find(member);
  if (it == entry.end()) return std::optional<std::string>();
  if (!it->is_string()) {
    return InvalidArgument(entry_name + "." + member + ": must be a string");
  }
  return std::optional<std::string>(it->get<std::string>());
}

// Returns the entry's kty, or invalid_argument when the entry is not an object or lacks one.
Result<std::string> EntryKeyType(const nlohmann::json& entry, const std::string& entry_name) {
  if (!entry.is_object()) return InvalidArgument(entry_name + ": must be a JSON object");
  KW_ASSIGN_OR_RETURN(std::optional<std::string> kty, OptionalString(entry, entry_name, "kty"));
  if (!kty) return InvalidArgument(entry_name + ".kty: is missing");
  return *std::move(kty);
}

bool SupportedKeyType(std::string_view kty) { return kty == "EC" || kty == "RSA"; }

Status AddJwtAuthority(const nlohmann::json& entry, const std::string& entry_name,
                       TrustBundle& bundle) {
  KW_ASSIGN_OR_RETURN(std::optional<std::string> kid, OptionalString(entry, entry_name, "kid"));
  if (!kid || kid->empty()) {
    return InvalidArgument(entry_name + ".kid: is missing; every JWT key needs a non-empty kid");
  }
  if (FindJwtAuthority(bundle, *kid) != nullptr) {
    return InvalidArgument(entry_name + ".kid: " + QuoteForMessage(*kid) +
                           " occurs more than once; key IDs must be unique");
  }
  auto spki = SpkiFromJwk(entry);
  if (!spki) return tl::unexpected(spki.error().WithContext(entry_name));
  bundle.jwt_authorities.push_back({*std::move(kid), *std::move(spki)});
  return OkStatus();
}

// Checks that the key members of an x509-svid entry, when present, describe the certificate's
// key. An entry may omit them.
Status CheckEntryMatchesCertificate(const nlohmann::json& entry, const std::string& entry_name,
                                    const std::string& kty, ByteSpan cert_spki) {
  auto cert_jwk = PublicJwkFromSpki(cert_spki);
  if (!cert_jwk) return tl::unexpected(cert_jwk.error().WithContext(entry_name + ".x5c[0]"));
  if ((*cert_jwk)["kty"] != kty) {
    return InvalidArgument(entry_name + ".kty: " + QuoteForMessage(kty) +
                           " does not match the certificate's key type");
  }
  const bool has_key_members = std::any_of(std::begin(kKeyMembers), std::end(kKeyMembers),
                                           [&](const char* m) { return entry.contains(m); });
  if (!has_key_members) return OkStatus();
  for (const auto& [member, value] : cert_jwk->items()) {
    auto it = entry.find(member);
    if (it == entry.end() || *it != value) {
      return InvalidArgument(entry_name + "." + member +
                             ": does not match the public key of the certificate in x5c");
    }
  }
  return OkStatus();
}

Status AddX509Authority(const nlohmann::json& entry, const std::string& entry_name,
                        const std::string& kty, TrustBundle& bundle) {
  // NOTE: The X.509-SVID standard forbids kid on these entries. go-spiffe (v2.8.1) ignores
  // one, so a bundle that go-spiffe accepts can still be rejected here.
  if (entry.contains("kid")) {
    return InvalidArgument(entry_name + ".kid: must not be set on an x509-svid entry");
  }
  auto x5c = entry.find("x5c");
  if (x5c == entry.end() || !x5c->is_array() || x5c->size() != 1) {
    return InvalidArgument(entry_name +
                           ".x5c: an x509-svid entry needs exactly one certificate in x5c");
  }
  const nlohmann::json& encoded = x5c->front();
  if (!encoded.is_string()) return InvalidArgument(entry_name + ".x5c[0]: must be a string");
  std::optional<Bytes> der = FromBase64(encoded.get_ref<const std::string&>());
  if (!der) {
    return InvalidArgument(entry_name +
                           ".x5c[0]: is not valid standard base64 (x5c does not "
                           "use base64url)");
  }
  auto cert_spki = CertificateSpki(*der);
  if (!cert_spki) return tl::unexpected(cert_spki.error().WithContext(entry_name + ".x5c[0]"));
  KW_RETURN_IF_ERROR(CheckEntryMatchesCertificate(entry, entry_name, kty, *cert_spki));

  if (std::find(bundle.x509_authorities.begin(), bundle.x509_authorities.end(), *der) ==
      bundle.x509_authorities.end()) {
    bundle.x509_authorities.push_back(*std::move(der));
  }
  return OkStatus();
}

Status ReadSequence(const nlohmann::json& document, TrustBundle& bundle) {
  auto it = document.find("spiffe_sequence");
  if (it == document.end()) return OkStatus();
  // nlohmann::json stores non-negative integers up to 2^64-1 as number_unsigned; negative
  // values are number_integer and fractions or larger values number_float.
  if (!it->is_number_unsigned()) {
    return InvalidArgument("bundle: spiffe_sequence must be an integer from 0 to 2^64-1");
  }
  bundle.sequence = it->get<std::uint64_t>();
  return OkStatus();
}

Status ReadRefreshHint(const nlohmann::json& document, TrustBundle& bundle) {
  auto it = document.find("spiffe_refresh_hint");
  if (it == document.end()) return OkStatus();
  if (!it->is_number_unsigned() ||
      it->get<std::uint64_t>() >
          static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return InvalidArgument(
        "bundle: spiffe_refresh_hint must be a non-negative integer number "
        "of seconds");
  }
  bundle.refresh_hint = it->get<std::int64_t>();
  return OkStatus();
}

Result<nlohmann::json> KeyEntry(ByteSpan spki, std::string_view use) {
  KW_ASSIGN_OR_RETURN(nlohmann::json jwk, PublicJwkFromSpki(spki));
  jwk["use"] = use;
  return jwk;
}

// Reads a bundle document that CheckBundleObject accepted.
Result<TrustBundle> BundleFromDocument(const nlohmann::json& document,
                                       std::string_view trust_domain) {
  TrustBundle bundle;
  bundle.trust_domain = trust_domain;
  KW_RETURN_IF_ERROR(ReadSequence(document, bundle));
  KW_RETURN_IF_ERROR(ReadRefreshHint(document, bundle));

  const nlohmann::json& keys = document["keys"];
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const std::string entry_name = EntryName(i);
    KW_ASSIGN_OR_RETURN(std::string kty, EntryKeyType(keys[i], entry_name));
    KW_ASSIGN_OR_RETURN(std::optional<std::string> use, OptionalString(keys[i], entry_name, "use"));
    // The bundle format requires consumers to ignore entries with an unknown kty or a missing
    // or unknown use, so that new key types and SVID types do not break older consumers.
    if (!use || !SupportedKeyType(kty)) continue;
    if (*use == kX509SvidUse) {
      KW_RETURN_IF_ERROR(AddX509Authority(keys[i], entry_name, kty, bundle));
    } else if (*use == kJwtSvidUse) {
      KW_RETURN_IF_ERROR(AddJwtAuthority(keys[i], entry_name, bundle));
    }
  }
  return bundle;
}

}  // namespace

Result<TrustBundle> ParseTrustBundle(std::string_view json_text, std::string_view trust_domain) {
  KW_RETURN_IF_ERROR(ValidateTrustDomain(trust_domain));
  KW_ASSIGN_OR_RETURN(nlohmann::json document, ParseBundleObject(json_text));
  return BundleFromDocument(document, trust_domain);
}

Result<std::vector<TrustBundle>> ParseTrustBundleMap(std::string_view json_text) {
  KW_ASSIGN_OR_RETURN(nlohmann::json document, ParseBundleText(json_text));
  if (!document.is_object()) return InvalidArgument("bundle map: must be a JSON object");
  auto trust_domains = document.find("trust_domains");
  if (trust_domains == document.end()) {
    return InvalidArgument("bundle map: trust_domains is missing");
  }
  if (!trust_domains->is_object()) {
    return InvalidArgument("bundle map: trust_domains must be a JSON object");
  }
  if (trust_domains->size() > kMaxBundleKeys) {
    return InvalidArgument("bundle map: more than " + std::to_string(kMaxBundleKeys) +
                           " trust domains");
  }

  // ParseJsonStrict has already rejected a trust domain named twice.
  std::vector<TrustBundle> bundles;
  for (const auto& [trust_domain, bundle_document] : trust_domains->items()) {
    const std::string context = "bundle map: trust_domains." + QuoteForMessage(trust_domain);
    Status valid_name = ValidateTrustDomain(trust_domain);
    if (!valid_name) return tl::unexpected(valid_name.error().WithContext(context));
    Status valid_object = CheckBundleObject(bundle_document);
    if (!valid_object) return tl::unexpected(valid_object.error().WithContext(context));
    auto bundle = BundleFromDocument(bundle_document, trust_domain);
    if (!bundle) return tl::unexpected(bundle.error().WithContext(context));
    bundles.push_back(*std::move(bundle));
  }
  return bundles;
}

Result<TrustBundle> ParseJwks(std::string_view json_text, std::string_view trust_domain) {
  KW_RETURN_IF_ERROR(ValidateTrustDomain(trust_domain));
  KW_ASSIGN_OR_RETURN(nlohmann::json document, ParseBundleObject(json_text));

  TrustBundle bundle;
  bundle.trust_domain = trust_domain;
  const nlohmann::json& keys = document["keys"];
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const std::string entry_name = EntryName(i);
    KW_ASSIGN_OR_RETURN(std::string kty, EntryKeyType(keys[i], entry_name));
    KW_ASSIGN_OR_RETURN(std::optional<std::string> use, OptionalString(keys[i], entry_name, "use"));
    if (use && *use != "sig" && *use != kJwtSvidUse) continue;
    if (!SupportedKeyType(kty)) continue;
    KW_RETURN_IF_ERROR(AddJwtAuthority(keys[i], entry_name, bundle));
  }
  return bundle;
}

Result<TrustBundle> ParseX509BundlePem(std::string_view pem_text, std::string_view trust_domain) {
  KW_RETURN_IF_ERROR(ValidateTrustDomain(trust_domain));
  if (pem_text.size() > kMaxBundleBytes) {
    return InvalidArgument("bundle: larger than " + std::to_string(kMaxBundleBytes) + " bytes");
  }
  BioPtr bio(BIO_new_mem_buf(pem_text.data(), static_cast<int>(pem_text.size())));
  if (bio == nullptr) return Internal("bundle: out of memory");

  TrustBundle bundle;
  bundle.trust_domain = trust_domain;
  std::size_t blocks = 0;
  for (; blocks <= kMaxBundleKeys; ++blocks) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long length = 0;
    if (PEM_read_bio(bio.get(), &name, &header, &data, &length) != 1) {
      // PEM_R_NO_START_LINE is the normal end of input; anything else is a broken block.
      const bool end_of_input = ERR_GET_REASON(ERR_peek_last_error()) == PEM_R_NO_START_LINE;
      ERR_clear_error();
      if (!end_of_input) {
        return InvalidArgument("bundle: PEM block " + std::to_string(blocks) + " is malformed");
      }
      break;
    }
    const bool is_certificate = std::string_view(name) == PEM_STRING_X509;
    Bytes der(data, data + length);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    if (!is_certificate) continue;
    auto spki = CertificateSpki(der);
    if (!spki) {
      return tl::unexpected(
          spki.error().WithContext("bundle: PEM block " + std::to_string(blocks)));
    }
    if (std::find(bundle.x509_authorities.begin(), bundle.x509_authorities.end(), der) ==
        bundle.x509_authorities.end()) {
      bundle.x509_authorities.push_back(std::move(der));
    }
  }
  if (blocks > kMaxBundleKeys) {
    return InvalidArgument("bundle: more than " + std::to_string(kMaxBundleKeys) + " PEM blocks");
  }
  if (blocks == 0) return InvalidArgument("bundle: no PEM data found");
  if (bundle.x509_authorities.empty()) {
    return InvalidArgument("bundle: no CERTIFICATE block found");
  }
  return bundle;
}

Result<std::string> SerializeTrustBundle(const TrustBundle& bundle) {
  nlohmann::json keys = nlohmann::json::array();
  for (std::size_t i = 0; i < bundle.x509_authorities.size(); ++i) {
    const Bytes& der = bundle.x509_authorities[i];
    auto spki = CertificateSpki(der);
    if (!spki) {
      return tl::unexpected(spki.error().WithContext("x509 authority " + std::to_string(i)));
    }
    KW_ASSIGN_OR_RETURN(nlohmann::json entry, KeyEntry(*spki, kX509SvidUse));
    entry["x5c"] = nlohmann::json::array({ToBase64(der)});
    keys.push_back(std::move(entry));
  }
  for (const JwtAuthority& authority : bundle.jwt_authorities) {
    if (authority.kid.empty()) return InvalidArgument("jwt authority: kid is empty");
    auto entry = KeyEntry(authority.spki, kJwtSvidUse);
    if (!entry) {
      return tl::unexpected(
          entry.error().WithContext("jwt authority " + QuoteForMessage(authority.kid)));
    }
    (*entry)["kid"] = authority.kid;
    keys.push_back(*std::move(entry));
  }

  nlohmann::json document = {{"keys", std::move(keys)}};
  if (bundle.sequence) document["spiffe_sequence"] = *bundle.sequence;
  if (bundle.refresh_hint) document["spiffe_refresh_hint"] = *bundle.refresh_hint;
  return document.dump(2);
}

Result<nlohmann::json> JwksOf(const std::vector<JwtAuthority>& authorities) {
  nlohmann::json keys = nlohmann::json::array();
  for (const JwtAuthority& authority : authorities) {
    if (authority.kid.empty()) return InvalidArgument("jwt authority: kid is empty");
    auto jwk = PublicJwkFromSpki(authority.spki);
    if (!jwk) {
      return tl::unexpected(
          jwk.error().WithContext("jwt authority " + QuoteForMessage(authority.kid)));
    }
    KW_ASSIGN_OR_RETURN(std::string alg, DefaultJwsAlgorithm(*jwk));
    (*jwk)["kid"] = authority.kid;
    (*jwk)["alg"] = alg;
    (*jwk)["use"] = "sig";
    keys.push_back(*std::move(jwk));
  }
  return nlohmann::json{{"keys", std::move(keys)}};
}

const JwtAuthority* FindJwtAuthority(const TrustBundle& bundle, std::string_view kid) {
  for (const JwtAuthority& authority : bundle.jwt_authorities) {
    if (authority.kid == kid) return &authority;
  }
  return nullptr;
}

}  // namespace kw::vault::pki
