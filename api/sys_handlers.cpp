#include "api/sys_handlers.hpp"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "api/json_fields.hpp"
#include "base/log.hpp"

namespace kw::api {
namespace {

constexpr std::string_view kVersion = "0.1.0";

std::optional<std::string_view> QueryValue(const ParsedTarget& target, std::string_view name) {
  std::optional<std::string_view> found;
  for (const auto& [key, value] : target.query) {
    if (key == name) found = value;
  }
  return found;
}

// Returns the status code from query parameter `name` (Vault's sealedcode, uninitcode, ...),
// or `fallback` when absent or not a valid HTTP status.
// Reads a status code query parameter. As in Vault, a value that is not a number is rejected
// with 400 rather than ignored. A number outside 100-599 is rejected too, because no HTTP
// client could read such a status.
Result<int> StatusParameter(const ParsedTarget& target, std::string_view name, int fallback) {
  const auto text = QueryValue(target, name);
  if (!text) return fallback;
  const auto code = ParseNonNegative(*text);
  if (!code || *code < 100 || *code > 599) {
    return InvalidArgument("invalid query parameter \"" + std::string(name) +
                           "\": expected an HTTP status code from 100 to 599");
  }
  return static_cast<int>(*code);
}

nlohmann::json SealStatus(vault::Core& core, bool initialized) {
  nlohmann::json status = {{"type", "pkcs11"},
          {"initialized", initialized},
          {"sealed", core.sealed()},
          {"t", 1},
          {"n", 1},
          {"progress", 0},
          {"nonce", ""},
          {"version", kVersion},
          {"build_date", ""},
          {"migration", false},
          {"recovery_seal", false},
          {"storage_type", "sqlite"}};
  // Vault adds the cluster fields once unsealed.
  if (!core.sealed()) {
    status["cluster_name"] = "keyward";
    status["cluster_id"] = "";
  }
  return status;
}

// Returns the state of every audit sink, as sys/health lists it, and sets `required_failed`
// when a required one is failed. Checking first gives a failed sink its recovery attempt, so
// that health polling alone brings a sink back. sys/health needs no token, so the list leaves
// out paths and error text: the server log has both.
nlohmann::json AuditSinkHealth(vault::Core& core, bool& required_failed) {
  required_failed = false;
  nlohmann::json list = nlohmann::json::array();
  vault::audit::SinkSet* sinks = core.audit_sinks();
  if (!sinks) return list;
  (void)sinks->CheckRequired();
  for (const vault::audit::SinkStatus& sink : sinks->Health()) {
    list.push_back({{"name", sink.name},
                    {"type", sink.type},
                    {"required", sink.required},
                    {"healthy", sink.healthy}});
    if (sink.required && !sink.healthy) required_failed = true;
  }
  return list;
}

Reply Health(vault::Core& core, const HttpRequest& http, const ParsedTarget& target,
             bool initialized) {
  const bool sealed = core.sealed();
  bool audit_failed = false;
  nlohmann::json audit_sinks = AuditSinkHealth(core, audit_failed);
  // Every code parameter is checked, not only the one that applies now, so that a wrong
  // value shows at once rather than when the server is next sealed.
  const Result<int> active = StatusParameter(target, "activecode", 200);
  const Result<int> uninit = StatusParameter(target, "uninitcode", 501);
  const Result<int> sealed_code = StatusParameter(target, "sealedcode", 503);
  for (const Result<int>* code : {&active, &uninit, &sealed_code}) {
    if (!*code) return ReplyForError(code->error());
  }
  int status = *active;
  if (!initialized) {
    status = *uninit;
  } else if (sealed) {
    status = *sealed_code;
  } else if (audit_failed) {
    status = 503;  // requests are refused until the sink recovers
  }
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  nlohmann::json body = {
      {"initialized", initialized},
      {"sealed", sealed},
      {"standby", false},
      {"performance_standby", false},
      {"replication_performance_mode", "disabled"},
      {"replication_dr_mode", "disabled"},
      {"server_time_utc", std::chrono::duration_cast<std::chrono::seconds>(now).count()},
      {"version", kVersion},
      {"cluster_name", "keyward"},
      {"cluster_id", ""},
      {"audit_sinks", std::move(audit_sinks)},
      {"audit_failed", audit_failed}};
  if (http.method == "HEAD") return Reply{status, nullptr};
  return Reply{status, std::move(body)};
}

Reply Init(vault::Core& core, const HttpRequest& http) {
  auto body = ParseBody(http.body);
  if (!body) return ReplyForError(body.error());
  std::optional<SecretBuffer> pin;
  if (body->is_object() && body->contains("pin")) {
    auto text = OptionalString(*body, "pin");
    if (!text) return ReplyForError(text.error());
    if (*text) pin = SecretBuffer::CopyFrom(**text);
    if (*text) WipeString(**text);
  }
  auto result = core.Initialize(std::nullopt, pin);
  if (!result) {
    if (result.error().code() == Code::kPermissionDenied) {
      return ErrorReply(400, {"initialize failed: the HSM rejected the PIN"});
    }
    return ReplyForError(result.error());
  }
  return Reply{200, {{"keys", nlohmann::json::array()},
                     {"keys_base64", nlohmann::json::array()},
                     {"root_token", std::string(result->root_token.RevealText())}}};
}

// At most kMaxUnsealFailures PINs rejected by the HSM per minute, for the whole server: the
// endpoint needs no token, and a PIN must not be guessable at request rate. Attempts run one
// at a time (see Attempt), so concurrent guesses cannot all pass the check before the first
// failure is counted.
constexpr int kMaxUnsealFailures = 5;
constexpr std::chrono::seconds kUnsealFailureWindow{60};

class UnsealThrottle {
 public:
  // Returns the seconds to wait before the next attempt, or 0 when one may go ahead.
  std::int64_t RetryAfterSeconds() {
    std::lock_guard lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    if (failures_ < kMaxUnsealFailures || now - window_start_ >= kUnsealFailureWindow) return 0;
    return std::chrono::ceil<std::chrono::seconds>(window_start_ + kUnsealFailureWindow - now)
        .count();
  }

  // Returns a lock that the caller holds while its PIN is tried, or an empty one when another
  // attempt is running. That caller gets 429 instead of waiting on a worker.
  std::unique_lock<std::mutex> Attempt() {
    return std::unique_lock(attempt_mutex_, std::try_to_lock);
  }

  void RecordFailure() {
    std::lock_guard lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    if (now - window_start_ >= kUnsealFailureWindow) {
      window_start_ = now;
      failures_ = 0;
    }
    ++failures_;
  }

 private:
  std::mutex attempt_mutex_;
  std::mutex mutex_;
  std::chrono::steady_clock::time_point window_start_;  // guarded by mutex_
  int failures_ = 0;                                     // guarded by mutex_
};

UnsealThrottle& Throttle() {
  static UnsealThrottle throttle;
  return throttle;
}

Reply Unseal(vault::Core& core, const HttpRequest& http, bool initialized) {
  const std::unique_lock<std::mutex> attempt = Throttle().Attempt();
  if (!attempt.owns_lock()) {
    Reply busy = ErrorReply(429, {"another unseal attempt is in progress: retry in 1 second"});
    busy.headers.emplace_back("Retry-After", "1");
    return busy;
  }
  if (const std::int64_t wait = Throttle().RetryAfterSeconds(); wait > 0) {
    Reply throttled = ErrorReply(429, {"too many wrong HSM PINs: retry in " +
                                       std::to_string(wait) + " seconds"});
    throttled.headers.emplace_back("Retry-After", std::to_string(wait));
    return throttled;
  }
  auto body = ParseBody(http.body);
  if (!body) return ReplyForError(body.error());
  std::optional<SecretBuffer> pin;
  if (body->is_object()) {
    auto key = OptionalString(*body, "key");
    if (!key) return ReplyForError(key.error());
    if (*key) {
      pin = SecretBuffer::CopyFrom(**key);
      WipeString(**key);
    }
  }
  auto unsealed = core.Unseal(pin);
  if (!unsealed) {
    log::Warn("unseal failed", {{"client_address", http.remote_address},
                                {log::kError, unsealed.error().message()}});
    // A wrong PIN is the caller's mistake, as a wrong unseal key is in Vault: 400.
    if (unsealed.error().code() == Code::kPermissionDenied) {
      Throttle().RecordFailure();
      return ErrorReply(400, {"unseal failed: the HSM rejected the PIN"});
    }
    return ReplyForError(unsealed.error());
  }
  return Reply{200, SealStatus(core, initialized)};
}

// The secrets engines, as GET sys/mounts lists them. Their paths are fixed.
nlohmann::json MountTable() {
  auto mount = [](std::string_view type, std::string_view description, nlohmann::json options,
                  bool seal_wrap) {
    return nlohmann::json{{"type", type},
                          {"description", description},
                          {"accessor", std::string(type) + "_keyward"},
                          {"options", std::move(options)},
                          {"local", false},
                          {"seal_wrap", seal_wrap},
                          {"config", {{"default_lease_ttl", 0}, {"max_lease_ttl", 0}}}};
  };
  return {{"secret/", mount("kv", "key/value secret storage", {{"version", "2"}}, false)},
          {"database/", mount("database", "dynamic PostgreSQL credentials", nullptr, false)},
          {"pki/", mount("pki", "SPIFFE X.509-SVIDs and JWT-SVIDs from an HSM-resident CA",
                         nullptr, false)},
          {"sys/", mount("system", "system endpoints used for control, policy and debugging",
                         nullptr, true)}};
}

// The auth methods, as GET sys/auth lists them. Their paths are fixed.
nlohmann::json AuthTable() {
  auto method = [](std::string_view type, std::string_view description) {
    return nlohmann::json{{"type", type},
                          {"description", description},
                          {"accessor", "auth_" + std::string(type) + "_keyward"},
                          {"options", nullptr},
                          {"local", false},
                          {"seal_wrap", false},
                          {"config", {{"default_lease_ttl", 0}, {"max_lease_ttl", 0},
                                      {"token_type", "default-service"}}}};
  };
  return {{"token/", method("token", "token based credentials")},
          {"approle/", method("approle", "role ID and secret ID login for machines")},
          {"cert/", method("cert", "TLS client certificate (SPIFFE ID) login")}};
}

Result<Reply> AuditVerify(RequestContext& c) {
  KW_ASSIGN_OR_RETURN(auto report, c.vault->audit->Verify());
  nlohmann::json data = {{"ok", report.ok},
                         {"records_checked", report.records_checked},
                         {"head_sequence", report.head_sequence},
                         {"first_broken_sequence", nullptr},
                         {"reason", report.reason},
                         {"tree_size", report.tree_size},
                         {"root", report.root},
                         {"checkpoints_verified", report.checkpoints_verified}};
  if (report.first_broken_sequence) data["first_broken_sequence"] = *report.first_broken_sequence;
  return Reply{200, Envelope(c, std::move(data))};
}

// Returns the audit devices that sys/audit-hash/<name> accepts: the database log, then the
// configured sinks. All of them share the HSM's audit HMAC key.
std::vector<std::string> AuditDeviceNames(vault::Core& core) {
  std::vector<std::string> names = {"database"};
  if (vault::audit::SinkSet* sinks = core.audit_sinks()) {
    for (std::string& name : sinks->Names()) names.push_back(std::move(name));
  }
  return names;
}

Result<Reply> AuditHash(RequestContext& c) {
  const std::string device = c.path.substr(std::string_view("sys/audit-hash/").size());
  const std::vector<std::string> devices = AuditDeviceNames(c.core);
  if (std::find(devices.begin(), devices.end(), device) == devices.end()) {
    std::string known;
    for (const std::string& name : devices) known += (known.empty() ? "" : ", ") + name;
    return InvalidArgument("unknown audit device \"" + device + "\": use one of " + known);
  }
  KW_ASSIGN_OR_RETURN(auto input, OptionalString(c.body, "input"));
  if (!input) return InvalidArgument("missing field \"input\": the value to hash");
  auto hash = c.vault->audit->Hash(*input);
  WipeString(*input);
  if (!hash) return tl::unexpected(hash.error());
  nlohmann::json reply = Envelope(c, {{"hash", *hash}});
  reply["hash"] = *hash;
  return Reply{200, std::move(reply)};
}

}  // namespace

bool IsUnauthenticatedPath(std::string_view path) {
  return path == "sys/health" || path == "sys/seal-status" || path == "sys/init" ||
         path == "sys/unseal";
}

Reply HandleUnauthenticatedSys(vault::Core& core, const HttpRequest& http,
                               const ParsedTarget& target) {
  auto initialized = core.IsInitialized();
  if (!initialized) return ReplyForError(initialized.error());
  const std::string& m = http.method;
  const bool write = m == "PUT" || m == "POST";
  if (target.path == "sys/health" && (m == "GET" || m == "HEAD")) {
    return Health(core, http, target, *initialized);
  }
  if (target.path == "sys/seal-status" && m == "GET") return Reply{200, SealStatus(core, *initialized)};
  if (target.path == "sys/init" && m == "GET") return Reply{200, {{"initialized", *initialized}}};
  if (target.path == "sys/init" && write) return Init(core, http);
  if (target.path == "sys/unseal" && write) return Unseal(core, http, *initialized);
  return ErrorReply(405, {"unsupported operation: " + m + " is not allowed on " + target.path});
}

Result<Reply> HandleSys(RequestContext& c) {
  const std::string& path = c.path;
  const bool write = c.method == "PUT" || c.method == "POST";

  if (path == "sys/seal") {
    if (!write) return MethodNotAllowed(c);
    c.after_commit = [&core = c.core] { core.Seal(); };
    return Reply{204, nullptr};
  }
  if (path == "sys/rotate") {
    if (!write) return MethodNotAllowed(c);
    KW_ASSIGN_OR_RETURN(auto version, c.vault->barrier->Rotate());
    (void)version;
    return Reply{204, nullptr};
  }
  if (path == "sys/key-status") {
    if (c.operation != "read") return MethodNotAllowed(c);
    return Reply{200, Envelope(c, {{"term", c.vault->barrier->current_version()}})};
  }
  if (path == "sys/audit/verify") {
    if (c.operation != "read") return MethodNotAllowed(c);
    return AuditVerify(c);
  }
  if (path.starts_with("sys/audit-hash/")) {
    if (!write) return MethodNotAllowed(c);
    return AuditHash(c);
  }
  if (path == "sys/mounts") {
    if (c.operation != "read") return MethodNotAllowed(c);
    const nlohmann::json mounts = MountTable();
    nlohmann::json reply = Envelope(c, mounts);
    for (const auto& [name, mount] : mounts.items()) reply[name] = mount;
    return Reply{200, std::move(reply)};
  }
  if (path == "sys/auth") {
    if (c.operation != "read") return MethodNotAllowed(c);
    const nlohmann::json methods = AuthTable();
    nlohmann::json reply = Envelope(c, methods);
    for (const auto& [name, method] : methods.items()) reply[name] = method;
    return Reply{200, std::move(reply)};
  }
  if (path.starts_with("sys/internal/ui/mounts/")) {
    const std::string_view mount = std::string_view(path).substr(23);
    if (mount == "secret" || mount.starts_with("secret/")) {
      nlohmann::json data = MountTable()["secret/"];
      data["path"] = "secret/";
      return Reply{200, Envelope(c, std::move(data))};
    }
    return ErrorReply(400, {"no mount at path \"" + std::string(mount) + "\""});
  }
  return ErrorReply(404, {"no handler for route \"" + path + "\""});
}

}  // namespace kw::api
