#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "base/bytes.hpp"
#include "base/result.hpp"

namespace kw::vault::pki {

// Encodes `bytes` as base64url without padding (RFC 4648 section 5, RFC 7515 section 2).
std::string Base64UrlEncode(ByteSpan bytes);

// Decodes unpadded base64url. Returns nullopt for padding, whitespace, a character outside
// A-Z a-z 0-9 - _, an impossible length, or non-zero unused bits in the last character, so
// every byte string has exactly one accepted encoding.
std::optional<Bytes> Base64UrlDecode(std::string_view text);

// Parses JSON text and rejects what nlohmann::json would silently accept: a member name that
// occurs twice in one object (nlohmann keeps the last one, so `{"alg":"ES256","alg":"none"}`
// would read differently to different parsers) and nesting deeper than `max_depth`.
// invalid_argument names the problem and, for a syntax error, the byte offset; the message
// never contains the input, not even a duplicated member name.
Result<nlohmann::json> ParseJsonStrict(std::string_view text, std::size_t max_depth = 32);

// Converts a DER SubjectPublicKeyInfo into a public JWK with only the key members: EC keys on
// P-256, P-384 or P-521 give {kty "EC", crv, x, y}, each coordinate left-padded with zeros to
// the field size (RFC 7518 section 6.2.1.2). RSA keys give {kty "RSA", n, e} without leading
// zero bytes. invalid_argument for malformed DER or any other key type.
Result<nlohmann::json> PublicJwkFromSpki(ByteSpan spki);

// Converts a public JWK (kty EC with crv P-256/P-384/P-521, or kty RSA) into a DER
// SubjectPublicKeyInfo. EC coordinates must have exactly the field size and the point must
// lie on the curve. RSA n must have 2048 to 16384 bits and no leading zero byte. No private
// member (d, p, q, dp, dq, qi, oth) may be present, and other members (kid, use, alg, x5c)
// are ignored. invalid_argument names the offending member.
Result<Bytes> SpkiFromJwk(const nlohmann::json& jwk);

// Computes the RFC 7638 thumbprint: base64url(SHA-256) of the required members in
// lexicographic order with no whitespace. Only kty EC and RSA are supported; the key itself is
// not validated (use SpkiFromJwk for that). keyward uses it as the `kid` of its JWT keys.
Result<std::string> JwkThumbprint(const nlohmann::json& jwk);

// Returns the JWS algorithm keyward pairs with a public JWK: ES256, ES384 or ES512 by curve
// for EC keys and RS256 for RSA keys. invalid_argument for other keys.
Result<std::string> DefaultJwsAlgorithm(const nlohmann::json& jwk);

namespace detail {

// Quotes a value taken from untrusted input for an error message: JSON-escaped, invalid UTF-8
// replaced, cut after 64 bytes (then "..." follows the closing quote).
std::string QuoteForMessage(std::string_view value);

// Describes a nlohmann::json exception without quoting the parsed text, whose own message
// does ("last read: ..."): a syntax error gives the byte offset, a number overflow a fixed
// text. Other errors keep nlohmann's message: for the at() and get() calls that follow a parse,
// it names types, keys and indexes from the calling code, not the parsed text.
std::string DescribeJsonError(const nlohmann::json::exception& error);

}  // namespace detail

}  // namespace kw::vault::pki
