#pragma once

#include <string>
#include <vector>

#include "cli/cli.hpp"

namespace kw::cli {

// Adds the `keyward audit` commands: verify (on the server, or offline over exported files),
// export, checkpoint, public-key, proof and query. verify exits 1 for a log that fails
// verification.
void AddAuditCommands(std::vector<Command>& commands);

// The server and token of RunAudit.
struct ServerTarget {
  std::string address;
  std::string token;  // empty sends none
};

// Runs `keyward audit <args>` against `server` through the registered audit commands.
// NOTE: kept only because the dispatcher in client_commands.cpp still calls it when no audit
// command is registered; AddAdminCommands registers them, so remove both once that call goes.
int RunAudit(const ServerTarget& server, const std::vector<std::string>& args);

}  // namespace kw::cli
