// Crash durability through the real binary. One dev server data directory (SQLite file and
// SoftHSM token) lives through many cycles. In each, concurrent writers issue KV writes, child
// tokens and leases until the server gets SIGKILL at a random moment. After each restart the
// test checks that every acknowledged write is there with its value, that no unacknowledged
// write is half-present and that the audit chain verifies. At the end every KV version written
// in every cycle is read back and the exported audit log verifies offline.
//
// KEYWARD_CRASH_SEED replays the kill delays and values of an earlier run (the seed is printed);
// KEYWARD_CRASH_CYCLES sets the number of kills (default 50 under CI=true, else 10).
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/postgres_harness.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kCrashRoot = "crash-root-token";
constexpr int kKvWriters = 3;
constexpr int kPathsPerWriter = 4;
// Versions kept per KV path. Every version written over all cycles must stay readable, and a
// path collects a few hundred versions in 50 cycles (the engine's default keeps 10).
constexpr int kMaxVersions = 5000;
constexpr int kMinRunMs = 50;
constexpr int kMaxRunMs = 400;
// A writer stops after this many requests even if the kill has not come yet.
constexpr int kMaxRequestsPerWriter = 5000;
// PostgreSQL user names keep only the first 8 bytes of the role name, and DropDatabaseRoles
// finds the test's users by it.
constexpr std::string_view kDatabaseRole = "crash9db";
constexpr std::string_view kAppRole = "crashdurability";

const std::string kCreation =
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';";

std::optional<std::string> Env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

bool RunningInCi() { return Env("CI") == "true"; }

std::uint64_t CrashSeed() {
  if (auto text = Env("KEYWARD_CRASH_SEED")) return std::stoull(*text);
  return std::random_device{}() * 0x100000000ULL + std::random_device{}();
}

int CrashCycles() {
  if (auto text = Env("KEYWARD_CRASH_CYCLES")) return std::stoi(*text);
  return RunningInCi() ? 50 : 10;
}

std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Returns the tree size a signed checkpoint note names (its second line).
std::uint64_t CheckpointSize(const std::string& note) {
  const std::size_t first = note.find('\n');
  REQUIRE(first != std::string::npos);
  return std::stoull(note.substr(first + 1, note.find('\n', first + 1) - first - 1));
}

ExitResult Cli(const DevServer& server, std::vector<std::string> args) {
  args.push_back("-address=" + server.url());
  args.push_back("-token=" + server.token());
  return RunToExit(args, {});
}

// Signs a checkpoint and saves it to `path` through the CLI, as an auditor would.
void SaveCheckpoint(DevServer& server, const fs::path& path) {
  auto signed_now = server.Client()->Post("/v1/sys/audit/checkpoint", "", "application/json");
  REQUIRE_MESSAGE(StatusOf(signed_now) == 200, BodyOf(signed_now).dump());
  const ExitResult saved = Cli(server, {"audit", "checkpoint", "-o", path.string()});
  REQUIRE_MESSAGE(saved.exit_code == 0, saved.err);
}

// A KV write as sent, and its outcome: status 0 when no response arrived.
struct KvWrite {
  std::string path;
  std::string value;
  int status = 0;
  std::int64_t version = 0;  // from the response; 0 unless status is 200
};

// A token or lease the server acknowledged with 2xx.
struct Issued {
  std::string id;        // the token, or the lease id
  std::string accessor;  // tokens only
  std::string source;    // the endpoint that issued it
};

// What the writers of one cycle sent and got back.
struct CycleRecord {
  std::vector<KvWrite> kv;
  std::vector<Issued> tokens;
  std::vector<Issued> leases;
  // Responses other than 2xx and 429, as "<status> <endpoint>: <body>".
  std::vector<std::string> unexpected;
};

// One writer thread's results, merged into the cycle's record after the kill.
struct WriterResult {
  std::vector<KvWrite> kv;
  std::vector<Issued> tokens;
  std::vector<Issued> leases;
  std::vector<std::string> unexpected;
};

// Records a non-2xx response. Returns false when the writer should stop because no response
// arrived, which after the kill happens to every request.
bool NoteFailure(const httplib::Result& result, const std::string& endpoint,
                 WriterResult& out) {
  const int status = StatusOf(result);
  if (status == 0) return false;
  if (status == 429) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return true;
  }
  out.unexpected.push_back(std::to_string(status) + " " + endpoint + ": " + result->body);
  return true;
}

std::unique_ptr<httplib::Client> WriterClient(const DevServer& server) {
  auto client = server.Client();
  client->set_connection_timeout(2);
  client->set_read_timeout(10);
  return client;
}

// Writes distinct values to the writer's paths until the server stops responding. Values vary
// in size (up to a few KiB) so that some records span several database pages.
void RunKvWriter(const DevServer& server, int cycle, int writer, std::uint64_t seed,
                 const std::atomic<bool>& stop, WriterResult& out) {
  auto client = WriterClient(server);
  std::mt19937_64 rng(seed ^ (static_cast<std::uint64_t>(cycle) << 20) ^
                      static_cast<std::uint64_t>(writer));
  std::uniform_int_distribution<int> padding(0, 3000);
  for (int n = 0; n < kMaxRequestsPerWriter && !stop.load(); ++n) {
    KvWrite write;
    write.path = "crash/w" + std::to_string(writer) + "/k" + std::to_string(n % kPathsPerWriter);
    write.value = "c" + std::to_string(cycle) + "-w" + std::to_string(writer) + "-n" +
                  std::to_string(n) + "-" + std::string(padding(rng), 'x');
    auto result = WriteSecret(*client, write.path, {{"v", write.value}});
    write.status = StatusOf(result);
    if (write.status == 200) write.version = BodyOf(result)["data"]["version"].get<std::int64_t>();
    out.kv.push_back(write);
    if (write.status != 200 && !NoteFailure(result, "secret/data/" + write.path, out)) return;
  }
}

// Creates child tokens of the root token until the server stops responding.
void RunTokenWriter(const DevServer& server, int cycle, const std::atomic<bool>& stop,
                    WriterResult& out) {
  auto client = WriterClient(server);
  for (int n = 0; n < kMaxRequestsPerWriter && !stop.load(); ++n) {
    const json request = {{"ttl", "2h"},
                          {"policies", {"default"}},
                          {"meta", {{"cycle", std::to_string(cycle)}, {"n", std::to_string(n)}}}};
    auto result = PostJson(*client, "/v1/auth/token/create", request);
    if (StatusOf(result) != 200) {
      if (!NoteFailure(result, "auth/token/create", out)) return;
      continue;
    }
    const json auth = BodyOf(result)["auth"];
    out.tokens.push_back({auth["client_token"].get<std::string>(),
                          auth["accessor"].get<std::string>(), "auth/token/create"});
  }
}

// Issues leases until the server stops responding: database credentials when PostgreSQL is
// configured, else AppRole logins, whose tokens carry a lease duration.
void RunLeaseWriter(const DevServer& server, bool database, const json& approle_login,
                    const std::atomic<bool>& stop, WriterResult& out) {
  auto client = WriterClient(server);
  const std::string creds = "/v1/database/creds/" + std::string(kDatabaseRole);
  for (int n = 0; n < kMaxRequestsPerWriter && !stop.load(); ++n) {
    if (database) {
      auto result = client->Get(creds.c_str());
      if (StatusOf(result) != 200) {
        if (!NoteFailure(result, "database/creds", out)) return;
        continue;
      }
      out.leases.push_back({BodyOf(result)["lease_id"].get<std::string>(), "", "database/creds"});
    } else {
      auto result = PostJson(*client, "/v1/auth/approle/login", approle_login);
      if (StatusOf(result) != 200) {
        if (!NoteFailure(result, "auth/approle/login", out)) return;
        continue;
      }
      const json auth = BodyOf(result)["auth"];
      out.tokens.push_back({auth["client_token"].get<std::string>(),
                            auth["accessor"].get<std::string>(), "auth/approle/login"});
    }
  }
}

// The state of the data directory as the checks have seen it: every committed KV version's
// value, and every token and lease acknowledged so far.
struct Ledger {
  std::map<std::string, std::map<std::int64_t, std::string>> versions;  // path -> version -> value
  std::vector<Issued> tokens;
  std::vector<Issued> leases;
  std::size_t kv_acknowledged = 0;
  std::size_t kv_unacknowledged = 0;
  std::size_t kv_unacknowledged_committed = 0;
};

// Returns current_version of `path` from its metadata; 0 when the path does not exist.
std::int64_t CurrentVersion(httplib::Client& client, const std::string& path) {
  auto metadata = client.Get(("/v1/secret/metadata/" + path).c_str());
  if (StatusOf(metadata) == 404) return 0;
  REQUIRE_MESSAGE(StatusOf(metadata) == 200, path << ": " << BodyOf(metadata).dump());
  return BodyOf(metadata)["data"]["current_version"].get<std::int64_t>();
}

// Returns the "v" of version `version` of `path`, or nullopt (after a failed check) when it
// does not read back whole.
std::optional<std::string> ReadVersion(httplib::Client& client, const std::string& path,
                                       std::int64_t version) {
  auto read = client.Get(("/v1/secret/data/" + path + "?version=" + std::to_string(version)).c_str());
  CAPTURE(path);
  CAPTURE(version);
  CHECK_MESSAGE(StatusOf(read) == 200, BodyOf(read).dump());
  if (StatusOf(read) != 200) return std::nullopt;
  const json data = BodyOf(read)["data"]["data"];
  CHECK_MESSAGE((data.is_object() && data.size() == 1 && data.contains("v") &&
                 data["v"].is_string()),
                data.dump());
  if (!data.is_object() || !data.contains("v") || !data["v"].is_string()) return std::nullopt;
  return data["v"].get<std::string>();
}

// Checks the KV writes of one cycle after the restart. Each version above those in the ledger
// must read back whole with a value this cycle sent to that path, and no value may appear
// twice. Every acknowledged write must be at its version with its value.
void CheckKvWrites(httplib::Client& client, const std::vector<KvWrite>& writes, Ledger& ledger) {
  std::map<std::string, std::vector<const KvWrite*>> by_path;
  for (const KvWrite& write : writes) by_path[write.path].push_back(&write);

  // Plain references, not structured bindings, here and below, because clang 14 cannot capture a
  // binding in the lambda that CAPTURE expands to.
  for (const auto& entry : by_path) {
    const std::string& path = entry.first;
    const auto& sent = entry.second;
    CAPTURE(path);
    std::map<std::int64_t, std::string>& known = ledger.versions[path];
    const std::int64_t base = known.empty() ? 0 : known.rbegin()->first;
    const std::int64_t current = CurrentVersion(client, path);
    CHECK_MESSAGE(current >= base, "versions committed in an earlier cycle are gone");

    std::set<std::string> sent_values;
    std::int64_t highest_acknowledged = 0;
    for (const KvWrite* write : sent) {
      sent_values.insert(write->value);
      if (write->status == 200) highest_acknowledged = std::max(highest_acknowledged, write->version);
    }
    CHECK(current >= highest_acknowledged);

    std::set<std::string> seen;
    for (std::int64_t version = base + 1; version <= current; ++version) {
      std::optional<std::string> value = ReadVersion(client, path, version);
      if (!value) continue;
      CAPTURE(version);
      CHECK_MESSAGE(sent_values.contains(*value), "a value this cycle never sent: " << *value);
      CHECK_MESSAGE(seen.insert(*value).second, "one write stored twice: " << *value);
      known[version] = *value;
    }

    for (const KvWrite* write : sent) {
      if (write->status != 200) {
        ++ledger.kv_unacknowledged;
        if (seen.contains(write->value)) ++ledger.kv_unacknowledged_committed;
        continue;
      }
      ++ledger.kv_acknowledged;
      CAPTURE(write->version);
      const auto stored = known.find(write->version);
      CHECK_MESSAGE(stored != known.end(), "acknowledged version missing: " << write->value);
      if (stored != known.end()) CHECK(stored->second == write->value);
    }
  }
}

void CheckToken(httplib::Client& client, const Issued& token) {
  auto lookup = PostJson(client, "/v1/auth/token/lookup", {{"token", token.id}});
  CAPTURE(token.source);
  CAPTURE(token.accessor);
  CHECK_MESSAGE(StatusOf(lookup) == 200, BodyOf(lookup).dump());
  if (StatusOf(lookup) == 200) CHECK(BodyOf(lookup)["data"]["accessor"] == token.accessor);
}

void CheckLease(httplib::Client& client, const Issued& lease) {
  auto lookup = PostJson(client, "/v1/sys/leases/lookup", {{"lease_id", lease.id}});
  CAPTURE(lease.id);
  CHECK_MESSAGE(StatusOf(lookup) == 200, BodyOf(lookup).dump());
  if (StatusOf(lookup) != 200) return;
  CHECK(BodyOf(lookup)["data"]["id"] == lease.id);
  CHECK_FALSE(BodyOf(lookup)["data"].contains("revoking"));
}

// Runs the server's own check of the whole audit chain, head MAC included.
void CheckAuditChain(httplib::Client& client) {
  auto verify = client.Get("/v1/sys/audit/verify");
  REQUIRE_MESSAGE(StatusOf(verify) == 200, BodyOf(verify).dump());
  const json data = BodyOf(verify)["data"];
  CHECK_MESSAGE(data["ok"] == true, data.dump());
  CHECK(data["reason"] == "");
}

// Returns the lines of the server's stderr from byte `offset` on that log at level error.
std::vector<std::string> ErrorLines(const ServerProcess& process, std::size_t offset) {
  const std::string err = process.ReadStderr();
  std::istringstream lines(err.substr(std::min(offset, err.size())));
  std::vector<std::string> errors;
  for (std::string line; std::getline(lines, line);) {
    const json parsed = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_object() && parsed.value("level", "") == "error") errors.push_back(line);
  }
  return errors;
}

// What the writers need from the one-time configuration.
struct Setup {
  bool database = false;
  json approle_login;
};

// Configures the KV mount, an AppRole role and, with PostgreSQL, a database role. Runs once,
// before the first kill.
Setup Configure(httplib::Client& root, const std::optional<PostgresTarget>& pg) {
  auto config = PostJson(root, "/v1/secret/config", {{"max_versions", kMaxVersions}});
  REQUIRE_MESSAGE(StatusOf(config) / 100 == 2, BodyOf(config).dump());

  Setup setup;
  const std::string role = "/v1/auth/approle/role/" + std::string(kAppRole);
  auto created = PostJson(root, role, {{"token_policies", "default"}, {"token_ttl", "2h"}});
  REQUIRE_MESSAGE(StatusOf(created) == 204, BodyOf(created).dump());
  auto role_id = root.Get((role + "/role-id").c_str());
  REQUIRE(StatusOf(role_id) == 200);
  auto secret_id = PostJson(root, role + "/secret-id", json::object());
  REQUIRE(StatusOf(secret_id) == 200);
  setup.approle_login = {{"role_id", BodyOf(role_id)["data"]["role_id"]},
                         {"secret_id", BodyOf(secret_id)["data"]["secret_id"]}};

  if (pg) {
    auto database = PostJson(root, "/v1/database/config/crash", pg->ConfigBody());
    REQUIRE_MESSAGE(StatusOf(database) == 204, BodyOf(database).dump());
    auto db_role = PostJson(root, "/v1/database/roles/" + std::string(kDatabaseRole),
                            {{"db_name", "crash"},
                             {"creation_statements", kCreation},
                             {"default_ttl", "2h"},
                             {"max_ttl", "4h"}});
    REQUIRE_MESSAGE(StatusOf(db_role) == 204, BodyOf(db_role).dump());
    setup.database = true;
  }
  return setup;
}

// Revokes the test's database credentials and drops users whose lease never committed
// (created in PostgreSQL just before a kill), so the shared cluster keeps no test users.
void DropDatabaseRoles(httplib::Client& root, const PostgresTarget& pg) {
  const std::string prefix = "database/creds/" + std::string(kDatabaseRole);
  auto revoked = Send(root, "PUT", "/v1/sys/leases/revoke-prefix/" + prefix);
  CHECK_MESSAGE(StatusOf(revoked) / 100 == 2, BodyOf(revoked).dump());
  // With more than 500 leases the revocation runs in the background.
  int listed = 200;
  for (int poll = 0; poll < 600 && listed == 200; ++poll) {
    listed = StatusOf(Send(root, "LIST", "/v1/sys/leases/lookup/" + prefix));
    if (listed == 200) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK_MESSAGE(listed == 404, "leases under " << prefix << " were not revoked within 60 s");

  PgSession admin(pg.url);
  REQUIRE_MESSAGE(admin.ok(), admin.error());
  const std::optional<std::string> leftover = admin.Query(
      "SELECT coalesce(string_agg(format('DROP ROLE %I;', rolname), ' '), '') FROM pg_roles "
      "WHERE rolname LIKE 'v-%-" + std::string(kDatabaseRole) + "-%'");
  REQUIRE_MESSAGE(leftover.has_value(), admin.error());
  if (!leftover->empty()) {
    MESSAGE("dropping database users whose lease never committed: " << *leftover);
    CHECK_MESSAGE(admin.Query(*leftover).has_value(), admin.error());
  }
}

}  // namespace

TEST_SUITE("e2e/crash") {
  TEST_CASE("kill -9 under concurrent writers loses nothing") {
    const std::uint64_t seed = CrashSeed();
    const int cycles = CrashCycles();
    MESSAGE("crash test seed " << seed << ", " << cycles
                               << " cycles; KEYWARD_CRASH_SEED=" << seed
                               << " repeats the kill delays and values");
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int> run_ms(kMinRunMs, kMaxRunMs);

    std::optional<PostgresTarget> pg;
    if (Env("KEYWARD_TEST_PG_URL") || RunningInCi()) {
      pg = RequireSharedPostgres();
      REQUIRE(pg.has_value());
    } else {
      MESSAGE("KEYWARD_TEST_PG_URL is not set: leases come from AppRole logins, not database "
              "credentials");
    }

    DevServer server{std::string(kCrashRoot)};
    TempDir auditor;
    const fs::path early_checkpoint = auditor.path() / "early.ckpt";
    Ledger ledger;
    Setup setup;
    std::optional<CycleRecord> previous;
    std::size_t stderr_offset = 0;
    const auto started = Clock::now();

    // The last pass only restarts and checks.
    for (int cycle = 0; cycle <= cycles; ++cycle) {
      CAPTURE(cycle);
      stderr_offset = server.process().ReadStderr().size();
      REQUIRE_MESSAGE(server.Start(), "the server did not start after kill " << cycle);
      auto root = server.Client();

      if (previous) {
        CheckKvWrites(*root, previous->kv, ledger);
        for (const Issued& token : previous->tokens) CheckToken(*root, token);
        for (const Issued& lease : previous->leases) CheckLease(*root, lease);
        ledger.tokens.insert(ledger.tokens.end(), previous->tokens.begin(), previous->tokens.end());
        ledger.leases.insert(ledger.leases.end(), previous->leases.begin(), previous->leases.end());
        CHECK_MESSAGE(previous->unexpected.empty(),
                      "unexpected answers before the kill: " << json(previous->unexpected).dump());
      }
      CheckAuditChain(*root);
      const std::vector<std::string> errors = ErrorLines(server.process(), stderr_offset);
      CHECK_MESSAGE(errors.empty(), "errors logged at start-up: " << json(errors).dump());
      if (cycle == cycles) break;

      if (cycle == 0) {
        setup = Configure(*root, pg);
        SaveCheckpoint(server, early_checkpoint);
      }

      std::atomic<bool> stop{false};
      std::vector<WriterResult> results(kKvWriters + 2);
      std::vector<std::thread> writers;
      for (int w = 0; w < kKvWriters; ++w) {
        writers.emplace_back([&, w] { RunKvWriter(server, cycle, w, seed, stop, results[w]); });
      }
      writers.emplace_back([&] { RunTokenWriter(server, cycle, stop, results[kKvWriters]); });
      writers.emplace_back([&] {
        RunLeaseWriter(server, setup.database, setup.approle_login, stop, results[kKvWriters + 1]);
      });
      std::this_thread::sleep_for(std::chrono::milliseconds(run_ms(rng)));
      server.Kill();
      stop = true;
      for (std::thread& writer : writers) writer.join();

      CycleRecord record;
      for (WriterResult& result : results) {
        record.kv.insert(record.kv.end(), result.kv.begin(), result.kv.end());
        record.tokens.insert(record.tokens.end(), result.tokens.begin(), result.tokens.end());
        record.leases.insert(record.leases.end(), result.leases.begin(), result.leases.end());
        record.unexpected.insert(record.unexpected.end(), result.unexpected.begin(),
                                 result.unexpected.end());
      }
      previous = std::move(record);
    }
    const double cycle_seconds = std::chrono::duration<double>(Clock::now() - started).count();

    // Without acknowledged writes the checks above prove nothing.
    CHECK(ledger.kv_acknowledged > 0);
    CHECK_FALSE(ledger.tokens.empty());
    if (setup.database) CHECK_FALSE(ledger.leases.empty());

    // Every KV version of every cycle decrypts to the value recorded when it was first seen,
    // and every token and lease acknowledged in any cycle is still there.
    auto root = server.Client();
    std::size_t versions_read = 0;
    for (const auto& path_entry : ledger.versions) {
      const std::string& path = path_entry.first;
      const auto& known = path_entry.second;
      CAPTURE(path);
      CHECK(CurrentVersion(*root, path) == (known.empty() ? 0 : known.rbegin()->first));
      for (const auto& version_entry : known) {
        const std::int64_t version = version_entry.first;
        const std::string& value = version_entry.second;
        CAPTURE(version);
        CHECK(ReadVersion(*root, path, version) == value);
        ++versions_read;
      }
    }
    for (const Issued& token : ledger.tokens) CheckToken(*root, token);
    for (const Issued& lease : ledger.leases) CheckLease(*root, lease);

    // The exported log verifies offline against a checkpoint signed now, and the checkpoint
    // signed before the first kill is consistent with it: no crash rewrote earlier records.
    const fs::path latest_checkpoint = auditor.path() / "latest.ckpt";
    const fs::path proof = auditor.path() / "proof.json";
    const fs::path vkey = auditor.path() / "audit.vkey";
    const fs::path log = auditor.path() / "export.jsonl";
    SaveCheckpoint(server, latest_checkpoint);
    const std::uint64_t first = CheckpointSize(ReadText(early_checkpoint));
    const std::uint64_t second = CheckpointSize(ReadText(latest_checkpoint));
    CHECK(first < second);
    const ExitResult proved =
        Cli(server, {"audit", "proof", "consistency", "-first", std::to_string(first), "-second",
                     std::to_string(second), "-o", proof.string()});
    REQUIRE_MESSAGE(proved.exit_code == 0, proved.err);
    const ExitResult key = Cli(server, {"audit", "public-key", "-o", vkey.string()});
    REQUIRE_MESSAGE(key.exit_code == 0, key.err);
    const ExitResult exported = Cli(server, {"audit", "export", "-o", log.string()});
    REQUIRE_MESSAGE(exported.exit_code == 0, exported.err);
    const ExitResult verified = RunToExit(
        {"audit", "verify", "-log", log.string(), "-key", "@" + vkey.string(), "-checkpoint",
         latest_checkpoint.string(), "-old-checkpoint", early_checkpoint.string(), "-proof",
         proof.string()},
        {"KEYWARD_ADDR=", "KEYWARD_TOKEN=", "VAULT_ADDR=", "VAULT_TOKEN="});
    CHECK_MESSAGE(verified.exit_code == 0, verified.out << verified.err);
    CHECK(verified.out.find("consistency proof verified") != std::string::npos);

    if (pg) DropDatabaseRoles(*root, *pg);
    CHECK(server.Stop() == 0);

    MESSAGE(cycles << " kills in " << cycle_seconds << " s ("
                   << cycle_seconds / std::max(cycles, 1) << " s per cycle); KV writes "
                   << ledger.kv_acknowledged << " acknowledged, " << ledger.kv_unacknowledged
                   << " unacknowledged (" << ledger.kv_unacknowledged_committed
                   << " of them committed); " << versions_read << " versions read back; "
                   << ledger.tokens.size() << " tokens and " << ledger.leases.size()
                   << " leases acknowledged");
  }
}  // TEST_SUITE

}  // namespace kw::e2e
