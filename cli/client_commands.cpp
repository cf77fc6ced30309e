#include "cli/client_commands.hpp"

#include <cstdlib>
#include <iostream>
#include <optional>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "cli/audit_commands.hpp"

namespace kw::cli {
namespace {

struct GlobalFlags {
  std::string address;
  std::string token;
  std::vector<std::string> rest;
};

std::string EnvOr(const char* primary, const char* fallback, std::string otherwise) {
  if (const char* value = std::getenv(primary); value && *value) return value;
  if (const char* value = std::getenv(fallback); value && *value) return value;
  return otherwise;
}

std::optional<GlobalFlags> ParseGlobalFlags(const std::vector<std::string>& args) {
  GlobalFlags flags;
  flags.address = EnvOr("KEYWARD_ADDR", "VAULT_ADDR", "http://127.0.0.1:8200");
  flags.token = EnvOr("KEYWARD_TOKEN", "VAULT_TOKEN", "");
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.starts_with("-address=")) {
      flags.address = arg.substr(9);
    } else if (arg == "-address" && i + 1 < args.size()) {
      flags.address = args[++i];
    } else if (arg.starts_with("-token=")) {
      flags.token = arg.substr(7);
    } else if (arg == "-token" && i + 1 < args.size()) {
      flags.token = args[++i];
    } else {
      flags.rest.push_back(arg);
    }
  }
  return flags;
}

void PrintUsage(std::ostream& out = std::cerr) {
  out << "Usage: keyward <command> [flags]\n\n"
               "Commands:\n"
               "  server         run the server (keyward server -dev, keyward server -config FILE)\n"
               "  status         print the seal status\n"
               "  audit          verify the audit log (online or offline), export it, save\n"
               "                 checkpoints, fetch proofs, query records (keyward audit -help)\n\n"
               "Flags: -address=URL (KEYWARD_ADDR, VAULT_ADDR), -token=TOKEN (KEYWARD_TOKEN, "
               "VAULT_TOKEN)\n"
               "Example: KEYWARD_TOKEN=... keyward audit verify\n";
}

// Sends GET `path` and returns the status and parsed body; prints the failure otherwise.
std::optional<std::pair<int, nlohmann::json>> Get(const GlobalFlags& flags, const std::string& path) {
  if (!flags.address.starts_with("http://") && !flags.address.starts_with("https://")) {
    std::cerr << "error: invalid address \"" << flags.address
              << "\": expected http://HOST:PORT or https://HOST:PORT\n";
    return std::nullopt;
  }
  httplib::Client client(flags.address);
  client.set_connection_timeout(10);
  client.set_read_timeout(300);
  httplib::Headers headers;
  if (!flags.token.empty()) headers.emplace("X-Vault-Token", flags.token);
  auto response = client.Get(path.c_str(), headers);
  if (!response) {
    std::cerr << "error: cannot reach " << flags.address << ": "
              << httplib::to_string(response.error()) << "\n";
    return std::nullopt;
  }
  nlohmann::json body = nlohmann::json::parse(response->body, nullptr, false);
  if (body.is_discarded()) body = nullptr;
  return std::make_pair(response->status, std::move(body));
}

void PrintErrors(int status, const nlohmann::json& body) {
  std::cerr << "error: the server answered " << status;
  if (body.is_object() && body.contains("errors") && body["errors"].is_array()) {
    for (const auto& message : body["errors"]) {
      if (message.is_string()) std::cerr << ": " << message.get<std::string>();
    }
  }
  std::cerr << "\n";
}

int Status(const GlobalFlags& flags) {
  auto reply = Get(flags, "/v1/sys/seal-status");
  if (!reply) return 1;
  if (reply->first != 200) {
    PrintErrors(reply->first, reply->second);
    return 1;
  }
  const auto& body = reply->second;
  std::cout << "Seal Type     " << body.value("type", "") << "\n"
            << "Initialized   " << (body.value("initialized", false) ? "true" : "false") << "\n"
            << "Sealed        " << (body.value("sealed", true) ? "true" : "false") << "\n"
            << "Version       " << body.value("version", "") << "\n"
            << "Storage Type  " << body.value("storage_type", "") << "\n";
  // Like Vault: exit 2 when sealed, so scripts can tell.
  return body.value("sealed", true) ? 2 : 0;
}

}  // namespace

int RunClient(const std::vector<std::string>& args) {
  auto flags = ParseGlobalFlags(args);
  if (!flags || flags->rest.empty()) {
    PrintUsage();
    return 2;
  }
  const auto& rest = flags->rest;
  // The audit subcommands have help of their own.
  if (rest[0] == "audit") {
    return RunAudit(ServerTarget{flags->address, flags->token},
                    std::vector<std::string>(rest.begin() + 1, rest.end()));
  }
  for (const std::string& arg : flags->rest) {
    if (arg == "-help" || arg == "--help" || arg == "-h" || arg == "help") {
      PrintUsage(std::cout);
      return 0;
    }
  }
  if (rest[0] == "status" && rest.size() == 1) return Status(*flags);
  std::cerr << "unknown command: " << rest[0] << "\n";
  PrintUsage();
  return 2;
}

}  // namespace kw::cli
