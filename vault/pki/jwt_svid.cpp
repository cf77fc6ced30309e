#include "vault/pki/jwt_svid.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>

#include "vault/auth/spiffe_id.hpp"
#include "vault/pki/jwk.hpp"

namespace kw::vault::pki {
namespace {

using detail::QuoteForMessage;

struct PkeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
struct EcdsaSigDeleter {
  void operator()(ECDSA_SIG* sig) const { ECDSA_SIG_free(sig); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, EcdsaSigDeleter>;

enum class Family { kEcdsa, kRsaPkcs1, kRsaPss };

// The JWS algorithms a JWT-SVID may use. HS*, none and EdDSA are absent on purpose.
struct Algorithm {
  std::string_view name;
  Family family;
  const EVP_MD* (*digest)();
  const char* curve;        // OpenSSL group name for ECDSA, nullptr for RSA
  std::size_t field_bytes;  // ECDSA: size of r and of s in the raw signature
};
constexpr Algorithm kAlgorithms[] = {
    {"ES256", Family::kEcdsa, EVP_sha256, "prime256v1", 32},
    {"ES384", Family::kEcdsa, EVP_sha384, "secp384r1", 48},
    {"ES512", Family::kEcdsa, EVP_sha512, "secp521r1", 66},
    {"RS256", Family::kRsaPkcs1, EVP_sha256, nullptr, 0},
    {"RS384", Family::kRsaPkcs1, EVP_sha384, nullptr, 0},
    {"RS512", Family::kRsaPkcs1, EVP_sha512, nullptr, 0},
    {"PS256", Family::kRsaPss, EVP_sha256, nullptr, 0},
    {"PS384", Family::kRsaPss, EVP_sha384, nullptr, 0},
    {"PS512", Family::kRsaPss, EVP_sha512, nullptr, 0},
};

constexpr int kMinRsaBits = 2048;

tl::unexpected<Error> Reject(const std::string& reason) {
  return InvalidArgument("jwt-svid: " + reason);
}

const Algorithm* FindAlgorithm(std::string_view name) {
  for (const Algorithm& algorithm : kAlgorithms) {
    if (algorithm.name == name) return &algorithm;
  }
  return nullptr;
}

std::int64_t SaturatingAdd(std::int64_t a, std::int64_t b) {
  std::int64_t sum = 0;
  if (__builtin_add_overflow(a, b, &sum)) {
    return b > 0 ? std::numeric_limits<std::int64_t>::max()
                 : std::numeric_limits<std::int64_t>::min();
  }
  return sum;
}

// Splits a compact JWS into its three segments and decodes them.
struct CompactJws {
  std::string_view header_b64;
  std::string_view payload_b64;
  Bytes header;
  Bytes payload;
  Bytes signature;
};

Result<CompactJws> SplitCompact(std::string_view token) {
  if (token.empty()) return Reject("token is empty");
  if (token.size() > kMaxJwtSvidBytes) {
    return Reject("token is larger than " + std::to_string(kMaxJwtSvidBytes) + " bytes");
  }
  if (token.front() == '{') {
    return Reject("JWS JSON serialization is not allowed; a JWT-SVID uses the compact form");
  }

  const std::size_t dots = static_cast<std::size_t>(std::count(token.begin(), token.end(), '.'));
  if (dots != 2) {
    return Reject("token has " + std::to_string(dots + 1) +
                  " segments; the JWS compact form has exactly three, separated by dots");
  }
  const std::size_t first = token.find('.');
  const std::size_t second = token.find('.', first + 1);

  CompactJws jws;
  jws.header_b64 = token.substr(0, first);
  jws.payload_b64 = token.substr(first + 1, second - first - 1);
  const std::string_view signature_b64 = token.substr(second + 1);
  if (jws.header_b64.empty() || jws.payload_b64.empty() || signature_b64.empty()) {
    return Reject("a token segment is empty");
  }

  std::optional<Bytes> header = Base64UrlDecode(jws.header_b64);
  std::optional<Bytes> payload = Base64UrlDecode(jws.payload_b64);
  std::optional<Bytes> signature = Base64UrlDecode(signature_b64);
  if (!header) return Reject("header segment is not unpadded base64url");
  if (!payload) return Reject("payload segment is not unpadded base64url");
  if (!signature) return Reject("signature segment is not unpadded base64url");
  jws.header = *std::move(header);
  jws.payload = *std::move(payload);
  jws.signature = *std::move(signature);
  return jws;
}

// Checks the header and returns the algorithm and kid it names.
Result<std::pair<const Algorithm*, std::string>> CheckHeader(ByteSpan header_bytes) {
  auto header = ParseJsonStrict(AsText(header_bytes));
  if (!header) return Reject("header: " + header.error().message());
  if (!header->is_object()) return Reject("header must be a JSON object");

  // The JWT-SVID standard requires alg to be checked before anything else.
  auto alg = header->find("alg");
  if (alg == header->end()) return Reject("header: alg is missing");
  if (!alg->is_string()) return Reject("header: alg must be a string");
  const Algorithm* algorithm = FindAlgorithm(alg->get_ref<const std::string&>());
  if (algorithm == nullptr) {
    return Reject("header: alg " + QuoteForMessage(alg->get_ref<const std::string&>()) +
                  " is not allowed; use ES256/384/512, RS256/384/512 or PS256/384/512");
  }

  for (const auto& [member, value] : header->items()) {
    if (member != "alg" && member != "kid" && member != "typ") {
      return Reject("header: member " + QuoteForMessage(member) +
                    " is not allowed; a JWT-SVID header holds only alg, kid and typ");
    }
  }
  auto typ = header->find("typ");
  if (typ != header->end() && (!typ->is_string() || (*typ != "JWT" && *typ != "JOSE"))) {
    return Reject("header: typ must be \"JWT\" or \"JOSE\"");
  }
  auto kid = header->find("kid");
  if (kid == header->end()) return Reject("header: kid is missing");
  if (!kid->is_string() || kid->get_ref<const std::string&>().empty()) {
    return Reject("header: kid must be a non-empty string");
  }
  return std::make_pair(algorithm, kid->get<std::string>());
}

Result<PkeyPtr> KeyForAlgorithm(ByteSpan spki, const Algorithm& algorithm, const std::string& kid) {
  const unsigned char* cursor = spki.data();
  PkeyPtr key(d2i_PUBKEY(nullptr, &cursor, static_cast<long>(spki.size())));
  if (key == nullptr || cursor != spki.data() + spki.size()) {
    ERR_clear_error();
    return Reject("key " + QuoteForMessage(kid) + " in the bundle is not a valid public key");
  }
  const std::string mismatch =
      "alg " + std::string(algorithm.name) + " does not match key " + QuoteForMessage(kid);
  if (algorithm.family == Family::kEcdsa) {
    char group[64] = {};
    std::size_t group_length = 0;
    if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_EC ||
        EVP_PKEY_get_utf8_string_param(key.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       &group_length) != 1 ||
        std::string_view(group, group_length) != algorithm.curve) {
      ERR_clear_error();
      return Reject(mismatch);
    }
  } else {
    if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_RSA) return Reject(mismatch);
    if (EVP_PKEY_get_bits(key.get()) < kMinRsaBits) {
      return Reject("key " + QuoteForMessage(kid) + " is an RSA key shorter than 2048 bits");
    }
  }
  return key;
}

// Converts a raw r ‖ s ECDSA signature into the DER ECDSA-Sig-Value that OpenSSL verifies.
Result<Bytes> RawEcdsaToDer(ByteSpan raw, std::size_t field_bytes) {
  if (raw.size() != 2 * field_bytes) {
    return Reject("signature must be " + std::to_string(2 * field_bytes) + " bytes (raw r||s)");
  }
  BIGNUM* r = BN_bin2bn(raw.data(), static_cast<int>(field_bytes), nullptr);
  BIGNUM* s = BN_bin2bn(raw.data() + field_bytes, static_cast<int>(field_bytes), nullptr);
  EcdsaSigPtr sig(ECDSA_SIG_new());
  if (r == nullptr || s == nullptr || sig == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return Internal("jwt-svid: out of memory");
  }
  unsigned char* der = nullptr;
  const int length = i2d_ECDSA_SIG(sig.get(), &der);
  if (length <= 0) {
    ERR_clear_error();
    return Internal("jwt-svid: cannot encode the ECDSA signature");
  }
  Bytes out(der, der + length);
  OPENSSL_free(der);
  return out;
}

Status VerifySignature(const Algorithm& algorithm, EVP_PKEY* key, std::string_view signing_input,
                       ByteSpan signature) {
  Bytes der_signature;
  if (algorithm.family == Family::kEcdsa) {
    KW_ASSIGN_OR_RETURN(der_signature, RawEcdsaToDer(signature, algorithm.field_bytes));
    signature = der_signature;
  } else if (signature.size() != static_cast<std::size_t>(EVP_PKEY_get_size(key))) {
    return Reject("signature length does not match the RSA key size");
  }

  MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* key_ctx = nullptr;  // owned by ctx
  if (ctx == nullptr ||
      EVP_DigestVerifyInit(ctx.get(), &key_ctx, algorithm.digest(), nullptr, key) != 1) {
    ERR_clear_error();
    return Internal("jwt-svid: cannot start signature verification");
  }
  if (algorithm.family == Family::kRsaPss &&
      (EVP_PKEY_CTX_set_rsa_padding(key_ctx, RSA_PKCS1_PSS_PADDING) != 1 ||
       EVP_PKEY_CTX_set_rsa_pss_saltlen(key_ctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
       EVP_PKEY_CTX_set_rsa_mgf1_md(key_ctx, algorithm.digest()) != 1)) {
    ERR_clear_error();
    return Internal("jwt-svid: cannot configure RSA-PSS verification");
  }
  const int verified = EVP_DigestVerify(
      ctx.get(), signature.data(), signature.size(),
      reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size());
  ERR_clear_error();
  if (verified != 1) return Reject("signature is invalid");
  return OkStatus();
}

// Reads an optional NumericDate claim (RFC 7519 section 2), clamped to the int64 range.
// Fractional seconds are rounded down.
Result<std::optional<std::int64_t>> NumericDate(const nlohmann::json& claims, const char* name) {
  auto it = claims.find(name);
  if (it == claims.end()) return std::optional<std::int64_t>();
  if (it->is_number_integer() && !it->is_number_unsigned()) {
    return std::optional<std::int64_t>(it->get<std::int64_t>());
  }
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  if (it->is_number_unsigned()) {
    const std::uint64_t value = it->get<std::uint64_t>();
    return std::optional<std::int64_t>(
        value > static_cast<std::uint64_t>(kMax) ? kMax : static_cast<std::int64_t>(value));
  }
  if (it->is_number_float()) {
    const double value = std::floor(it->get<double>());
    if (value >= 9.2e18) return std::optional<std::int64_t>(kMax);
    if (value <= -9.2e18)
      return std::optional<std::int64_t>(std::numeric_limits<std::int64_t>::min());
    return std::optional<std::int64_t>(static_cast<std::int64_t>(value));
  }
  return Reject(std::string("claim ") + name + " must be a number (seconds since the epoch)");
}

Result<std::vector<std::string>> AudienceClaim(const nlohmann::json& claims) {
  auto aud = claims.find("aud");
  if (aud == claims.end()) return Reject("claim aud is missing");
  if (aud->is_string()) return std::vector<std::string>{aud->get<std::string>()};
  if (!aud->is_array() || aud->empty()) {
    return Reject("claim aud must be a string or a non-empty array of strings");
  }
  std::vector<std::string> audience;
  for (const nlohmann::json& value : *aud) {
    if (!value.is_string()) return Reject("claim aud must hold only strings");
    audience.push_back(value.get<std::string>());
  }
  return audience;
}

Status CheckTimes(const nlohmann::json& claims, std::int64_t now, std::int64_t leeway) {
  KW_ASSIGN_OR_RETURN(std::optional<std::int64_t> exp, NumericDate(claims, "exp"));
  if (!exp) return Reject("claim exp is missing");
  if (now > SaturatingAdd(*exp, leeway)) {
    return Reject("token expired at " + std::to_string(*exp) + " (now " + std::to_string(now) +
                  ", leeway " + std::to_string(leeway) + " s)");
  }
  KW_ASSIGN_OR_RETURN(std::optional<std::int64_t> nbf, NumericDate(claims, "nbf"));
  if (nbf && *nbf > SaturatingAdd(now, leeway)) {
    return Reject("token is not valid before " + std::to_string(*nbf) + " (now " +
                  std::to_string(now) + ")");
  }
  KW_ASSIGN_OR_RETURN(std::optional<std::int64_t> iat, NumericDate(claims, "iat"));
  if (iat && *iat > SaturatingAdd(now, leeway)) {
    return Reject("token was issued in the future, at " + std::to_string(*iat) + " (now " +
                  std::to_string(now) + ")");
  }
  return OkStatus();
}

Status CheckIssueRequest(const JwtSvidClaims& claims, std::string_view kid) {
  if (claims.spiffe_id.size() > auth::kMaxSpiffeIdBytes) {
    return InvalidArgument("jwt-svid: spiffe_id is longer than " +
                           std::to_string(auth::kMaxSpiffeIdBytes) + " bytes");
  }
  auto id = auth::ParseSpiffeId(claims.spiffe_id);
  if (!id) return tl::unexpected(id.error().WithContext("jwt-svid: spiffe_id"));
  if (id->root()) {
    return InvalidArgument("jwt-svid: spiffe_id " + id->str() +
                           " has no path; a workload ID needs one, such as " + id->str() + "/app");
  }
  if (claims.audience.empty()) return InvalidArgument("jwt-svid: audience must not be empty");
  for (const std::string& audience : claims.audience) {
    if (audience.empty()) return InvalidArgument("jwt-svid: an audience value is empty");
  }
  if (claims.expires_at <= claims.issued_at) {
    return InvalidArgument("jwt-svid: expires_at must be later than issued_at");
  }
  if (kid.empty()) return InvalidArgument("jwt-svid: kid must not be empty");
  for (char c : kid) {
    if (c < 0x21 || c > 0x7e) {
      return InvalidArgument("jwt-svid: kid must consist of printable ASCII characters");
    }
  }
  return OkStatus();
}

}  // namespace

Result<std::string> IssueJwtSvid(const JwtSvidClaims& claims, std::string_view kid,
                                 const Signer& signer) {
  KW_RETURN_IF_ERROR(CheckIssueRequest(claims, kid));

  // nlohmann::json sorts object members by name, so the header serialises as
  // {"alg":"ES256","kid":...,"typ":"JWT"}.
  const nlohmann::json header = {{"alg", "ES256"}, {"kid", kid}, {"typ", "JWT"}};
  const nlohmann::json payload = {{"sub", claims.spiffe_id},
                                  {"aud", claims.audience},
                                  {"exp", claims.expires_at},
                                  {"iat", claims.issued_at}};
  std::string signing_input;
  try {
    signing_input =
        Base64UrlEncode(AsBytes(header.dump())) + "." + Base64UrlEncode(AsBytes(payload.dump()));
  } catch (const nlohmann::json::exception&) {
    return InvalidArgument("jwt-svid: audience values must be valid UTF-8");
  }

  auto signature = signer.SignDigest(Sha256(AsBytes(signing_input)));
  if (!signature) return tl::unexpected(signature.error().WithContext("jwt-svid: sign"));
  if (signature->size() != 64) {
    return Internal("jwt-svid: the signer returned " + std::to_string(signature->size()) +
                    " bytes; ES256 needs a raw 64-byte r||s signature");
  }
  return signing_input + "." + Base64UrlEncode(*signature);
}

Result<VerifiedJwtSvid> VerifyJwtSvid(std::string_view token, std::string_view audience,
                                      std::int64_t now, std::int64_t leeway_seconds,
                                      const BundleLookup& bundle_for) {
  if (leeway_seconds < 0) return InvalidArgument("jwt-svid: leeway must not be negative");
  KW_ASSIGN_OR_RETURN(CompactJws jws, SplitCompact(token));
  KW_ASSIGN_OR_RETURN(auto algorithm_and_kid, CheckHeader(jws.header));
  const Algorithm& algorithm = *algorithm_and_kid.first;
  const std::string& kid = algorithm_and_kid.second;

  auto claims = ParseJsonStrict(AsText(jws.payload));
  if (!claims) return Reject("claims: " + claims.error().message());
  if (!claims->is_object()) return Reject("claims must be a JSON object");
  auto sub = claims->find("sub");
  if (sub == claims->end()) return Reject("claim sub is missing");
  if (!sub->is_string()) return Reject("claim sub must be a string");
  auto id = auth::ParseSpiffeId(sub->get_ref<const std::string&>());
  if (!id) return Reject("claim sub: " + id.error().message());
  if (id->root()) return Reject("claim sub " + id->str() + " has no path; it is not a workload");

  // Key selection: the bundle of sub's own trust domain, then the key by kid.
  const TrustBundle* bundle = bundle_for ? bundle_for(id->trust_domain) : nullptr;
  if (bundle == nullptr) {
    return Reject("untrusted: no bundle for trust domain " + id->trust_domain);
  }
  const JwtAuthority* authority = FindJwtAuthority(*bundle, kid);
  if (authority == nullptr) {
    return Reject("untrusted: the bundle of trust domain " + id->trust_domain +
                  " has no key with kid " + QuoteForMessage(kid));
  }
  KW_ASSIGN_OR_RETURN(PkeyPtr key, KeyForAlgorithm(authority->spki, algorithm, kid));
  const std::string_view signing_input =
      token.substr(0, jws.header_b64.size() + 1 + jws.payload_b64.size());
  KW_RETURN_IF_ERROR(VerifySignature(algorithm, key.get(), signing_input, jws.signature));

  KW_ASSIGN_OR_RETURN(std::vector<std::string> token_audience, AudienceClaim(*claims));
  if (std::find(token_audience.begin(), token_audience.end(), audience) == token_audience.end()) {
    return Reject("claim aud does not contain the expected audience " + QuoteForMessage(audience));
  }
  KW_RETURN_IF_ERROR(CheckTimes(*claims, now, leeway_seconds));

  VerifiedJwtSvid verified;
  verified.spiffe_id = id->str();
  verified.audience = std::move(token_audience);
  verified.expires_at = *NumericDate(*claims, "exp").value();
  verified.kid = kid;
  verified.claims = *std::move(claims);
  return verified;
}

}  // namespace kw::vault::pki
