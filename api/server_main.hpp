#pragma once

#include <string>
#include <vector>

namespace kw::api {

// Runs `keyward server` with its flags (everything after "server"): -dev with its -dev-*
// flags, or -config FILE. Serves until SIGINT or SIGTERM. Returns the process exit code.
int RunServer(const std::vector<std::string>& args);

}  // namespace kw::api
