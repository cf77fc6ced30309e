#pragma once

#include <string>

#include "base/result.hpp"
#include "storage/sqlite/connection.hpp"

namespace kw::storage::sqlite::detail {

// Puts the database in WAL mode, sets synchronous=FULL on `writer`, and creates the schema in
// an empty database. failed_precondition when the file is not a keyward database or has
// another schema version; such a file is left unchanged.
Status PrepareDatabase(Connection& writer, const std::string& path);

// Checks the schema version and the kv table without writing. failed_precondition when the
// file is not a keyward database of version kSchemaVersion.
Status CheckSchema(Connection& connection, const std::string& path);

}  // namespace kw::storage::sqlite::detail
