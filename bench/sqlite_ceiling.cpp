// keyward-bench-sqlite: the rate of single-row SQLite commits on one file in WAL mode.
//
// Every durable keyward write (KV version, token, lease, audit record) ends in a SQLite commit.
// Without sharing one commit between concurrent requests, a write path cannot go faster than
// this rate, so the benchmark reports keyward's write rates as a ratio to it. Each operation is
// BEGIN IMMEDIATE, one INSERT of an integer key and a 1 KiB blob, and COMMIT, on one connection
// per thread. Prints one JSON line on stdout.
#include <sqlite3.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/bench_options.hpp"
#include "bench/timed_run.hpp"

namespace {

constexpr std::size_t kBlobSize = 1024;
constexpr int kBusyTimeoutMs = 10000;

constexpr const char* kUsage = R"(usage: keyward-bench-sqlite --path FILE [options]

Measures single-row commits per second: BEGIN IMMEDIATE; INSERT one row (integer key, 1 KiB
blob); COMMIT, in WAL mode. Prints one JSON line on stdout.

  --path FILE       database file to create; it must not exist, and it is removed on exit
                    together with FILE-wal and FILE-shm
  --sync MODE       PRAGMA synchronous: full (default) or normal
  --threads N       threads, each with its own connection and transactions (default 1)
  --seconds S       measured time in seconds, after a 1 s warm-up (default 10)
)";

struct Database {
  sqlite3* handle = nullptr;
  sqlite3_stmt* begin = nullptr;
  sqlite3_stmt* insert = nullptr;
  sqlite3_stmt* commit = nullptr;

  Database() = default;
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  ~Database() {
    sqlite3_finalize(begin);
    sqlite3_finalize(insert);
    sqlite3_finalize(commit);
    sqlite3_close(handle);
  }

  std::string Error(const std::string& call) const {
    return call + " failed: " + sqlite3_errmsg(handle);
  }
};

void Execute(Database& database, const std::string& sql) {
  if (sqlite3_exec(database.handle, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    throw std::runtime_error(database.Error(sql));
  }
}

sqlite3_stmt* Prepare(Database& database, const char* sql) {
  sqlite3_stmt* statement = nullptr;
  if (sqlite3_prepare_v2(database.handle, sql, -1, &statement, nullptr) != SQLITE_OK) {
    throw std::runtime_error(database.Error(std::string("prepare ") + sql));
  }
  return statement;
}

std::unique_ptr<Database> Open(const std::string& path, int flags, const std::string& sync) {
  auto database = std::make_unique<Database>();
  int rc = sqlite3_open_v2(path.c_str(), &database->handle, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) throw std::runtime_error(database->Error("open " + path));
  sqlite3_busy_timeout(database->handle, kBusyTimeoutMs);
  Execute(*database, "PRAGMA synchronous=" + sync);
  return database;
}

// Runs one statement to completion and resets it for the next operation.
std::string Step(Database& database, sqlite3_stmt* statement, const char* what) {
  int rc = sqlite3_step(statement);
  sqlite3_reset(statement);
  return rc == SQLITE_DONE ? std::string() : database.Error(what);
}

kw::bench::Operation MakeInserter(Database& database, unsigned thread_index, unsigned threads,
                                  const std::vector<unsigned char>& blob) {
  database.begin = Prepare(database, "BEGIN IMMEDIATE");
  database.insert = Prepare(database, "INSERT INTO bench(id, value) VALUES(?, ?)");
  database.commit = Prepare(database, "COMMIT");
  // Keys thread_index, thread_index + threads, ... never collide between threads.
  return [&database, &blob, key = static_cast<sqlite3_int64>(thread_index),
          step = static_cast<sqlite3_int64>(threads)]() mutable -> std::string {
    if (std::string error = Step(database, database.begin, "BEGIN IMMEDIATE"); !error.empty()) {
      return error;
    }
    sqlite3_bind_int64(database.insert, 1, key);
    sqlite3_bind_blob(database.insert, 2, blob.data(), static_cast<int>(blob.size()),
                      SQLITE_STATIC);
    key += step;
    if (std::string error = Step(database, database.insert, "INSERT"); !error.empty()) {
      sqlite3_exec(database.handle, "ROLLBACK", nullptr, nullptr, nullptr);
      return error;
    }
    return Step(database, database.commit, "COMMIT");
  };
}

int Run(const kw::bench::Options& options) {
  std::string path = options.Get("path");
  if (path.empty()) throw std::invalid_argument("--path is required; see --help");
  std::string sync = options.Get("sync", "full");
  if (sync != "full" && sync != "normal") {
    throw std::invalid_argument("--sync must be full or normal, not \"" + sync + "\"");
  }
  auto threads = static_cast<unsigned>(options.GetCount("threads", 1, 1, 256));
  double seconds = options.GetNumber("seconds", 10, 0.1, 86400);
  if (access(path.c_str(), F_OK) == 0) {
    throw std::invalid_argument("--path " + path + " exists; name a file that does not");
  }

  std::vector<unsigned char> blob(kBlobSize);
  std::mt19937 random(12345);
  for (unsigned char& byte : blob) byte = static_cast<unsigned char>(random());

  kw::bench::TimedResult result;
  {
    std::vector<std::unique_ptr<Database>> databases;
    databases.push_back(Open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, sync));
    Execute(*databases[0], "PRAGMA journal_mode=WAL");
    Execute(*databases[0], "CREATE TABLE bench(id INTEGER PRIMARY KEY, value BLOB NOT NULL)");
    for (unsigned i = 1; i < threads; ++i) {
      databases.push_back(Open(path, SQLITE_OPEN_READWRITE, sync));
    }
    std::vector<kw::bench::Operation> operations;
    for (unsigned i = 0; i < threads; ++i) {
      operations.push_back(MakeInserter(*databases[i], i, threads, blob));
    }
    result = kw::bench::RunTimed(operations, 1.0, seconds);
  }
  if (!result.error.empty()) {
    std::cerr << "keyward-bench-sqlite: " << result.error << "\n";
    return 1;
  }

  nlohmann::ordered_json line;
  line["program"] = "sqlite";
  line["sync"] = sync;
  line["threads"] = threads;
  line["seconds"] = std::round(result.seconds * 1000) / 1000;
  line["ops"] = result.ops;
  line["ops_per_sec"] = std::round(result.ops / result.seconds * 10) / 10;
  std::cout << line.dump() << std::endl;
  return 0;
}

// Removes the database and its WAL and shared-memory files; only called once --path was
// checked not to exist beforehand, so the files are this run's.
void RemoveDatabase(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    std::remove((path + suffix).c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string path;
  bool created = false;
  try {
    kw::bench::Options options(argc, argv, {"path", "sync", "threads", "seconds"});
    if (options.help()) {
      std::cout << kUsage;
      return 0;
    }
    kw::bench::CatchInterrupts();
    path = options.Get("path");
    created = !path.empty() && access(path.c_str(), F_OK) != 0;
    int status = Run(options);
    if (created) RemoveDatabase(path);
    return status;
  } catch (const std::exception& error) {
    if (created) RemoveDatabase(path);
    std::cerr << "keyward-bench-sqlite: " << error.what() << "\n";
    return 1;
  }
}
