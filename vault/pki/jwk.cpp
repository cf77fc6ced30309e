#include "vault/pki/jwk.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <sodium.h>

#include <memory>
#include <set>
#include <stdexcept>
#include <vector>

namespace kw::vault::pki {
namespace detail {

std::string QuoteForMessage(std::string_view value) {
  std::string quoted = nlohmann::json(std::string(value.substr(0, 64)))
                           .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (value.size() > 64) quoted += "...";
  return quoted;
}

std::string DescribeJsonError(const nlohmann::json::exception& error) {
  if (const auto* syntax = dynamic_cast<const nlohmann::json::parse_error*>(&error)) {
    return "invalid JSON: syntax error at byte " + std::to_string(syntax->byte);
  }
  // nlohmann's out_of_range ids 406 to 408 report a number in the text that does not fit.
  if (error.id >= 406 && error.id <= 408) return "invalid JSON: a number is out of range";
  return error.what();
}

}  // namespace detail

namespace {

using detail::QuoteForMessage;

struct PkeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct PkeyCtxDeleter {
  void operator()(EVP_PKEY_CTX* ctx) const { EVP_PKEY_CTX_free(ctx); }
};
struct BignumDeleter {
  void operator()(BIGNUM* bn) const { BN_free(bn); }
};
struct ParamBuildDeleter {
  void operator()(OSSL_PARAM_BLD* bld) const { OSSL_PARAM_BLD_free(bld); }
};
struct ParamDeleter {
  void operator()(OSSL_PARAM* params) const { OSSL_PARAM_free(params); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxDeleter>;
using BignumPtr = std::unique_ptr<BIGNUM, BignumDeleter>;
using ParamBuildPtr = std::unique_ptr<OSSL_PARAM_BLD, ParamBuildDeleter>;
using ParamPtr = std::unique_ptr<OSSL_PARAM, ParamDeleter>;

// The JWK curves keyward accepts, with OpenSSL's group name and the field size in bytes.
struct Curve {
  const char* jwk_name;
  const char* openssl_name;
  std::size_t field_bytes;
  const char* jws_algorithm;
};
constexpr Curve kCurves[] = {
    {"P-256", "prime256v1", 32, "ES256"},
    {"P-384", "secp384r1", 48, "ES384"},
    {"P-521", "secp521r1", 66, "ES512"},
};

const Curve* CurveByJwkName(std::string_view name) {
  for (const Curve& curve : kCurves) {
    if (name == curve.jwk_name) return &curve;
  }
  return nullptr;
}

const Curve* CurveByOpensslName(std::string_view name) {
  for (const Curve& curve : kCurves) {
    if (name == curve.openssl_name) return &curve;
  }
  return nullptr;
}

constexpr int kMinRsaBits = 2048;
constexpr int kMaxRsaBits = 16384;

// Private JWK members (RFC 7518 sections 6.2.2 and 6.3.2). A public key must carry none.
constexpr const char* kPrivateMembers[] = {"d", "p", "q", "dp", "dq", "qi", "oth"};

// Thrown from the nlohmann parser callback to stop parsing at the first violation.
class StrictJsonViolation : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

Bytes BignumBytes(const BIGNUM* bn, std::size_t padded_size) {
  Bytes out(padded_size == 0 ? static_cast<std::size_t>(BN_num_bytes(bn)) : padded_size);
  if (padded_size == 0) {
    BN_bn2bin(bn, out.data());
  } else {
    BN_bn2binpad(bn, out.data(), static_cast<int>(out.size()));
  }
  return out;
}

Result<BignumPtr> GetBignumParam(const EVP_PKEY* key, const char* name) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &bn) != 1 || bn == nullptr) {
    ERR_clear_error();
    return InvalidArgument(std::string("public key: cannot read parameter ") + name);
  }
  return BignumPtr(bn);
}

Result<nlohmann::json> EcJwkFromKey(const EVP_PKEY* key) {
  char group[64] = {};
  std::size_t group_length = 0;
  if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                     &group_length) != 1) {
    ERR_clear_error();
    return InvalidArgument("public key: EC key without a named curve");
  }
  const Curve* curve = CurveByOpensslName(std::string_view(group, group_length));
  if (curve == nullptr) {
    return InvalidArgument("public key: unsupported EC curve " + std::string(group) +
                           "; use P-256, P-384 or P-521");
  }
  KW_ASSIGN_OR_RETURN(BignumPtr x, GetBignumParam(key, OSSL_PKEY_PARAM_EC_PUB_X));
  KW_ASSIGN_OR_RETURN(BignumPtr y, GetBignumParam(key, OSSL_PKEY_PARAM_EC_PUB_Y));
  return nlohmann::json{{"kty", "EC"},
                        {"crv", curve->jwk_name},
                        {"x", Base64UrlEncode(BignumBytes(x.get(), curve->field_bytes))},
                        {"y", Base64UrlEncode(BignumBytes(y.get(), curve->field_bytes))}};
}

Result<nlohmann::json> RsaJwkFromKey(const EVP_PKEY* key) {
  KW_ASSIGN_OR_RETURN(BignumPtr n, GetBignumParam(key, OSSL_PKEY_PARAM_RSA_N));
  KW_ASSIGN_OR_RETURN(BignumPtr e, GetBignumParam(key, OSSL_PKEY_PARAM_RSA_E));
  return nlohmann::json{{"kty", "RSA"},
                        {"n", Base64UrlEncode(BignumBytes(n.get(), 0))},
                        {"e", Base64UrlEncode(BignumBytes(e.get(), 0))}};
}

// Reads the string member `name` of `jwk` and base64url-decodes it.
Result<Bytes> DecodeMember(const nlohmann::json& jwk, const char* name) {
  auto it = jwk.find(name);
  if (it == jwk.end()) return InvalidArgument(std::string("jwk: ") + name + " is missing");
  if (!it->is_string()) return InvalidArgument(std::string("jwk: ") + name + " must be a string");
  std::optional<Bytes> bytes = Base64UrlDecode(it->get_ref<const std::string&>());
  if (!bytes) {
    return InvalidArgument(std::string("jwk: ") + name + " is not valid unpadded base64url");
  }
  return *std::move(bytes);
}

// Builds an EVP_PKEY of `type` ("EC" or "RSA") from `params`, checks the public key and
// returns its DER SubjectPublicKeyInfo.
Result<Bytes> SpkiFromParams(const char* type, OSSL_PARAM_BLD* builder, const char* member) {
  ParamPtr params(OSSL_PARAM_BLD_to_param(builder));
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* raw_key = nullptr;
  if (params == nullptr || ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw_key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    ERR_clear_error();
    return InvalidArgument(std::string("jwk: ") + member + " is not a valid " + type +
                           " public key");
  }
  PkeyPtr key(raw_key);

  // EVP_PKEY_public_check tests an EC point for being on the curve and not the point at
  // infinity, and an RSA modulus and exponent for plausibility.
  PkeyCtxPtr check_ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  if (check_ctx == nullptr || EVP_PKEY_public_check(check_ctx.get()) != 1) {
    ERR_clear_error();
    return InvalidArgument(std::string("jwk: ") + member + " is not a valid " + type +
                           " public key (point not on the curve or bad parameters)");
  }

  unsigned char* der = nullptr;
  const int length = i2d_PUBKEY(key.get(), &der);
  if (length <= 0) {
    ERR_clear_error();
    return Internal("jwk: cannot encode the public key as SubjectPublicKeyInfo");
  }
  Bytes spki(der, der + length);
  OPENSSL_free(der);
  return spki;
}

Result<Bytes> SpkiFromEcJwk(const nlohmann::json& jwk) {
  auto crv = jwk.find("crv");
  if (crv == jwk.end()) return InvalidArgument("jwk: crv is missing");
  if (!crv->is_string()) return InvalidArgument("jwk: crv must be a string");
  const Curve* curve = CurveByJwkName(crv->get_ref<const std::string&>());
  if (curve == nullptr) {
    return InvalidArgument("jwk: crv " + QuoteForMessage(crv->get_ref<const std::string&>()) +
                           " is not supported; use P-256, P-384 or P-521");
  }
  KW_ASSIGN_OR_RETURN(Bytes x, DecodeMember(jwk, "x"));
  KW_ASSIGN_OR_RETURN(Bytes y, DecodeMember(jwk, "y"));
  if (x.size() != curve->field_bytes) {
    return InvalidArgument("jwk: x must be exactly " + std::to_string(curve->field_bytes) +
                           " bytes for " + curve->jwk_name);
  }
  if (y.size() != curve->field_bytes) {
    return InvalidArgument("jwk: y must be exactly " + std::to_string(curve->field_bytes) +
                           " bytes for " + curve->jwk_name);
  }

  Bytes point;
  point.reserve(1 + x.size() + y.size());
  point.push_back(0x04);  // uncompressed point (SEC 1 section 2.3.3)
  point.insert(point.end(), x.begin(), x.end());
  point.insert(point.end(), y.begin(), y.end());

  ParamBuildPtr builder(OSSL_PARAM_BLD_new());
  if (builder == nullptr ||
      OSSL_PARAM_BLD_push_utf8_string(builder.get(), OSSL_PKEY_PARAM_GROUP_NAME,
                                      curve->openssl_name, 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(builder.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1) {
    ERR_clear_error();
    return Internal("jwk: cannot build EC key parameters");
  }
  return SpkiFromParams("EC", builder.get(), "x/y");
}

Result<Bytes> SpkiFromRsaJwk(const nlohmann::json& jwk) {
  KW_ASSIGN_OR_RETURN(Bytes n, DecodeMember(jwk, "n"));
  KW_ASSIGN_OR_RETURN(Bytes e, DecodeMember(jwk, "e"));
  if (n.empty() || n.front() == 0) {
    return InvalidArgument("jwk: n must be encoded without leading zero bytes");
  }
  if (e.empty() || e.front() == 0 || e.size() > 8) {
    return InvalidArgument("jwk: e must be 1 to 8 bytes without leading zero bytes");
  }
  BignumPtr n_bn(BN_bin2bn(n.data(), static_cast<int>(n.size()), nullptr));
  BignumPtr e_bn(BN_bin2bn(e.data(), static_cast<int>(e.size()), nullptr));
  if (n_bn == nullptr || e_bn == nullptr) return Internal("jwk: out of memory");
  const int bits = BN_num_bits(n_bn.get());
  if (bits < kMinRsaBits || bits > kMaxRsaBits) {
    return InvalidArgument("jwk: n has " + std::to_string(bits) + " bits; RSA keys need " +
                           std::to_string(kMinRsaBits) + " to " + std::to_string(kMaxRsaBits));
  }
  if (!BN_is_odd(e_bn.get()) || BN_is_one(e_bn.get())) {
    return InvalidArgument("jwk: e must be an odd integer greater than 1");
  }

  ParamBuildPtr builder(OSSL_PARAM_BLD_new());
  if (builder == nullptr ||
      OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_N, n_bn.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_E, e_bn.get()) != 1) {
    ERR_clear_error();
    return Internal("jwk: cannot build RSA key parameters");
  }
  return SpkiFromParams("RSA", builder.get(), "n/e");
}

Result<std::string> RequiredString(const nlohmann::json& jwk, const char* name) {
  auto it = jwk.find(name);
  if (it == jwk.end()) return InvalidArgument(std::string("jwk: ") + name + " is missing");
  if (!it->is_string()) return InvalidArgument(std::string("jwk: ") + name + " must be a string");
  return it->get<std::string>();
}

}  // namespace

std::string Base64UrlEncode(ByteSpan bytes) {
  const std::size_t length =
      sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  std::string out(length, '\0');
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(length - 1);  // drop the terminating NUL
  return out;
}

std::optional<Bytes> Base64UrlDecode(std::string_view text) {
  // A final group of one character cannot encode a byte.
  if (text.size() % 4 == 1) return std::nullopt;

  // libsodium's URLSAFE_NO_PADDING variant rejects '=', characters outside the alphabet (no
  // ignore set is passed) and non-zero unused bits in the last character.
  Bytes out(text.size() / 4 * 3 + 3);
  std::size_t written = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out.data(), out.size(), text.data(), text.size(), nullptr, &written, &end,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      end != text.data() + text.size()) {
    return std::nullopt;
  }
  out.resize(written);
  return out;
}

Result<nlohmann::json> ParseJsonStrict(std::string_view text, std::size_t max_depth) {
  std::vector<std::set<std::string>> open_objects;
  std::size_t depth = 0;
  auto callback = [&](int /*depth*/, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    switch (event) {
      case Event::object_start:
      case Event::array_start:
        if (++depth > max_depth) {
          throw StrictJsonViolation("JSON nesting is deeper than " + std::to_string(max_depth));
        }
        if (event == Event::object_start) open_objects.emplace_back();
        break;
      case Event::object_end:
      case Event::array_end:
        --depth;
        if (event == Event::object_end) open_objects.pop_back();
        break;
      case Event::key:
        if (!open_objects.back().insert(parsed.get<std::string>()).second) {
          throw StrictJsonViolation("JSON member name occurs more than once in one object");
        }
        break;
      case Event::value:
        break;
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), callback);
  } catch (const StrictJsonViolation& violation) {
    return InvalidArgument(violation.what());
  } catch (const nlohmann::json::exception& error) {
    return InvalidArgument(detail::DescribeJsonError(error));
  }
}

Result<nlohmann::json> PublicJwkFromSpki(ByteSpan spki) {
  const unsigned char* cursor = spki.data();
  PkeyPtr key(d2i_PUBKEY(nullptr, &cursor, static_cast<long>(spki.size())));
  if (key == nullptr || cursor != spki.data() + spki.size()) {
    ERR_clear_error();
    return InvalidArgument("public key: not a DER SubjectPublicKeyInfo");
  }
  switch (EVP_PKEY_get_base_id(key.get())) {
    case EVP_PKEY_EC:
      return EcJwkFromKey(key.get());
    case EVP_PKEY_RSA:
      return RsaJwkFromKey(key.get());
    default:
      return InvalidArgument("public key: unsupported key type; use EC or RSA");
  }
}

Result<Bytes> SpkiFromJwk(const nlohmann::json& jwk) {
  if (!jwk.is_object()) return InvalidArgument("jwk: must be a JSON object");
  for (const char* member : kPrivateMembers) {
    if (jwk.contains(member)) {
      return InvalidArgument(std::string("jwk: private member ") + member +
                             " is not allowed in a public key");
    }
  }
  KW_ASSIGN_OR_RETURN(std::string kty, RequiredString(jwk, "kty"));
  if (kty == "EC") return SpkiFromEcJwk(jwk);
  if (kty == "RSA") return SpkiFromRsaJwk(jwk);
  return InvalidArgument("jwk: kty " + QuoteForMessage(kty) + " is not supported; use EC or RSA");
}

Result<std::string> JwkThumbprint(const nlohmann::json& jwk) {
  if (!jwk.is_object()) return InvalidArgument("jwk: must be a JSON object");
  KW_ASSIGN_OR_RETURN(std::string kty, RequiredString(jwk, "kty"));

  // nlohmann::json objects keep their members sorted by name, and dump() without an indent
  // writes no whitespace, which is exactly the RFC 7638 canonical form.
  nlohmann::json canonical;
  if (kty == "EC") {
    KW_ASSIGN_OR_RETURN(canonical["crv"], RequiredString(jwk, "crv"));
    KW_ASSIGN_OR_RETURN(canonical["x"], RequiredString(jwk, "x"));
    KW_ASSIGN_OR_RETURN(canonical["y"], RequiredString(jwk, "y"));
  } else if (kty == "RSA") {
    KW_ASSIGN_OR_RETURN(canonical["e"], RequiredString(jwk, "e"));
    KW_ASSIGN_OR_RETURN(canonical["n"], RequiredString(jwk, "n"));
  } else {
    return InvalidArgument("jwk: kty " + QuoteForMessage(kty) + " is not supported; use EC or RSA");
  }
  canonical["kty"] = kty;
  return Base64UrlEncode(Sha256(AsBytes(canonical.dump())));
}

Result<std::string> DefaultJwsAlgorithm(const nlohmann::json& jwk) {
  if (!jwk.is_object()) return InvalidArgument("jwk: must be a JSON object");
  KW_ASSIGN_OR_RETURN(std::string kty, RequiredString(jwk, "kty"));
  if (kty == "RSA") return std::string("RS256");
  if (kty != "EC") {
    return InvalidArgument("jwk: kty " + QuoteForMessage(kty) + " is not supported; use EC or RSA");
  }
  KW_ASSIGN_OR_RETURN(std::string crv, RequiredString(jwk, "crv"));
  const Curve* curve = CurveByJwkName(crv);
  if (curve == nullptr)
    return InvalidArgument("jwk: crv " + QuoteForMessage(crv) + " is not supported");
  return std::string(curve->jws_algorithm);
}

}  // namespace kw::vault::pki
