#include "vault/auth/cert_auth.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "tests/unit/vault/auth/test_certificates.hpp"
#include "vault_test_env.hpp"

namespace kw::vault::auth {
namespace {

using testing::IssueCa;
using testing::IssueCert;
using testing::LeafSpec;
using testing::TestCert;

// Unix seconds of the manual clock's start.
std::time_t Now(const Clock& clock) {
  return std::chrono::system_clock::to_time_t(clock.Now());
}

struct CertAuthTest {
  CertAuthTest()
      : auth(*env.store, *env.barrier, env.clock),
        now(Now(env.clock)),
        ca(IssueCa("test CA", now - 3600, now + 30 * 86400)) {}

  void Write(const CertRole& role) {
    storage::WriteBatch batch;
    REQUIRE(auth.WriteRole(role, batch).has_value());
    REQUIRE(env.store->Commit(std::move(batch)).has_value());
  }

  CertRole Role(const std::string& name, const std::vector<std::string>& ids) {
    CertRole role;
    role.name = name;
    role.certificate = ca.Pem();
    role.allowed_spiffe_ids = ids;
    role.token_policies = {"web"};
    return role;
  }

  TestCert Leaf(const std::string& spiffe_id, const std::string& common_name = "leaf") {
    return IssueCert(LeafSpec(spiffe_id, common_name, now - 60, now + 3600), &ca);
  }

  testing::VaultTestEnv env;
  CertAuth auth;
  std::time_t now;
  TestCert ca;
};

void CheckDenied(const Result<TokenRequest>& login, const std::string& reason) {
  REQUIRE_FALSE(login.has_value());
  CHECK(login.error().code() == Code::kPermissionDenied);
  CHECK_MESSAGE(login.error().message().find(reason) != std::string::npos,
                login.error().message());
}

TEST_SUITE("vault/auth/cert_auth") {
  TEST_CASE("role round trip") {
    CertAuthTest t;
    CertRole role = t.Role("web", {"spiffe://example.org/web", "spiffe://example.org/ns/*"});
    role.allowed_common_names = {"web.example"};
    role.token_ttl = 600;
    role.token_max_ttl = 3600;
    role.token_num_uses = 5;
    role.display_name = "web-servers";
    role.token_bound_cidrs = {"127.0.0.0/8"};
    t.Write(role);

    auto read = t.auth.ReadRole("web");
    REQUIRE(read.has_value());
    CHECK(read->certificate == role.certificate);
    CHECK(read->allowed_spiffe_ids == role.allowed_spiffe_ids);
    CHECK(read->allowed_common_names == role.allowed_common_names);
    CHECK(read->token_policies == role.token_policies);
    CHECK(read->token_ttl == 600);
    CHECK(read->token_max_ttl == 3600);
    CHECK(read->token_num_uses == 5);
    CHECK(read->display_name == "web-servers");
    CHECK(read->token_bound_cidrs == role.token_bound_cidrs);

    auto names = t.auth.ListRoles();
    REQUIRE(names.has_value());
    CHECK(*names == std::vector<std::string>{"web"});

    storage::WriteBatch batch;
    REQUIRE(t.auth.DeleteRole("web", batch).has_value());
    REQUIRE(t.env.store->Commit(std::move(batch)).has_value());
    auto gone = t.auth.ReadRole("web");
    REQUIRE_FALSE(gone.has_value());
    CHECK(gone.error().code() == Code::kNotFound);
  }

  TEST_CASE("role is stored encrypted and bound to its name") {
    CertAuthTest t;
    t.Write(t.Role("web", {"spiffe://example.org/web"}));
    auto raw = t.env.store->Get("auth/cert/role/web");
    REQUIRE(raw.has_value());
    REQUIRE(raw->has_value());
    const std::string_view stored = AsText(**raw);
    CHECK(stored.find("BEGIN CERTIFICATE") == std::string_view::npos);
    CHECK(stored.find("spiffe://") == std::string_view::npos);

    storage::WriteBatch batch;
    batch.Put("auth/cert/role/admin", **raw);
    REQUIRE(t.env.store->Commit(std::move(batch)).has_value());
    auto moved = t.auth.ReadRole("admin");
    REQUIRE_FALSE(moved.has_value());
    CHECK(moved.error().code() == Code::kDataLoss);
  }

  TEST_CASE("role validation names the field") {
    CertAuthTest t;
    struct Case {
      const char* label;
      void (*edit)(CertRole&);
      const char* field;
    };
    const Case cases[] = {
        {"bad name", [](CertRole& r) { r.name = "a/b"; }, "role name"},
        {"no certificate", [](CertRole& r) { r.certificate = ""; }, "certificate"},
        {"not PEM", [](CertRole& r) { r.certificate = "hello"; }, "certificate"},
        {"bad SPIFFE pattern",
         [](CertRole& r) { r.allowed_spiffe_ids = {"spiffe://Example.org/x"}; },
         "allowed_spiffe_ids"},
        {"glob in the middle", [](CertRole& r) { r.allowed_spiffe_ids = {"spiffe://td/*/x"}; },
         "allowed_spiffe_ids"},
        {"bad CIDR", [](CertRole& r) { r.token_bound_cidrs = {"10.0.0.300/8"}; },
         "token_bound_cidrs"},
        {"ttl above max", [](CertRole& r) { r.token_ttl = 7200, r.token_max_ttl = 3600; },
         "token_ttl"},
        {"negative uses", [](CertRole& r) { r.token_num_uses = -1; }, "token_num_uses"},
    };
    for (const Case& c : cases) {
      CAPTURE(c.label);
      CertRole role = t.Role("web", {});
      c.edit(role);
      storage::WriteBatch batch;
      auto written = t.auth.WriteRole(role, batch);
      REQUIRE_FALSE(written.has_value());
      CHECK(written.error().code() == Code::kInvalidArgument);
      CHECK(written.error().message().find(c.field) != std::string::npos);
      CHECK(batch.ops().empty());
    }
  }

  TEST_CASE("valid SVID logs in") {
    CertAuthTest t;
    CertRole role = t.Role("web", {"spiffe://example.org/web"});
    role.token_ttl = 600;
    role.token_max_ttl = 1200;
    role.token_num_uses = 3;
    role.token_bound_cidrs = {"127.0.0.1/32"};
    t.Write(role);
    const auto leaf = t.Leaf("spiffe://example.org/web");
    const std::vector<std::string> chain = {leaf.Der()};

    auto login = t.auth.Login(chain, std::nullopt);
    REQUIRE(login.has_value());
    CHECK(login->policies == std::vector<std::string>{"web"});
    CHECK(login->ttl == 600);
    CHECK(login->explicit_max_ttl == 1200);
    CHECK(login->num_uses == 3);
    CHECK(login->bound_cidrs == std::vector<std::string>{"127.0.0.1/32"});
    CHECK(login->display_name == "cert-web");
    CHECK(login->entity_id == "cert:spiffe://example.org/web");
    CHECK(login->path == "auth/cert/login");
    CHECK(login->meta.at("cert_name") == "web");
    CHECK(login->meta.at("spiffe_id") == "spiffe://example.org/web");
    CHECK_FALSE(login->meta.contains("common_name"));
  }

  TEST_CASE("a pinned client certificate cannot issue others") {
    CertAuthTest t;
    // A pinned certificate without basicConstraints but with keyCertSign: OpenSSL would take
    // it as a CA once it is a trust anchor.
    testing::CertSpec pinned_spec = LeafSpec("", "batch-job", t.now - 60, t.now + 3600);
    pinned_spec.basic_constraints = "";
    pinned_spec.key_usage = "critical,digitalSignature,keyCertSign";
    const TestCert pinned = IssueCert(pinned_spec, nullptr);
    CertRole role;
    role.name = "pin";
    role.certificate = pinned.Pem();
    role.allowed_common_names = {"batch-job", "admin-job"};
    role.token_policies = {"web"};
    t.Write(role);
    // The pinned certificate itself logs in.
    REQUIRE(t.auth.Login(std::vector<std::string>{pinned.Der()}, std::nullopt).has_value());
    // A certificate it signed does not.
    const TestCert forged =
        IssueCert(LeafSpec("", "admin-job", t.now - 60, t.now + 3600), &pinned);
    CheckDenied(t.auth.Login(std::vector<std::string>{forged.Der()}, std::nullopt),
                "no role accepts the client certificate");
  }

  TEST_CASE("a trusted intermediate without CA:TRUE cannot issue") {
    CertAuthTest t;
    testing::CertSpec intermediate_spec = LeafSpec("", "intermediate", t.now - 60, t.now + 3600);
    intermediate_spec.basic_constraints = "";
    intermediate_spec.key_usage = "critical,keyCertSign";
    intermediate_spec.extended_key_usage = "";
    const TestCert intermediate = IssueCert(intermediate_spec, &t.ca);
    CertRole role = t.Role("web", {"spiffe://example.org/*"});
    role.certificate = intermediate.Pem();  // the bundle trusts the intermediate alone
    t.Write(role);
    const TestCert leaf = IssueCert(
        LeafSpec("spiffe://example.org/web", "leaf", t.now - 60, t.now + 3600), &intermediate);
    // Sent alone, the leaf's chain ends in the bundle's intermediate, which is no CA.
    CheckDenied(t.auth.Login(std::vector<std::string>{leaf.Der()}, std::nullopt),
                "no role accepts the client certificate");
  }

  TEST_CASE("display name from the role") {
    CertAuthTest t;
    CertRole role = t.Role("web", {});
    role.display_name = "frontends";
    t.Write(role);
    const auto leaf = t.Leaf("spiffe://example.org/web");
    auto login = t.auth.Login(std::vector<std::string>{leaf.Der()}, std::nullopt);
    REQUIRE(login.has_value());
    CHECK(login->display_name == "cert-frontends");
  }

  TEST_CASE("expired and not yet valid certificates are rejected") {
    CertAuthTest t;
    t.Write(t.Role("web", {"spiffe://example.org/web"}));
    const auto leaf = t.Leaf("spiffe://example.org/web");
    const std::vector<std::string> chain = {leaf.Der()};
    REQUIRE(t.auth.Login(chain, std::nullopt).has_value());

    t.env.clock.Advance(std::chrono::hours(2));
    CheckDenied(t.auth.Login(chain, std::nullopt), "no role accepts the client certificate");

    const auto future = IssueCert(
        LeafSpec("spiffe://example.org/web", "leaf", t.now + 86400, t.now + 2 * 86400), &t.ca);
    CheckDenied(t.auth.Login(std::vector<std::string>{future.Der()}, std::nullopt),
                "not yet valid");
  }

  TEST_CASE("unknown CA is rejected without naming roles") {
    CertAuthTest t;
    t.Write(t.Role("web", {"spiffe://example.org/web"}));
    const auto other_ca = IssueCa("other CA", t.now - 3600, t.now + 86400);
    const auto leaf =
        IssueCert(LeafSpec("spiffe://example.org/web", "leaf", t.now - 60, t.now + 3600), &other_ca);
    auto login = t.auth.Login(std::vector<std::string>{leaf.Der()}, std::nullopt);
    CheckDenied(login, "no role accepts the client certificate");
    CHECK(login.error().message().find("web") == std::string::npos);
  }

  TEST_CASE("self-signed copy of a CA subject is rejected") {
    CertAuthTest t;
    t.Write(t.Role("web", {}));
    // Same subject and extensions as the CA, but a different key.
    const auto impostor = IssueCa("test CA", t.now - 3600, t.now + 86400);
    const auto leaf = IssueCert(LeafSpec("spiffe://td/a", "leaf", t.now - 60, t.now + 3600),
                                &impostor);
    CheckDenied(t.auth.Login(std::vector<std::string>{leaf.Der(), impostor.Der()}, std::nullopt),
                "no role accepts the client certificate");
  }

  TEST_CASE("wrong SPIFFE ID matches no role") {
    CertAuthTest t;
    t.Write(t.Role("web", {"spiffe://example.org/web", "spiffe://example.org/ns/*"}));
    for (const char* id : {"spiffe://example.org/db", "spiffe://example.org/ns",
                           "spiffe://example.org/nsx/a", "spiffe://other.org/web"}) {
      CAPTURE(id);
      const auto leaf = t.Leaf(id);
      auto login = t.auth.Login(std::vector<std::string>{leaf.Der()}, std::nullopt);
      CheckDenied(login, "no role accepts the client certificate");
      CHECK(login.error().message().find("example.org/web") == std::string::npos);
    }
    const auto below = t.Leaf("spiffe://example.org/ns/a/b");
    CHECK(t.auth.Login(std::vector<std::string>{below.Der()}, std::nullopt).has_value());
  }

  TEST_CASE("common name match without a URI SAN") {
    CertAuthTest t;
    CertRole role = t.Role("hosts", {});
    role.allowed_common_names = {"host1.example"};
    t.Write(role);
    const auto leaf = t.Leaf("", "host1.example");
    auto login = t.auth.Login(std::vector<std::string>{leaf.Der()}, std::nullopt);
    REQUIRE(login.has_value());
    CHECK(login->entity_id == "cert:host1.example");
    CHECK(login->meta.at("common_name") == "host1.example");
    CHECK_FALSE(login->meta.contains("spiffe_id"));

    const auto other = t.Leaf("", "host2.example");
    CheckDenied(t.auth.Login(std::vector<std::string>{other.Der()}, std::nullopt),
                "no role accepts the client certificate");
  }

  TEST_CASE("SPIFFE role refuses a certificate without URI SAN") {
    CertAuthTest t;
    t.Write(t.Role("web", {"spiffe://example.org/*"}));
    const auto leaf = t.Leaf("", "spiffe://example.org/web");
    CheckDenied(t.auth.Login(std::vector<std::string>{leaf.Der()}, std::nullopt),
                "no role accepts the client certificate");
  }

  TEST_CASE("broken X.509-SVID rule is named") {
    CertAuthTest t;
    t.Write(t.Role("web", {"spiffe://example.org/*"}));
    struct Case {
      const char* label;
      void (*edit)(testing::CertSpec&);
      const char* rule;
    };
    const Case cases[] = {
        {"CA true", [](testing::CertSpec& s) { s.basic_constraints = "critical,CA:TRUE"; },
         "CA flag"},
        {"keyCertSign",
         [](testing::CertSpec& s) { s.key_usage = "critical,digitalSignature,keyCertSign"; },
         "'keyCertSign'"},
        {"cRLSign", [](testing::CertSpec& s) { s.key_usage = "critical,digitalSignature,cRLSign"; },
         "'cRLSign'"},
        {"no digitalSignature", [](testing::CertSpec& s) { s.key_usage = "critical,keyAgreement"; },
         "'digitalSignature'"},
        {"two URI SANs",
         [](testing::CertSpec& s) {
           s.subject_alt_name = "URI:spiffe://example.org/a,URI:spiffe://example.org/b";
         },
         "more than one URI SAN"},
    };
    for (const Case& c : cases) {
      CAPTURE(c.label);
      auto spec = LeafSpec("spiffe://example.org/web", "leaf", t.now - 60, t.now + 3600);
      c.edit(spec);
      const auto leaf = IssueCert(spec, &t.ca);
      CheckDenied(t.auth.Login(std::vector<std::string>{leaf.Der()}, std::nullopt), c.rule);
    }
  }

  TEST_CASE("intermediate from the presented chain") {
    CertAuthTest t;
    t.Write(t.Role("web", {"spiffe://example.org/web"}));
    const auto intermediate = IssueCa("intermediate", t.now - 3600, t.now + 86400, &t.ca);
    const auto leaf = IssueCert(
        LeafSpec("spiffe://example.org/web", "leaf", t.now - 60, t.now + 3600), &intermediate);
    CHECK(t.auth.Login(std::vector<std::string>{leaf.Der(), intermediate.Der()}, std::nullopt)
              .has_value());
    CheckDenied(t.auth.Login(std::vector<std::string>{leaf.Der()}, std::nullopt),
                "no role accepts the client certificate");
  }

  TEST_CASE("role selected by name or first match in name order") {
    CertAuthTest t;
    CertRole b = t.Role("b-role", {"spiffe://example.org/*"});
    b.token_policies = {"b"};
    CertRole a = t.Role("a-role", {"spiffe://example.org/web"});
    a.token_policies = {"a"};
    CertRole c = t.Role("c-role", {"spiffe://example.org/db"});
    t.Write(b);
    t.Write(a);
    t.Write(c);
    const std::vector<std::string> chain = {t.Leaf("spiffe://example.org/web").Der()};

    auto first = t.auth.Login(chain, std::nullopt);
    REQUIRE(first.has_value());
    CHECK(first->meta.at("cert_name") == "a-role");
    auto named = t.auth.Login(chain, "b-role");
    REQUIRE(named.has_value());
    CHECK(named->meta.at("cert_name") == "b-role");
    CHECK(named->policies == std::vector<std::string>{"b"});
    CheckDenied(t.auth.Login(chain, "c-role"), "no role accepts the client certificate");
    CheckDenied(t.auth.Login(chain, "missing"), "no role accepts the client certificate");
  }

  TEST_CASE("no certificate or garbage is rejected") {
    CertAuthTest t;
    t.Write(t.Role("web", {}));
    CheckDenied(t.auth.Login(std::vector<std::string>{}, std::nullopt), "no client certificate");
    CheckDenied(t.auth.Login(std::vector<std::string>{"not DER"}, std::nullopt), "does not parse");
  }

  TEST_CASE("no roles at all") {
    CertAuthTest t;
    const auto leaf = t.Leaf("spiffe://example.org/web");
    CheckDenied(t.auth.Login(std::vector<std::string>{leaf.Der()}, std::nullopt),
                "no role accepts the client certificate");
  }
}

}  // namespace
}  // namespace kw::vault::auth
