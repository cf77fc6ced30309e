// An X.509-SVID that keyward issued logs in to keyward's own TLS listener (auth/cert), and the
// token it gets can renew only that identity through a {{identity.spiffe_id}} role.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kWorkload = "spiffe://example.org/ns/web";

std::string ReadTextFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

struct SelfIssuing {
  SelfIssuing() {
    REQUIRE(server.Start());
    REQUIRE_FALSE(server.ca_file().empty());
  }

  // Sends `method` to `path` with `token` and a JSON body.
  CurlResult Call(const std::string& method, const std::string& path, const std::string& token,
                  const json& body = nullptr) {
    std::vector<std::string> args = {"--cacert", server.ca_file().string(), "-H",
                                     "X-Vault-Token: " + token, "-X", method};
    if (!body.is_null()) {
      args.insert(args.end(), {"-H", "Content-Type: application/json", "--data", body.dump()});
    }
    args.push_back(server.url() + path);
    return Curl(args);
  }

  CurlResult Admin(const std::string& method, const std::string& path, const json& body = nullptr) {
    return Call(method, path, server.token(), body);
  }

  // Returns the body of a GET that needs no token.
  std::string PublicText(const std::string& path) {
    const fs::path out = server.scratch_dir() / "public.out";
    const CurlResult result = Curl({"--cacert", server.ca_file().string(), "-o", out.string(),
                                    server.url() + path});
    REQUIRE(result.exit_code == 0);
    return ReadTextFile(out);
  }

  // Logs in over mutual TLS with the SVID in `certificate` and `key` (PEM).
  CurlResult Login(const std::string& certificate, const std::string& key) {
    const fs::path cert_file = server.scratch_dir() / "svid.pem";
    const fs::path key_file = server.scratch_dir() / "svid-key.pem";
    WriteTextFile(cert_file, certificate);
    WriteTextFile(key_file, key);
    return Curl({"--cacert", server.ca_file().string(), "--cert", cert_file.string(), "--key",
                 key_file.string(), "-X", "POST", server.url() + "/v1/auth/cert/login"});
  }

  DevTlsServer server;
};

TEST_SUITE("e2e/pki-login") {
  TEST_CASE("issued SVID logs in and renews itself") {
    SelfIssuing t;
    REQUIRE(t.Admin("POST", "/v1/pki/root/generate/internal", {{"trust_domain", "example.org"}})
                .status == 200);
    REQUIRE(t.Admin("POST", "/v1/pki/roles/bootstrap",
                    {{"allowed_spiffe_ids", {"spiffe://example.org/ns/*"}}})
                .status == 204);
    REQUIRE(t.Admin("POST", "/v1/pki/roles/self",
                    {{"allowed_spiffe_ids", {"{{identity.spiffe_id}}"}}, {"ttl", "10m"}})
                .status == 204);
    REQUIRE(t.Admin("PUT", "/v1/sys/policies/acl/svid",
                    {{"policy",
                      "path \"pki/issue/self\" { capabilities = [\"update\"] }\n"
                      "path \"pki/jwt/issue/self\" { capabilities = [\"update\"] }"}})
                .status == 204);
    // keyward's own CA is the cert method's trust anchor.
    const std::string ca_pem = t.PublicText("/v1/pki/ca/pem");
    REQUIRE(ca_pem.find("BEGIN CERTIFICATE") != std::string::npos);
    REQUIRE(t.Admin("PUT", "/v1/auth/cert/certs/workloads",
                    {{"certificate", ca_pem},
                     {"allowed_spiffe_ids", "spiffe://example.org/ns/*"},
                     {"policies", "svid"},
                     {"token_ttl", "15m"}})
                .status == 204);

    const CurlResult issued =
        t.Admin("POST", "/v1/pki/issue/bootstrap", {{"spiffe_id", std::string(kWorkload)}});
    REQUIRE(issued.status == 200);
    const json& svid = issued.body["data"];

    // The SVID completes a mutual TLS handshake with keyward's listener and logs in.
    const CurlResult login = t.Login(svid["certificate"].get<std::string>(),
                                     svid["private_key"].get<std::string>());
    REQUIRE(login.exit_code == 0);
    REQUIRE(login.status == 200);
    CHECK(login.body["auth"]["metadata"]["spiffe_id"] == kWorkload);
    const std::string token = login.body["auth"]["client_token"].get<std::string>();

    // The workload renews its own identity, and only that one.
    const CurlResult renewed =
        t.Call("POST", "/v1/pki/issue/self", token, {{"spiffe_id", std::string(kWorkload)}});
    REQUIRE(renewed.status == 200);
    CHECK(renewed.body["data"]["spiffe_id"] == kWorkload);
    const CurlResult jwt = t.Call("POST", "/v1/pki/jwt/issue/self", token,
                                  {{"spiffe_id", std::string(kWorkload)}, {"audience", "db"}});
    CHECK(jwt.status == 200);

    const CurlResult other = t.Call("POST", "/v1/pki/issue/self", token,
                                    {{"spiffe_id", "spiffe://example.org/ns/admin"}});
    CHECK(other.status == 400);
    CHECK(other.body.dump().find("is not allowed by role") != std::string::npos);

    // The policy allows the self role only.
    const CurlResult bootstrap = t.Call("POST", "/v1/pki/issue/bootstrap", token,
                                        {{"spiffe_id", "spiffe://example.org/ns/admin"}});
    CHECK(bootstrap.status == 403);

    // The root token has no login identity: the template matches nothing for it.
    const CurlResult root =
        t.Admin("POST", "/v1/pki/issue/self", {{"spiffe_id", std::string(kWorkload)}});
    CHECK(root.status == 400);
  }
}

}  // namespace
}  // namespace kw::e2e
