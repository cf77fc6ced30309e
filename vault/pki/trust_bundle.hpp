#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.hpp"
#include "base/result.hpp"

namespace kw::vault::pki {

// Limits on bundle input, so a federated peer cannot make the parser allocate without bound.
inline constexpr std::size_t kMaxBundleBytes = 1 << 20;  // 1 MiB
inline constexpr std::size_t kMaxBundleKeys = 1000;

// A JWT-SVID signing key of a trust domain: its key ID and DER SubjectPublicKeyInfo.
struct JwtAuthority {
  std::string kid;
  Bytes spki;

  bool operator==(const JwtAuthority&) const = default;
};

// The keys a trust domain publishes (SPIFFE Trust Domain and Bundle, section 4). Callers keep
// one bundle per trust domain and select it by the SVID's trust domain, never merging bundles.
struct TrustBundle {
  std::string trust_domain;
  std::vector<Bytes> x509_authorities;        // DER CA certificates, no duplicates
  std::vector<JwtAuthority> jwt_authorities;  // kids are unique and non-empty
  std::optional<std::uint64_t> sequence;      // spiffe_sequence
  std::optional<std::int64_t> refresh_hint;   // spiffe_refresh_hint, seconds
};

// Parses a SPIFFE bundle (a JWK Set) of `trust_domain`. Rules:
// - the text is at most kMaxBundleBytes, a JSON object without duplicate member names;
// - `keys` is required, an array of at most kMaxBundleKeys objects, each with a string `kty`;
// - an entry whose `use` is missing or neither "x509-svid" nor "jwt-svid" is ignored, and so
//   is an entry whose kty is neither "EC" nor "RSA";
// - an x509-svid entry has `x5c` with exactly one standard-base64 DER certificate and no
//   `kid`. Like go-spiffe, the parser rejects the whole bundle otherwise. Key members, when
//   present, must describe the certificate's key. Identical certificates are kept once;
// - a jwt-svid entry has a non-empty `kid`, unique within the bundle, and a valid public key
//   (see SpkiFromJwk);
// - `spiffe_sequence`, when present, is an integer 0..2^64-1 and `spiffe_refresh_hint` an
//   integer 0..2^63-1 (seconds); other top-level members are ignored.
// invalid_argument names the entry index and member ("keys[2].kid: ...").
Result<TrustBundle> ParseTrustBundle(std::string_view json_text, std::string_view trust_domain);

// Parses a SPIFFE bundle map: {"trust_domains": {"<trust domain>": <bundle>, ...}}. The
// trust_domains object is required and may be empty. A trust domain named twice, an invalid
// trust domain name and an invalid bundle (rules of ParseTrustBundle) reject the whole map.
// The whole text is limited to kMaxBundleBytes and to kMaxBundleKeys trust domains.
Result<std::vector<TrustBundle>> ParseTrustBundleMap(std::string_view json_text);

// Parses a plain JWK Set (go-spiffe's jwtbundle format, as /.well-known/jwks.json serves it)
// into a bundle with JWT authorities only. Every entry needs a non-empty unique `kid`. The
// parser ignores an entry whose `use` is present and neither "sig" nor "jwt-svid", and one
// whose kty is neither EC nor RSA. Size limits and errors are those of ParseTrustBundle.
Result<TrustBundle> ParseJwks(std::string_view json_text, std::string_view trust_domain);

// Parses concatenated PEM CERTIFICATE blocks (go-spiffe's x509bundle format) into a bundle
// with X.509 authorities only. Blocks of other types are skipped. invalid_argument when the
// text contains no PEM block, no certificate, or a certificate that is not valid DER.
Result<TrustBundle> ParseX509BundlePem(std::string_view pem_text, std::string_view trust_domain);

// Serialises `bundle` as SPIFFE bundle JSON: one x509-svid entry per certificate (the key
// members of the certificate's key plus `x5c` with that one certificate), one jwt-svid entry
// per JWT authority (kid plus key members), then spiffe_sequence and spiffe_refresh_hint when
// set. The output parses back with ParseTrustBundle. invalid_argument for an unparsable
// certificate or key.
Result<std::string> SerializeTrustBundle(const TrustBundle& bundle);

// Builds the JWK Set served at /.well-known/jwks.json: each key with its kid, the JWS alg
// keyward signs with for that key type (DefaultJwsAlgorithm) and use "sig".
Result<nlohmann::json> JwksOf(const std::vector<JwtAuthority>& authorities);

// Returns the JWT authority of `bundle` with key ID `kid`, or nullptr.
const JwtAuthority* FindJwtAuthority(const TrustBundle& bundle, std::string_view kid);

}  // namespace kw::vault::pki
