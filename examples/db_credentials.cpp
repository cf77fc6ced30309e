// Holds a rotating PostgreSQL credential: reads one from database/creds/ROLE, lets a
// keyward::LifetimeWatcher renew its lease and fetch a new one when the lease can no longer
// be renewed, and logs in to PostgreSQL with every credential it receives.
//
//   KEYWARD_ADDR=... KEYWARD_TOKEN=... db_credentials ROLE ROTATIONS "host=127.0.0.1 port=5432 dbname=postgres" [TIMEOUT_SECONDS]
//
// With KEYWARD_ROLE_ID and KEYWARD_SECRET_ID set, the token comes from an AppRole login,
// and the watcher logs in again when the token runs out. Exits 0 after ROTATIONS new
// credentials have each logged in, 1 on any failure or when TIMEOUT_SECONDS (default 120)
// pass first, 2 on bad usage.
#include <libpq-fe.h>

#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "keyward/client.hpp"

namespace {

std::optional<long> ParsePositive(std::string_view text) {
  long value = 0;
  auto [end, failure] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (failure != std::errc() || end != text.data() + text.size() || value <= 0) {
    return std::nullopt;
  }
  return value;
}

// Logs in to PostgreSQL as the credential's user and checks current_user. Returns an empty
// string on success, else libpq's error message.
std::string ConnectAs(const std::string& conninfo, const keyward::DatabaseCredential& credential) {
  const char* keys[] = {"dbname", "user", "password", "connect_timeout", nullptr};
  const char* values[] = {conninfo.c_str(), credential.username.c_str(),
                          credential.password.Reveal().c_str(), "10", nullptr};
  PGconn* connection = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  std::string failure;
  if (PQstatus(connection) != CONNECTION_OK) {
    failure = PQerrorMessage(connection);
  } else {
    PGresult* result = PQexec(connection, "SELECT current_user");
    if (PQresultStatus(result) != PGRES_TUPLES_OK) {
      failure = PQerrorMessage(connection);
    } else if (credential.username != PQgetvalue(result, 0, 0)) {
      failure = "connected as another user than " + credential.username;
    }
    PQclear(result);
  }
  PQfinish(connection);
  while (!failure.empty() && (failure.back() == '\n' || failure.back() == ' ')) failure.pop_back();
  return failure;
}

// Credentials that the watcher thread hands to main.
struct Mailbox {
  std::mutex mutex;
  std::condition_variable arrived;
  std::deque<keyward::DatabaseCredential> credentials;  // guarded by mutex
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) {
    std::cerr << "usage: db_credentials ROLE ROTATIONS CONNINFO [TIMEOUT_SECONDS]\n"
                 "  CONNINFO is a libpq connection string without user and password\n";
    return 2;
  }
  const std::string role = argv[1];
  const auto rotations = ParsePositive(argv[2]);
  const std::string conninfo = argv[3];
  const auto timeout = ParsePositive(argc == 5 ? argv[4] : "120");
  if (!rotations || !timeout) {
    std::cerr << "db_credentials: ROTATIONS and TIMEOUT_SECONDS must be positive integers\n";
    return 2;
  }

  auto config = keyward::ClientConfig::FromEnvironment();
  if (!config.ok()) {
    std::cerr << "db_credentials: " << config.error().message() << "\n";
    return 2;
  }
  auto created = keyward::Client::Create(std::move(config).value());
  if (!created.ok()) {
    std::cerr << "db_credentials: " << created.error().message() << "\n";
    return 2;
  }
  keyward::Client& client = *created.value();

  keyward::WatcherOptions options;
  const char* role_id = std::getenv("KEYWARD_ROLE_ID");
  const char* secret_id = std::getenv("KEYWARD_SECRET_ID");
  if (role_id != nullptr && secret_id != nullptr) {
    options.login = [role_id = keyward::SecretString(role_id),
                     secret_id = keyward::SecretString(secret_id)](keyward::Client& c) {
      return c.AppRoleLogin(role_id, secret_id);
    };
    auto auth = options.login(client);
    if (!auth.ok()) {
      std::cerr << "db_credentials: login failed: " << auth.error().message() << "\n";
      return 1;
    }
    client.SetToken(auth->client_token);
  }
  options.on_error = [](const keyward::Error& error) {
    std::cerr << "db_credentials: watcher: " << error.message() << " (will retry)\n";
  };

  auto first = client.DatabaseCreds(role);
  if (!first.ok()) {
    std::cerr << "db_credentials: database/creds/" << role << " failed: "
              << first.error().message() << "\n";
    return 1;
  }
  if (std::string failure = ConnectAs(conninfo, first.value()); !failure.empty()) {
    std::cerr << "db_credentials: login as " << first->username << " failed: " << failure << "\n";
    return 1;
  }
  std::cout << "credential 0: connected as " << first->username << " (lease "
            << first->lease_duration.count() << " s)" << std::endl;

  Mailbox mailbox;
  std::string lease_id = first->lease_id;
  long connected = 0;
  std::string failure;
  {
    keyward::LifetimeWatcher watcher(client, options);
    watcher.Watch<keyward::DatabaseCredential>(
        first.value(), [role](keyward::Client& c) { return c.DatabaseCreds(role); },
        [&mailbox](const keyward::DatabaseCredential& credential) {
          std::lock_guard lock(mailbox.mutex);
          mailbox.credentials.push_back(credential);
          mailbox.arrived.notify_all();
        });

    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(*timeout);
    while (connected < *rotations && failure.empty()) {
      std::unique_lock lock(mailbox.mutex);
      if (!mailbox.arrived.wait_until(lock, deadline,
                                      [&] { return !mailbox.credentials.empty(); })) {
        failure = "timed out after " + std::to_string(*timeout) + " s with " +
                  std::to_string(connected) + " of " + std::to_string(*rotations) +
                  " rotations";
        break;
      }
      keyward::DatabaseCredential credential = std::move(mailbox.credentials.front());
      mailbox.credentials.pop_front();
      lock.unlock();
      lease_id = credential.lease_id;
      if (std::string error = ConnectAs(conninfo, credential); !error.empty()) {
        failure = "login as " + credential.username + " failed: " + error;
        break;
      }
      ++connected;
      std::cout << "credential " << connected << ": connected as " << credential.username
                << " (lease " << credential.lease_duration.count() << " s)" << std::endl;
    }
  }

  // The watcher has stopped: give the last credential back instead of leaving it to expire.
  if (auto revoked = client.LeaseRevoke(lease_id); !revoked.ok()) {
    std::cerr << "db_credentials: revoking the last lease failed: " << revoked.error().message()
              << "\n";
  }
  if (!failure.empty()) {
    std::cerr << "db_credentials: " << failure << "\n";
    return 1;
  }
  std::cout << "db_credentials: " << connected
            << " rotated credentials each logged in to PostgreSQL" << std::endl;
  return 0;
}
