#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"
#include "vault/pki/signer.hpp"
#include "vault/pki/trust_bundle.hpp"

namespace kw::vault::pki {

// Upper bound on the size of a compact JWT-SVID that VerifyJwtSvid reads.
inline constexpr std::size_t kMaxJwtSvidBytes = 16 * 1024;

// The claims keyward puts into a JWT-SVID. Times are Unix seconds.
struct JwtSvidClaims {
  std::string spiffe_id;              // sub
  std::vector<std::string> audience;  // aud, at least one
  std::int64_t issued_at = 0;         // iat
  std::int64_t expires_at = 0;        // exp
};

// Issues a JWT-SVID in JWS compact form: header {"alg":"ES256","kid":<kid>,"typ":"JWT"},
// claims {aud (always an array), exp, iat, sub}, and the raw 64-byte r ‖ s signature that
// `signer` returns for SHA-256 of base64url(header) "." base64url(claims). invalid_argument
// for an empty audience list or an empty audience, an invalid, root or over-2048-byte
// SPIFFE ID, expires_at <= issued_at, or an empty kid; errors of the signer pass through.
Result<std::string> IssueJwtSvid(const JwtSvidClaims& claims, std::string_view kid,
                                 const Signer& signer);

// A JWT-SVID that passed VerifyJwtSvid.
struct VerifiedJwtSvid {
  std::string spiffe_id;
  std::vector<std::string> audience;  // aud as an array, even when the token held a string
  std::int64_t expires_at = 0;
  std::string kid;
  nlohmann::json claims;  // every claim of the token
};

// Returns the trust bundle of a trust domain, or nullptr when none is trusted. The bundle
// must stay valid until VerifyJwtSvid returns.
using BundleLookup = std::function<const TrustBundle*(std::string_view trust_domain)>;

// Verifies a JWT-SVID for `audience` at time `now` (Unix seconds). Checks, in this order:
// - JWS compact form only: at most kMaxJwtSvidBytes, three non-empty base64url segments
//   (JWS JSON serialisation and JWE are rejected);
// - the header is a JSON object whose `alg`, checked first, is one of ES256 ES384 ES512
//   RS256 RS384 RS512 PS256 PS384 PS512;
// - the header has no member other than alg, kid and typ. typ, when present, is "JWT" or
//   "JOSE", and kid is a required non-empty string;
// - the claims are a JSON object; sub is a valid SPIFFE ID with a path;
// - the bundle of sub's trust domain exists and has a key with the header's kid;
// - alg fits that key (ES256 P-256, ES384 P-384, ES512 P-521, RS and PS an RSA key): the
//   header never chooses the algorithm family for a key;
// - the signature verifies (ES: raw r ‖ s of exactly twice the field size);
// - aud, a string or an array of strings, contains `audience`;
// - exp is present and numeric and now <= exp + leeway; nbf and iat, when present, are
//   numeric and not later than now + leeway.
// Every failure is invalid_argument with the reason; no message contains the token.
Result<VerifiedJwtSvid> VerifyJwtSvid(std::string_view token, std::string_view audience,
                                      std::int64_t now, std::int64_t leeway_seconds,
                                      const BundleLookup& bundle_for);

}  // namespace kw::vault::pki
