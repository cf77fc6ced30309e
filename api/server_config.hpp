#pragma once

#include <string>
#include <string_view>

#include "api/http_server.hpp"
#include "api/rate_limit.hpp"
#include "base/result.hpp"
#include "vault/core.hpp"

namespace kw::api {

// Everything `keyward server -config FILE` reads. docs/OPERATIONS.md documents each key.
struct ServerConfig {
  ServerOptions listener;
  std::string storage_path;
  vault::CoreConfig core;
  std::string log_level = "info";
  RateLimitConfig rate_limit;
  // Skips mlockall at start; for hosts without swap or with encrypted swap.
  bool disable_mlock = false;
};

// Parses the JSON config file at `path`. invalid_argument naming the key for an unknown key,
// a wrong type or a missing required key; the message never contains a PIN.
Result<ServerConfig> LoadServerConfig(const std::string& path);

// Parses the JSON text of a config file (LoadServerConfig without the file).
Result<ServerConfig> ParseServerConfig(std::string_view text);

// Splits "host:port" ("[::1]:8200" for IPv6). invalid_argument when malformed.
Status ParseListenAddress(std::string_view address, ServerOptions& options);

}  // namespace kw::api
