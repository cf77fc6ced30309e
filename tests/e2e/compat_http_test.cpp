// HTTP behaviour that existing Vault clients (hvac, node-vault) depend on, pinned against the
// real server: statuses, headers and bodies as HashiCorp Vault sends them. The client suites
// themselves live in tests/compat/.
#include <doctest/doctest.h>

#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/postgres_harness.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

constexpr char kCreation[] =
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';";

// Configures database/config/pg and role `role` (TTL 1h) against `pg`.
void ConfigureDatabase(httplib::Client& root, const PostgresTarget& pg, const std::string& role) {
  auto configured = PostJson(root, "/v1/database/config/pg",
                             pg.ConfigBody());
  REQUIRE(StatusOf(configured) == 204);
  auto created = PostJson(root, "/v1/database/roles/" + role,
                          {{"db_name", "pg"}, {"creation_statements", kCreation},
                           {"default_ttl", "1h"}});
  REQUIRE(StatusOf(created) == 204);
}

struct Credential {
  std::string lease_id;
  std::string username;
};

Credential IssueCredential(httplib::Client& root, const std::string& role) {
  auto creds = root.Get("/v1/database/creds/" + role);
  REQUIRE(StatusOf(creds) == 200);
  const json body = BodyOf(creds);
  return {body["lease_id"].get<std::string>(), body["data"]["username"].get<std::string>()};
}

int LookupStatus(httplib::Client& root, const std::string& lease_id) {
  return StatusOf(PostJson(root, "/v1/sys/leases/lookup", {{"lease_id", lease_id}}));
}

std::string RoleCount(PgSession& admin, const std::string& username) {
  return admin.Query("SELECT count(*) FROM pg_roles WHERE rolname = '" + username + "'")
      .value_or("query failed: " + admin.error());
}

}  // namespace

TEST_SUITE("e2e/compat") {
  TEST_CASE("compat: revoke-prefix of no leases is 204") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    for (const std::string path : {"/v1/sys/leases/revoke-prefix/database/creds/none",
                                   "/v1/sys/revoke-prefix/database/creds/none"}) {
      CAPTURE(path);
      auto revoked = Send(*root, "PUT", path);
      CHECK(StatusOf(revoked) == 204);
      REQUIRE(revoked);
      CHECK(revoked->body.empty());
    }
  }

  TEST_CASE("compat: revoke-prefix revokes before its 204") {
    auto pg = RequireSharedPostgres();
    if (!pg) return;
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    ConfigureDatabase(*root, *pg, "sync");
    PgSession admin(pg->url);
    REQUIRE(admin.ok());

    // Without a body, as node-vault's revokePrefix sends it, on the legacy path it uses.
    const Credential first = IssueCredential(*root, "sync");
    const Credential second = IssueCredential(*root, "sync");
    CHECK(StatusOf(Send(*root, "PUT", "/v1/sys/revoke-prefix/database/creds/sync")) == 204);
    for (const Credential& credential : {first, second}) {
      CAPTURE(credential.lease_id);
      CHECK(LookupStatus(*root, credential.lease_id) == 400);
      CHECK(RoleCount(admin, credential.username) == "0");
    }

    // With "sync": true on the current path.
    const Credential third = IssueCredential(*root, "sync");
    CHECK(StatusOf(PostJson(*root, "/v1/sys/leases/revoke-prefix/database/creds/sync",
                            {{"sync", true}})) == 204);
    CHECK(LookupStatus(*root, third.lease_id) == 400);
    CHECK(RoleCount(admin, third.username) == "0");
    CHECK(StatusOf(Send(*root, "LIST", "/v1/sys/leases/lookup/database/creds/sync")) == 404);
  }

  TEST_CASE("compat: revoke-prefix with sync false is 202") {
    auto pg = RequireSharedPostgres();
    if (!pg) return;
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    ConfigureDatabase(*root, *pg, "async");
    const Credential credential = IssueCredential(*root, "async");

    auto started = PostJson(*root, "/v1/sys/leases/revoke-prefix/database/creds/async",
                            {{"sync", false}});
    CHECK(StatusOf(started) == 202);
    CHECK(BodyOf(started)["warnings"] ==
          json::array({"revoke-prefix started in the background"}));
    // Bounded: up to 30 seconds at 0.2 s per poll.
    bool revoked = false;
    for (int i = 0; i < 150 && !revoked; ++i) {
      revoked = LookupStatus(*root, credential.lease_id) == 400;
      if (!revoked) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    CHECK(revoked);
  }

  TEST_CASE("compat: missing token roles are 404 without errors") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    auto listed = Send(*root, "LIST", "/v1/auth/token/roles");
    CHECK(StatusOf(listed) == 404);
    CHECK(BodyOf(listed) == json{{"errors", json::array()}});
    auto read = root->Get("/v1/auth/token/roles/missing");
    CHECK(StatusOf(read) == 404);
    CHECK(BodyOf(read) == json{{"errors", json::array()}});

    REQUIRE(StatusOf(PostJson(*root, "/v1/auth/token/roles/ci", {{"allowed_policies", "default"}})) ==
            204);
    auto after = Send(*root, "LIST", "/v1/auth/token/roles");
    CHECK(StatusOf(after) == 200);
    CHECK(BodyOf(after)["data"]["keys"] == json::array({"ci"}));
  }

  TEST_CASE("compat: headers and bodies vault clients parse") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    REQUIRE(StatusOf(WriteSecret(*root, "dir/app", {{"k", "v"}})) == 200);

    // hvac compares Content-Type with "application/json" exactly before it reads errors.
    auto missing = root->Get("/v1/secret/data/none");
    REQUIRE(missing);
    CHECK(missing->status == 404);
    CHECK(missing->get_header_value("Content-Type") == "application/json");
    CHECK(BodyOf(missing) == json{{"errors", json::array()}});

    auto head = Send(*root, "HEAD", "/v1/sys/health");
    REQUIRE(head);
    CHECK(head->status == 200);
    CHECK(head->body.empty());

    // X-Vault-Request is sent by hvac and the Vault CLI on every request.
    auto marked = root->Get("/v1/secret/data/dir/app", {{"X-Vault-Request", "true"}});
    CHECK(StatusOf(marked) == 200);

    for (const std::string query : {"?list=true", "?list=1"}) {
      CAPTURE(query);
      auto listed = root->Get("/v1/secret/metadata/dir" + query);
      CHECK(StatusOf(listed) == 200);
      CHECK(BodyOf(listed)["data"]["keys"] == json::array({"app"}));
    }
    auto listed = Send(*root, "LIST", "/v1/secret/metadata/dir");
    CHECK(BodyOf(listed)["data"]["keys"] == json::array({"app"}));

    auto put = Send(*root, "PUT", "/v1/secret/data/dir/put", json{{"data", {{"a", "b"}}}}.dump());
    CHECK(StatusOf(put) == 200);
    CHECK(ReadSecretData(*root, "dir/put") == json{{"a", "b"}});
  }
}

}  // namespace kw::e2e
