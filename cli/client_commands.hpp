#pragma once

#include <string>
#include <vector>

namespace kw::cli {

// Runs a client subcommand (everything but `server`). Returns the exit code: 0 success,
// 1 an error from the server, 2 a usage error.
int RunClient(const std::vector<std::string>& args);

}  // namespace kw::cli
