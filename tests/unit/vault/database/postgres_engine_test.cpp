// The database engine against a real PostgreSQL: the cluster that scripts/postgres.sh starts
// (KEYWARD_TEST_PG_URL, or the URL file it writes). Under CI=true a missing cluster fails the
// tests; elsewhere they are skipped with a message.
#include "vault/database/postgres_engine.hpp"

#include <doctest/doctest.h>
#include <libpq-fe.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <string>

#include "base/bytes.hpp"
#include "vault/vault_test_env.hpp"

namespace kw::vault::database {
namespace {

struct PgTarget {
  std::string url;  // with the admin password
  std::string user;
  std::string password;
  std::string host_port_db;  // "127.0.0.1:55432/postgres"
};

std::optional<PgTarget> FindPostgres() {
  std::string url;
  if (const char* env = std::getenv("KEYWARD_TEST_PG_URL"); env != nullptr) url = env;
  if (url.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::ifstream file(std::string(tmp != nullptr ? tmp : "/tmp") + "/keyward-test-pg/url");
    std::getline(file, url);
  }
  static const std::regex kUrl(R"(postgresql://([^:]+):([^@]+)@(.+))");
  std::smatch match;
  if (!std::regex_match(url, match, kUrl)) return std::nullopt;
  return PgTarget{url, match[1], match[2], match[3]};
}

// Returns the cluster, or nullopt after failing (CI) or announcing the skip.
std::optional<PgTarget> RequirePostgres() {
  auto target = FindPostgres();
  if (target) return target;
  const char* ci = std::getenv("CI");
  if (ci != nullptr && std::string(ci) == "true") {
    FAIL("PostgreSQL is not available: run scripts/postgres.sh start");
  }
  MESSAGE("SKIPPED: PostgreSQL is not available; run scripts/postgres.sh start");
  return std::nullopt;
}

std::int64_t RealNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A raw libpq session, as an application using a credential would hold one.
struct Session {
  explicit Session(const std::string& conninfo) : conn(PQconnectdb(conninfo.c_str())) {}
  ~Session() { PQfinish(conn); }
  bool ok() const { return PQstatus(conn) == CONNECTION_OK; }
  // Returns the first value of `sql`, or nullopt when the query fails.
  std::optional<std::string> Query(const std::string& sql) {
    PGresult* result = PQexec(conn, sql.c_str());
    std::optional<std::string> value;
    if (PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) > 0) {
      value = PQgetvalue(result, 0, 0);
    } else if (PQresultStatus(result) == PGRES_COMMAND_OK) {
      value = "";
    }
    PQclear(result);
    return value;
  }
  PGconn* conn;
};

std::string LoginInfo(const PgTarget& pg, const std::string& user, std::string_view password,
                      const std::string& db = "postgres") {
  const std::string host = pg.host_port_db.substr(0, pg.host_port_db.find(':'));
  const std::string port = pg.host_port_db.substr(
      pg.host_port_db.find(':') + 1, pg.host_port_db.find('/') - pg.host_port_db.find(':') - 1);
  return "host=" + host + " port=" + port + " dbname=" + db + " user=" + user +
         " password=" + std::string(password) + " connect_timeout=5";
}

struct EngineFixture {
  explicit EngineFixture(const PgTarget& target)
      : pg(target), engine(*env.store, *env.barrier, env.clock) {
    env.clock.Advance(std::chrono::seconds(RealNow() - 1'800'000'000));
  }

  DatabaseConfig Config(std::string name) const {
    DatabaseConfig config;
    config.name = std::move(name);
    config.connection_url = "postgresql://{{username}}:{{password}}@" + pg.host_port_db;
    config.username = pg.user;
    config.password = SecretBuffer::CopyFrom(pg.password);
    config.allowed_roles = {"*"};
    return config;
  }

  void Commit(storage::WriteBatch batch) { REQUIRE(env.store->Commit(std::move(batch))); }

  DynamicRole Role(std::string name) {
    DynamicRole role;
    role.name = std::move(name);
    role.db_name = "pg";
    role.creation_statements = {
        "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL "
        "'{{expiration}}'; GRANT CONNECT ON DATABASE postgres TO \"{{name}}\""};
    return role;
  }

  lease::Lease LeaseFor(const DynamicRole& role, const std::string& username) {
    lease::Lease lease;
    lease.id = "database/creds/" + role.name + "/test";
    lease.role = role.name;
    lease.engine_data = PostgresEngine::LeaseData(role, username);
    return lease;
  }

  PgTarget pg;
  testing::VaultTestEnv env;
  PostgresEngine engine;
};

}  // namespace

TEST_SUITE("vault/database/postgres") {
  TEST_CASE("config verify rejects a wrong password without echoing it") {
    auto pg = RequirePostgres();
    if (!pg) return;
    EngineFixture f(*pg);
    DatabaseConfig config = f.Config("pg");
    config.password = SecretBuffer::CopyFrom("WrongPassw0rdValue");
    storage::WriteBatch batch;
    auto staged = f.engine.StageConfig(config, std::nullopt, batch);
    REQUIRE_FALSE(staged.has_value());
    CHECK(staged.error().code() == Code::kUnavailable);
    CHECK(staged.error().message().find("WrongPassw0rdValue") == std::string::npos);
    CHECK(staged.error().message().find("password authentication failed") != std::string::npos);
  }

  TEST_CASE("config read redacts and never returns the password") {
    auto pg = RequirePostgres();
    if (!pg) return;
    EngineFixture f(*pg);
    storage::WriteBatch batch;
    REQUIRE(f.engine.StageConfig(f.Config("pg"), std::nullopt, batch));
    f.Commit(std::move(batch));
    auto stored = f.engine.LoadConfig("pg");
    REQUIRE(stored.has_value());
    REQUIRE(stored->has_value());
    const std::string shown = (*stored)->config.ToPublicJson().dump();
    CHECK(shown.find(pg->password) == std::string::npos);
    CHECK(RedactConnectionUrl("postgresql://u:secretpw@h/db") == "postgresql://u:*****@h/db");
    CHECK(RedactConnectionUrl("host=h password=secretpw user=u") ==
          "host=h password=***** user=u");
    CHECK(RedactConnectionUrl("host=h password = 'secret pw' user=u") ==
          "host=h password = ***** user=u");
    CHECK(RedactConnectionUrl("host=h password= 'it\\'s' user=u") ==
          "host=h password= ***** user=u");
    CHECK(RedactConnectionUrl("postgresql://h/db?user=u&password=secretpw&x=1") ==
          "postgresql://h/db?user=u&password=*****&x=1");
    CHECK(RedactConnectionUrl("host=h password={{password}}") == "host=h password={{password}}");
  }

  TEST_CASE("credential lifecycle: create, login, renew, revoke") {
    auto pg = RequirePostgres();
    if (!pg) return;
    EngineFixture f(*pg);
    storage::WriteBatch batch;
    REQUIRE(f.engine.StageConfig(f.Config("pg"), std::nullopt, batch));
    const DynamicRole role = f.Role("app");
    REQUIRE(f.engine.StageRole(role, batch));
    f.Commit(std::move(batch));

    auto credential = f.engine.CreateCredential(role, "token", RealNow() + 3600);
    REQUIRE(credential.has_value());
    const std::string user = credential->username;
    Session session(LoginInfo(*pg, user, credential->password.RevealText()));
    REQUIRE(session.ok());
    CHECK(session.Query("SELECT current_user") == user);

    Session admin(pg->url);
    REQUIRE(admin.ok());
    const lease::Lease lease = f.LeaseFor(role, user);
    REQUIRE(f.engine.RenewCredential(lease, 1906502400));
    CHECK(admin.Query("SELECT rolvaliduntil FROM pg_roles WHERE rolname = '" + user + "'") ==
          "2030-06-01 00:00:00+00");

    REQUIRE(f.engine.RevokeCredential(lease));
    // The open session was terminated, the role is gone, and a new login fails.
    CHECK_FALSE(session.Query("SELECT 1").has_value());
    CHECK(admin.Query("SELECT count(*) FROM pg_roles WHERE rolname = '" + user + "'") == "0");
    Session again(LoginInfo(*pg, user, credential->password.RevealText()));
    CHECK_FALSE(again.ok());
    // Revoking a role that no longer exists succeeds.
    CHECK(f.engine.RevokeCredential(lease).has_value());
  }

  TEST_CASE("revoke drops objects the role owns in another database") {
    auto pg = RequirePostgres();
    if (!pg) return;
    EngineFixture f(*pg);
    Session admin(pg->url);
    REQUIRE(admin.ok());
    const std::string db = "kwtest_" + ToHex(RandomBytes(4));
    REQUIRE(admin.Query("CREATE DATABASE " + db).has_value());

    storage::WriteBatch batch;
    REQUIRE(f.engine.StageConfig(f.Config("pg"), std::nullopt, batch));
    DynamicRole role = f.Role("owner");
    role.creation_statements.push_back("GRANT ALL ON DATABASE " + db + " TO {{name}}");
    REQUIRE(f.engine.StageRole(role, batch));
    f.Commit(std::move(batch));
    auto credential = f.engine.CreateCredential(role, "token", RealNow() + 3600);
    REQUIRE(credential.has_value());
    {
      Session owner(LoginInfo(*pg, credential->username, credential->password.RevealText(), db));
      REQUIRE(owner.ok());
      REQUIRE(owner.Query("CREATE SCHEMA mine").has_value());
      REQUIRE(owner.Query("CREATE TABLE mine.t (x int)").has_value());
    }
    REQUIRE(f.engine.RevokeCredential(f.LeaseFor(role, credential->username)));
    CHECK(admin.Query("SELECT count(*) FROM pg_roles WHERE rolname = '" +
                      credential->username + "'") == "0");
    REQUIRE(admin.Query("DROP DATABASE " + db).has_value());
  }

  TEST_CASE("creation failure rolls back and names the SQLSTATE") {
    auto pg = RequirePostgres();
    if (!pg) return;
    EngineFixture f(*pg);
    storage::WriteBatch batch;
    REQUIRE(f.engine.StageConfig(f.Config("pg"), std::nullopt, batch));
    DynamicRole role = f.Role("broken");
    role.creation_statements.push_back("GRANT SELECT ON no_such_table TO {{name}}");
    REQUIRE(f.engine.StageRole(role, batch));
    f.Commit(std::move(batch));
    auto credential = f.engine.CreateCredential(role, "token", RealNow() + 3600);
    REQUIRE_FALSE(credential.has_value());
    CHECK(credential.error().message().find("SQLSTATE 42P01") != std::string::npos);
    Session admin(pg->url);
    CHECK(admin.Query("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-token-broken-%'") ==
          "0");
  }

  TEST_CASE("allowed_roles limits which roles use a config") {
    auto pg = RequirePostgres();
    if (!pg) return;
    EngineFixture f(*pg);
    DatabaseConfig config = f.Config("pg");
    config.allowed_roles = {"other"};
    storage::WriteBatch batch;
    REQUIRE(f.engine.StageConfig(config, std::nullopt, batch));
    f.Commit(std::move(batch));
    auto credential = f.engine.CreateCredential(f.Role("app"), "token", RealNow() + 3600);
    REQUIRE_FALSE(credential.has_value());
    CHECK(credential.error().code() == Code::kPermissionDenied);
  }

  TEST_CASE("rotate-root replaces the password only keyward knows") {
    auto pg = RequirePostgres();
    if (!pg) return;
    EngineFixture f(*pg);
    Session admin(pg->url);
    const std::string user = "kwroot_" + ToHex(RandomBytes(4));
    REQUIRE(admin.Query("CREATE ROLE " + user + " SUPERUSER LOGIN PASSWORD 'initialpw'"));
    DatabaseConfig config = f.Config("rot");
    config.username = user;
    config.password = SecretBuffer::CopyFrom("initialpw");
    storage::WriteBatch batch;
    REQUIRE(f.engine.StageConfig(config, std::nullopt, batch));
    f.Commit(std::move(batch));

    storage::WriteBatch rotation;
    REQUIRE(f.engine.RotateRoot("rot", rotation));
    f.Commit(std::move(rotation));
    Session old_login(LoginInfo(*pg, user, "initialpw"));
    CHECK_FALSE(old_login.ok());
    auto stored = f.engine.LoadConfig("rot");
    REQUIRE(stored.has_value());
    REQUIRE(stored->has_value());
    CHECK((*stored)->config.root_rotation_time > 0);
    auto pool = f.engine.PoolFor(**stored);
    REQUIRE(pool.has_value());
    auto connection = (*pool)->Acquire();
    REQUIRE(connection.has_value());
    CHECK((*connection)->Ping());
    REQUIRE(admin.Query("DROP ROLE " + user));
  }

  TEST_CASE("static role create rotates the user's password") {
    auto pg = RequirePostgres();
    if (!pg) return;
    EngineFixture f(*pg);
    Session admin(pg->url);
    REQUIRE(admin.ok());
    const std::string user = "kwstatic_" + ToHex(RandomBytes(4));
    REQUIRE(admin.Query("CREATE ROLE " + user + " LOGIN PASSWORD 'initialpw'"));
    storage::WriteBatch batch;
    REQUIRE(f.engine.StageConfig(f.Config("pg"), std::nullopt, batch));
    f.Commit(std::move(batch));

    StaticRole role;
    role.name = "svc";
    role.db_name = "pg";
    role.username = user;
    role.rotation_period = 60;
    storage::WriteBatch create;
    REQUIRE(f.engine.StageStaticRole(std::move(role), std::nullopt, create));
    f.Commit(std::move(create));

    auto stored = f.engine.LoadStaticRole("svc");
    REQUIRE(stored.has_value());
    REQUIRE(stored->has_value());
    const StaticRole& saved = (*stored)->role;
    CHECK(saved.last_vault_rotation ==
          std::chrono::duration_cast<std::chrono::seconds>(f.env.clock.Now().time_since_epoch())
              .count());
    CHECK(saved.password.size() == kPasswordLength);
    CHECK(saved.Ttl(saved.last_vault_rotation) == 60);
    CHECK(saved.ToPublicJson(saved.last_vault_rotation).dump().find(
              std::string(saved.password.RevealText())) == std::string::npos);
    Session old_login(LoginInfo(*pg, user, "initialpw"));
    CHECK_FALSE(old_login.ok());
    Session new_login(LoginInfo(*pg, user, saved.password.RevealText()));
    CHECK(new_login.ok());
    // The record in storage is sealed: the password is not in its bytes.
    const std::string raw((*stored)->raw.begin(), (*stored)->raw.end());
    CHECK(raw.find(std::string(saved.password.RevealText())) == std::string::npos);
    REQUIRE(admin.Query("DROP ROLE " + user));
  }

  TEST_CASE("static role write rejects invalid fields") {
    auto pg = RequirePostgres();
    if (!pg) return;
    EngineFixture f(*pg);
    Session admin(pg->url);
    REQUIRE(admin.ok());
    const std::string user = "kwstatic_" + ToHex(RandomBytes(4));
    REQUIRE(admin.Query("CREATE ROLE " + user + " LOGIN PASSWORD 'initialpw'"));
    storage::WriteBatch batch;
    REQUIRE(f.engine.StageConfig(f.Config("pg"), std::nullopt, batch));
    f.Commit(std::move(batch));

    auto stage = [&](std::string username, std::int64_t period,
                     std::vector<std::string> statements = {}) {
      StaticRole role;
      role.name = "svc";
      role.db_name = "pg";
      role.username = std::move(username);
      role.rotation_period = period;
      role.rotation_statements = std::move(statements);
      storage::WriteBatch scratch;
      return f.engine.StageStaticRole(std::move(role), std::nullopt, scratch);
    };
    auto missing = stage("kw_no_such_user_" + ToHex(RandomBytes(4)), 60);
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().code() == Code::kInvalidArgument);
    CHECK(missing.error().message().find("does not exist") != std::string::npos);
    auto too_short = stage(user, 4);
    REQUIRE_FALSE(too_short.has_value());
    CHECK(too_short.error().message().find("rotation_period") != std::string::npos);
    auto config_user = stage(pg->user, 60);
    REQUIRE_FALSE(config_user.has_value());
    CHECK(config_user.error().code() == Code::kInvalidArgument);
    auto bad_template = stage(user, 60, {"ALTER ROLE {{nme}} PASSWORD {{password}}"});
    REQUIRE_FALSE(bad_template.has_value());
    CHECK(bad_template.error().message().find("rotation_statements") != std::string::npos);
    // None of the rejected writes touched the user's password.
    Session still(LoginInfo(*pg, user, "initialpw"));
    CHECK(still.ok());

    StaticRole role;
    role.name = "svc";
    role.db_name = "pg";
    role.username = user;
    role.rotation_period = 60;
    storage::WriteBatch create;
    REQUIRE(f.engine.StageStaticRole(std::move(role), std::nullopt, create));
    f.Commit(std::move(create));
    auto stored = f.engine.LoadStaticRole("svc");
    REQUIRE(stored.has_value());
    REQUIRE(stored->has_value());
    StaticRole renamed = std::move((*stored)->role);
    renamed.username = pg->user;
    storage::WriteBatch update;
    auto changed = f.engine.StageStaticRole(std::move(renamed), (*stored)->raw, update);
    REQUIRE_FALSE(changed.has_value());
    CHECK(changed.error().message().find("cannot change") != std::string::npos);
    REQUIRE(admin.Query("DROP ROLE " + user));
  }

  TEST_CASE("static roles rotate when their period elapses") {
    auto pg = RequirePostgres();
    if (!pg) return;
    EngineFixture f(*pg);
    Session admin(pg->url);
    REQUIRE(admin.ok());
    const std::string user = "kwstatic_" + ToHex(RandomBytes(4));
    REQUIRE(admin.Query("CREATE ROLE " + user + " LOGIN PASSWORD 'initialpw'"));
    storage::WriteBatch batch;
    REQUIRE(f.engine.StageConfig(f.Config("pg"), std::nullopt, batch));
    f.Commit(std::move(batch));
    StaticRole role;
    role.name = "svc";
    role.db_name = "pg";
    role.username = user;
    role.rotation_period = 30;
    storage::WriteBatch create;
    REQUIRE(f.engine.StageStaticRole(std::move(role), std::nullopt, create));
    f.Commit(std::move(create));
    auto password_now = [&] {
      auto stored = f.engine.LoadStaticRole("svc");
      REQUIRE(stored.has_value());
      REQUIRE(stored->has_value());
      return std::string((*stored)->role.password.RevealText());
    };
    const std::string first = password_now();

    std::vector<std::string> paths;
    lease::InternalCommit commit = [&](storage::WriteBatch b, std::string path,
                                       nlohmann::json response) -> Status {
      CHECK(response.dump().find("password") == std::string::npos);
      paths.push_back(path);
      return f.env.store->Commit(std::move(b));
    };

    f.env.clock.Advance(std::chrono::seconds(29));
    REQUIRE(f.engine.RotateDueStaticRoles(commit));
    CHECK(paths.empty());
    CHECK(password_now() == first);

    f.env.clock.Advance(std::chrono::seconds(1));
    REQUIRE(f.engine.RotateDueStaticRoles(commit));
    REQUIRE(paths.size() == 1);
    CHECK(paths[0] == "database/rotate-role/svc");
    const std::string second = password_now();
    CHECK(second != first);
    Session old_login(LoginInfo(*pg, user, first));
    CHECK_FALSE(old_login.ok());
    Session new_login(LoginInfo(*pg, user, second));
    CHECK(new_login.ok());

    // A rotation whose commit loses a race is rotated again, so the stored password is the
    // one PostgreSQL has.
    f.env.clock.Advance(std::chrono::seconds(30));
    int aborts = 1;
    lease::InternalCommit racing = [&](storage::WriteBatch b, std::string path,
                                       nlohmann::json response) -> Status {
      if (aborts-- > 0) return Aborted("simulated concurrent write");
      return commit(std::move(b), std::move(path), std::move(response));
    };
    REQUIRE(f.engine.RotateDueStaticRoles(racing));
    CHECK(paths.size() == 2);
    const std::string third = password_now();
    CHECK(third != second);
    Session third_login(LoginInfo(*pg, user, third));
    CHECK(third_login.ok());

    // A commit that fails for good reports the error and leaves the stored record as it was.
    f.env.clock.Advance(std::chrono::seconds(30));
    lease::InternalCommit failing = [](storage::WriteBatch, std::string,
                                       nlohmann::json) -> Status {
      return Unavailable("simulated storage failure");
    };
    auto failed = f.engine.RotateDueStaticRoles(failing);
    REQUIRE_FALSE(failed.has_value());
    CHECK(failed.error().code() == Code::kUnavailable);
    CHECK(password_now() == third);

    // rotate-role repairs it: the next rotation is committed by the request's batch.
    storage::WriteBatch manual;
    REQUIRE(f.engine.RotateStaticRole("svc", manual));
    f.Commit(std::move(manual));
    Session repaired(LoginInfo(*pg, user, password_now()));
    CHECK(repaired.ok());
    storage::WriteBatch unknown;
    auto missing = f.engine.RotateStaticRole("nope", unknown);
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().code() == Code::kNotFound);
    REQUIRE(admin.Query("DROP ROLE " + user));
  }
}

}  // namespace kw::vault::database
