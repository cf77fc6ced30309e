#include "storage/sqlite/sqlite_storage.hpp"

#include <sqlite3.h>

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/unit/storage/storage_test_support.hpp"

namespace {

using kw::Code;
using kw::storage::Entry;
using kw::storage::WriteBatch;
using kw::storage::testing::ErrorText;
using kw::storage::testing::GetText;
using kw::storage::testing::OpenOrFail;
using kw::storage::testing::PutOrFail;
using kw::storage::testing::TempDir;
using kw::storage::testing::ToBytes;

std::vector<std::string> ListOrFail(kw::storage::Storage& storage, std::string_view prefix) {
  auto names = storage.List(prefix);
  if (!names) FAIL("list failed: " << ErrorText(names.error()));
  return *names;
}

std::vector<std::string> KeysOf(const std::vector<Entry>& entries) {
  std::vector<std::string> keys;
  for (const Entry& entry : entries) keys.push_back(entry.key);
  return keys;
}

// Runs `sql` on `path` through a separate raw SQLite connection, as an operator's sqlite3
// shell would.
void RunRawSql(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  sqlite3_close(db);
  REQUIRE(rc == SQLITE_OK);
}

std::string QueryRawText(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  std::string text = "<no row>";
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK &&
      sqlite3_step(stmt) == SQLITE_ROW) {
    const auto* column = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    text = column != nullptr ? column : "<null>";
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return text;
}

}  // namespace

TEST_SUITE("storage/sqlite") {
  TEST_CASE("put get delete round trip") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));

    CHECK(GetText(*storage, "a/b") == "<absent>");
    PutOrFail(*storage, "a/b", "one");
    CHECK(GetText(*storage, "a/b") == "one");

    PutOrFail(*storage, "a/b", "two");
    CHECK(GetText(*storage, "a/b") == "two");

    WriteBatch remove;
    remove.Delete("a/b");
    REQUIRE(storage->Commit(std::move(remove)));
    CHECK(GetText(*storage, "a/b") == "<absent>");

    WriteBatch remove_missing;
    remove_missing.Delete("never/there");
    CHECK(storage->Commit(std::move(remove_missing)));
  }

  TEST_CASE("batch applies puts and deletes together") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));
    PutOrFail(*storage, "old", "x");

    WriteBatch batch;
    batch.Put("new/1", ToBytes("1"));
    batch.Put("new/2", ToBytes("2"));
    batch.Delete("old");
    batch.Put("new/1", ToBytes("1b"));  // later ops win
    REQUIRE(storage->Commit(std::move(batch)));

    CHECK(GetText(*storage, "new/1") == "1b");
    CHECK(GetText(*storage, "new/2") == "2");
    CHECK(GetText(*storage, "old") == "<absent>");
  }

  TEST_CASE("values are arbitrary bytes") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));
    kw::Bytes binary;
    for (int i = 0; i < 256; ++i) binary.push_back(static_cast<std::uint8_t>(i));

    WriteBatch batch;
    batch.Put("binary", binary);
    batch.Put("empty", kw::Bytes());
    REQUIRE(storage->Commit(std::move(batch)));

    auto read = storage->Get("binary");
    REQUIRE(read);
    REQUIRE(read->has_value());
    CHECK(**read == binary);

    auto empty = storage->Get("empty");
    REQUIRE(empty);
    REQUIRE(empty->has_value());  // an empty value is present, not absent
    CHECK((*empty)->empty());
  }

  TEST_CASE("keys may hold any byte but NUL") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));
    const std::vector<std::string> keys = {
        std::string("k/\x01\x02"), std::string("k/\xff\xfe"), std::string("k/\xc3\x28"),
        std::string("k/caf\xc3\xa9"), std::string("k/ spaces and 'quotes'")};
    for (const std::string& key : keys) PutOrFail(*storage, key, "v:" + key);
    for (const std::string& key : keys) CHECK(GetText(*storage, key) == "v:" + key);

    std::vector<std::string> expected;
    for (const std::string& key : keys) expected.push_back(key.substr(2));
    std::sort(expected.begin(), expected.end());
    CHECK(ListOrFail(*storage, "k/") == expected);

    WriteBatch with_nul;
    with_nul.Put(std::string("bad\0key", 7), ToBytes("v"));
    const kw::Status nul_status = storage->Commit(std::move(with_nul));
    REQUIRE_FALSE(nul_status);
    CHECK(nul_status.error().code() == Code::kInvalidArgument);

    WriteBatch with_empty_key;
    with_empty_key.Put("", ToBytes("v"));
    const kw::Status empty_status = storage->Commit(std::move(with_empty_key));
    REQUIRE_FALSE(empty_status);
    CHECK(empty_status.error().code() == Code::kInvalidArgument);

    auto get_nul = storage->Get(std::string("a\0b", 3));
    REQUIRE_FALSE(get_nul);
    CHECK(get_nul.error().code() == Code::kInvalidArgument);
  }

  TEST_CASE("list returns immediate children") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));
    for (const char* key : {"app/a", "app/b", "app/b/c", "app/b/d/e", "app/b-x", "app/c/d",
                            "app2/x", "apq", "app", "top"}) {
      PutOrFail(*storage, key, "v");
    }

    // "b" is both a key and a directory, as Vault allows; "b-x" sorts before "b/".
    CHECK(ListOrFail(*storage, "app/") ==
          std::vector<std::string>{"a", "b", "b-x", "b/", "c/"});
    CHECK(ListOrFail(*storage, "app/b/") == std::vector<std::string>{"c", "d/"});
    CHECK(ListOrFail(*storage, "app2/") == std::vector<std::string>{"x"});
    CHECK(ListOrFail(*storage, "") ==
          std::vector<std::string>{"app", "app/", "app2/", "apq", "top"});
    CHECK(ListOrFail(*storage, "none/").empty());
  }

  TEST_CASE("list matches the prefix byte for byte") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));
    // '%' and '_' are LIKE wildcards; none of them may match another byte here.
    for (const char* key : {"p%/a", "p_/b", "pX/c", "pa/d", "p%x/e", "p%/%", "p%/_"}) {
      PutOrFail(*storage, key, "v");
    }
    CHECK(ListOrFail(*storage, "p%/") == std::vector<std::string>{"%", "_", "a"});
    CHECK(ListOrFail(*storage, "p_/") == std::vector<std::string>{"b"});
    CHECK(ListOrFail(*storage, "") ==
          std::vector<std::string>{"p%/", "p%x/", "pX/", "p_/", "pa/"});
  }

  TEST_CASE("list skips large subdirectories") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));
    WriteBatch batch;
    for (int i = 0; i < 3000; ++i) {
      batch.Put("big/deep/" + std::to_string(i % 7) + "/" + std::to_string(i), ToBytes("v"));
    }
    batch.Put("big/leaf", ToBytes("v"));
    batch.Put("big/zeta/1", ToBytes("v"));
    REQUIRE(storage->Commit(std::move(batch)));

    CHECK(ListOrFail(*storage, "big/") == std::vector<std::string>{"deep/", "leaf", "zeta/"});
    CHECK(ListOrFail(*storage, "big/deep/").size() == 7);
  }

  TEST_CASE("list rejects a prefix without a trailing slash") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));
    auto names = storage->List("app");
    REQUIRE_FALSE(names);
    CHECK(names.error().code() == Code::kInvalidArgument);
  }

  TEST_CASE("scan pages through a prefix") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));
    WriteBatch batch;
    for (int i = 0; i < 25; ++i) {
      char key[32];
      std::snprintf(key, sizeof(key), "p/%02d", i);
      batch.Put(key, ToBytes("value" + std::to_string(i)));
    }
    batch.Put("o/before", ToBytes("outside"));
    batch.Put("p0", ToBytes("outside"));
    batch.Put("q/after", ToBytes("outside"));
    REQUIRE(storage->Commit(std::move(batch)));

    std::vector<std::string> seen;
    std::string cursor;
    std::vector<std::size_t> page_sizes;
    for (int page = 0; page < 10; ++page) {
      auto entries = storage->Scan("p/", cursor, 10);
      REQUIRE(entries);
      page_sizes.push_back(entries->size());
      if (entries->empty()) break;
      for (const Entry& entry : *entries) seen.push_back(entry.key);
      cursor = entries->back().key;
    }
    CHECK(page_sizes == std::vector<std::size_t>{10, 10, 5, 0});
    REQUIRE(seen.size() == 25);
    CHECK(seen.front() == "p/00");
    CHECK(seen.back() == "p/24");
    CHECK(std::is_sorted(seen.begin(), seen.end()));

    auto first = storage->Scan("p/", "", 1);
    REQUIRE(first);
    REQUIRE(first->size() == 1);
    CHECK(kw::AsText((*first)[0].value) == "value0");

    // A start_after before the prefix starts at the prefix; one past it returns nothing.
    auto from_before = storage->Scan("p/", "a", 2);
    REQUIRE(from_before);
    CHECK(KeysOf(*from_before) == std::vector<std::string>{"p/00", "p/01"});
    auto from_after = storage->Scan("p/", "p0", 5);
    REQUIRE(from_after);
    CHECK(from_after->empty());

    auto zero = storage->Scan("p/", "", 0);
    REQUIRE(zero);
    CHECK(zero->empty());
  }

  TEST_CASE("scan with an empty prefix covers every key") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));
    for (const char* key : {"b", "a", "c/d"}) PutOrFail(*storage, key, "v");
    auto entries = storage->Scan("", "", 100);
    REQUIRE(entries);
    CHECK(KeysOf(*entries) == std::vector<std::string>{"a", "b", "c/d"});
  }

  TEST_CASE("last returns the greatest key under a prefix") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));
    for (const char* key : {"log/0001", "log/0009", "log/0010", "log0", "loh", "lof/9999"}) {
      PutOrFail(*storage, key, std::string("v-") + key);
    }

    auto last = storage->Last("log/");
    REQUIRE(last);
    REQUIRE(last->has_value());
    CHECK((*last)->key == "log/0010");
    CHECK(kw::AsText((*last)->value) == "v-log/0010");

    auto global = storage->Last("");
    REQUIRE(global);
    REQUIRE(global->has_value());
    CHECK((*global)->key == "loh");

    auto none = storage->Last("nothing/");
    REQUIRE(none);
    CHECK_FALSE(none->has_value());

    PutOrFail(*storage, std::string("\xff\xff/a"), "high");
    PutOrFail(*storage, std::string("\xff\xff/b"), "high");
    auto high = storage->Last(std::string("\xff\xff"));
    REQUIRE(high);
    REQUIRE(high->has_value());
    CHECK((*high)->key == std::string("\xff\xff/b"));
  }

  TEST_CASE("schema is one plain table") {
    TempDir dir;
    const std::string path = dir.File("kv.db");
    {
      auto storage = OpenOrFail(path);
      PutOrFail(*storage, "edited", "before");
    }
    CHECK(QueryRawText(path, "PRAGMA user_version") ==
          std::to_string(kw::storage::sqlite::kSchemaVersion));
    CHECK(QueryRawText(path, "PRAGMA journal_mode") == "wal");
    CHECK(QueryRawText(path, "SELECT sql FROM sqlite_master WHERE name = 'kv'") ==
          "CREATE TABLE kv(key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID");

    // An operator's edit with the sqlite3 shell is what the storage reads next.
    RunRawSql(path, "UPDATE kv SET value = CAST('after' AS BLOB) WHERE key = 'edited'");
    auto storage = OpenOrFail(path);
    CHECK(GetText(*storage, "edited") == "after");
  }

  TEST_CASE("open rejects a database of another application") {
    TempDir dir;
    const std::string path = dir.File("other.db");
    RunRawSql(path, "CREATE TABLE users(id INTEGER PRIMARY KEY)");

    kw::storage::sqlite::SqliteOptions options;
    options.path = path;
    auto storage = kw::storage::sqlite::Open(options);
    REQUIRE_FALSE(storage);
    CHECK(storage.error().code() == Code::kFailedPrecondition);
    CHECK(QueryRawText(path, "SELECT count(*) FROM sqlite_master WHERE name = 'kv'") == "0");

    const kw::Status verified = kw::storage::sqlite::VerifyDatabase(path);
    REQUIRE_FALSE(verified);
    CHECK(verified.error().code() == Code::kFailedPrecondition);
  }

  TEST_CASE("open rejects another schema version") {
    TempDir dir;
    const std::string path = dir.File("kv.db");
    { auto storage = OpenOrFail(path); }
    RunRawSql(path, "PRAGMA user_version = 7");

    kw::storage::sqlite::SqliteOptions options;
    options.path = path;
    auto storage = kw::storage::sqlite::Open(options);
    REQUIRE_FALSE(storage);
    CHECK(storage.error().code() == Code::kFailedPrecondition);
    CHECK(storage.error().message().find("schema version 7") != std::string::npos);

    const kw::Status verified = kw::storage::sqlite::VerifyDatabase(path);
    REQUIRE_FALSE(verified);
    CHECK(verified.error().code() == Code::kFailedPrecondition);
  }

  TEST_CASE("open rejects a file that is not sqlite") {
    TempDir dir;
    const std::string path = dir.File("notes.txt");
    {
      std::ofstream out(path);
      for (int i = 0; i < 100; ++i) out << "this is a text file, not a database\n";
    }
    kw::storage::sqlite::SqliteOptions options;
    options.path = path;
    auto storage = kw::storage::sqlite::Open(options);
    REQUIRE_FALSE(storage);
    CHECK(storage.error().code() == Code::kFailedPrecondition);
  }

  TEST_CASE("verify database accepts keyward files only") {
    TempDir dir;
    const std::string path = dir.File("kv.db");

    const kw::Status missing = kw::storage::sqlite::VerifyDatabase(path);
    REQUIRE_FALSE(missing);
    CHECK(missing.error().code() == Code::kNotFound);

    { auto storage = OpenOrFail(path); }
    const kw::Status verified = kw::storage::sqlite::VerifyDatabase(path);
    if (!verified) FAIL(ErrorText(verified.error()));
    CHECK(std::filesystem::exists(path));
  }

  TEST_CASE("open rejects invalid options") {
    kw::storage::sqlite::SqliteOptions options;
    auto no_path = kw::storage::sqlite::Open(options);
    REQUIRE_FALSE(no_path);
    CHECK(no_path.error().code() == Code::kInvalidArgument);

    TempDir dir;
    options.path = dir.File("kv.db");
    options.read_connections = 0;
    auto no_readers = kw::storage::sqlite::Open(options);
    REQUIRE_FALSE(no_readers);
    CHECK(no_readers.error().code() == Code::kInvalidArgument);
  }

  TEST_CASE("open fails in a missing directory") {
    TempDir dir;
    kw::storage::sqlite::SqliteOptions options;
    options.path = dir.File("missing/dir/kv.db");
    auto storage = kw::storage::sqlite::Open(options);
    REQUIRE_FALSE(storage);
    CHECK(storage.error().code() == Code::kUnavailable);
    CHECK(storage.error().message().find("storage: open") == 0);
  }
}
