#pragma once

#include <libpq-fe.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "tests/e2e/server_process.hpp"

// PostgreSQL for the end-to-end tests, from scripts/postgres.sh: the shared cluster that
// scripts/test.sh starts (KEYWARD_TEST_PG_URL, or the URL file the script writes), and
// private clusters a test starts, pauses and resumes itself.
namespace kw::e2e {

// Where a cluster listens and its superuser.
struct PostgresTarget {
  std::string url;  // postgresql://user:password@host:port/postgres
  std::string user;
  std::string password;
  std::string host;
  std::string port;

  // Returns the URL template for database/config: {{username}} and {{password}} in place.
  std::string ConfigUrl() const;
  // Returns the body of POST database/config/<name> that connects as the superuser and allows
  // every role.
  nlohmann::json ConfigBody() const;
  // Returns a libpq key=value string for `user` with `password` in database `db`.
  std::string LoginInfo(const std::string& login_user, const std::string& login_password,
                        const std::string& db = "postgres") const;
};

// Returns the shared cluster. When there is none: fails the current test under CI=true,
// else prints a loud SKIPPED message; returns nullopt in both cases.
std::optional<PostgresTarget> RequireSharedPostgres();

// A cluster of its own in a temporary directory, stopped and removed by the destructor.
class PrivatePostgres {
 public:
  // Starts one through scripts/postgres.sh; nullptr (after printing why) when it fails.
  static std::unique_ptr<PrivatePostgres> Start();
  ~PrivatePostgres();

  // Stops the server, keeping the cluster (pg_ctl stop); Resume starts it on the same port.
  bool Pause();
  bool Resume();
  const PostgresTarget& target() const { return target_; }

 private:
  PrivatePostgres() = default;
  bool RunScript(const std::string& command);

  TempDir dir_;
  PostgresTarget target_;
};

// A libpq session, as an application holding a credential would have. One thread.
class PgSession {
 public:
  explicit PgSession(const std::string& conninfo);
  ~PgSession();
  PgSession(const PgSession&) = delete;
  PgSession& operator=(const PgSession&) = delete;

  bool ok() const;
  // Returns the first value of `sql`'s first row ("" for a command without rows), or
  // nullopt when it fails.
  std::optional<std::string> Query(const std::string& sql);
  // libpq's last error message.
  std::string error() const;

 private:
  PGconn* conn_;
};

// Returns scripts/postgres.sh of this source tree ($KEYWARD_SOURCE_DIR, else derived from
// the fixtures path, which is <source>/../shared/fixtures).
std::filesystem::path PostgresScript();

}  // namespace kw::e2e
