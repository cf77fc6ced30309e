// Tokens and leases together through the real binary and a real PostgreSQL: revoking a
// token revokes the leases of every token below it, and their database roles go.
#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/postgres_harness.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(200);
constexpr int kMaxPolls = 300;  // 60 s at kPollInterval

std::string CreateChild(httplib::Client& parent) {
  auto created = PostJson(parent, "/v1/auth/token/create", {{"policies", {"db"}}});
  REQUIRE_MESSAGE(StatusOf(created) == 200, BodyOf(created).dump());
  return BodyOf(created)["auth"]["client_token"].get<std::string>();
}

std::string RoleCount(PgSession& admin, const std::string& user) {
  return admin.Query("SELECT count(*) FROM pg_roles WHERE rolname = '" + user + "'")
      .value_or("query failed");
}

}  // namespace

TEST_SUITE("e2e/token-lease") {
  TEST_CASE("revoking a parent revokes its descendants' database leases") {
    auto pg = RequireSharedPostgres();
    if (!pg) return;
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    REQUIRE(StatusOf(PostJson(*root, "/v1/database/config/pg",
                              {{"plugin_name", "postgresql-database-plugin"},
                               {"connection_url", pg->ConfigUrl()},
                               {"username", pg->user},
                               {"password", pg->password},
                               {"allowed_roles", "*"}})) == 204);
    REQUIRE(StatusOf(PostJson(
                *root, "/v1/database/roles/app",
                {{"db_name", "pg"},
                 {"creation_statements",
                  "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
                  "VALID UNTIL '{{expiration}}';"},
                 {"default_ttl", "1h"}})) == 204);
    REQUIRE(StatusOf(PostJson(*root, "/v1/sys/policies/acl/db",
                              {{"policy", R"(path "database/creds/app" { capabilities = ["read"] }
path "auth/token/create" { capabilities = ["update"] })"}})) == 204);

    const std::string parent = CreateChild(*root);
    auto parent_client = MakeClient(server.port(), parent);
    const std::string child = CreateChild(*parent_client);
    auto child_client = MakeClient(server.port(), child);
    const std::string grandchild = CreateChild(*child_client);
    auto grandchild_client = MakeClient(server.port(), grandchild);

    std::vector<std::pair<std::string, std::string>> credentials;  // (user, password)
    std::vector<std::string> lease_ids;
    for (httplib::Client* client : {parent_client.get(), child_client.get(),
                                    grandchild_client.get()}) {
      auto creds = client->Get("/v1/database/creds/app");
      REQUIRE_MESSAGE(StatusOf(creds) == 200, BodyOf(creds).dump());
      const json body = BodyOf(creds);
      credentials.emplace_back(body["data"]["username"].get<std::string>(),
                               body["data"]["password"].get<std::string>());
      lease_ids.push_back(body["lease_id"].get<std::string>());
    }
    // A credential of another tree stays.
    const std::string other = CreateChild(*root);
    auto other_client = MakeClient(server.port(), other);
    auto other_creds = other_client->Get("/v1/database/creds/app");
    REQUIRE(StatusOf(other_creds) == 200);
    const std::string other_user = BodyOf(other_creds)["data"]["username"].get<std::string>();

    PgSession session(pg->LoginInfo(credentials.back().first, credentials.back().second));
    REQUIRE(session.ok());
    REQUIRE(StatusOf(PostJson(*root, "/v1/auth/token/revoke", {{"token", parent}})) == 204);

    PgSession admin(pg->url);
    REQUIRE(admin.ok());
    for (const auto& credential : credentials) {
      const std::string& user = credential.first;
      const std::string& password = credential.second;
      bool gone = false;
      for (int i = 0; i < kMaxPolls && !gone; ++i) {
        gone = RoleCount(admin, user) == "0";
        if (!gone) std::this_thread::sleep_for(kPollInterval);
      }
      CHECK_MESSAGE(gone, user);
      PgSession login(pg->LoginInfo(user, password));
      CHECK_FALSE(login.ok());
    }
    CHECK_FALSE(session.Query("SELECT 1").has_value());
    for (const auto& lease_id : lease_ids) {
      auto lookup = PostJson(*root, "/v1/sys/leases/lookup", {{"lease_id", lease_id}});
      CHECK(StatusOf(lookup) == 400);
    }
    CHECK(RoleCount(admin, other_user) == "1");
  }
}

}  // namespace kw::e2e
