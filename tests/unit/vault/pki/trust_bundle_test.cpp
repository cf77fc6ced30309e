#include "vault/pki/trust_bundle.hpp"

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "tests/unit/vault/pki/software_signer.hpp"
#include "vault/pki/jwk.hpp"

namespace kw::vault::pki {
namespace {

using nlohmann::json;
using PkeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

const std::filesystem::path kBundleDir =
    std::filesystem::path(KEYWARD_FIXTURES_DIR) / "spiffe" / "bundle";

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

Bytes SpkiOf(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  const int length = i2d_PUBKEY(key, &der);
  REQUIRE(length > 0);
  Bytes spki(der, der + length);
  OPENSSL_free(der);
  return spki;
}

json JwkOf(ByteSpan spki) {
  auto jwk = PublicJwkFromSpki(spki);
  REQUIRE(jwk.has_value());
  return *jwk;
}

// Whether a go-spiffe fixture must be rejected, judged from its file name. go-spiffe fails the
// whole parse for a missing kid, for an x509-svid entry with more than one certificate, and
// for PEM input without certificates or with a corrupt one.
bool FixtureMustFail(const std::string& name) {
  const char* markers[] = {"missing_kid", "no_keys", "multiple_x509", "corrupt",
                           "not-pem",     "empty",   "wrong-"};
  for (const char* marker : markers) {
    if (name.find(marker) != std::string::npos) return true;
  }
  return false;
}

Result<TrustBundle> ParseFixture(const std::filesystem::path& path) {
  const std::string folder = path.parent_path().filename().string();
  const std::string text = ReadFile(path);
  if (folder == "spiffebundle") return ParseTrustBundle(text, "example.org");
  if (folder == "jwtbundle") return ParseJwks(text, "example.org");
  REQUIRE(folder == "x509bundle");
  return ParseX509BundlePem(text, "example.org");
}

// A bundle document with a single entry, for checks of one entry rule.
std::string BundleWith(const json& entry) { return json{{"keys", {entry}}}.dump(); }

json JwtEntry(ByteSpan spki, const std::string& kid) {
  json entry = JwkOf(spki);
  entry["use"] = "jwt-svid";
  entry["kid"] = kid;
  return entry;
}

json FixtureX509Entry() {
  const json document =
      json::parse(ReadFile(kBundleDir / "spiffebundle" / "spiffebundle_valid_1.json"));
  return document["keys"][0];
}

void ExpectRejected(const Result<TrustBundle>& result, const std::string& reason) {
  REQUIRE_FALSE(result.has_value());
  CHECK(result.error().code() == Code::kInvalidArgument);
  CHECK(result.error().message().find(reason) != std::string::npos);
}

TEST_SUITE("vault/pki/trust_bundle") {
  TEST_CASE("bundle fixtures accepted or rejected by name") {
    std::size_t files = 0;
    for (const char* folder : {"spiffebundle", "jwtbundle", "x509bundle"}) {
      for (const auto& entry : std::filesystem::directory_iterator(kBundleDir / folder)) {
        const std::string name = entry.path().filename().string();
        CAPTURE(name);
        auto bundle = ParseFixture(entry.path());
        if (FixtureMustFail(name)) {
          REQUIRE_FALSE(bundle.has_value());
          CHECK(bundle.error().code() == Code::kInvalidArgument);
        } else {
          CHECK(bundle.has_value());
        }
        ++files;
      }
    }
    CHECK(files >= 13);
  }

  TEST_CASE("bundle fixture contents") {
    auto valid_1 = ParseFixture(kBundleDir / "spiffebundle" / "spiffebundle_valid_1.json");
    REQUIRE(valid_1.has_value());
    CHECK(valid_1->trust_domain == "example.org");
    CHECK(valid_1->x509_authorities.size() == 1);
    REQUIRE(valid_1->jwt_authorities.size() == 1);
    CHECK(valid_1->jwt_authorities[0].kid == "C6vs25welZOx6WksNYfbMfiw9l96pMnD");
    CHECK_FALSE(valid_1->sequence.has_value());
    CHECK_FALSE(valid_1->refresh_hint.has_value());

    auto valid_2 = ParseFixture(kBundleDir / "spiffebundle" / "spiffebundle_valid_2.json");
    REQUIRE(valid_2.has_value());
    CHECK(valid_2->jwt_authorities.size() == 6);
    CHECK(valid_2->sequence == std::optional<std::uint64_t>(1));
    CHECK(valid_2->refresh_hint == std::optional<std::int64_t>(60));

    // Entries with use "wit-svid" are unknown to this parser and ignored.
    auto wit = ParseFixture(kBundleDir / "spiffebundle" / "spiffebundle_valid_with_wit.json");
    REQUIRE(wit.has_value());
    CHECK(wit->jwt_authorities.size() == 2);

    auto jwks = ParseFixture(kBundleDir / "jwtbundle" / "jwks_valid_2.json");
    REQUIRE(jwks.has_value());
    CHECK(jwks->jwt_authorities.size() == 2);

    auto pem = ParseFixture(kBundleDir / "x509bundle" / "certs.pem");
    REQUIRE(pem.has_value());
    CHECK(pem->x509_authorities.size() == 2);
  }

  TEST_CASE("bundle serialize and parse round trip") {
    auto fixture = ParseFixture(kBundleDir / "spiffebundle" / "spiffebundle_valid_1.json");
    auto pem = ParseFixture(kBundleDir / "x509bundle" / "certs.pem");
    REQUIRE(fixture.has_value());
    REQUIRE(pem.has_value());
    testing::SoftwareSigner signer;
    PkeyPtr rsa(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{2048}), EVP_PKEY_free);
    PkeyPtr p384(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"), EVP_PKEY_free);
    REQUIRE(rsa != nullptr);
    REQUIRE(p384 != nullptr);

    TrustBundle bundle;
    bundle.trust_domain = "example.org";
    bundle.x509_authorities = fixture->x509_authorities;
    bundle.x509_authorities.insert(bundle.x509_authorities.end(), pem->x509_authorities.begin(),
                                   pem->x509_authorities.end());
    bundle.jwt_authorities = {
        {"p256", signer.PublicKeySpki()}, {"rsa", SpkiOf(rsa.get())}, {"p384", SpkiOf(p384.get())}};
    bundle.sequence = (std::uint64_t{1} << 63) + 1;
    bundle.refresh_hint = 300;

    auto text = SerializeTrustBundle(bundle);
    REQUIRE(text.has_value());
    CHECK(text->find("9223372036854775809") != std::string::npos);
    auto parsed = ParseTrustBundle(*text, "example.org");
    REQUIRE(parsed.has_value());
    CHECK(parsed->x509_authorities == bundle.x509_authorities);
    CHECK(parsed->jwt_authorities == bundle.jwt_authorities);
    CHECK(parsed->sequence == bundle.sequence);
    CHECK(parsed->refresh_hint == bundle.refresh_hint);

    // x509-svid entries carry the certificate's key members and no kid.
    const json document = json::parse(*text);
    const json& first = document["keys"][0];
    CHECK(first["use"] == "x509-svid");
    CHECK(first["crv"] == "P-384");
    CHECK(first["x5c"].size() == 1);
    CHECK_FALSE(first.contains("kid"));
  }

  TEST_CASE("bundle without sequence serializes without it") {
    TrustBundle bundle;
    bundle.trust_domain = "example.org";
    auto text = SerializeTrustBundle(bundle);
    REQUIRE(text.has_value());
    const json document = json::parse(*text);
    CHECK(document["keys"] == json::array());
    CHECK_FALSE(document.contains("spiffe_sequence"));
    CHECK_FALSE(document.contains("spiffe_refresh_hint"));
  }

  TEST_CASE("bundle spiffe_sequence range") {
    auto with_sequence = [](const std::string& value) {
      return ParseTrustBundle(R"({"keys":[],"spiffe_sequence":)" + value + "}", "example.org");
    };
    auto big = with_sequence("9223372036854775809");
    REQUIRE(big.has_value());
    CHECK(big->sequence == std::optional<std::uint64_t>((std::uint64_t{1} << 63) + 1));
    auto max = with_sequence("18446744073709551615");
    REQUIRE(max.has_value());
    CHECK(max->sequence == std::numeric_limits<std::uint64_t>::max());
    auto zero = with_sequence("0");
    REQUIRE(zero.has_value());
    CHECK(zero->sequence == std::optional<std::uint64_t>(0));

    for (const char* bad : {"18446744073709551616", "-1", "1.5", "1.0", "1e3", "\"1\"", "null"}) {
      CAPTURE(bad);
      ExpectRejected(with_sequence(bad), "spiffe_sequence");
    }
  }

  TEST_CASE("bundle spiffe_refresh_hint range") {
    auto with_hint = [](const std::string& value) {
      return ParseTrustBundle(R"({"keys":[],"spiffe_refresh_hint":)" + value + "}", "example.org");
    };
    auto hint = with_hint("300");
    REQUIRE(hint.has_value());
    CHECK(hint->refresh_hint == std::optional<std::int64_t>(300));
    for (const char* bad : {"-1", "2.5", "\"300\"", "9223372036854775808"}) {
      CAPTURE(bad);
      ExpectRejected(with_hint(bad), "spiffe_refresh_hint");
    }
  }

  TEST_CASE("bundle document structure") {
    ExpectRejected(ParseTrustBundle("{}", "example.org"), "keys is missing");
    ExpectRejected(ParseTrustBundle(R"({"keys":{}})", "example.org"), "keys must be an array");
    ExpectRejected(ParseTrustBundle("[]", "example.org"), "must be a JSON object");
    ExpectRejected(ParseTrustBundle("{", "example.org"), "bundle: invalid JSON: syntax error");
    ExpectRejected(ParseTrustBundle(R"({"keys":[],"keys":[]})", "example.org"), "more than once");
    ExpectRejected(ParseTrustBundle(R"({"keys":[]})", "Example.org"), "trust domain");
    ExpectRejected(ParseTrustBundle(R"({"keys":[]})", ""), "trust domain");

    auto empty = ParseTrustBundle(R"({"keys":[],"future_member":{"a":1}})", "example.org");
    REQUIRE(empty.has_value());
    CHECK(empty->x509_authorities.empty());
    CHECK(empty->jwt_authorities.empty());
  }

  TEST_CASE("bundle size limits") {
    std::string huge = R"({"keys":[],"padding":")" + std::string(kMaxBundleBytes, 'x') + "\"}";
    ExpectRejected(ParseTrustBundle(huge, "example.org"), "larger than");

    json keys = json::array();
    for (std::size_t i = 0; i <= kMaxBundleKeys; ++i) keys.push_back({{"kty", "EC"}});
    ExpectRejected(ParseTrustBundle(json{{"keys", keys}}.dump(), "example.org"), "more than 1000");
    keys.erase(keys.begin());
    CHECK(ParseTrustBundle(json{{"keys", keys}}.dump(), "example.org").has_value());
  }

  TEST_CASE("bundle entries with unknown use or kty are ignored") {
    testing::SoftwareSigner signer;
    json no_use = JwtEntry(signer.PublicKeySpki(), "k1");
    no_use.erase("use");
    json other_use = JwtEntry(signer.PublicKeySpki(), "k2");
    other_use["use"] = "JWT-SVID";  // use values are case-sensitive
    const json okp = {{"kty", "OKP"},
                      {"use", "jwt-svid"},
                      {"kid", "k3"},
                      {"crv", "Ed25519"},
                      {"x", "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}};
    auto bundle = ParseTrustBundle(json{{"keys", {no_use, other_use, okp}}}.dump(), "example.org");
    REQUIRE(bundle.has_value());
    CHECK(bundle->jwt_authorities.empty());

    json no_kty = JwtEntry(signer.PublicKeySpki(), "k4");
    no_kty.erase("kty");
    ExpectRejected(ParseTrustBundle(BundleWith(no_kty), "example.org"), "keys[0].kty");
    ExpectRejected(ParseTrustBundle(R"({"keys":[7]})", "example.org"), "keys[0]");
  }

  TEST_CASE("bundle jwt-svid entry rules") {
    testing::SoftwareSigner signer;
    testing::SoftwareSigner other;
    const json entry = JwtEntry(signer.PublicKeySpki(), "k1");

    SUBCASE("missing kid") {
      json no_kid = entry;
      no_kid.erase("kid");
      ExpectRejected(ParseTrustBundle(BundleWith(no_kid), "example.org"), "keys[0].kid");
    }
    SUBCASE("empty kid") {
      json empty_kid = entry;
      empty_kid["kid"] = "";
      ExpectRejected(ParseTrustBundle(BundleWith(empty_kid), "example.org"), "keys[0].kid");
    }
    SUBCASE("duplicate kid") {
      const json document = {{"keys", {entry, JwtEntry(other.PublicKeySpki(), "k1")}}};
      ExpectRejected(ParseTrustBundle(document.dump(), "example.org"), "keys[1].kid");
    }
    SUBCASE("point not on the curve") {
      json off_curve = entry;
      Bytes y = *Base64UrlDecode(entry["y"].get<std::string>());
      y.back() ^= 0x01;
      off_curve["y"] = Base64UrlEncode(y);
      ExpectRejected(ParseTrustBundle(BundleWith(off_curve), "example.org"), "keys[0]");
    }
    SUBCASE("private key member") {
      json with_d = entry;
      with_d["d"] = entry["x"];
      ExpectRejected(ParseTrustBundle(BundleWith(with_d), "example.org"), "keys[0]");
    }
  }

  TEST_CASE("bundle x509-svid entry rules") {
    const json entry = FixtureX509Entry();
    REQUIRE(ParseTrustBundle(BundleWith(entry), "example.org").has_value());

    SUBCASE("kid set") {
      json with_kid = entry;
      with_kid["kid"] = "k1";
      ExpectRejected(ParseTrustBundle(BundleWith(with_kid), "example.org"), "keys[0].kid");
    }
    SUBCASE("x5c missing") {
      json no_x5c = entry;
      no_x5c.erase("x5c");
      ExpectRejected(ParseTrustBundle(BundleWith(no_x5c), "example.org"), "keys[0].x5c");
    }
    SUBCASE("x5c empty") {
      json empty = entry;
      empty["x5c"] = json::array();
      ExpectRejected(ParseTrustBundle(BundleWith(empty), "example.org"), "keys[0].x5c");
    }
    SUBCASE("x5c in base64url") {
      json url_safe = entry;
      std::string der = entry["x5c"][0].get<std::string>();
      REQUIRE(der.find_first_of("+/") != std::string::npos);
      std::replace(der.begin(), der.end(), '+', '-');
      std::replace(der.begin(), der.end(), '/', '_');
      url_safe["x5c"] = {der};
      ExpectRejected(ParseTrustBundle(BundleWith(url_safe), "example.org"), "keys[0].x5c[0]");
    }
    SUBCASE("x5c not a certificate") {
      json garbage = entry;
      garbage["x5c"] = {"AAAA"};
      ExpectRejected(ParseTrustBundle(BundleWith(garbage), "example.org"), "keys[0].x5c[0]");
    }
    SUBCASE("key members of another key") {
      json mismatch = entry;
      mismatch["x"] = entry["y"];
      ExpectRejected(ParseTrustBundle(BundleWith(mismatch), "example.org"), "keys[0].x");
    }
    SUBCASE("kty of another key type") {
      json mismatch = entry;
      mismatch["kty"] = "RSA";
      ExpectRejected(ParseTrustBundle(BundleWith(mismatch), "example.org"), "keys[0].kty");
    }
    SUBCASE("key members omitted") {
      const json bare = {{"kty", "EC"}, {"use", "x509-svid"}, {"x5c", entry["x5c"]}};
      CHECK(ParseTrustBundle(BundleWith(bare), "example.org").has_value());
    }
    SUBCASE("same certificate twice is kept once") {
      auto bundle = ParseTrustBundle(json{{"keys", {entry, entry}}}.dump(), "example.org");
      REQUIRE(bundle.has_value());
      CHECK(bundle->x509_authorities.size() == 1);
    }
  }

  TEST_CASE("bundle JWKS for well-known endpoint") {
    testing::SoftwareSigner signer;
    PkeyPtr rsa(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{2048}), EVP_PKEY_free);
    REQUIRE(rsa != nullptr);
    const std::vector<JwtAuthority> authorities = {{"k1", signer.PublicKeySpki()},
                                                   {"k2", SpkiOf(rsa.get())}};
    auto jwks = JwksOf(authorities);
    REQUIRE(jwks.has_value());
    REQUIRE((*jwks)["keys"].size() == 2);
    const json& ec = (*jwks)["keys"][0];
    CHECK(ec["kid"] == "k1");
    CHECK(ec["alg"] == "ES256");
    CHECK(ec["use"] == "sig");
    CHECK(ec["kty"] == "EC");
    CHECK_FALSE(ec.contains("d"));
    CHECK((*jwks)["keys"][1]["alg"] == "RS256");

    auto parsed = ParseJwks(jwks->dump(), "example.org");
    REQUIRE(parsed.has_value());
    CHECK(parsed->jwt_authorities == authorities);

    ExpectRejected(ParseJwks(R"({"keys":[{"kty":"EC"}]})", "example.org"), "keys[0].kid");
  }

  TEST_CASE("bundle map parses each trust domain") {
    const std::string bundle_1 =
        ReadFile(kBundleDir / "spiffebundle" / "spiffebundle_valid_1.json");
    const std::string bundle_2 =
        ReadFile(kBundleDir / "spiffebundle" / "spiffebundle_valid_2.json");
    const std::string map =
        R"({"trust_domains":{"one.org":)" + bundle_1 + R"(,"two.org":)" + bundle_2 + "}}";
    auto bundles = ParseTrustBundleMap(map);
    REQUIRE(bundles.has_value());
    REQUIRE(bundles->size() == 2);
    CHECK((*bundles)[0].trust_domain == "one.org");
    CHECK((*bundles)[0].jwt_authorities.size() == 1);
    CHECK((*bundles)[1].trust_domain == "two.org");
    CHECK((*bundles)[1].jwt_authorities.size() == 6);

    auto empty = ParseTrustBundleMap(R"({"trust_domains":{}})");
    REQUIRE(empty.has_value());
    CHECK(empty->empty());
  }

  TEST_CASE("bundle map rejects invalid input") {
    const std::string bundle = ReadFile(kBundleDir / "spiffebundle" / "spiffebundle_valid_1.json");
    const std::string duplicate =
        R"({"trust_domains":{"one.org":)" + bundle + R"(,"one.org":)" + bundle + "}}";
    auto rejected = ParseTrustBundleMap(duplicate);
    REQUIRE_FALSE(rejected.has_value());
    CHECK(rejected.error().message().find("more than once") != std::string::npos);

    rejected = ParseTrustBundleMap("{}");
    REQUIRE_FALSE(rejected.has_value());
    CHECK(rejected.error().message().find("trust_domains is missing") != std::string::npos);

    rejected = ParseTrustBundleMap(R"({"trust_domains":{"Bad.org":{"keys":[]}}})");
    REQUIRE_FALSE(rejected.has_value());
    CHECK(rejected.error().message().find("trust domain") != std::string::npos);

    const std::string missing_kid =
        ReadFile(kBundleDir / "spiffebundle" / "spiffebundle_missing_kid.json");
    rejected = ParseTrustBundleMap(R"({"trust_domains":{"one.org":)" + missing_kid + "}}");
    REQUIRE_FALSE(rejected.has_value());
    CHECK(rejected.error().message().find("\"one.org\"") != std::string::npos);
    CHECK(rejected.error().message().find("keys[1].kid") != std::string::npos);
  }

  TEST_CASE("bundle PEM input rules") {
    ExpectRejected(ParseX509BundlePem("", "example.org"), "no PEM data");
    ExpectRejected(
        ParseX509BundlePem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                           "example.org"),
        "no CERTIFICATE block");
  }
}

TEST_SUITE("vault/pki/jwk") {
  TEST_CASE("jwk base64url vectors") {
    // RFC 4648 section 10 test vectors, without padding.
    CHECK(Base64UrlEncode(AsBytes("")) == "");
    CHECK(Base64UrlEncode(AsBytes("f")) == "Zg");
    CHECK(Base64UrlEncode(AsBytes("fo")) == "Zm8");
    CHECK(Base64UrlEncode(AsBytes("foo")) == "Zm9v");
    CHECK(Base64UrlEncode(AsBytes("foobar")) == "Zm9vYmFy");
    const Bytes high = {0xfb, 0xff};
    CHECK(Base64UrlEncode(high) == "-_8");
    CHECK(Base64UrlDecode("-_8") == std::optional<Bytes>(high));
    CHECK(Base64UrlDecode("Zm9vYmFy") ==
          std::optional<Bytes>(Bytes(AsBytes("foobar").begin(), AsBytes("foobar").end())));

    Bytes all(256);
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint8_t>(i);
    CHECK(Base64UrlDecode(Base64UrlEncode(all)) == std::optional<Bytes>(all));
  }

  TEST_CASE("jwk base64url rejects non-canonical input") {
    // "Zm9" would decode to "fo" but leaves the unused bits 01 set; "Zh" does the same.
    for (const char* bad :
         {"Zg==", "Zm8=", "Z", "Zh", "Zm9", "Zm+v", "Zm/v", "Zm9v\n", " Zm9v", "Zm9v."}) {
      CAPTURE(bad);
      CHECK_FALSE(Base64UrlDecode(bad).has_value());
    }
    CHECK(Base64UrlDecode("Zm8") == std::optional<Bytes>({'f', 'o'}));
  }

  TEST_CASE("jwk thumbprint matches RFC 7638 example") {
    // RFC 7638 section 3.1.
    const json jwk = {
        {"kty", "RSA"},
        {"n",
         "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_"
         "BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_"
         "FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI"
         "4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"},
        {"e", "AQAB"},
        {"alg", "RS256"},
        {"kid", "2011-04-29"}};
    auto thumbprint = JwkThumbprint(jwk);
    REQUIRE(thumbprint.has_value());
    CHECK(*thumbprint == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");

    // The same key converts to an SPKI and back to the same members.
    auto spki = SpkiFromJwk(jwk);
    REQUIRE(spki.has_value());
    const json back = JwkOf(*spki);
    CHECK(back["n"] == jwk["n"]);
    CHECK(back["e"] == "AQAB");
    CHECK(back.size() == 3);
  }

  TEST_CASE("jwk P-256 x with leading zero keeps 32 bytes") {
    // About one key in 256 has an x coordinate whose first byte is zero; 4096 tries miss one
    // with probability below 1e-6.
    bool found = false;
    for (int attempt = 0; attempt < 4096 && !found; ++attempt) {
      PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), EVP_PKEY_free);
      REQUIRE(key != nullptr);
      const Bytes spki = SpkiOf(key.get());
      // A P-256 SPKI is 91 bytes and ends with the uncompressed point 04 ‖ X ‖ Y.
      REQUIRE(spki.size() == 91);
      REQUIRE(spki[26] == 0x04);
      if (spki[27] != 0x00) continue;
      found = true;

      const json jwk = JwkOf(spki);
      auto x = Base64UrlDecode(jwk["x"].get<std::string>());
      REQUIRE(x.has_value());
      CHECK(x->size() == 32);
      CHECK(x->front() == 0x00);
      CHECK(*x == Bytes(spki.begin() + 27, spki.begin() + 59));
      auto back = SpkiFromJwk(jwk);
      REQUIRE(back.has_value());
      CHECK(*back == spki);

      // The same coordinate without its leading zero is rejected.
      json short_x = jwk;
      short_x["x"] = Base64UrlEncode(ByteSpan(*x).subspan(1));
      auto rejected = SpkiFromJwk(short_x);
      REQUIRE_FALSE(rejected.has_value());
      CHECK(rejected.error().message().find("x must be exactly 32 bytes") != std::string::npos);
    }
    CHECK(found);
  }

  TEST_CASE("jwk EC round trip on every curve") {
    for (const char* curve : {"P-256", "P-384", "P-521"}) {
      CAPTURE(curve);
      PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve), EVP_PKEY_free);
      REQUIRE(key != nullptr);
      const Bytes spki = SpkiOf(key.get());
      const json jwk = JwkOf(spki);
      CHECK(jwk["crv"] == curve);
      CHECK(jwk.size() == 4);
      auto back = SpkiFromJwk(jwk);
      REQUIRE(back.has_value());
      CHECK(*back == spki);
      auto thumbprint = JwkThumbprint(jwk);
      REQUIRE(thumbprint.has_value());
      CHECK(thumbprint->size() == 43);
    }
  }

  TEST_CASE("jwk invalid keys are rejected") {
    testing::SoftwareSigner signer;
    const json good = JwkOf(signer.PublicKeySpki());
    auto expect_rejected = [](const json& jwk, const std::string& reason) {
      auto spki = SpkiFromJwk(jwk);
      REQUIRE_FALSE(spki.has_value());
      CHECK(spki.error().code() == Code::kInvalidArgument);
      CHECK(spki.error().message().find(reason) != std::string::npos);
    };
    json jwk = good;
    jwk["crv"] = "P-192";
    expect_rejected(jwk, "crv");
    jwk = good;
    jwk.erase("y");
    expect_rejected(jwk, "y is missing");
    jwk = good;
    jwk["x"] = good["x"].get<std::string>() + "=";
    expect_rejected(jwk, "x is not valid");
    jwk = good;
    jwk["d"] = good["x"];
    expect_rejected(jwk, "private member d");
    jwk = good;
    jwk["kty"] = "oct";
    expect_rejected(jwk, "kty");

    // All-zero coordinates are not a point on P-256.
    jwk = good;
    jwk["x"] = Base64UrlEncode(Bytes(32, 0));
    jwk["y"] = Base64UrlEncode(Bytes(32, 0));
    expect_rejected(jwk, "not a valid EC public key");

    PkeyPtr small_rsa(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{1024}), EVP_PKEY_free);
    REQUIRE(small_rsa != nullptr);
    const json rsa_1024 = JwkOf(SpkiOf(small_rsa.get()));
    expect_rejected(rsa_1024, "n has 1024 bits");
    jwk = rsa_1024;
    Bytes n = *Base64UrlDecode(rsa_1024["n"].get<std::string>());
    n.insert(n.begin(), 0x00);
    jwk["n"] = Base64UrlEncode(n);
    expect_rejected(jwk, "leading zero");
  }

  TEST_CASE("jwk strict JSON parser") {
    CHECK(ParseJsonStrict(R"({"a":{"b":1},"c":[{"b":2}]})").has_value());
    auto duplicate = ParseJsonStrict(R"({"a":{"LEAKKEY1":1,"LEAKKEY1":2}})");
    REQUIRE_FALSE(duplicate.has_value());
    CHECK(duplicate.error().message().find("more than once") != std::string::npos);
    CHECK(duplicate.error().message().find("LEAKKEY1") == std::string::npos);
    const std::string deep = std::string(40, '[') + std::string(40, ']');
    CHECK_FALSE(ParseJsonStrict(deep).has_value());
    CHECK(ParseJsonStrict(deep, 40).has_value());
  }

  TEST_CASE("jwk strict parser errors omit input") {
    auto syntax = ParseJsonStrict(R"({"keys":["LEAKBUN1 secret)");
    REQUIRE_FALSE(syntax.has_value());
    CHECK(syntax.error().code() == Code::kInvalidArgument);
    CHECK(syntax.error().message() == "invalid JSON: syntax error at byte 26");

    auto overflow = ParseJsonStrict(R"({"n":-1e999})");
    REQUIRE_FALSE(overflow.has_value());
    CHECK(overflow.error().message() == "invalid JSON: a number is out of range");

    auto bundle = ParseTrustBundle(R"({"keys":[{"kty":"LEAKBUN2)", "example.org");
    REQUIRE_FALSE(bundle.has_value());
    CHECK(bundle.error().message().starts_with("bundle: invalid JSON: syntax error at byte"));
    CHECK(bundle.error().message().find("LEAKBUN2") == std::string::npos);
  }
}

}  // namespace
}  // namespace kw::vault::pki
