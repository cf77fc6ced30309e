#include "vault/pki/jwt_svid.hpp"

#include <doctest/doctest.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tests/unit/vault/pki/software_signer.hpp"
#include "vault/pki/jwk.hpp"
#include "vault/pki/trust_bundle.hpp"

namespace kw::vault::pki {
namespace {

using nlohmann::json;
using PkeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

constexpr std::int64_t kNow = 1'700'000'000;
constexpr const char* kAudience = "reports";
constexpr const char* kSubject = "spiffe://example.org/web";

std::string Encode(const std::string& text) { return Base64UrlEncode(AsBytes(text)); }

Bytes SpkiOf(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  const int length = i2d_PUBKEY(key, &der);
  REQUIRE(length > 0);
  Bytes spki(der, der + length);
  OPENSSL_free(der);
  return spki;
}

std::string KidOf(ByteSpan spki) {
  auto jwk = PublicJwkFromSpki(spki);
  REQUIRE(jwk.has_value());
  auto kid = JwkThumbprint(*jwk);
  REQUIRE(kid.has_value());
  return *kid;
}

// Signs `signing_input` with OpenSSL directly, independent of the code under test. ECDSA
// signatures are converted to raw r ‖ s of `field_bytes` each, as JWS requires.
Bytes SignWithKey(EVP_PKEY* key, const EVP_MD* md, const std::string& signing_input,
                  bool pss = false, std::size_t field_bytes = 0) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_PKEY_CTX* key_ctx = nullptr;
  REQUIRE(EVP_DigestSignInit(ctx.get(), &key_ctx, md, nullptr, key) == 1);
  if (pss) {
    REQUIRE(EVP_PKEY_CTX_set_rsa_padding(key_ctx, RSA_PKCS1_PSS_PADDING) == 1);
    REQUIRE(EVP_PKEY_CTX_set_rsa_pss_saltlen(key_ctx, RSA_PSS_SALTLEN_DIGEST) == 1);
  }
  std::size_t length = 0;
  const auto* data = reinterpret_cast<const unsigned char*>(signing_input.data());
  REQUIRE(EVP_DigestSign(ctx.get(), nullptr, &length, data, signing_input.size()) == 1);
  Bytes signature(length);
  REQUIRE(EVP_DigestSign(ctx.get(), signature.data(), &length, data, signing_input.size()) == 1);
  signature.resize(length);
  if (field_bytes == 0) return signature;

  const unsigned char* cursor = signature.data();
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig(
      d2i_ECDSA_SIG(nullptr, &cursor, static_cast<long>(signature.size())), ECDSA_SIG_free);
  REQUIRE(sig != nullptr);
  Bytes raw(2 * field_bytes);
  BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), raw.data(), static_cast<int>(field_bytes));
  BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), raw.data() + field_bytes,
               static_cast<int>(field_bytes));
  return raw;
}

// Builds a compact token from raw header and payload text, signed by `signer` with ES256.
std::string TokenFromText(const std::string& header, const std::string& payload,
                          const Signer& signer) {
  const std::string input = Encode(header) + "." + Encode(payload);
  auto signature = signer.SignDigest(Sha256(AsBytes(input)));
  REQUIRE(signature.has_value());
  return input + "." + Base64UrlEncode(*signature);
}

std::string Token(const json& header, const json& claims, const Signer& signer) {
  return TokenFromText(header.dump(), claims.dump(), signer);
}

// One trust domain, example.org, whose bundle contains the software signer's key.
struct JwtFixture {
  testing::SoftwareSigner signer;
  std::string kid = KidOf(signer.PublicKeySpki());
  TrustBundle bundle{"example.org", {}, {{kid, signer.PublicKeySpki()}}, 1, 300};
  BundleLookup lookup = [this](std::string_view trust_domain) -> const TrustBundle* {
    return trust_domain == bundle.trust_domain ? &bundle : nullptr;
  };

  json Header() const { return {{"alg", "ES256"}, {"kid", kid}, {"typ", "JWT"}}; }
  static json Claims() {
    return {{"sub", kSubject}, {"aud", {kAudience}}, {"exp", kNow + 300}, {"iat", kNow}};
  }
  Result<VerifiedJwtSvid> Verify(const std::string& token, std::int64_t leeway = 0) const {
    return VerifyJwtSvid(token, kAudience, kNow, leeway, lookup);
  }
  // Checks that `token` is rejected with invalid_argument, that the reason contains
  // `reason`, and that the message does not echo the token or its signature.
  void ExpectRejected(const std::string& token, const std::string& reason,
                      std::int64_t leeway = 0) const {
    auto result = Verify(token, leeway);
    REQUIRE_FALSE(result.has_value());
    CHECK(result.error().code() == Code::kInvalidArgument);
    CHECK(result.error().message().find(reason) != std::string::npos);
    if (!token.empty()) CHECK(result.error().message().find(token) == std::string::npos);
    const std::size_t last_dot = token.rfind('.');
    if (last_dot != std::string::npos && token.size() - last_dot > 8) {
      CHECK(result.error().message().find(token.substr(last_dot + 1)) == std::string::npos);
    }
  }
};

TEST_SUITE("vault/pki/jwt_svid") {
  TEST_CASE_FIXTURE(JwtFixture, "issued jwt verifies") {
    JwtSvidClaims claims{kSubject, {kAudience}, kNow, kNow + 300};
    auto token = IssueJwtSvid(claims, kid, signer);
    REQUIRE(token.has_value());

    auto verified = Verify(*token);
    REQUIRE(verified.has_value());
    CHECK(verified->spiffe_id == kSubject);
    CHECK(verified->audience == std::vector<std::string>{kAudience});
    CHECK(verified->expires_at == kNow + 300);
    CHECK(verified->kid == kid);
    CHECK(verified->claims["iat"] == kNow);
  }

  TEST_CASE_FIXTURE(JwtFixture, "issued jwt has exact header and raw signature") {
    JwtSvidClaims claims{kSubject, {kAudience, "billing"}, kNow, kNow + 60};
    auto token = IssueJwtSvid(claims, kid, signer);
    REQUIRE(token.has_value());
    const std::size_t first = token->find('.');
    const std::size_t second = token->find('.', first + 1);
    REQUIRE(second != std::string::npos);
    CHECK(token->find('.', second + 1) == std::string::npos);

    auto header = Base64UrlDecode(token->substr(0, first));
    REQUIRE(header.has_value());
    CHECK(AsText(*header) == R"({"alg":"ES256","kid":")" + kid + R"(","typ":"JWT"})");
    auto payload = Base64UrlDecode(token->substr(first + 1, second - first - 1));
    REQUIRE(payload.has_value());
    const json claims_json = json::parse(AsText(*payload));
    CHECK(claims_json["sub"] == kSubject);
    CHECK(claims_json["aud"] == json::array({kAudience, "billing"}));
    CHECK(claims_json["exp"] == kNow + 60);
    CHECK(claims_json["iat"] == kNow);
    CHECK(claims_json.size() == 4);
    auto signature = Base64UrlDecode(token->substr(second + 1));
    REQUIRE(signature.has_value());
    CHECK(signature->size() == 64);
  }

  TEST_CASE_FIXTURE(JwtFixture, "jwt issue rejects bad claims") {
    const JwtSvidClaims good{kSubject, {kAudience}, kNow, kNow + 60};
    SUBCASE("empty audience list") {
      JwtSvidClaims claims = good;
      claims.audience.clear();
      CHECK(IssueJwtSvid(claims, kid, signer).error().code() == Code::kInvalidArgument);
    }
    SUBCASE("empty audience value") {
      JwtSvidClaims claims = good;
      claims.audience = {""};
      CHECK(IssueJwtSvid(claims, kid, signer).error().code() == Code::kInvalidArgument);
    }
    SUBCASE("root ID") {
      JwtSvidClaims claims = good;
      claims.spiffe_id = "spiffe://example.org";
      CHECK(IssueJwtSvid(claims, kid, signer).error().code() == Code::kInvalidArgument);
    }
    SUBCASE("invalid ID") {
      JwtSvidClaims claims = good;
      claims.spiffe_id = "spiffe://example.org/a:b";
      CHECK(IssueJwtSvid(claims, kid, signer).error().code() == Code::kInvalidArgument);
    }
    SUBCASE("exp not after iat") {
      JwtSvidClaims claims = good;
      claims.expires_at = claims.issued_at;
      CHECK(IssueJwtSvid(claims, kid, signer).error().code() == Code::kInvalidArgument);
    }
    SUBCASE("empty kid") {
      CHECK(IssueJwtSvid(good, "", signer).error().code() == Code::kInvalidArgument);
    }
  }

  TEST_CASE_FIXTURE(JwtFixture, "jwt issue ID length limit is 2048 bytes") {
    const std::string prefix = "spiffe://example.org/";
    JwtSvidClaims claims{
        prefix + std::string(2048 - prefix.size(), 'a'), {kAudience}, kNow, kNow + 60};
    REQUIRE(claims.spiffe_id.size() == 2048);
    CHECK(IssueJwtSvid(claims, kid, signer).has_value());
    claims.spiffe_id += "a";
    auto refused = IssueJwtSvid(claims, kid, signer);
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.error().code() == Code::kInvalidArgument);
  }

  TEST_CASE_FIXTURE(JwtFixture, "jwt alg outside the allowed list is rejected") {
    SUBCASE("none") {
      json header = Header();
      header["alg"] = "none";
      ExpectRejected(Token(header, Claims(), signer), "alg \"none\" is not allowed");
    }
    SUBCASE("EdDSA") {
      json header = Header();
      header["alg"] = "EdDSA";
      ExpectRejected(Token(header, Claims(), signer), "alg \"EdDSA\" is not allowed");
    }
    SUBCASE("alg missing") {
      json header = Header();
      header.erase("alg");
      ExpectRejected(Token(header, Claims(), signer), "alg is missing");
    }
  }

  TEST_CASE_FIXTURE(JwtFixture, "jwt HS256 with public key as secret is rejected") {
    // The classic algorithm confusion: an HMAC keyed with the public key bytes that a
    // verifier trusting the header's alg would accept.
    json header = Header();
    header["alg"] = "HS256";
    const std::string input = Encode(header.dump()) + "." + Encode(Claims().dump());
    const Bytes& secret = signer.PublicKeySpki();
    unsigned char mac[EVP_MAX_MD_SIZE];
    std::size_t mac_length = 0;
    REQUIRE(EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, secret.data(), secret.size(),
                      reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac,
                      sizeof(mac), &mac_length) != nullptr);
    const std::string token = input + "." + Base64UrlEncode(ByteSpan(mac, mac_length));
    ExpectRejected(token, "alg \"HS256\" is not allowed");
  }

  TEST_CASE_FIXTURE(JwtFixture, "jwt header typ and members are checked") {
    SUBCASE("typ at+jwt") {
      json header = Header();
      header["typ"] = "at+jwt";
      ExpectRejected(Token(header, Claims(), signer), "typ must be");
    }
    SUBCASE("typ JOSE is accepted") {
      json header = Header();
      header["typ"] = "JOSE";
      CHECK(Verify(Token(header, Claims(), signer)).has_value());
    }
    SUBCASE("typ absent is accepted") {
      json header = Header();
      header.erase("typ");
      CHECK(Verify(Token(header, Claims(), signer)).has_value());
    }
    SUBCASE("extra member jku") {
      json header = Header();
      header["jku"] = "https://attacker.example/jwks";
      ExpectRejected(Token(header, Claims(), signer), "member \"jku\" is not allowed");
    }
    SUBCASE("duplicate alg member") {
      const std::string header =
          R"({"alg":"ES256","kid":")" + kid + R"(","alg":"none","typ":"JWT"})";
      ExpectRejected(TokenFromText(header, Claims().dump(), signer), "more than once");
    }
    SUBCASE("header not an object") {
      ExpectRejected(TokenFromText("[]", Claims().dump(), signer), "header must be a JSON object");
    }
  }

  TEST_CASE_FIXTURE(JwtFixture, "jwt without kid is rejected") {
    json header = Header();
    header.erase("kid");
    ExpectRejected(Token(header, Claims(), signer), "kid is missing");
  }

  TEST_CASE_FIXTURE(JwtFixture, "jwt kid not in bundle is untrusted") {
    json header = Header();
    header["kid"] = "some-other-key";
    ExpectRejected(Token(header, Claims(), signer), "has no key with kid \"some-other-key\"");
  }

  TEST_CASE_FIXTURE(JwtFixture, "jwt sub without bundle is untrusted") {
    json claims = Claims();
    claims["sub"] = "spiffe://other.org/web";
    ExpectRejected(Token(Header(), claims, signer), "no bundle for trust domain other.org");
  }

  TEST_CASE_FIXTURE(JwtFixture, "jwt sub must be a workload SPIFFE ID") {
    const char* bad_subjects[] = {"spiffe://example.org/", "https://example.org/x",
                                  "spiffe://example.org", "spiffe://Example.org/x"};
    for (const char* subject : bad_subjects) {
      CAPTURE(subject);
      json claims = Claims();
      claims["sub"] = subject;
      ExpectRejected(Token(Header(), claims, signer), "claim sub");
    }
    json claims = Claims();
    claims.erase("sub");
    ExpectRejected(Token(Header(), claims, signer), "claim sub is missing");
  }

  TEST_CASE_FIXTURE(JwtFixture, "jwt aud string or array") {
    SUBCASE("string") {
      json claims = Claims();
      claims["aud"] = kAudience;
      auto verified = Verify(Token(Header(), claims, signer));
      REQUIRE(verified.has_value());
      CHECK(verified->audience == std::vector<std::string>{kAudience});
    }
    SUBCASE("array") {
      auto verified = Verify(Token(Header(), Claims(), signer));
      REQUIRE(verified.has_value());
      CHECK(verified->audience == std::vector<std::string>{kAudience});
    }
    SUBCASE("array with several values") {
      json claims = Claims();
      claims["aud"] = {"other", kAudience};
      CHECK(Verify(Token(Header(), claims, signer)).has_value());
    }
    SUBCASE("missing") {
      json claims = Claims();
      claims.erase("aud");
      ExpectRejected(Token(Header(), claims, signer), "claim aud is missing");
    }
    SUBCASE("other audience") {
      json claims = Claims();
      claims["aud"] = {"other"};
      ExpectRejected(Token(Header(), claims, signer), "does not contain the expected audience");
    }
    SUBCASE("empty array") {
      json claims = Claims();
      claims["aud"] = json::array();
      ExpectRejected(Token(Header(), claims, signer), "non-empty array");
    }
    SUBCASE("number") {
      json claims = Claims();
      claims["aud"] = 7;
      ExpectRejected(Token(Header(), claims, signer), "claim aud must be");
    }
  }

  TEST_CASE_FIXTURE(JwtFixture, "jwt exp and leeway") {
    SUBCASE("missing exp") {
      json claims = Claims();
      claims.erase("exp");
      ExpectRejected(Token(Header(), claims, signer), "claim exp is missing");
    }
    SUBCASE("exp five minutes ago") {
      json claims = Claims();
      claims["exp"] = kNow - 300;
      ExpectRejected(Token(Header(), claims, signer), "expired");
      ExpectRejected(Token(Header(), claims, signer), "expired", 60);
    }
    SUBCASE("exp 30 s ago, within a 60 s leeway") {
      json claims = Claims();
      claims["exp"] = kNow - 30;
      const std::string token = Token(Header(), claims, signer);
      ExpectRejected(token, "expired");
      CHECK(Verify(token, 60).has_value());
    }
    SUBCASE("exp equal to now") {
      json claims = Claims();
      claims["exp"] = kNow;
      CHECK(Verify(Token(Header(), claims, signer)).has_value());
    }
    SUBCASE("exp not a number") {
      json claims = Claims();
      claims["exp"] = "tomorrow";
      ExpectRejected(Token(Header(), claims, signer), "claim exp must be a number");
    }
    SUBCASE("exp far in the future does not overflow") {
      json claims = Claims();
      claims["exp"] = std::numeric_limits<std::int64_t>::max();
      CHECK(Verify(Token(Header(), claims, signer), 60).has_value());
    }
    SUBCASE("fractional exp") {
      json claims = Claims();
      claims["exp"] = static_cast<double>(kNow) + 10.5;
      auto verified = Verify(Token(Header(), claims, signer));
      REQUIRE(verified.has_value());
      CHECK(verified->expires_at == kNow + 10);
    }
  }

  TEST_CASE_FIXTURE(JwtFixture, "jwt nbf and iat in the future") {
    json claims = Claims();
    claims["nbf"] = kNow + 120;
    const std::string early = Token(Header(), claims, signer);
    ExpectRejected(early, "not valid before");
    CHECK(Verify(early, 180).has_value());

    claims = Claims();
    claims["iat"] = kNow + 120;
    ExpectRejected(Token(Header(), claims, signer), "issued in the future");
  }

  TEST_CASE_FIXTURE(JwtFixture, "jwt signature bit flip is rejected") {
    auto token = IssueJwtSvid({kSubject, {kAudience}, kNow, kNow + 60}, kid, signer);
    REQUIRE(token.has_value());
    const std::size_t dot = token->rfind('.');
    auto signature = Base64UrlDecode(token->substr(dot + 1));
    REQUIRE(signature.has_value());
    (*signature)[10] ^= 0x01;
    ExpectRejected(token->substr(0, dot + 1) + Base64UrlEncode(*signature), "signature is invalid");
  }

  TEST_CASE_FIXTURE(JwtFixture, "jwt payload change breaks signature") {
    auto token = IssueJwtSvid({kSubject, {kAudience}, kNow, kNow + 60}, kid, signer);
    REQUIRE(token.has_value());
    const std::size_t first = token->find('.');
    const std::size_t second = token->find('.', first + 1);
    json claims = Claims();
    claims["sub"] = "spiffe://example.org/admin";
    const std::string forged =
        token->substr(0, first + 1) + Encode(claims.dump()) + token->substr(second);
    ExpectRejected(forged, "signature is invalid");
  }

  TEST_CASE_FIXTURE(JwtFixture, "jwt from another key with same kid") {
    testing::SoftwareSigner other;
    auto token = IssueJwtSvid({kSubject, {kAudience}, kNow, kNow + 60}, kid, other);
    REQUIRE(token.has_value());
    ExpectRejected(*token, "signature is invalid");
  }

  TEST_CASE_FIXTURE(JwtFixture, "jwt DER-encoded ES256 signature is rejected") {
    const std::string input = Encode(Header().dump()) + "." + Encode(Claims().dump());
    const Bytes der = SignWithKey(signer.key(), EVP_sha256(), input);
    REQUIRE(der.size() != 64);
    ExpectRejected(input + "." + Base64UrlEncode(der), "signature must be 64 bytes");
  }

  TEST_CASE_FIXTURE(JwtFixture, "jwt alg must fit the key") {
    SUBCASE("ES384 header for a P-256 key") {
      json header = Header();
      header["alg"] = "ES384";
      ExpectRejected(Token(header, Claims(), signer), "alg ES384 does not match key");
    }
    SUBCASE("RS256 header for an EC key") {
      json header = Header();
      header["alg"] = "RS256";
      ExpectRejected(Token(header, Claims(), signer), "alg RS256 does not match key");
    }
    SUBCASE("ES256 header for an RSA key") {
      PkeyPtr rsa(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{2048}), EVP_PKEY_free);
      REQUIRE(rsa != nullptr);
      bundle.jwt_authorities.push_back({"rsa-key", SpkiOf(rsa.get())});
      json header = Header();
      header["kid"] = "rsa-key";
      ExpectRejected(Token(header, Claims(), signer), "alg ES256 does not match key");
    }
  }

  TEST_CASE_FIXTURE(JwtFixture, "jwt RSA and P-384 keys verify") {
    PkeyPtr rsa(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{2048}), EVP_PKEY_free);
    PkeyPtr p384(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"), EVP_PKEY_free);
    REQUIRE(rsa != nullptr);
    REQUIRE(p384 != nullptr);
    bundle.jwt_authorities.push_back({"rsa-key", SpkiOf(rsa.get())});
    bundle.jwt_authorities.push_back({"p384-key", SpkiOf(p384.get())});
    auto make = [&](const char* alg, const char* key_id, EVP_PKEY* key, const EVP_MD* md, bool pss,
                    std::size_t field_bytes) {
      const json header = {{"alg", alg}, {"kid", key_id}, {"typ", "JWT"}};
      const std::string input = Encode(header.dump()) + "." + Encode(Claims().dump());
      return input + "." + Base64UrlEncode(SignWithKey(key, md, input, pss, field_bytes));
    };

    CHECK(Verify(make("RS256", "rsa-key", rsa.get(), EVP_sha256(), false, 0)).has_value());
    CHECK(Verify(make("RS512", "rsa-key", rsa.get(), EVP_sha512(), false, 0)).has_value());
    CHECK(Verify(make("PS256", "rsa-key", rsa.get(), EVP_sha256(), true, 0)).has_value());
    CHECK(Verify(make("ES384", "p384-key", p384.get(), EVP_sha384(), false, 48)).has_value());

    // A PKCS#1 v1.5 signature presented as PS256 (and the reverse) does not verify.
    std::string relabelled = make("RS256", "rsa-key", rsa.get(), EVP_sha256(), false, 0);
    const std::string pss_header =
        Encode(json({{"alg", "PS256"}, {"kid", "rsa-key"}, {"typ", "JWT"}}).dump());
    relabelled = pss_header + relabelled.substr(relabelled.find('.'));
    ExpectRejected(relabelled, "signature is invalid");
  }

  TEST_CASE_FIXTURE(JwtFixture, "jwt compact form is required") {
    const std::string good = Token(Header(), Claims(), signer);
    SUBCASE("JWS JSON serialization") {
      const std::size_t first = good.find('.');
      const std::size_t second = good.find('.', first + 1);
      const json serialized = {{"protected", good.substr(0, first)},
                               {"payload", good.substr(first + 1, second - first - 1)},
                               {"signature", good.substr(second + 1)}};
      ExpectRejected(serialized.dump(), "JWS JSON serialization is not allowed");
    }
    SUBCASE("five segments, as in JWE") { ExpectRejected(good + ".AAAA.AAAA", "exactly three"); }
    SUBCASE("two segments") { ExpectRejected(good.substr(0, good.rfind('.')), "exactly three"); }
    SUBCASE("empty signature segment") {
      ExpectRejected(good.substr(0, good.rfind('.') + 1), "segment is empty");
    }
    SUBCASE("padded base64") {
      const std::size_t first = good.find('.');
      std::string header = good.substr(0, first);
      while (header.size() % 4 != 0) header += '=';
      ExpectRejected(header + good.substr(first), "not unpadded base64url");
    }
    SUBCASE("standard base64 alphabet") {
      std::string token = good;
      token[token.rfind('.') + 1] = '+';
      ExpectRejected(token, "not unpadded base64url");
    }
    SUBCASE("oversized token") {
      json claims = Claims();
      claims["padding"] = std::string(kMaxJwtSvidBytes, 'x');
      ExpectRejected(Token(Header(), claims, signer), "larger than");
    }
    SUBCASE("empty token") { ExpectRejected("", "empty"); }
  }

  TEST_CASE_FIXTURE(JwtFixture, "jwt claims must be an object") {
    ExpectRejected(TokenFromText(Header().dump(), "[1,2]", signer), "claims must be a JSON object");
    ExpectRejected(TokenFromText(Header().dump(), "not json", signer), "claims: invalid JSON");
  }

  TEST_CASE_FIXTURE(JwtFixture, "jwt parse errors omit input") {
    // The message lands in clear in the audit record's error field, so it must not quote
    // the decoded header or claims.
    const auto expect_message = [&](const std::string& token, const std::string& reason) {
      const auto result = Verify(token);
      REQUIRE_FALSE(result.has_value());
      CHECK(result.error().code() == Code::kInvalidArgument);
      const std::string message = result.error().message();
      INFO("message: " << message);
      CHECK(message.find(reason) != std::string::npos);
      CHECK(message.find("LEAK") == std::string::npos);
    };
    SUBCASE("unterminated claims string") {
      expect_message(TokenFromText(Header().dump(), R"({"sub":"LEAKBBB1 secret)", signer),
                     "claims: invalid JSON: syntax error at byte 24");
    }
    SUBCASE("header not JSON") {
      expect_message(TokenFromText("LEAKHDR1", Claims().dump(), signer),
                     "header: invalid JSON: syntax error at byte 1");
    }
    SUBCASE("claims number overflow") {
      expect_message(TokenFromText(Header().dump(), R"({"LEAKNUM1":1e999})", signer),
                     "claims: invalid JSON: a number is out of range");
      const auto result = Verify(TokenFromText(Header().dump(), R"({"n":1e999})", signer));
      REQUIRE_FALSE(result.has_value());
      CHECK(result.error().message().find("1e999") == std::string::npos);
    }
    SUBCASE("duplicate member name") {
      const std::string header = R"({"alg":"ES256","LEAKDUP1":1,"LEAKDUP1":2})";
      expect_message(TokenFromText(header, Claims().dump(), signer),
                     "header: JSON member name occurs more than once");
    }
  }
}

}  // namespace
}  // namespace kw::vault::pki
