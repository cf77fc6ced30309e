#pragma once

#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "base/result.hpp"
#include "cli/audit_commands.hpp"

// Pieces the `keyward audit` subcommands share: flag parsing, the HTTP client, file output.
namespace kw::cli::detail {

// Exit codes of every audit subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // an error, or a log that does not verify
inline constexpr int kExitUsage = 2;

// The flags of one subcommand after parsing. Every flag but -help takes a value, as
// `-name value` or `-name=value`; one or two leading dashes.
struct ParsedFlags {
  std::map<std::string, std::vector<std::string>> values;  // by name without dashes
  bool help = false;

  bool has(const std::string& name) const { return values.contains(name); }
  // Returns the last value given for `name`; nullopt when absent.
  std::optional<std::string> last(const std::string& name) const;
  const std::vector<std::string>& all(const std::string& name) const;
};

// Parses `args` against the flag names in `known`. invalid_argument naming the argument for an
// unknown flag, a missing value or a positional argument.
Result<ParsedFlags> ParseFlags(std::span<const std::string> args,
                               const std::set<std::string>& known);

// Parses a decimal number for flag `name`. invalid_argument naming the flag otherwise.
Result<std::uint64_t> ParseCount(const std::string& name, const std::string& value);

// Talks to the server's HTTP API as one token. https addresses trust the CA file named by
// KEYWARD_CACERT or VAULT_CACERT, or the system's CAs.
class ApiClient {
 public:
  explicit ApiClient(const ServerTarget& target);

  // Sends GET /v1/<path> with `params` (URL-encoded) and returns the reply's data object.
  // Errors carry the status and the server's messages: unavailable when the server cannot be
  // reached or returns 5xx, permission_denied for 403 (with a hint), not_found for 404,
  // failed_precondition for other statuses, data_loss for a reply without a data object.
  Result<nlohmann::json> GetData(const std::string& path, const httplib::Params& params = {});

 private:
  ServerTarget target_;
};

// A file written through `<path>.tmp`, then fsynced and renamed over `path`, so that readers
// never see half of it. The temporary file is removed when Commit was not reached. One thread.
class AtomicFile {
 public:
  // Creates `<path>.tmp` with `mode`, replacing a stale one.
  static Result<AtomicFile> Create(const std::string& path, int mode);

  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  Status Write(std::string_view bytes);
  // Flushes to disk, renames over the final path and fsyncs its directory.
  Status Commit();

 private:
  AtomicFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}

  std::string path_;
  int fd_ = -1;
};

// Writes `bytes` to `path` through AtomicFile.
Status WriteFileAtomically(const std::string& path, std::string_view bytes, int mode);

// Reads a whole file. not_found or unavailable naming the path when it cannot be read.
Result<std::string> ReadWholeFile(const std::string& path);

// Prints "error: <message>" to stderr and returns kExitFailure.
int PrintFailure(const Error& error);

// Prints "usage error: <message>" and `help` to stderr and returns kExitUsage.
int PrintUsageError(std::string_view message, std::string_view help);

// Verifies exported files offline (cli/audit_verify.cpp). `help` is printed on usage errors.
int RunOfflineVerify(const ParsedFlags& flags, std::string_view help);

// Writes every stored record and checkpoint to `path` as JSON lines (cli/audit_export.cpp).
int RunExport(ApiClient& api, const std::string& path);

}  // namespace kw::cli::detail
