#include "vault/auth/x509_svid.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/unit/vault/auth/test_certificates.hpp"

namespace kw::vault::auth {
namespace {

const std::filesystem::path kSvidDir =
    std::filesystem::path(KEYWARD_FIXTURES_DIR) / "spiffe" / "svid" / "x509svid";

std::string ReadFixture(const std::string& name) {
  std::ifstream file(kSvidDir / name, std::ios::binary);
  REQUIRE_MESSAGE(file.good(), "cannot read fixture " << name);
  std::stringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

// Parses the fixture and checks it as a presented chain.
Result<SpiffeId> CheckFixture(const std::string& name) {
  auto certificates = ParsePemCertificates(ReadFixture(name));
  if (!certificates) return tl::unexpected(certificates.error());
  std::vector<X509*> chain;
  for (const auto& certificate : *certificates) chain.push_back(certificate.get());
  return CheckX509Svid(chain);
}

void CheckRejected(const std::string& name, const std::string& rule) {
  CAPTURE(name);
  auto checked = CheckFixture(name);
  REQUIRE_FALSE(checked.has_value());
  CHECK(checked.error().code() == Code::kInvalidArgument);
  CHECK_MESSAGE(checked.error().message().find(rule) != std::string::npos,
                checked.error().message());
}

constexpr std::time_t kNow = 1'800'000'000;

TEST_SUITE("vault/auth/x509_svid") {
  TEST_CASE("good fixtures pass") {
    for (const char* name : {"good-leaf-only.pem", "good-leaf-and-intermediate.pem"}) {
      CAPTURE(name);
      auto checked = CheckFixture(name);
      REQUIRE(checked.has_value());
      CHECK(checked->str() == "spiffe://example.org/workload-1");
    }
  }

  TEST_CASE("wrong leaf fixtures name their rule") {
    CheckRejected("wrong-leaf-ca-true.pem", "CA flag");
    CheckRejected("wrong-leaf-cert-sign.pem", "'keyCertSign'");
    CheckRejected("wrong-leaf-crl-sign.pem", "'cRLSign'");
    CheckRejected("wrong-leaf-empty-id.pem", "no URI SAN");
    CheckRejected("wrong-leaf-no-digital-signature.pem", "'digitalSignature'");
  }

  TEST_CASE("wrong intermediate fixtures name their rule") {
    CheckRejected("wrong-intermediate-no-ca.pem", "certificate 2 of the chain");
    CheckRejected("wrong-intermediate-no-ca.pem", "CA flag must be set to true");
    CheckRejected("wrong-intermediate-no-key-cert-sign.pem", "certificate 2 of the chain");
    CheckRejected("wrong-intermediate-no-key-cert-sign.pem", "'keyCertSign' must be set");
  }

  TEST_CASE("corrupt and non-PEM fixtures do not parse") {
    for (const char* name : {"corrupt-cert.pem", "not-pem"}) {
      CAPTURE(name);
      auto parsed = ParsePemCertificates(ReadFixture(name));
      REQUIRE_FALSE(parsed.has_value());
      CHECK(parsed.error().code() == Code::kInvalidArgument);
    }
  }

  TEST_CASE("every fixture file is covered") {
    // A new fixture file must get a case above.
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(kSvidDir)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    const std::vector<std::string> known = {
        "corrupt-cert.pem",
        "good-leaf-and-intermediate.pem",
        "good-leaf-only.pem",
        "not-pem",
        "wrong-intermediate-no-ca.pem",
        "wrong-intermediate-no-key-cert-sign.pem",
        "wrong-leaf-ca-true.pem",
        "wrong-leaf-cert-sign.pem",
        "wrong-leaf-crl-sign.pem",
        "wrong-leaf-empty-id.pem",
        "wrong-leaf-no-digital-signature.pem",
    };
    CHECK(names == known);
  }

  TEST_CASE("DER round trip") {
    auto certificates = ParsePemCertificates(ReadFixture("good-leaf-only.pem"));
    REQUIRE(certificates.has_value());
    const std::string der = CertificateDer(certificates->front().get());
    auto parsed = ParseDerCertificate(der);
    REQUIRE(parsed.has_value());
    CHECK(CertificateDer(parsed->get()) == der);
    CHECK_FALSE(ParseDerCertificate(der + "x").has_value());
    CHECK_FALSE(ParseDerCertificate(der.substr(0, der.size() - 1)).has_value());
    CHECK_FALSE(ParseDerCertificate("").has_value());
  }

  TEST_CASE("generated leaves break one rule each") {
    const auto ca = testing::IssueCa("test CA", kNow - 3600, kNow + 86400);
    struct Case {
      const char* label;
      void (*edit)(testing::CertSpec&);
      const char* rule;
    };
    const Case cases[] = {
        {"two URI SANs",
         [](testing::CertSpec& s) { s.subject_alt_name = "URI:spiffe://td/a,URI:spiffe://td/b"; },
         "more than one URI SAN"},
        {"invalid SPIFFE ID", [](testing::CertSpec& s) { s.subject_alt_name = "URI:spiffe://TD/a"; },
         "not a valid SPIFFE ID"},
        {"https URI", [](testing::CertSpec& s) { s.subject_alt_name = "URI:https://td/a"; },
         "not a valid SPIFFE ID"},
        {"root ID", [](testing::CertSpec& s) { s.subject_alt_name = "URI:spiffe://td"; },
         "must have a path"},
        {"CA true", [](testing::CertSpec& s) { s.basic_constraints = "critical,CA:TRUE"; },
         "CA flag"},
        {"no keyUsage", [](testing::CertSpec& s) { s.key_usage = ""; }, "keyUsage extension is missing"},
        {"keyUsage not critical", [](testing::CertSpec& s) { s.key_usage = "digitalSignature"; },
         "must be critical"},
        {"no digitalSignature",
         [](testing::CertSpec& s) { s.key_usage = "critical,keyEncipherment"; }, "'digitalSignature'"},
        {"keyCertSign",
         [](testing::CertSpec& s) { s.key_usage = "critical,digitalSignature,keyCertSign"; },
         "'keyCertSign'"},
        {"cRLSign", [](testing::CertSpec& s) { s.key_usage = "critical,digitalSignature,cRLSign"; },
         "'cRLSign'"},
        {"EKU without serverAuth", [](testing::CertSpec& s) { s.extended_key_usage = "clientAuth"; },
         "serverAuth and clientAuth"},
        {"empty subject, SAN not critical", [](testing::CertSpec& s) { s.common_name = ""; },
         "empty subject"},
    };
    for (const Case& c : cases) {
      CAPTURE(c.label);
      testing::CertSpec spec = testing::LeafSpec("spiffe://td/a", "leaf", kNow - 60, kNow + 3600);
      c.edit(spec);
      const auto leaf = testing::IssueCert(spec, &ca);
      auto checked = CheckX509SvidLeaf(leaf.cert.get());
      REQUIRE_FALSE(checked.has_value());
      CHECK_MESSAGE(checked.error().message().find(c.rule) != std::string::npos,
                    checked.error().message());
    }
  }

  TEST_CASE("generated leaf variants that are allowed") {
    const auto ca = testing::IssueCa("test CA", kNow - 3600, kNow + 86400);
    SUBCASE("no extKeyUsage") {
      auto spec = testing::LeafSpec("spiffe://td/a", "leaf", kNow - 60, kNow + 3600);
      spec.extended_key_usage = "";
      const auto leaf = testing::IssueCert(spec, &ca);
      CHECK(CheckX509SvidLeaf(leaf.cert.get()).has_value());
    }
    SUBCASE("empty subject with critical SAN and DNS names beside the URI") {
      auto spec = testing::LeafSpec("", "", kNow - 60, kNow + 3600);
      spec.subject_alt_name = "critical,DNS:a.example,URI:spiffe://td/a,IP:127.0.0.1";
      const auto leaf = testing::IssueCert(spec, &ca);
      auto checked = CheckX509SvidLeaf(leaf.cert.get());
      REQUIRE(checked.has_value());
      CHECK(checked->str() == "spiffe://td/a");
    }
    SUBCASE("keyEncipherment and keyAgreement") {
      auto spec = testing::LeafSpec("spiffe://td/a", "leaf", kNow - 60, kNow + 3600);
      spec.key_usage = "critical,digitalSignature,keyEncipherment,keyAgreement";
      const auto leaf = testing::IssueCert(spec, &ca);
      CHECK(CheckX509SvidLeaf(leaf.cert.get()).has_value());
    }
  }

  TEST_CASE("signing certificate with a path in its SPIFFE ID") {
    auto spec = testing::LeafSpec("spiffe://td/ca", "ca", kNow - 60, kNow + 3600);
    spec.basic_constraints = "critical,CA:TRUE";
    spec.key_usage = "critical,keyCertSign";
    const auto ca = testing::IssueCert(spec);
    auto checked = CheckX509SvidSigningCertificate(ca.cert.get());
    REQUIRE_FALSE(checked.has_value());
    CHECK(checked.error().message().find("without a path") != std::string::npos);
  }

  TEST_CASE("names read from a certificate") {
    const auto ca = testing::IssueCa("test CA", kNow - 3600, kNow + 86400);
    auto spec = testing::LeafSpec("spiffe://td/a", "web.example", kNow - 60, kNow + 3600);
    spec.subject_alt_name = "DNS:web.example,URI:spiffe://td/a";
    const auto leaf = testing::IssueCert(spec, &ca);
    CHECK(CommonName(leaf.cert.get()) == "web.example");
    CHECK(UriSans(leaf.cert.get()) == std::vector<std::string>{"spiffe://td/a"});
    CHECK(CommonName(testing::IssueCert(testing::LeafSpec("spiffe://td/a", "", kNow, kNow + 1), &ca)
                         .cert.get())
              .empty());
  }

  TEST_CASE("PEM bundle with text around blocks") {
    const auto a = testing::IssueCa("A", kNow - 3600, kNow + 86400);
    const auto b = testing::IssueCa("B", kNow - 3600, kNow + 86400);
    auto parsed = ParsePemCertificates("# trusted CAs\n" + a.Pem() + "\n" + b.Pem() + "\n");
    REQUIRE(parsed.has_value());
    CHECK(parsed->size() == 2);
    std::string broken = b.Pem();
    broken[broken.size() / 2] = '!';
    CHECK_FALSE(ParsePemCertificates(a.Pem() + broken).has_value());
    CHECK_FALSE(ParsePemCertificates("").has_value());
  }
}

}  // namespace
}  // namespace kw::vault::auth
