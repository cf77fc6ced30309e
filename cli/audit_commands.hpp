#pragma once

#include <string>
#include <vector>

namespace kw::cli {

// The server that the audit subcommands call and the token they send.
struct ServerTarget {
  std::string address;  // http://HOST:PORT or https://HOST:PORT
  std::string token;    // sent as X-Vault-Token; empty sends none
};

// Runs `keyward audit <args>`, where `args` follow the word "audit": verify (online, or
// offline over exported files), export, checkpoint, public-key, proof consistency and query.
// Returns the exit code: 0 success (for verify: the log is sound), 1 an error or a log that
// fails verification, 2 a usage error.
int RunAudit(const ServerTarget& server, const std::vector<std::string>& args);

}  // namespace kw::cli
