#include "storage/sqlite/schema.hpp"

#include <sqlite3.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "storage/sqlite/kv_reader.hpp"
#include "storage/sqlite/sqlite_storage.hpp"

namespace kw::storage::sqlite::detail {
namespace {

// Turns "file is not a database" into failed_precondition, so the operator fixes the path
// instead of retrying.
Error ExplainOpenError(const Connection& connection, const Error& error,
                       const std::string& path) {
  if ((sqlite3_errcode(connection.handle()) & 0xff) == SQLITE_NOTADB) {
    return Error(Code::kFailedPrecondition,
                 "storage: " + path + " is not an SQLite database; check the storage path");
  }
  // SQLite opens a file it cannot write read-only and then fails with "unable to open database
  // file", because WAL mode needs to write. access() shows the cause, for root too (EROFS).
  const std::string directory = std::filesystem::path(path).parent_path().string();
  // A full file system fails the WAL index with "disk I/O error".
  struct statvfs space {};
  if (::statvfs(directory.empty() ? "." : directory.c_str(), &space) == 0 && space.f_bavail == 0) {
    return Error(Code::kUnavailable, "storage: the file system of " + path +
                                         " is full: " + error.message() +
                                         "; free disk space and start the server again");
  }
  for (const std::string& checked : {path, directory.empty() ? std::string(".") : directory}) {
    if (::access(checked.c_str(), W_OK) != 0 && (errno == EROFS || errno == EACCES)) {
      return Error(Code::kUnavailable, "storage: " + checked + " is read-only (" +
                                           std::strerror(errno) + "): " + error.message() +
                                           "; make it writable and start the server again");
    }
  }
  return error;
}

Status SetWalMode(Connection& writer, const std::string& path) {
  auto prepared = Statement::Prepare(writer, "PRAGMA journal_mode=WAL");
  if (!prepared) return tl::unexpected(ExplainOpenError(writer, prepared.error(), path));
  Statement& pragma = *prepared;
  auto has_row = pragma.Step("set journal_mode=WAL");
  if (!has_row) return tl::unexpected(ExplainOpenError(writer, has_row.error(), path));
  const std::string_view mode = *has_row ? pragma.ColumnText(0) : std::string_view();
  if (mode != "wal") {
    return Unavailable("storage: " + path + ": journal_mode is \"" + std::string(mode) +
                       "\" instead of \"wal\"; use a file on a local file system");
  }
  return OkStatus();
}

// Runs inside BEGIN IMMEDIATE: creates the table in an empty file, otherwise checks it.
Status CreateOrCheckSchema(Connection& writer, const std::string& path) {
  KW_ASSIGN_OR_RETURN(const std::int64_t version,
                      writer.QueryInt("PRAGMA user_version", "read user_version"));
  if (version != 0) return CheckSchema(writer, path);

  KW_ASSIGN_OR_RETURN(const std::int64_t objects,
                      writer.QueryInt("SELECT count(*) FROM sqlite_master", "read schema"));
  if (objects != 0) {
    return FailedPrecondition("storage: " + path + " is not a keyward database (it has " +
                              std::to_string(objects) +
                              " schema objects and no schema version); check the storage path");
  }
  KW_RETURN_IF_ERROR(writer.Exec(kCreateKvTable, "create table kv"));
  const std::string set_version = "PRAGMA user_version=" + std::to_string(kSchemaVersion);
  return writer.Exec(set_version.c_str(), "set user_version");
}

}  // namespace

Status PrepareDatabase(Connection& writer, const std::string& path) {
  KW_RETURN_IF_ERROR(SetWalMode(writer, path));
  KW_RETURN_IF_ERROR(writer.Exec("PRAGMA synchronous=FULL", "set synchronous=FULL"));

  KW_RETURN_IF_ERROR(writer.Exec("BEGIN IMMEDIATE", "begin schema transaction"));
  const Status schema = CreateOrCheckSchema(writer, path);
  if (!schema) {
    (void)writer.Exec("ROLLBACK", "roll back schema transaction");
    return schema;
  }
  return writer.Exec("COMMIT", "commit schema transaction");
}

Status CheckSchema(Connection& connection, const std::string& path) {
  auto version = connection.QueryInt("PRAGMA user_version", "read user_version");
  if (!version) {
    return tl::unexpected(ExplainOpenError(connection, version.error(), path));
  }
  if (*version != kSchemaVersion) {
    return FailedPrecondition("storage: " + path + " has schema version " +
                              std::to_string(*version) + " but this build supports version " +
                              std::to_string(kSchemaVersion) + "; use a matching keyward build");
  }
  KW_ASSIGN_OR_RETURN(const std::int64_t tables,
                      connection.QueryInt("SELECT count(*) FROM sqlite_master "
                                          "WHERE type = 'table' AND name = 'kv'",
                                          "read schema"));
  if (tables != 1) {
    return FailedPrecondition("storage: " + path +
                              " has a schema version but no kv table; the file is damaged or "
                              "not a keyward database");
  }
  return OkStatus();
}

}  // namespace kw::storage::sqlite::detail
