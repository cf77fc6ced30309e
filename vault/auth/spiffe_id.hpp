#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "base/result.hpp"

namespace kw::vault::auth {

// Length limits of the SPIFFE ID standard. Parsers must accept IDs up to 2048 bytes, and
// issuers should not mint longer ones. A trust domain is an RFC 3986 host, at most 255 bytes.
// NOTE: ParseSpiffeId accepts IDs longer than 2048 bytes, as go-spiffe does; issuers check.
inline constexpr std::size_t kMaxSpiffeIdBytes = 2048;
inline constexpr std::size_t kMaxTrustDomainBytes = 255;

// A validated SPIFFE ID, "spiffe://<trust_domain><path>". Only ParseSpiffeId creates valid
// ones, so two IDs are equal exactly when their str() values are equal byte for byte.
struct SpiffeId {
  std::string trust_domain;  // lower-case, characters a-z 0-9 . - _
  std::string path;          // empty (the trust domain's root ID) or "/seg/seg..."

  std::string str() const { return "spiffe://" + trust_domain + path; }
  // The trust domain's own ID: valid, but never a workload (leaf SVID) identity.
  bool root() const { return path.empty(); }

  bool operator==(const SpiffeId&) const = default;
};

// Parses `text` as a SPIFFE ID without decoding or normalising anything first. The scheme is
// exactly "spiffe". The trust domain is non-empty and lower-case, with no userinfo, port or
// percent-encoding. The optional path has non-empty segments (not "." or "..") in
// a-z A-Z 0-9 . - _, and there is no trailing slash, query or fragment. invalid_argument
// names the rule broken.
Result<SpiffeId> ParseSpiffeId(std::string_view text);

// Checks a role's allowed-ID pattern: a valid SPIFFE ID, or a valid SPIFFE ID followed by
// "/*". invalid_argument names the rule broken.
Status ValidateSpiffeIdPattern(std::string_view pattern);

// Returns whether `id` matches `pattern`. An exact pattern matches the same ID byte for byte.
// A pattern "<prefix>/*" matches every ID strictly below <prefix> on a segment boundary:
// "spiffe://td/ns/*" matches "spiffe://td/ns/a" and "spiffe://td/ns/a/b", but neither
// "spiffe://td/ns" nor "spiffe://td/nsx". An invalid pattern matches nothing.
bool SpiffeIdMatches(std::string_view pattern, const SpiffeId& id);

}  // namespace kw::vault::auth
