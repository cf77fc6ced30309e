// The database secrets engine through the real binary against a real PostgreSQL: config,
// roles, credentials that log in, renewal, revocation that kills open sessions, expiry, and
// revocation queued while PostgreSQL is down.
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

const std::string kCreation =
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
    "GRANT CONNECT ON DATABASE postgres TO \"{{name}}\";";

void ConfigureDatabase(httplib::Client& client, const PostgresTarget& pg) {
  auto configured = PostJson(client, "/v1/database/config/pg",
                             pg.ConfigBody());
  REQUIRE(StatusOf(configured) == 204);
}

void CreateRole(httplib::Client& client, const std::string& name, const json& extra = {}) {
  json body = {{"db_name", "pg"},
               {"creation_statements", kCreation},
               {"default_ttl", "1h"},
               {"max_ttl", "2h"}};
  if (extra.is_object()) body.update(extra);
  auto created = PostJson(client, "/v1/database/roles/" + name, body);
  REQUIRE(StatusOf(created) == 204);
}

// Returns the creds response body; fails the test unless it is 200.
json GetCreds(httplib::Client& client, const std::string& role) {
  auto creds = client.Get(("/v1/database/creds/" + role).c_str());
  REQUIRE(StatusOf(creds) == 200);
  return BodyOf(creds);
}

std::string RoleCount(PgSession& admin, const std::string& user) {
  return admin.Query("SELECT count(*) FROM pg_roles WHERE rolname = '" + user + "'")
      .value_or("query failed");
}

// Polls until `user` no longer exists; returns whether it went within kMaxPolls.
bool WaitRoleGone(PgSession& admin, const std::string& user) {
  for (int i = 0; i < kMaxPolls; ++i) {
    if (RoleCount(admin, user) == "0") return true;
    std::this_thread::sleep_for(kPollInterval);
  }
  return false;
}

}  // namespace

TEST_SUITE("e2e/database") {
  TEST_CASE("credential login, renew and revoke with an open session") {
    auto pg = RequireSharedPostgres();
    if (!pg) return;
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    ConfigureDatabase(*root, *pg);
    CreateRole(*root, "app");

    auto config = root->Get("/v1/database/config/pg");
    REQUIRE(StatusOf(config) == 200);
    const json config_body = BodyOf(config);
    CHECK(config_body.dump().find(pg->password) == std::string::npos);
    CHECK(config_body["data"]["connection_details"]["connection_url"] == pg->ConfigUrl());
    CHECK(config_body["data"]["plugin_name"] == "postgresql-database-plugin");

    const json creds = GetCreds(*root, "app");
    const std::string lease_id = creds["lease_id"].get<std::string>();
    const std::string user = creds["data"]["username"].get<std::string>();
    const std::string password = creds["data"]["password"].get<std::string>();
    CHECK(lease_id.starts_with("database/creds/app/"));
    CHECK(creds["lease_duration"] == 3600);
    CHECK(creds["renewable"] == true);
    CHECK(user.size() <= 63);
    CHECK(password.size() >= 32);

    PgSession session(pg->LoginInfo(user, password));
    REQUIRE(session.ok());
    CHECK(session.Query("SELECT current_user") == user);

    PgSession admin(pg->url);
    REQUIRE(admin.ok());
    const auto valid_before =
        admin.Query("SELECT extract(epoch FROM rolvaliduntil)::bigint FROM pg_roles "
                    "WHERE rolname = '" + user + "'");
    REQUIRE(valid_before.has_value());
    auto renewed = PostJson(*root, "/v1/sys/leases/renew",
                            {{"lease_id", lease_id}, {"increment", "2h"}});
    REQUIRE(StatusOf(renewed) == 200);
    CHECK(BodyOf(renewed)["lease_duration"].get<std::int64_t>() > 3600);
    const auto valid_after =
        admin.Query("SELECT extract(epoch FROM rolvaliduntil)::bigint FROM pg_roles "
                    "WHERE rolname = '" + user + "'");
    REQUIRE(valid_after.has_value());
    CHECK(std::stoll(*valid_after) > std::stoll(*valid_before));

    auto revoked = PostJson(*root, "/v1/sys/leases/revoke", {{"lease_id", lease_id}});
    CHECK(StatusOf(revoked) == 204);
    CHECK_FALSE(session.Query("SELECT 1").has_value());
    CHECK(RoleCount(admin, user) == "0");
    PgSession again(pg->LoginInfo(user, password));
    CHECK_FALSE(again.ok());
    auto lookup = PostJson(*root, "/v1/sys/leases/lookup", {{"lease_id", lease_id}});
    CHECK(StatusOf(lookup) == 400);
    auto renew_after = PostJson(*root, "/v1/sys/leases/renew", {{"lease_id", lease_id}});
    CHECK(StatusOf(renew_after) == 400);

    // Neither the admin password nor the credential's password is in the server's logs.
    CHECK(server.process().ReadStderr().find(pg->password) == std::string::npos);
    CHECK(server.process().ReadStderr().find(password) == std::string::npos);
  }

  TEST_CASE("config with a wrong password fails verification") {
    auto pg = RequireSharedPostgres();
    if (!pg) return;
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    auto configured = PostJson(*root, "/v1/database/config/bad",
                               {{"plugin_name", "postgresql-database-plugin"},
                                {"connection_url", pg->ConfigUrl()},
                                {"username", pg->user},
                                {"password", "NotTheRightPassw0rd"}});
    CHECK(StatusOf(configured) == 503);
    CHECK(BodyOf(configured).dump().find("NotTheRightPassw0rd") == std::string::npos);
    CHECK(StatusOf(root->Get("/v1/database/config/bad")) == 404);
    auto unverified = PostJson(*root, "/v1/database/config/bad",
                               {{"plugin_name", "postgresql-database-plugin"},
                                {"connection_url", pg->ConfigUrl()},
                                {"username", pg->user},
                                {"password", "NotTheRightPassw0rd"},
                                {"verify_connection", false}});
    CHECK(StatusOf(unverified) == 204);
    auto other = PostJson(*root, "/v1/database/config/x", {{"plugin_name", "mysql"},
                                                           {"connection_url", "x"}});
    CHECK(StatusOf(other) == 400);
  }

  TEST_CASE("roles list, read and reject bad statements") {
    auto pg = RequireSharedPostgres();
    if (!pg) return;
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    ConfigureDatabase(*root, *pg);
    CreateRole(*root, "reader");
    auto listed = Send(*root, "LIST", "/v1/database/roles");
    REQUIRE(StatusOf(listed) == 200);
    CHECK(BodyOf(listed)["data"]["keys"] == json::array({"reader"}));
    auto read = root->Get("/v1/database/roles/reader");
    REQUIRE(StatusOf(read) == 200);
    CHECK(BodyOf(read)["data"]["default_ttl"] == 3600);
    CHECK(BodyOf(read)["data"]["db_name"] == "pg");
    auto bad = PostJson(*root, "/v1/database/roles/bad",
                        {{"db_name", "pg"}, {"creation_statements", "CREATE ROLE {{nme}}"}});
    CHECK(StatusOf(bad) == 400);
    CHECK(StatusOf(root->Get("/v1/database/creds/missing")) == 400);
  }

  TEST_CASE("elevated role caps max_ttl and names the requester") {
    auto pg = RequireSharedPostgres();
    if (!pg) return;
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    ConfigureDatabase(*root, *pg);
    auto too_long = PostJson(*root, "/v1/database/roles/admin",
                             {{"db_name", "pg"}, {"creation_statements", kCreation},
                              {"elevated", true}, {"max_ttl", "2h"}});
    CHECK(StatusOf(too_long) == 400);
    CreateRole(*root, "admin", {{"elevated", true}, {"default_ttl", "10m"}, {"max_ttl", "30m"}});
    const json creds = GetCreds(*root, "admin");
    auto self = root->Get("/v1/auth/token/lookup-self");
    REQUIRE(StatusOf(self) == 200);
    CHECK(creds["metadata"]["elevated"] == true);
    CHECK(creds["metadata"]["requested_by"] == BodyOf(self)["data"]["accessor"]);
    CHECK(creds["lease_duration"] == 600);
    auto revoked =
        PostJson(*root, "/v1/sys/leases/revoke", {{"lease_id", creds["lease_id"]}});
    CHECK(StatusOf(revoked) == 204);
  }

  TEST_CASE("short TTL credential is dropped after expiry") {
    auto pg = RequireSharedPostgres();
    if (!pg) return;
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    ConfigureDatabase(*root, *pg);
    CreateRole(*root, "short", {{"default_ttl", "3s"}, {"max_ttl", "3s"}});
    const json creds = GetCreds(*root, "short");
    const std::string user = creds["data"]["username"].get<std::string>();
    CHECK(creds["lease_duration"] == 3);
    PgSession admin(pg->url);
    REQUIRE(admin.ok());
    CHECK(RoleCount(admin, user) == "1");
    CHECK(WaitRoleGone(admin, user));
  }

  TEST_CASE("revocation while PostgreSQL is down is queued and completes later") {
    if (!RequireSharedPostgres()) return;
    auto cluster = PrivatePostgres::Start();
    REQUIRE(cluster != nullptr);
    const PostgresTarget& pg = cluster->target();
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    ConfigureDatabase(*root, pg);
    CreateRole(*root, "app");
    const json first = GetCreds(*root, "app");
    const json second = GetCreds(*root, "app");
    const std::string user = first["data"]["username"].get<std::string>();

    REQUIRE(cluster->Pause());
    auto queued = PostJson(*root, "/v1/sys/leases/revoke",
                           {{"lease_id", first["lease_id"]}, {"sync", false}});
    CHECK(StatusOf(queued) == 202);
    auto failed = PostJson(*root, "/v1/sys/leases/revoke", {{"lease_id", second["lease_id"]}});
    CHECK(StatusOf(failed) == 503);
    CHECK(BodyOf(failed).dump().find("queued") != std::string::npos);
    CHECK(BodyOf(failed).dump().find(pg.password) == std::string::npos);

    auto lookup = PostJson(*root, "/v1/sys/leases/lookup", {{"lease_id", second["lease_id"]}});
    REQUIRE(StatusOf(lookup) == 200);
    CHECK(BodyOf(lookup)["data"]["revoking"] == true);
    CHECK(BodyOf(lookup)["data"]["revocation_attempts"].get<int>() >= 1);
    auto renew = PostJson(*root, "/v1/sys/leases/renew", {{"lease_id", first["lease_id"]}});
    CHECK(StatusOf(renew) == 400);

    REQUIRE(cluster->Resume());
    bool gone = false;
    for (int i = 0; i < kMaxPolls && !gone; ++i) {
      auto first_lookup =
          PostJson(*root, "/v1/sys/leases/lookup", {{"lease_id", first["lease_id"]}});
      auto second_lookup =
          PostJson(*root, "/v1/sys/leases/lookup", {{"lease_id", second["lease_id"]}});
      gone = StatusOf(first_lookup) == 400 && StatusOf(second_lookup) == 400;
      if (!gone) std::this_thread::sleep_for(kPollInterval);
    }
    CHECK(gone);
    PgSession admin(pg.url);
    REQUIRE(admin.ok());
    CHECK(RoleCount(admin, user) == "0");
    CHECK(RoleCount(admin, second["data"]["username"].get<std::string>()) == "0");
  }

  TEST_CASE("rotate-root keeps the engine working with a password only it knows") {
    auto pg = RequireSharedPostgres();
    if (!pg) return;
    PgSession admin(pg->url);
    REQUIRE(admin.ok());
    const std::string user = "kwroot_" + RandomHex(4);
    REQUIRE(admin.Query("CREATE ROLE " + user + " SUPERUSER LOGIN PASSWORD 'initialpw'"));
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    auto configured = PostJson(*root, "/v1/database/config/rot",
                               {{"plugin_name", "postgresql-database-plugin"},
                                {"connection_url", pg->ConfigUrl()},
                                {"username", user},
                                {"password", "initialpw"},
                                {"allowed_roles", json::array({"r"})}});
    REQUIRE(StatusOf(configured) == 204);
    CHECK(StatusOf(PostJson(*root, "/v1/database/rotate-root/rot", json::object())) == 204);
    PgSession old_login(pg->LoginInfo(user, "initialpw"));
    CHECK_FALSE(old_login.ok());
    auto role = PostJson(*root, "/v1/database/roles/r",
                         {{"db_name", "rot"}, {"creation_statements", kCreation}});
    REQUIRE(StatusOf(role) == 204);
    const json creds = GetCreds(*root, "r");
    CHECK(StatusOf(PostJson(*root, "/v1/sys/leases/revoke",
                            {{"lease_id", creds["lease_id"]}})) == 204);
    REQUIRE(admin.Query("DROP ROLE " + user));
  }

  TEST_CASE("static role rotates an existing user's password") {
    auto pg = RequireSharedPostgres();
    if (!pg) return;
    PgSession admin(pg->url);
    REQUIRE(admin.ok());
    const std::string user = "kwstatic_" + RandomHex(4);
    REQUIRE(admin.Query("CREATE ROLE " + user + " LOGIN PASSWORD 'initialpw'"));
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    ConfigureDatabase(*root, *pg);

    auto missing_user = PostJson(*root, "/v1/database/static-roles/svc",
                                 {{"db_name", "pg"},
                                  {"username", "kw_no_such_user_" + RandomHex(4)},
                                  {"rotation_period", 60}});
    CHECK(StatusOf(missing_user) == 400);
    auto too_short = PostJson(*root, "/v1/database/static-roles/svc",
                              {{"db_name", "pg"}, {"username", user}, {"rotation_period", 4}});
    CHECK(StatusOf(too_short) == 400);
    CHECK(StatusOf(Send(*root, "LIST", "/v1/database/static-roles")) == 404);

    auto created = PostJson(*root, "/v1/database/static-roles/svc",
                            {{"db_name", "pg"}, {"username", user}, {"rotation_period", "1h"}});
    REQUIRE(StatusOf(created) == 204);
    PgSession initial(pg->LoginInfo(user, "initialpw"));
    CHECK_FALSE(initial.ok());

    auto role = root->Get("/v1/database/static-roles/svc");
    REQUIRE(StatusOf(role) == 200);
    const json role_data = BodyOf(role)["data"];
    CHECK(role_data["username"] == user);
    CHECK(role_data["db_name"] == "pg");
    CHECK(role_data["rotation_period"] == 3600);
    CHECK_FALSE(role_data.contains("password"));

    auto creds = root->Get("/v1/database/static-creds/svc");
    REQUIRE(StatusOf(creds) == 200);
    const json data = BodyOf(creds)["data"];
    const std::string first = data["password"].get<std::string>();
    CHECK(data["username"] == user);
    CHECK(data["rotation_period"] == 3600);
    CHECK(data["ttl"].get<std::int64_t>() > 3500);
    CHECK(data["ttl"].get<std::int64_t>() <= 3600);
    CHECK(data["last_vault_rotation"].get<std::string>().ends_with("Z"));
    CHECK(role->body.find(first) == std::string::npos);
    {
      PgSession login(pg->LoginInfo(user, first));
      REQUIRE(login.ok());
      CHECK(login.Query("SELECT current_user") == user);
    }

    CHECK(StatusOf(PostJson(*root, "/v1/database/rotate-role/svc", json::object())) == 204);
    const std::string second =
        BodyOf(root->Get("/v1/database/static-creds/svc"))["data"]["password"].get<std::string>();
    CHECK(second != first);
    PgSession old_login(pg->LoginInfo(user, first));
    CHECK_FALSE(old_login.ok());
    PgSession new_login(pg->LoginInfo(user, second));
    CHECK(new_login.ok());
    CHECK(StatusOf(PostJson(*root, "/v1/database/rotate-role/nope", json::object())) == 400);

    auto listed = Send(*root, "LIST", "/v1/database/static-roles");
    REQUIRE(StatusOf(listed) == 200);
    CHECK(BodyOf(listed)["data"]["keys"] == json::array({"svc"}));
    CHECK(StatusOf(Send(*root, "DELETE", "/v1/database/static-roles/svc")) == 204);
    CHECK(StatusOf(root->Get("/v1/database/static-roles/svc")) == 404);
    CHECK(StatusOf(root->Get("/v1/database/static-creds/svc")) == 400);

    CHECK(server.process().ReadStderr().find(first) == std::string::npos);
    CHECK(server.process().ReadStderr().find(second) == std::string::npos);
    REQUIRE(admin.Query("DROP ROLE " + user));
  }

  TEST_CASE("static role password rotates on schedule") {
    auto pg = RequireSharedPostgres();
    if (!pg) return;
    PgSession admin(pg->url);
    REQUIRE(admin.ok());
    const std::string user = "kwsched_" + RandomHex(4);
    REQUIRE(admin.Query("CREATE ROLE " + user + " LOGIN PASSWORD 'initialpw'"));
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    ConfigureDatabase(*root, *pg);
    REQUIRE(StatusOf(PostJson(*root, "/v1/database/static-roles/sched",
                              {{"db_name", "pg"}, {"username", user}, {"rotation_period", 5}})) ==
            204);
    const std::string first =
        BodyOf(root->Get("/v1/database/static-creds/sched"))["data"]["password"].get<std::string>();
    // The server's background round (every 10 s) rotates it once the 5 s period has passed.
    std::string current = first;
    for (int i = 0; i < kMaxPolls && current == first; ++i) {
      std::this_thread::sleep_for(kPollInterval);
      current = BodyOf(root->Get("/v1/database/static-creds/sched"))["data"]["password"]
                    .get<std::string>();
    }
    CHECK(current != first);
    PgSession login(pg->LoginInfo(user, current));
    CHECK(login.ok());
    admin.Query("DROP ROLE IF EXISTS " + user);
  }

  TEST_CASE("a lease that expired while the server was down is revoked before serving") {
    auto pg = RequireSharedPostgres();
    if (!pg) return;
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    ConfigureDatabase(*root, *pg);
    CreateRole(*root, "brief", {{"default_ttl", "3s"}, {"max_ttl", "3s"}});
    const json creds = GetCreds(*root, "brief");
    const std::string user = creds["data"]["username"].get<std::string>();
    REQUIRE(server.Stop() == 0);

    PgSession admin(pg->url);
    REQUIRE(admin.ok());
    CHECK(RoleCount(admin, user) == "1");
    std::this_thread::sleep_for(std::chrono::seconds(4));  // past the lease's end, server down
    REQUIRE(server.Restart(std::string(kRootToken)));
    // Start-up revoked it before the listener opened: no polling.
    CHECK(RoleCount(admin, user) == "0");
    auto client = server.Client();
    auto lookup = PostJson(*client, "/v1/sys/leases/lookup",
                           {{"lease_id", creds["lease_id"].get<std::string>()}});
    CHECK(StatusOf(lookup) == 400);
  }
}

}  // namespace kw::e2e
