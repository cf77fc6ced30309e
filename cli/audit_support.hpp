#pragma once

#include <httplib.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.hpp"
#include "cli/cli.hpp"

// Pieces the `keyward audit` commands share: reading a data object from the server, numbers
// from flags, files written atomically. The private-key output of `keyward pki issue` uses
// the file writers too.
namespace kw::cli::detail {

// Returns a usage error when `args` has positional arguments, else nullopt.
std::optional<int> RejectPositional(Context& context, const Args& args, const Command& command);

// Parses a decimal number for flag `name`. invalid_argument naming the flag otherwise.
Result<std::uint64_t> ParseCount(const std::string& name, const std::string& value);

// Sends GET /v1/<path> with `params` (URL-encoded) and returns the reply's data object.
// Errors carry the status and the server's messages: unavailable when the server cannot be
// reached or returns 5xx, permission_denied for 403 (with a hint), not_found for 404,
// failed_precondition for other statuses, data_loss for a reply without a data object.
Result<nlohmann::json> GetData(Connection& connection, const std::string& path,
                               const httplib::Params& params = {});

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

// Verifies exported files offline (cli/audit_verify.cpp): the -log, -key, -checkpoint,
// -old-checkpoint and -proof flags of `keyward audit verify`. `command` names the usage line
// for usage errors. Returns the exit code.
int RunOfflineVerify(Context& context, const Args& args, const Command& command);

// Writes every stored record and checkpoint to `path` as JSON lines (cli/audit_export.cpp).
// Returns the exit code.
int RunExport(Context& context, Connection& connection, const std::string& path);

}  // namespace kw::cli::detail
