// The keyward binary: `keyward server ...` runs the server; every other subcommand is a client.
#include <string>
#include <vector>

#include "api/server_main.hpp"
#include "cli/client_commands.hpp"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "server") {
    return kw::api::RunServer(std::vector<std::string>(args.begin() + 1, args.end()));
  }
  return kw::cli::RunClient(args);
}
