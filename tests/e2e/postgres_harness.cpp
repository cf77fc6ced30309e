#include "tests/e2e/postgres_harness.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <regex>

namespace kw::e2e {
namespace {

std::optional<PostgresTarget> ParseUrl(const std::string& url) {
  static const std::regex kUrl(R"(postgresql://([^:]+):([^@]+)@([^:/]+):(\d+)/.*)");
  std::smatch match;
  if (!std::regex_match(url, match, kUrl)) return std::nullopt;
  return PostgresTarget{url, match[1], match[2], match[3], match[4]};
}

std::optional<std::string> ReadFirstLine(const std::filesystem::path& path) {
  std::ifstream file(path);
  std::string line;
  if (!file || !std::getline(file, line)) return std::nullopt;
  return line;
}

}  // namespace

std::string PostgresTarget::ConfigUrl() const {
  return "postgresql://{{username}}:{{password}}@" + host + ":" + port + "/postgres";
}

nlohmann::json PostgresTarget::ConfigBody() const {
  return {{"plugin_name", "postgresql-database-plugin"},
          {"connection_url", ConfigUrl()},
          {"username", user},
          {"password", password},
          {"allowed_roles", "*"}};
}

std::string PostgresTarget::LoginInfo(const std::string& login_user,
                                      const std::string& login_password,
                                      const std::string& db) const {
  return "host=" + host + " port=" + port + " dbname=" + db + " user=" + login_user +
         " password=" + login_password + " connect_timeout=5";
}

std::optional<PostgresTarget> RequireSharedPostgres() {
  std::optional<std::string> url;
  if (const char* env = std::getenv("KEYWARD_TEST_PG_URL"); env != nullptr && *env != '\0') {
    url = env;
  } else {
    const char* tmp = std::getenv("TMPDIR");
    url = ReadFirstLine(std::filesystem::path(tmp != nullptr ? tmp : "/tmp") /
                        "keyward-test-pg" / "url");
  }
  std::optional<PostgresTarget> target = url ? ParseUrl(*url) : std::nullopt;
  if (target) return target;
  const char* ci = std::getenv("CI");
  if (ci != nullptr && std::string(ci) == "true") {
    FAIL("PostgreSQL is not available under CI=true: scripts/test.sh starts it with "
         "scripts/postgres.sh start");
  }
  MESSAGE("SKIPPED: PostgreSQL is not available; run scripts/postgres.sh start "
          "(or set KEYWARD_TEST_PG_URL) to run this test");
  return std::nullopt;
}

std::filesystem::path PostgresScript() {
  if (const char* source = std::getenv("KEYWARD_SOURCE_DIR"); source != nullptr) {
    return std::filesystem::path(source) / "scripts" / "postgres.sh";
  }
  std::string fixtures = KEYWARD_FIXTURES_DIR;
  const std::string suffix = "/../shared/fixtures";
  if (fixtures.ends_with(suffix)) fixtures.resize(fixtures.size() - suffix.size());
  return std::filesystem::path(fixtures) / "scripts" / "postgres.sh";
}

std::unique_ptr<PrivatePostgres> PrivatePostgres::Start() {
  std::unique_ptr<PrivatePostgres> cluster(new PrivatePostgres());
  // A private cluster takes ports from 56432 up, away from the shared one.
  if (!cluster->RunScript("start")) return nullptr;
  auto url = ReadFirstLine(cluster->dir_.path() / "pg" / "url");
  auto target = url ? ParseUrl(*url) : std::nullopt;
  if (!target) {
    std::cerr << "private PostgreSQL wrote no URL\n";
    return nullptr;
  }
  cluster->target_ = *target;
  return cluster;
}

PrivatePostgres::~PrivatePostgres() { RunScript("stop"); }

bool PrivatePostgres::Pause() { return RunScript("pause"); }
bool PrivatePostgres::Resume() { return RunScript("resume"); }

bool PrivatePostgres::RunScript(const std::string& command) {
  // The cluster directory must be reachable by the server's user (kwpg when root).
  std::filesystem::permissions(dir_.path(), std::filesystem::perms::others_exec,
                               std::filesystem::perm_options::add);
  const ExitResult result = RunProgram(
      "/bin/bash", {PostgresScript().string(), command},
      {"KEYWARD_PG_DIR=" + (dir_.path() / "pg").string(), "KEYWARD_PG_PORT=56432"},
      std::chrono::seconds(120));
  if (!result.exited || result.exit_code != 0) {
    std::cerr << "scripts/postgres.sh " << command << " failed (exit " << result.exit_code
              << "): " << result.err << "\n";
    return false;
  }
  return true;
}

PgSession::PgSession(const std::string& conninfo) : conn_(PQconnectdb(conninfo.c_str())) {}

PgSession::~PgSession() { PQfinish(conn_); }

bool PgSession::ok() const { return PQstatus(conn_) == CONNECTION_OK; }

std::string PgSession::error() const { return PQerrorMessage(conn_); }

std::optional<std::string> PgSession::Query(const std::string& sql) {
  PGresult* result = PQexec(conn_, sql.c_str());
  std::optional<std::string> value;
  const ExecStatusType status = PQresultStatus(result);
  if (status == PGRES_TUPLES_OK) {
    value = PQntuples(result) > 0 ? PQgetvalue(result, 0, 0) : "";
  } else if (status == PGRES_COMMAND_OK) {
    value = "";
  }
  PQclear(result);
  return value;
}

}  // namespace kw::e2e
