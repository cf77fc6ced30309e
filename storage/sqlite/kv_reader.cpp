#include "storage/sqlite/kv_reader.hpp"

#include <cstdio>
#include <utility>

namespace kw::storage::sqlite::detail {

Status ValidateKey(std::string_view key) {
  if (key.empty()) return InvalidArgument("storage: invalid key: the key is empty");
  if (key.find('\0') != std::string_view::npos) {
    return InvalidArgument("storage: invalid key " + QuoteKey(key) + ": keys may not contain NUL");
  }
  return OkStatus();
}

std::optional<std::string> PrefixSuccessor(std::string_view prefix) {
  std::string successor(prefix);
  while (!successor.empty() && static_cast<unsigned char>(successor.back()) == 0xff) {
    successor.pop_back();
  }
  if (successor.empty()) return std::nullopt;
  successor.back() = static_cast<char>(static_cast<unsigned char>(successor.back()) + 1);
  return successor;
}

std::string QuoteKey(std::string_view key) {
  std::string quoted = "\"";
  for (const char c : key) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f && c != '"' && c != '\\') {
      quoted += c;
    } else {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\x%02x", byte);
      quoted += escaped;
    }
  }
  quoted += '"';
  return quoted;
}

Result<std::optional<Bytes>> RunGet(Statement& get, std::string_view key) {
  ResetOnExit reset(get);
  KW_RETURN_IF_ERROR(get.BindText(1, key));
  KW_ASSIGN_OR_RETURN(const bool found, get.Step("get"));
  if (!found) return std::optional<Bytes>();
  return std::optional<Bytes>(get.ColumnBytes(0));
}

Result<std::unique_ptr<KvReader>> KvReader::Open(const std::string& path,
                                                 std::chrono::milliseconds busy_timeout) {
  KW_ASSIGN_OR_RETURN(Connection connection,
                      Connection::Open(path, Connection::Mode::kReadOnly, busy_timeout));
  std::unique_ptr<KvReader> reader(
      new KvReader(std::make_unique<Connection>(std::move(connection))));
  KW_RETURN_IF_ERROR(reader->PrepareStatements());
  return reader;
}

Status KvReader::PrepareStatements() {
  Connection& c = *connection_;
  KW_ASSIGN_OR_RETURN(get_, Statement::Prepare(c, "SELECT value FROM kv WHERE key = ?1"));
  KW_ASSIGN_OR_RETURN(keys_from_,
                      Statement::Prepare(c, "SELECT key FROM kv WHERE key >= ?1 ORDER BY key"));
  KW_ASSIGN_OR_RETURN(
      entries_from_,
      Statement::Prepare(c, "SELECT key, value FROM kv WHERE key >= ?1 ORDER BY key"));
  KW_ASSIGN_OR_RETURN(
      entries_after_,
      Statement::Prepare(c, "SELECT key, value FROM kv WHERE key > ?1 ORDER BY key"));
  KW_ASSIGN_OR_RETURN(last_below_,
                      Statement::Prepare(c,
                                         "SELECT key, value FROM kv WHERE key >= ?1 AND key < ?2 "
                                         "ORDER BY key DESC LIMIT 1"));
  KW_ASSIGN_OR_RETURN(
      last_from_,
      Statement::Prepare(c, "SELECT key, value FROM kv WHERE key >= ?1 ORDER BY key DESC LIMIT 1"));
  return OkStatus();
}

Result<std::optional<Bytes>> KvReader::Get(std::string_view key) {
  KW_RETURN_IF_ERROR(ValidateKey(key));
  return RunGet(*get_, key);
}

// Walks the keys under `prefix` in order. On the first key below a child directory it emits
// "name/" and seeks past that directory's whole range, so the cost grows with the number of
// children, not with the size of the subtree.
Result<std::vector<std::string>> KvReader::List(std::string_view prefix) {
  if (!prefix.empty() && prefix.back() != '/') {
    return InvalidArgument("storage: list: prefix " + QuoteKey(prefix) +
                           " must be empty or end in '/'");
  }
  if (prefix.find('\0') != std::string_view::npos) {
    return InvalidArgument("storage: list: prefix " + QuoteKey(prefix) + " contains NUL");
  }

  std::vector<std::string> names;
  Statement& keys = *keys_from_;
  ResetOnExit reset(keys);
  std::string lower(prefix);
  bool restart = true;
  while (restart) {
    restart = false;
    keys.Reset();
    KW_RETURN_IF_ERROR(keys.BindText(1, lower));
    while (true) {
      KW_ASSIGN_OR_RETURN(const bool has_row, keys.Step("list"));
      if (!has_row) break;
      const std::string_view key = keys.ColumnText(0);
      if (!key.starts_with(prefix)) break;
      const std::string_view rest = key.substr(prefix.size());
      if (rest.empty()) continue;  // a key equal to the prefix names no child

      const std::size_t slash = rest.find('/');
      if (slash == std::string_view::npos) {
        names.emplace_back(rest);
        continue;
      }
      std::string directory(rest.substr(0, slash + 1));
      // The successor exists: the directory ends in '/', which is below 0xff.
      lower = *PrefixSuccessor(std::string(prefix) + directory);
      names.push_back(std::move(directory));
      restart = true;
      break;
    }
  }
  return names;
}

Result<std::vector<Entry>> KvReader::Scan(std::string_view prefix, std::string_view start_after,
                                          std::size_t limit) {
  if (prefix.find('\0') != std::string_view::npos ||
      start_after.find('\0') != std::string_view::npos) {
    return InvalidArgument("storage: scan: prefix and start_after may not contain NUL");
  }

  std::vector<Entry> entries;
  if (limit == 0) return entries;
  // Keys starting with `prefix` form one contiguous range; start inside it.
  const bool after = !start_after.empty() && start_after >= prefix;
  Statement& scan = after ? *entries_after_ : *entries_from_;
  ResetOnExit reset(scan);
  KW_RETURN_IF_ERROR(scan.BindText(1, after ? start_after : prefix));
  while (entries.size() < limit) {
    KW_ASSIGN_OR_RETURN(const bool has_row, scan.Step("scan"));
    if (!has_row) break;
    const std::string_view key = scan.ColumnText(0);
    if (!key.starts_with(prefix)) break;
    entries.push_back(Entry{std::string(key), scan.ColumnBytes(1)});
  }
  return entries;
}

Result<std::optional<Entry>> KvReader::Last(std::string_view prefix) {
  if (prefix.find('\0') != std::string_view::npos) {
    return InvalidArgument("storage: last: prefix " + QuoteKey(prefix) + " contains NUL");
  }

  // Without a successor (empty or all-0xff prefix) every key >= prefix starts with it.
  const std::optional<std::string> upper = PrefixSuccessor(prefix);
  Statement& last = upper ? *last_below_ : *last_from_;
  ResetOnExit reset(last);
  KW_RETURN_IF_ERROR(last.BindText(1, prefix));
  if (upper) KW_RETURN_IF_ERROR(last.BindText(2, *upper));
  KW_ASSIGN_OR_RETURN(const bool has_row, last.Step("last"));
  if (!has_row) return std::optional<Entry>();
  const std::string_view key = last.ColumnText(0);
  if (!key.starts_with(prefix)) return std::optional<Entry>();
  return std::optional<Entry>(Entry{std::string(key), last.ColumnBytes(1)});
}

}  // namespace kw::storage::sqlite::detail
