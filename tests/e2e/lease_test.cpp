// Leases of real PostgreSQL credentials in bulk: revoke-prefix of many leases runs in the
// background while other clients keep reading secrets. KEYWARD_BULK_LEASES sets the count
// (default 2000; the full-size run uses 20000, which creates that many PostgreSQL roles).
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/postgres_harness.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

using Clock = std::chrono::steady_clock;

int BulkCount() {
  const char* text = std::getenv("KEYWARD_BULK_LEASES");
  const int count = text != nullptr ? std::atoi(text) : 0;
  return count > 0 ? count : 2000;
}

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

TEST_SUITE("e2e/lease") {
  TEST_CASE("bulk revoke-prefix while other clients read") {
    auto pg = RequireSharedPostgres();
    if (!pg) return;
    const int count = BulkCount();
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    auto configured = PostJson(*root, "/v1/database/config/pg",
                               {{"plugin_name", "postgresql-database-plugin"},
                                {"connection_url", pg->ConfigUrl()},
                                {"username", pg->user},
                                {"password", pg->password},
                                {"allowed_roles", "bulk"},
                                {"max_open_connections", 8}});
    REQUIRE(StatusOf(configured) == 204);
    auto role = PostJson(*root, "/v1/database/roles/bulk",
                         {{"db_name", "pg"},
                          {"creation_statements",
                           "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
                           "VALID UNTIL '{{expiration}}'"},
                          {"default_ttl", "1h"}});
    REQUIRE(StatusOf(role) == 204);
    REQUIRE(StatusOf(WriteSecret(*root, "shared", {{"value", "v"}})) == 200);

    // Issue the credentials from several clients at once.
    const auto issue_start = Clock::now();
    constexpr int kIssuers = 8;
    std::atomic<int> next{0};
    std::atomic<int> issue_failures{0};
    std::atomic<int> conflicts{0};
    std::mutex names_mutex;
    std::vector<std::string> names;  // guarded by names_mutex
    std::vector<std::thread> issuers;
    for (int t = 0; t < kIssuers; ++t) {
      issuers.emplace_back([&] {
        auto client = server.Client();
        while (next.fetch_add(1) < count) {
          // 409 asks the client to retry: concurrent creates of one role race on its count.
          auto creds = client->Get("/v1/database/creds/bulk");
          for (int retry = 0; retry < 20 && StatusOf(creds) == 409; ++retry) {
            ++conflicts;
            creds = client->Get("/v1/database/creds/bulk");
          }
          if (StatusOf(creds) == 200) {
            std::lock_guard lock(names_mutex);
            names.push_back(BodyOf(creds)["data"]["username"].get<std::string>());
          }
          if (StatusOf(creds) != 200 && issue_failures.fetch_add(1) == 0) {
            MESSAGE("first failed issue: " << StatusOf(creds) << " " << BodyOf(creds).dump());
          }
        }
      });
    }
    for (auto& thread : issuers) thread.join();
    const double issue_seconds = SecondsSince(issue_start);
    REQUIRE(issue_failures.load() == 0);
    PgSession admin(pg->url);
    REQUIRE(admin.ok());
    const std::string count_sql =
        "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-%-bulk-%'";
    // Requests that gave up after repeated 409s leave roles without a lease until a later
    // request drops them, so there may be more roles than leases here.
    const auto issued = admin.Query(count_sql);
    INFO("roles: " << issued.value_or("query failed: " + admin.error()));
    REQUIRE(issued.has_value());
    CHECK(std::stoll(*issued) >= count);

    // Readers run throughout the revocation; none of their requests may fail.
    std::atomic<bool> stop{false};
    std::atomic<long> reads{0};
    std::atomic<long> read_failures{0};
    std::vector<std::thread> readers;
    for (int t = 0; t < 4; ++t) {
      readers.emplace_back([&] {
        auto client = server.Client();
        while (!stop.load()) {
          if (ReadSecretData(*client, "shared") == json{{"value", "v"}}) ++reads;
          else ++read_failures;
        }
      });
    }

    const auto revoke_start = Clock::now();
    // sync false: the background job, whatever the lease count.
    auto started = PostJson(*root, "/v1/sys/leases/revoke-prefix/database/creds/bulk",
                            json{{"sync", false}});
    CHECK(StatusOf(started) == 202);
    bool done = false;
    // Bounded: up to 10 minutes at 0.5 s per poll.
    for (int i = 0; i < 1200 && !done; ++i) {
      done = StatusOf(Send(*root, "LIST", "/v1/sys/leases/lookup/database/creds/bulk")) == 404;
      if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    const double revoke_seconds = SecondsSince(revoke_start);
    stop = true;
    for (auto& thread : readers) thread.join();

    CHECK(done);
    std::size_t left = 0;
    {
      std::lock_guard lock(names_mutex);
      for (const std::string& name : names) {
        if (admin.Query("SELECT count(*) FROM pg_roles WHERE rolname = '" + name + "'") != "0") {
          ++left;
        }
      }
      CHECK(names.size() == static_cast<std::size_t>(count));
    }
    CHECK(left == 0);
    CHECK(read_failures.load() == 0);
    CHECK(reads.load() > 0);
    MESSAGE("bulk leases: " << count << " issued in " << issue_seconds << " s (" << conflicts.load()
                            << " retries after 409), revoked in "
                            << revoke_seconds << " s; " << reads.load()
                            << " concurrent reads meanwhile");
  }
}

}  // namespace kw::e2e
