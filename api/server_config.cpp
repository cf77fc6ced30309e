#include "api/server_config.hpp"

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "api/json_fields.hpp"
#include "base/duration.hpp"
#include "vault/audit/sinks.hpp"

namespace kw::api {
namespace {

using nlohmann::json;

Status RejectUnknownKeys(const json& object, std::string_view section,
                         const std::set<std::string>& known) {
  for (const auto& [key, value] : object.items()) {
    if (!known.contains(key)) {
      return InvalidArgument("config: unknown key \"" + std::string(section) + key +
                             "\"; see docs/OPERATIONS.md for the accepted keys");
    }
  }
  return OkStatus();
}

Result<const json*> Section(const json& root, const std::string& name) {
  if (!root.contains(name)) return static_cast<const json*>(nullptr);
  if (!root[name].is_object()) {
    return InvalidArgument("config: \"" + name + "\" must be a JSON object");
  }
  return &root[name];
}

Status ReadString(const json& object, const std::string& key, std::string_view section,
                  std::string& out) {
  auto value = OptionalString(object, key);
  if (!value) return InvalidArgument("config: \"" + std::string(section) + key + "\" must be a string");
  if (*value) out = **value;
  return OkStatus();
}

template <typename T>
Status ReadSize(const json& object, const std::string& key, std::string_view section, T& out) {
  auto value = OptionalInt(object, key);
  if (!value || (*value && **value <= 0)) {
    return InvalidArgument("config: \"" + std::string(section) + key +
                           "\" must be a positive integer");
  }
  if (*value) out = static_cast<T>(**value);
  return OkStatus();
}

Status ReadTimeout(const json& object, const std::string& key, std::string_view section,
                   std::chrono::milliseconds& out) {
  auto value = OptionalDuration(object, key);
  if (!value || (*value && (*value)->count() <= 0)) {
    return InvalidArgument("config: \"" + std::string(section) + key +
                           "\" must be a positive duration such as \"30s\"");
  }
  if (*value) out = **value;
  return OkStatus();
}

Status ReadListener(const json& listener, ServerOptions& options) {
  KW_RETURN_IF_ERROR(RejectUnknownKeys(
      listener, "listener.",
      {"address", "tls_cert_file", "tls_key_file", "tls_client_ca_file",
       "tls_request_client_cert", "max_request_size",
       "max_header_size", "max_url_size", "request_timeout", "idle_timeout", "max_connections",
       "max_connections_per_address", "io_threads", "worker_threads",
       "tls_handshake_timeout"}));
  std::string address;
  KW_RETURN_IF_ERROR(ReadString(listener, "address", "listener.", address));
  if (!address.empty()) KW_RETURN_IF_ERROR(ParseListenAddress(address, options));
  KW_RETURN_IF_ERROR(ReadString(listener, "tls_cert_file", "listener.", options.tls_cert_file));
  KW_RETURN_IF_ERROR(ReadString(listener, "tls_key_file", "listener.", options.tls_key_file));
  KW_RETURN_IF_ERROR(
      ReadString(listener, "tls_client_ca_file", "listener.", options.tls_client_ca_file));
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return InvalidArgument(
        "config: set both \"listener.tls_cert_file\" and \"listener.tls_key_file\", or neither");
  }
  auto request_client_cert = OptionalBool(listener, "tls_request_client_cert");
  if (!request_client_cert) {
    return InvalidArgument("config: \"listener.tls_request_client_cert\" must be a boolean");
  }
  options.tls_request_client_cert = request_client_cert->value_or(false);
  if (options.tls_request_client_cert && options.tls_cert_file.empty()) {
    return InvalidArgument("config: \"listener.tls_request_client_cert\" needs "
                           "\"listener.tls_cert_file\" and \"listener.tls_key_file\"");
  }
  if (options.tls_request_client_cert && !options.tls_client_ca_file.empty()) {
    return InvalidArgument("config: set \"listener.tls_request_client_cert\" or "
                           "\"listener.tls_client_ca_file\", not both");
  }
  KW_RETURN_IF_ERROR(ReadSize(listener, "max_request_size", "listener.", options.max_body_bytes));
  KW_RETURN_IF_ERROR(ReadSize(listener, "max_header_size", "listener.", options.max_header_bytes));
  KW_RETURN_IF_ERROR(ReadSize(listener, "max_url_size", "listener.", options.max_url_bytes));
  KW_RETURN_IF_ERROR(ReadTimeout(listener, "request_timeout", "listener.", options.request_timeout));
  KW_RETURN_IF_ERROR(ReadTimeout(listener, "idle_timeout", "listener.", options.idle_timeout));
  KW_RETURN_IF_ERROR(ReadTimeout(listener, "tls_handshake_timeout", "listener.",
                                 options.handshake_timeout));
  KW_RETURN_IF_ERROR(ReadSize(listener, "max_connections", "listener.", options.max_connections));
  KW_RETURN_IF_ERROR(ReadSize(listener, "max_connections_per_address", "listener.",
                              options.max_connections_per_address));
  KW_RETURN_IF_ERROR(ReadSize(listener, "io_threads", "listener.", options.io_threads));
  KW_RETURN_IF_ERROR(ReadSize(listener, "worker_threads", "listener.", options.worker_threads));
  return OkStatus();
}

Status ReadHsm(const json& hsm, vault::CoreConfig& core) {
  KW_RETURN_IF_ERROR(RejectUnknownKeys(
      hsm, "hsm.", {"module", "token_label", "pin", "pin_file", "pin_env", "max_sessions"}));
  KW_RETURN_IF_ERROR(ReadString(hsm, "module", "hsm.", core.token.module_path));
  KW_RETURN_IF_ERROR(ReadString(hsm, "token_label", "hsm.", core.token.token_label));
  KW_RETURN_IF_ERROR(ReadString(hsm, "pin_file", "hsm.", core.pin_source.pin_file));
  KW_RETURN_IF_ERROR(ReadString(hsm, "pin_env", "hsm.", core.pin_source.pin_env));
  std::string pin;
  KW_RETURN_IF_ERROR(ReadString(hsm, "pin", "hsm.", pin));
  if (!pin.empty()) core.pin_source.pin = std::move(pin);
  KW_RETURN_IF_ERROR(ReadSize(hsm, "max_sessions", "hsm.", core.token.max_sessions));
  if (core.token.token_label.empty()) {
    return InvalidArgument("config: \"hsm.token_label\" is required");
  }
  return OkStatus();
}

Status ReadSeconds(const json& object, const std::string& key, std::string_view section,
                   bool allow_zero, std::chrono::seconds& out) {
  auto value = OptionalDuration(object, key);
  if (!value || (*value && !allow_zero && (*value)->count() == 0)) {
    return InvalidArgument("config: \"" + std::string(section) + key + "\" must be a " +
                           (allow_zero ? "" : "positive ") + "duration such as \"30s\"");
  }
  if (*value) out = **value;
  return OkStatus();
}

// Returns true when `name` can name a sink in sys/audit-hash/<name>: letters, digits, '.', '_'
// and '-', at most 64 characters.
bool IsValidSinkName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (const char c : name) {
    const bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!allowed) return false;
  }
  return true;
}

Status ReadSink(const json& object, std::size_t index, vault::audit::SinkConfig& sink) {
  const std::string section = "audit.sinks[" + std::to_string(index) + "].";
  if (!object.is_object()) {
    return InvalidArgument("config: \"audit.sinks[" + std::to_string(index) +
                           "]\" must be a JSON object");
  }
  KW_RETURN_IF_ERROR(RejectUnknownKeys(object, section,
                                       {"name", "type", "path", "required", "facility", "tag"}));
  KW_RETURN_IF_ERROR(ReadString(object, "name", section, sink.name));
  KW_RETURN_IF_ERROR(ReadString(object, "type", section, sink.type));
  KW_RETURN_IF_ERROR(ReadString(object, "path", section, sink.path));
  KW_RETURN_IF_ERROR(ReadString(object, "facility", section, sink.facility));
  KW_RETURN_IF_ERROR(ReadString(object, "tag", section, sink.tag));
  auto required = OptionalBool(object, "required");
  if (!required) return InvalidArgument("config: \"" + section + "required\" must be a boolean");
  sink.required = required->value_or(true);

  if (!IsValidSinkName(sink.name) || sink.name == "database") {
    return InvalidArgument("config: \"" + section + "name\" must be 1 to 64 letters, digits, "
                           "'.', '_' or '-', and not \"database\", which names the database log");
  }
  if (sink.type == "file") {
    if (!sink.path.starts_with('/')) {
      return InvalidArgument("config: \"" + section + "path\" must be an absolute file path");
    }
    if (object.contains("facility") || object.contains("tag")) {
      return InvalidArgument("config: \"" + section + "facility\" and \"" + section +
                             "tag\" apply to syslog sinks only");
    }
  } else if (sink.type == "syslog") {
    if (sink.path.empty()) sink.path = "/dev/log";
    if (!sink.path.starts_with('/')) {
      return InvalidArgument("config: \"" + section + "path\" must be an absolute socket path");
    }
    if (!vault::audit::SyslogFacilityCode(sink.facility)) {
      return InvalidArgument("config: \"" + section + "facility\" must be a syslog facility "
                             "such as auth, authpriv, daemon, user or local0 to local7");
    }
    if (!vault::audit::IsValidSyslogTag(sink.tag)) {
      return InvalidArgument("config: \"" + section + "tag\" must be 1 to 48 printable ASCII "
                             "characters without spaces");
    }
  } else {
    return InvalidArgument("config: \"" + section + "type\" must be \"file\" or \"syslog\"");
  }
  return OkStatus();
}

Status ReadSinks(const json& sinks, std::vector<vault::audit::SinkConfig>& out) {
  if (!sinks.is_array()) return InvalidArgument("config: \"audit.sinks\" must be a JSON array");
  std::set<std::string> names;
  for (std::size_t i = 0; i < sinks.size(); ++i) {
    vault::audit::SinkConfig sink;
    KW_RETURN_IF_ERROR(ReadSink(sinks[i], i, sink));
    if (!names.insert(sink.name).second) {
      return InvalidArgument("config: \"audit.sinks[" + std::to_string(i) +
                             "].name\": the name \"" + sink.name +
                             "\" is used by an earlier sink");
    }
    out.push_back(std::move(sink));
  }
  return OkStatus();
}

Status ReadAudit(const json& audit, vault::audit::AuditSettings& settings) {
  KW_RETURN_IF_ERROR(RejectUnknownKeys(audit, "audit.",
                                       {"sinks", "checkpoint_interval", "origin",
                                        "checkpoint_key_type", "retention", "archive_dir"}));
  if (audit.contains("sinks")) KW_RETURN_IF_ERROR(ReadSinks(audit["sinks"], settings.sinks));

  KW_RETURN_IF_ERROR(ReadSeconds(audit, "checkpoint_interval", "audit.", /*allow_zero=*/false,
                                 settings.checkpoint_interval));

  KW_RETURN_IF_ERROR(ReadString(audit, "origin", "audit.", settings.origin));
  for (const unsigned char byte : settings.origin) {
    // The origin is also the signed-note key name, which must not contain spaces or '+'.
    if (byte <= ' ' || byte == '+' || byte == 0x7F) {
      return InvalidArgument("config: \"audit.origin\" must not contain whitespace, control "
                             "characters or '+'");
    }
  }

  KW_RETURN_IF_ERROR(
      ReadString(audit, "checkpoint_key_type", "audit.", settings.checkpoint_key_type));
  if (settings.checkpoint_key_type != "ed25519" && settings.checkpoint_key_type != "ecdsa-p256") {
    return InvalidArgument(
        "config: \"audit.checkpoint_key_type\" must be \"ed25519\" or \"ecdsa-p256\"");
  }

  KW_RETURN_IF_ERROR(
      ReadSeconds(audit, "retention", "audit.", /*allow_zero=*/true, settings.retention));
  KW_RETURN_IF_ERROR(ReadString(audit, "archive_dir", "audit.", settings.archive_dir));
  if (!settings.archive_dir.empty() && !settings.archive_dir.starts_with('/')) {
    return InvalidArgument("config: \"audit.archive_dir\" must be an absolute directory path");
  }
  if (settings.retention.count() > 0 && settings.archive_dir.empty()) {
    return InvalidArgument("config: \"audit.retention\" needs \"audit.archive_dir\", where "
                           "pruned records are archived");
  }
  return OkStatus();
}

// Reads {"rate": requests per second, "burst": requests}. A rate of 0 turns the limit off.
Status ReadBucket(const json& object, const std::string& key, BucketLimit& limit) {
  if (!object.contains(key)) return OkStatus();
  const std::string section = "rate_limit." + key + ".";
  const json& bucket = object[key];
  if (!bucket.is_object()) {
    return InvalidArgument("config: \"rate_limit." + key + "\" must be a JSON object");
  }
  KW_RETURN_IF_ERROR(RejectUnknownKeys(bucket, section, {"rate", "burst"}));
  if (bucket.contains("rate")) {
    const json& rate = bucket["rate"];
    if (!rate.is_number() || !std::isfinite(rate.get<double>()) || rate.get<double>() < 0 ||
        rate.get<double>() > 1e9) {
      return InvalidArgument("config: \"" + section + "rate\" must be a number of requests per "
                             "second from 0 (off) to 1e9");
    }
    limit.rate = rate.get<double>();
  }
  std::int64_t burst = 0;
  KW_RETURN_IF_ERROR(ReadSize(bucket, "burst", section, burst));
  if (burst > 1'000'000'000) {
    return InvalidArgument("config: \"" + section + "burst\" must be at most 1000000000");
  }
  if (burst > 0) limit.burst = static_cast<std::uint32_t>(burst);
  return OkStatus();
}

Status ReadLockout(const json& lockout, LockoutConfig& config) {
  KW_RETURN_IF_ERROR(RejectUnknownKeys(lockout, "rate_limit.approle_lockout.",
                                       {"lockout_threshold", "lockout_duration",
                                        "lockout_counter_reset", "disable_lockout"}));
  KW_RETURN_IF_ERROR(ReadSize(lockout, "lockout_threshold", "rate_limit.approle_lockout.",
                              config.threshold));
  KW_RETURN_IF_ERROR(ReadSeconds(lockout, "lockout_duration", "rate_limit.approle_lockout.",
                                 /*allow_zero=*/false, config.duration));
  KW_RETURN_IF_ERROR(ReadSeconds(lockout, "lockout_counter_reset", "rate_limit.approle_lockout.",
                                 /*allow_zero=*/false, config.counter_reset));
  auto disable = OptionalBool(lockout, "disable_lockout");
  if (!disable) {
    return InvalidArgument(
        "config: \"rate_limit.approle_lockout.disable_lockout\" must be a boolean");
  }
  if (disable->value_or(false)) config.threshold = 0;
  return OkStatus();
}

Status ReadRateLimit(const json& section, RateLimitConfig& config) {
  KW_RETURN_IF_ERROR(RejectUnknownKeys(section, "rate_limit.",
                                       {"per_address", "per_accessor", "login_per_address",
                                        "approle_lockout", "max_tracked_keys"}));
  KW_RETURN_IF_ERROR(ReadBucket(section, "per_address", config.per_address));
  KW_RETURN_IF_ERROR(ReadBucket(section, "per_accessor", config.per_accessor));
  KW_RETURN_IF_ERROR(ReadBucket(section, "login_per_address", config.login_per_address));
  KW_RETURN_IF_ERROR(
      ReadSize(section, "max_tracked_keys", "rate_limit.", config.max_tracked_keys));
  if (!section.contains("approle_lockout")) return OkStatus();
  if (!section["approle_lockout"].is_object()) {
    return InvalidArgument("config: \"rate_limit.approle_lockout\" must be a JSON object");
  }
  KW_RETURN_IF_ERROR(ReadLockout(section["approle_lockout"], config.approle_lockout));
  return OkStatus();
}

}  // namespace

Status ParseListenAddress(std::string_view address, ServerOptions& options) {
  const std::size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return InvalidArgument("invalid listen address \"" + std::string(address) +
                           "\": expected HOST:PORT, such as 127.0.0.1:8200");
  }
  std::string_view host = address.substr(0, colon);
  if (host.starts_with('[') && host.ends_with(']')) host = host.substr(1, host.size() - 2);
  const auto port = ParseNonNegative(address.substr(colon + 1));
  if (!port || *port > 65535) {
    return InvalidArgument("invalid listen address \"" + std::string(address) +
                           "\": the port must be 0 to 65535");
  }
  options.host = std::string(host);
  options.port = static_cast<std::uint16_t>(*port);
  return OkStatus();
}

Result<ServerConfig> ParseServerConfig(std::string_view text) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& error) {
    return InvalidArgument("config: invalid JSON at byte " + std::to_string(error.byte));
  }
  if (!root.is_object()) return InvalidArgument("config: the top level must be a JSON object");
  KW_RETURN_IF_ERROR(
      RejectUnknownKeys(root, "", {"listener", "storage", "hsm", "audit", "log_level", "rate_limit",
                                   "disable_mlock"}));

  ServerConfig config;
  config.core.token.module_path = "/usr/lib/softhsm/libsofthsm2.so";
  KW_ASSIGN_OR_RETURN(const json* listener, Section(root, "listener"));
  if (listener) KW_RETURN_IF_ERROR(ReadListener(*listener, config.listener));

  KW_ASSIGN_OR_RETURN(const json* storage, Section(root, "storage"));
  if (storage) {
    KW_RETURN_IF_ERROR(RejectUnknownKeys(*storage, "storage.", {"path"}));
    KW_RETURN_IF_ERROR(ReadString(*storage, "path", "storage.", config.storage_path));
  }
  if (config.storage_path.empty()) return InvalidArgument("config: \"storage.path\" is required");

  KW_ASSIGN_OR_RETURN(const json* hsm, Section(root, "hsm"));
  if (!hsm) return InvalidArgument("config: the \"hsm\" section is required");
  KW_RETURN_IF_ERROR(ReadHsm(*hsm, config.core));

  KW_ASSIGN_OR_RETURN(const json* audit, Section(root, "audit"));
  if (audit) KW_RETURN_IF_ERROR(ReadAudit(*audit, config.core.audit));

  KW_ASSIGN_OR_RETURN(const json* rate_limit, Section(root, "rate_limit"));
  if (rate_limit) KW_RETURN_IF_ERROR(ReadRateLimit(*rate_limit, config.rate_limit));

  KW_RETURN_IF_ERROR(ReadString(root, "log_level", "", config.log_level));
  if (config.log_level != "debug" && config.log_level != "info" && config.log_level != "warn" &&
      config.log_level != "error") {
    return InvalidArgument("config: \"log_level\" must be debug, info, warn or error");
  }
  auto disable_mlock = OptionalBool(root, "disable_mlock");
  if (!disable_mlock) return InvalidArgument("config: \"disable_mlock\" must be a boolean");
  config.disable_mlock = disable_mlock->value_or(false);
  return config;
}

Result<ServerConfig> LoadServerConfig(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return InvalidArgument("cannot read config file " + path);
  std::stringstream contents;
  contents << file.rdbuf();
  std::string text = contents.str();
  auto config = ParseServerConfig(text);
  WipeString(text);  // it may hold a PIN
  return config;
}

}  // namespace kw::api
