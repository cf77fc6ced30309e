// Certificate (SPIFFE ID) login against the real binary in -dev-tls mode, driven with curl.
#include <doctest/doctest.h>

#include <chrono>
#include <ctime>
#include <string>
#include <vector>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"
#include "tests/unit/vault/auth/test_certificates.hpp"

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;
using testing::CertSpec;
using testing::IssueCa;
using testing::IssueCert;
using testing::LeafSpec;
using testing::TestCert;

std::time_t NowSeconds() { return std::time(nullptr); }

// A -dev-tls server, a client CA with a role `web` trusting it, and helpers to log in.
struct CertLogin {
  CertLogin() : now(NowSeconds()), ca(IssueCa("e2e client CA", now - 3600, now + 86400)) {
    REQUIRE(server.Start());
    REQUIRE_FALSE(server.ca_file().empty());
    const CurlResult written =
        Admin("PUT", "/v1/auth/cert/certs/web",
              {{"certificate", ca.Pem()},
               {"allowed_uri_sans", "spiffe://example.org/ns/*"},
               {"policies", "default,web"},
               {"token_ttl", "1h"}});
    REQUIRE(written.exit_code == 0);
    REQUIRE(written.status == 204);
  }

  // Sends `method` with the root token and a JSON body.
  CurlResult Admin(const std::string& method, const std::string& path, const json& body = nullptr) {
    std::vector<std::string> args = {"--cacert", server.ca_file().string(), "-H",
                                     "X-Vault-Token: " + server.token(), "-X", method};
    if (!body.is_null()) {
      args.insert(args.end(), {"-H", "Content-Type: application/json", "--data", body.dump()});
    }
    args.push_back(server.url() + path);
    return Curl(args);
  }

  // Writes `chain` (PEM, leaf first) and `key` to files and logs in with them.
  CurlResult Login(const std::string& chain, const TestCert& key, const json& body = nullptr) {
    const fs::path cert_file = server.scratch_dir() / "client.pem";
    const fs::path key_file = server.scratch_dir() / "client-key.pem";
    WriteTextFile(cert_file, chain);
    WriteTextFile(key_file, key.KeyPem());
    std::vector<std::string> args = {"--cacert", server.ca_file().string(), "--cert",
                                     cert_file.string(), "--key", key_file.string(), "-X", "POST"};
    if (!body.is_null()) args.insert(args.end(), {"--data", body.dump()});
    args.push_back(server.url() + "/v1/auth/cert/login");
    return Curl(args);
  }

  CurlResult LoginWith(const TestCert& leaf) { return Login(leaf.Pem(), leaf); }

  TestCert Leaf(const CertSpec& spec) { return IssueCert(spec, &ca); }
  CertSpec Spec(const std::string& spiffe_id) {
    return LeafSpec(spiffe_id, "workload", now - 60, now + 3600);
  }

  DevTlsServer server;
  std::time_t now;
  TestCert ca;
};

std::string Errors(const CurlResult& result) {
  return result.body.is_object() ? result.body.value("errors", json::array()).dump() : "";
}

bool ErrorsContain(const CurlResult& result, const std::string& text) {
  return Errors(result).find(text) != std::string::npos;
}

TEST_SUITE("e2e/cert") {
  TEST_CASE("SVID login returns a working token") {
    CertLogin t;
    const CurlResult login = t.LoginWith(t.Leaf(t.Spec("spiffe://example.org/ns/web")));
    REQUIRE(login.exit_code == 0);
    REQUIRE(login.status == 200);
    const json auth = login.body["auth"];
    REQUIRE(auth.is_object());
    CHECK(auth["policies"] == json({"default", "web"}));
    CHECK(auth["metadata"]["cert_name"] == "web");
    CHECK(auth["metadata"]["spiffe_id"] == "spiffe://example.org/ns/web");
    CHECK(auth["entity_id"] == "cert:spiffe://example.org/ns/web");
    CHECK(auth["lease_duration"] == 3600);
    const std::string token = auth["client_token"].get<std::string>();

    const CurlResult self = Curl({"--cacert", t.server.ca_file().string(), "-H",
                                  "X-Vault-Token: " + token,
                                  t.server.url() + "/v1/auth/token/lookup-self"});
    REQUIRE(self.status == 200);
    CHECK(self.body["data"]["display_name"] == "cert-web");
    CHECK(self.body["data"]["path"] == "auth/cert/login");
    CHECK(self.body["data"]["meta"]["spiffe_id"] == "spiffe://example.org/ns/web");
  }

  TEST_CASE("chain with an intermediate logs in") {
    CertLogin t;
    const TestCert intermediate = IssueCa("e2e intermediate", t.now - 3600, t.now + 86400, &t.ca);
    const TestCert leaf = IssueCert(t.Spec("spiffe://example.org/ns/api"), &intermediate);
    const CurlResult login = t.Login(leaf.Pem() + intermediate.Pem(), leaf);
    REQUIRE(login.status == 200);
    CHECK(login.body["auth"]["metadata"]["spiffe_id"] == "spiffe://example.org/ns/api");

    // Without the intermediate the chain does not reach the role's CA.
    const CurlResult alone = t.LoginWith(leaf);
    CHECK(alone.status == 403);
    CHECK(ErrorsContain(alone, "no role accepts the client certificate"));
  }

  TEST_CASE("certificate from an unknown CA is rejected") {
    CertLogin t;
    const TestCert other = IssueCa("e2e other CA", t.now - 3600, t.now + 86400);
    const TestCert leaf = IssueCert(t.Spec("spiffe://example.org/ns/web"), &other);
    const CurlResult login = t.LoginWith(leaf);
    REQUIRE(login.exit_code == 0);  // the handshake succeeds: the TLS layer verifies nothing
    CHECK(login.status == 403);
    CHECK(ErrorsContain(login, "permission denied"));
    CHECK(ErrorsContain(login, "no role accepts the client certificate"));
    CHECK_FALSE(ErrorsContain(login, "web"));
  }

  TEST_CASE("SPIFFE ID outside the role is rejected") {
    CertLogin t;
    const CurlResult login = t.LoginWith(t.Leaf(t.Spec("spiffe://example.org/other/web")));
    CHECK(login.status == 403);
    CHECK(ErrorsContain(login, "no role accepts the client certificate"));
    CHECK_FALSE(ErrorsContain(login, "example.org/ns"));
  }

  TEST_CASE("leaf breaking an X.509-SVID rule is rejected naming the rule") {
    CertLogin t;
    // The same defects as go-spiffe's wrong-leaf-* test files, signed by the role's CA.
    struct Case {
      const char* label;
      void (*edit)(CertSpec&);
      const char* rule;
    };
    const Case cases[] = {
        {"CA true", [](CertSpec& s) { s.basic_constraints = "critical,CA:TRUE"; }, "CA flag"},
        {"keyCertSign",
         [](CertSpec& s) { s.key_usage = "critical,digitalSignature,keyCertSign"; },
         "'keyCertSign'"},
        {"cRLSign", [](CertSpec& s) { s.key_usage = "critical,digitalSignature,cRLSign"; },
         "'cRLSign'"},
        {"no digitalSignature", [](CertSpec& s) { s.key_usage = "critical,keyAgreement"; },
         "'digitalSignature'"},
    };
    for (const Case& c : cases) {
      CAPTURE(c.label);
      CertSpec spec = t.Spec("spiffe://example.org/ns/web");
      c.edit(spec);
      const CurlResult login = t.LoginWith(t.Leaf(spec));
      CAPTURE(login.err);
      CHECK(login.status == 403);
      CHECK_MESSAGE(ErrorsContain(login, c.rule), Errors(login));
    }

    // wrong-leaf-empty-id: a DNS name and no URI SAN is no SVID, so a SPIFFE role rejects it.
    CertSpec no_uri = t.Spec("");
    no_uri.subject_alt_name = "DNS:example.org";
    const CurlResult login = t.LoginWith(t.Leaf(no_uri));
    CHECK(login.status == 403);
    CHECK(ErrorsContain(login, "no role accepts the client certificate"));
  }

  TEST_CASE("login without a client certificate is rejected") {
    CertLogin t;
    const CurlResult login = Curl({"--cacert", t.server.ca_file().string(), "-X", "POST",
                                   t.server.url() + "/v1/auth/cert/login"});
    CHECK(login.status == 403);
    CHECK(ErrorsContain(login, "no client certificate presented"));
  }

  TEST_CASE("role CRUD and selection by name") {
    CertLogin t;
    CertSpec cn_spec = LeafSpec("", "host1.example", t.now - 60, t.now + 3600);
    const TestCert host = t.Leaf(cn_spec);
    REQUIRE(t.Admin("POST", "/v1/auth/cert/certs/hosts",
                    {{"certificate", t.ca.Pem()},
                     {"allowed_common_names", json::array({"host1.example"})},
                     {"token_policies", json::array({"hosts"})}})
                .status == 204);

    const CurlResult read = t.Admin("GET", "/v1/auth/cert/certs/hosts");
    REQUIRE(read.status == 200);
    CHECK(read.body["data"]["allowed_common_names"] == json({"host1.example"}));
    CHECK(read.body["data"]["token_policies"] == json({"hosts"}));
    const CurlResult list = t.Admin("LIST", "/v1/auth/cert/certs");
    REQUIRE(list.status == 200);
    CHECK(list.body["data"]["keys"] == json({"hosts", "web"}));

    const CurlResult by_cn = t.Login(host.Pem(), host, {{"name", "hosts"}});
    REQUIRE(by_cn.status == 200);
    CHECK(by_cn.body["auth"]["metadata"]["common_name"] == "host1.example");
    CHECK(by_cn.body["auth"]["entity_id"] == "cert:host1.example");
    const CurlResult wrong_role = t.Login(host.Pem(), host, {{"name", "web"}});
    CHECK(wrong_role.status == 403);

    REQUIRE(t.Admin("DELETE", "/v1/auth/cert/certs/hosts").status == 204);
    CHECK(t.Admin("GET", "/v1/auth/cert/certs/hosts").status == 404);
    CHECK(t.LoginWith(host).status == 403);
  }

  TEST_CASE("invalid role is rejected naming the field") {
    CertLogin t;
    const CurlResult bad_pem =
        t.Admin("PUT", "/v1/auth/cert/certs/bad", {{"certificate", "not a certificate"}});
    CHECK(bad_pem.status == 400);
    CHECK(ErrorsContain(bad_pem, "certificate"));
    const CurlResult bad_id = t.Admin("PUT", "/v1/auth/cert/certs/bad",
                                      {{"certificate", t.ca.Pem()},
                                       {"allowed_spiffe_ids", "spiffe://Example.org/x"}});
    CHECK(bad_id.status == 400);
    CHECK(ErrorsContain(bad_id, "allowed_spiffe_ids"));
    CHECK(t.Admin("GET", "/v1/auth/cert/certs/bad").status == 404);
  }

  TEST_CASE("role management needs a token") {
    CertLogin t;
    const CurlResult anonymous = Curl({"--cacert", t.server.ca_file().string(),
                                       t.server.url() + "/v1/auth/cert/certs/web"});
    CHECK(anonymous.status == 403);
  }

  TEST_CASE("login over plain HTTP is rejected") {
    DevServer server;
    REQUIRE(server.Start());
    auto client = server.AnonymousClient();
    auto result = PostJson(*client, "/v1/auth/cert/login", json::object());
    CHECK(StatusOf(result) == 400);
    CHECK(BodyOf(result).dump().find("connect over TLS") != std::string::npos);
  }
}

}  // namespace
}  // namespace kw::e2e
