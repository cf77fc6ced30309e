// keyward C++ SDK: a single header for services that talk to a keyward (or HashiCorp Vault)
// server over its HTTP API.
//
// Depends on cpp-httplib built with OpenSSL (define CPPHTTPLIB_OPENSSL_SUPPORT before any
// include of httplib.h), nlohmann/json and OpenSSL (libssl, libcrypto). No exceptions escape
// the SDK unless KEYWARD_SDK_THROW is defined, in which case Result::value() on an error
// throws keyward::Error. docs/SDK.md describes every call, the retry policy, thread safety and
// the LifetimeWatcher.
#pragma once

#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#error "keyward/client.hpp needs cpp-httplib with TLS: compile with -DCPPHTTPLIB_OPENSSL_SUPPORT"
#endif

#include <httplib.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

namespace keyward {

using Json = nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Errors and results

// The category of a failed call. detail::CodeForStatus maps each HTTP status to a code, and
// a KV check-and-set mismatch (400) becomes kAborted.
enum class ErrorCode {
  kInvalidArgument,    // the request was rejected as malformed, or the SDK rejected an argument
  kUnauthenticated,
  kPermissionDenied,   // missing, wrong or expired token, or a policy refusal
  kNotFound,
  kAlreadyExists,
  kAborted,            // check-and-set mismatch: read the secret again and redo the write
  kFailedPrecondition,
  kResourceExhausted,  // a quota, or 429
  kUnimplemented,
  kUnavailable,        // no connection, TLS handshake failed, sealed (503), 502 or 504
  kDeadlineExceeded,   // the read timeout or the request timeout passed without a reply
  kInternal,           // other 5xx, or a 2xx reply that is not the expected Vault JSON
};

inline const char* ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kUnauthenticated: return "unauthenticated";
    case ErrorCode::kPermissionDenied: return "permission_denied";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kAlreadyExists: return "already_exists";
    case ErrorCode::kAborted: return "aborted";
    case ErrorCode::kFailedPrecondition: return "failed_precondition";
    case ErrorCode::kResourceExhausted: return "resource_exhausted";
    case ErrorCode::kUnimplemented: return "unimplemented";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kDeadlineExceeded: return "deadline_exceeded";
    case ErrorCode::kInternal: return "internal";
  }
  return "unknown";
}

// A failed call: its code, the HTTP status (0 when no reply arrived), the server's `errors`
// messages and a summary that names the request. The summary never contains a request body
// or a token. Derives from std::exception so that KEYWARD_SDK_THROW can throw it.
class Error : public std::exception {
 public:
  Error(ErrorCode code, std::string message, int status = 0,
        std::vector<std::string> server_messages = {})
      : code_(code),
        status_(status),
        message_(std::move(message)),
        server_messages_(std::move(server_messages)) {}

  ErrorCode code() const { return code_; }
  int status() const { return status_; }
  const std::string& message() const { return message_; }
  // The `errors` array of the reply body, in order; empty when there was none.
  const std::vector<std::string>& server_messages() const { return server_messages_; }
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  ErrorCode code_;
  int status_;
  std::string message_;
  std::vector<std::string> server_messages_;
};

namespace detail {
[[noreturn]] inline void ValueOfError(const Error& error) {
#ifdef KEYWARD_SDK_THROW
  throw error;
#else
  std::fprintf(stderr, "keyward: value() called on an error result: %s\n",
               error.message().c_str());
  std::abort();
#endif
}
}  // namespace detail

// A value or an Error. Check ok() before value(): without KEYWARD_SDK_THROW, value() on an
// error prints the error and aborts; with it, value() throws the Error.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit
  Result(Error error) : state_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    if (!ok()) detail::ValueOfError(std::get<1>(state_));
    return std::get<0>(state_);
  }
  const T& value() const& {
    if (!ok()) detail::ValueOfError(std::get<1>(state_));
    return std::get<0>(state_);
  }
  T&& value() && {
    if (!ok()) detail::ValueOfError(std::get<1>(state_));
    return std::move(std::get<0>(state_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  // The error; calling it on a success is a bug and aborts.
  const Error& error() const {
    if (ok()) {
      std::fprintf(stderr, "keyward: error() called on a successful result\n");
      std::abort();
    }
    return std::get<1>(state_);
  }

 private:
  std::variant<T, Error> state_;
};

// The result of a call that returns nothing on success.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)) {}  // NOLINT: implicit

  bool ok() const { return !error_.has_value(); }
  explicit operator bool() const { return ok(); }
  // Throws (KEYWARD_SDK_THROW) or aborts on an error; does nothing on success.
  void value() const {
    if (error_) detail::ValueOfError(*error_);
  }
  const Error& error() const {
    if (!error_) {
      std::fprintf(stderr, "keyward: error() called on a successful result\n");
      std::abort();
    }
    return *error_;
  }

 private:
  std::optional<Error> error_;
};

using Status = Result<void>;

// ---------------------------------------------------------------------------------------------
// Secrets in memory

namespace detail {

// Overwrites the characters of `text` (its whole capacity) with OPENSSL_cleanse, then clears it.
inline void Wipe(std::string& text) {
  if (text.capacity() > 0) OPENSSL_cleanse(text.data(), text.capacity());
  text.clear();
}

// Wipes every string value inside `value`, at any depth (object keys stay). It walks the tree
// with an explicit stack, so a hostile nesting depth cannot overflow the call stack.
inline void WipeJson(Json& value) {
  std::vector<Json*> pending{&value};
  while (!pending.empty()) {
    Json* current = pending.back();
    pending.pop_back();
    if (current->is_string()) {
      Wipe(current->get_ref<std::string&>());
    } else if (current->is_structured()) {
      for (auto& child : *current) pending.push_back(&child);
    }
  }
}

// The deepest nesting of arrays and objects that the SDK parses in a reply. nlohmann/json
// copies and serialises values recursively, so a deeper reply could overflow the stack of the
// code that copies it. NOTE: a KV secret whose own data nests deeper cannot be read.
inline constexpr int kMaxReplyDepth = 512;

// Returns true when the JSON text `text` nests arrays and objects deeper than `limit`. It
// scans the raw text (brackets inside strings do not count) and does not validate it.
inline bool NestedDeeperThan(std::string_view text, int limit) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

}  // namespace detail

// A string that contains a secret (a token, a password, a private key) and overwrites its
// memory when destroyed or reassigned. Copies wipe themselves too. It limits copies in freed
// memory but cannot rule them out, because std::string may reallocate while it is built.
class SecretString {
 public:
  SecretString() = default;
  explicit SecretString(std::string value) : value_(std::move(value)) {}
  SecretString(const SecretString& other) : value_(other.value_) {}
  SecretString(SecretString&& other) noexcept : value_(std::move(other.value_)) {
    detail::Wipe(other.value_);
  }
  SecretString& operator=(const SecretString& other) {
    if (this != &other) {
      detail::Wipe(value_);
      value_ = other.value_;
    }
    return *this;
  }
  SecretString& operator=(SecretString&& other) noexcept {
    if (this != &other) {
      detail::Wipe(value_);
      value_ = std::move(other.value_);
      detail::Wipe(other.value_);
    }
    return *this;
  }
  ~SecretString() { detail::Wipe(value_); }

  // Returns the secret. Each call site is a place where the secret leaves the SDK's care.
  const std::string& Reveal() const { return value_; }
  bool empty() const { return value_.empty(); }

 private:
  std::string value_;
};

// Wipes its JSON strings when destroyed: the holder of secret data such as a KV secret.
class SecretJson {
 public:
  SecretJson() = default;
  explicit SecretJson(Json value) : value_(std::move(value)) {}
  SecretJson(const SecretJson& other) : value_(other.value_) {}
  SecretJson(SecretJson&& other) noexcept : value_(std::move(other.value_)) {}
  SecretJson& operator=(const SecretJson& other) {
    if (this != &other) {
      detail::WipeJson(value_);
      value_ = other.value_;
    }
    return *this;
  }
  SecretJson& operator=(SecretJson&& other) noexcept {
    if (this != &other) {
      detail::WipeJson(value_);
      value_ = std::move(other.value_);
    }
    return *this;
  }
  ~SecretJson() { detail::WipeJson(value_); }

  const Json& Reveal() const { return value_; }

 private:
  Json value_;
};

// ---------------------------------------------------------------------------------------------
// Configuration

// Connection settings of a Client. Zero max_retries disables retries.
struct ClientConfig {
  std::string address = "http://127.0.0.1:8200";  // http(s)://HOST[:PORT], no path
  SecretString token;            // sent as X-Vault-Token; empty: no token
  std::string ca_file;           // PEM bundle that verifies the server; empty: the system store
  std::string client_cert_file;  // PEM client certificate for mutual TLS (with client_key_file)
  std::string client_key_file;
  bool tls_skip_verify = false;  // accept any server certificate (testing only)
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds read_timeout{60000};  // per receive, not for the whole reply
  // Limit on a whole call: every attempt, the backoff between attempts and the reading of
  // the reply. Zero: no limit beyond the timeouts above.
  std::chrono::milliseconds request_timeout{60000};
  int max_retries = 2;  // extra attempts of an idempotent call; see docs/SDK.md
  std::chrono::milliseconds backoff_base{250};    // delay before the first retry, doubled after
  std::chrono::milliseconds backoff_max{5000};    // cap on any one delay
  std::string kv_mount = "secret";                // mount of the KV version 2 engine

  // Builds a configuration from the environment, like the keyward CLI: each setting from its
  // KEYWARD_ variable, else the VAULT_ one, else the default. KEYWARD_ADDR, KEYWARD_TOKEN
  // (then $HOME/.keyward-token, which `keyward login` writes), KEYWARD_CACERT,
  // KEYWARD_CLIENT_CERT, KEYWARD_CLIENT_KEY, KEYWARD_SKIP_VERIFY (a boolean),
  // KEYWARD_CLIENT_TIMEOUT (request_timeout, as Vault reads VAULT_CLIENT_TIMEOUT: whole
  // seconds such as "60", or a Go duration such as "1m30s" or "500ms") and KEYWARD_MAX_RETRIES.
  // invalid_argument naming the variable for a value that does not parse.
  static Result<ClientConfig> FromEnvironment();
};

namespace detail {

inline std::optional<std::string> EnvPair(const char* keyward_name, const char* vault_name) {
  for (const char* name : {keyward_name, vault_name}) {
    const char* value = std::getenv(name);
    if (value != nullptr && *value != '\0') return std::string(value);
  }
  return std::nullopt;
}

inline std::optional<bool> ParseBool(std::string_view text) {
  if (text == "1" || text == "t" || text == "T" || text == "true" || text == "TRUE" ||
      text == "True") {
    return true;
  }
  if (text == "0" || text == "f" || text == "F" || text == "false" || text == "FALSE" ||
      text == "False") {
    return false;
  }
  return std::nullopt;
}

// Parses a non-negative integer of at most 9 digits; nullopt otherwise.
inline std::optional<long> ParseCount(std::string_view text) {
  if (text.empty() || text.size() > 9) return std::nullopt;
  long value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  return value;
}

// Parses a timeout the way Vault reads VAULT_CLIENT_TIMEOUT: a whole number of seconds, or a
// Go duration (a sequence of decimal numbers, each with a unit h, m, s, ms, us or ns). Returns
// nullopt for anything else, and for values of 0 or above 100 days.
inline std::optional<std::chrono::milliseconds> ParseTimeout(std::string_view text) {
  if (auto seconds = ParseCount(text)) {
    if (*seconds <= 0 || *seconds > 8640000) return std::nullopt;
    return std::chrono::milliseconds(*seconds * 1000);
  }
  static constexpr std::pair<std::string_view, double> kUnits[] = {
      {"ms", 1.0}, {"us", 1e-3}, {"ns", 1e-6}, {"h", 3600e3}, {"m", 60e3}, {"s", 1e3}};
  double total_ms = 0;
  std::size_t pos = 0;
  if (text.empty()) return std::nullopt;
  while (pos < text.size()) {
    const std::size_t number_start = pos;
    while (pos < text.size() && ((text[pos] >= '0' && text[pos] <= '9') || text[pos] == '.')) {
      ++pos;
    }
    const std::string number(text.substr(number_start, pos - number_start));
    if (number.empty() || number == "." || number.size() > 15 ||
        std::count(number.begin(), number.end(), '.') > 1) {
      return std::nullopt;
    }
    double scale = 0;
    for (const auto& [unit, unit_ms] : kUnits) {
      if (text.substr(pos, unit.size()) == unit) {
        scale = unit_ms;
        pos += unit.size();
        break;
      }
    }
    if (scale == 0) return std::nullopt;
    double value = 0;  // from_chars, unlike strtod, ignores the C locale's decimal point
    std::from_chars(number.data(), number.data() + number.size(), value);
    total_ms += value * scale;
  }
  if (total_ms < 1 || total_ms > 8640000e3) return std::nullopt;
  return std::chrono::milliseconds(static_cast<std::int64_t>(total_ms));
}

inline std::string Trimmed(std::string text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return {};
  const auto last = text.find_last_not_of(" \t\r\n");
  return text.substr(first, last - first + 1);
}

}  // namespace detail

inline Result<ClientConfig> ClientConfig::FromEnvironment() {
  ClientConfig config;
  if (auto address = detail::EnvPair("KEYWARD_ADDR", "VAULT_ADDR")) config.address = *address;
  if (auto token = detail::EnvPair("KEYWARD_TOKEN", "VAULT_TOKEN")) {
    config.token = SecretString(std::move(*token));
  } else if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    std::ifstream file(std::string(home) + "/.keyward-token", std::ios::binary);
    if (file) {
      std::string contents((std::istreambuf_iterator<char>(file)),
                           std::istreambuf_iterator<char>());
      config.token = SecretString(detail::Trimmed(contents));
      detail::Wipe(contents);
    }
  }
  if (auto ca = detail::EnvPair("KEYWARD_CACERT", "VAULT_CACERT")) config.ca_file = *ca;
  if (auto cert = detail::EnvPair("KEYWARD_CLIENT_CERT", "VAULT_CLIENT_CERT")) {
    config.client_cert_file = *cert;
  }
  if (auto key = detail::EnvPair("KEYWARD_CLIENT_KEY", "VAULT_CLIENT_KEY")) {
    config.client_key_file = *key;
  }
  if (auto skip = detail::EnvPair("KEYWARD_SKIP_VERIFY", "VAULT_SKIP_VERIFY")) {
    auto parsed = detail::ParseBool(*skip);
    if (!parsed) {
      return Error(ErrorCode::kInvalidArgument,
                   "invalid KEYWARD_SKIP_VERIFY (or VAULT_SKIP_VERIFY): expected true or false");
    }
    config.tls_skip_verify = *parsed;
  }
  if (auto timeout = detail::EnvPair("KEYWARD_CLIENT_TIMEOUT", "VAULT_CLIENT_TIMEOUT")) {
    auto parsed = detail::ParseTimeout(*timeout);
    if (!parsed) {
      return Error(ErrorCode::kInvalidArgument,
                   "invalid KEYWARD_CLIENT_TIMEOUT (or VAULT_CLIENT_TIMEOUT): expected whole "
                   "seconds (60) or a duration such as 1m30s or 500ms, above 0");
    }
    config.request_timeout = *parsed;
  }
  if (auto retries = detail::EnvPair("KEYWARD_MAX_RETRIES", "VAULT_MAX_RETRIES")) {
    auto parsed = detail::ParseCount(*retries);
    if (!parsed || *parsed > 100) {
      return Error(ErrorCode::kInvalidArgument,
                   "invalid KEYWARD_MAX_RETRIES (or VAULT_MAX_RETRIES): expected 0 to 100");
    }
    config.max_retries = static_cast<int>(*parsed);
  }
  return config;
}

// ---------------------------------------------------------------------------------------------
// Replies

// A raw reply of Client::Request: the status and the body, parsed when it is JSON.
struct Response {
  int status = 0;
  Json body;         // null for an empty or non-JSON body
  std::string text;  // the body as received (wiped when the Response is destroyed)
  std::string content_type;

  Response() = default;
  Response(const Response&) = default;
  Response(Response&&) = default;
  Response& operator=(const Response&) = default;
  Response& operator=(Response&&) = default;
  ~Response() {
    detail::Wipe(text);
    detail::WipeJson(body);
  }
};

// The `auth` block of a login, a token creation or a token renewal.
struct Auth {
  SecretString client_token;  // empty in the reply of a renewal by accessor
  std::string accessor;
  std::vector<std::string> policies;
  std::map<std::string, std::string> metadata;
  std::chrono::seconds lease_duration{0};  // the token's TTL; 0 for a token that never expires
  bool renewable = false;
  bool orphan = false;
  std::string entity_id;
};

// Fields of auth/token/create; unset fields are left to the server.
struct TokenCreateOptions {
  std::vector<std::string> policies;  // empty: the parent's policies
  std::map<std::string, std::string> metadata;
  std::string display_name;
  std::optional<std::chrono::seconds> ttl;
  std::optional<std::chrono::seconds> explicit_max_ttl;
  std::optional<std::chrono::seconds> period;
  std::optional<bool> renewable;
  std::optional<int> num_uses;
  bool no_default_policy = false;
  bool orphan = false;      // create-orphan (needs sudo on that path)
  std::string role_name;    // create/:role
  std::vector<std::string> bound_paths;  // keyward extension: path globs the token is limited to
};

// A token's properties from a lookup.
struct TokenInfo {
  std::string accessor;
  std::vector<std::string> policies;
  std::chrono::seconds ttl{0};           // remaining; 0 for a token that never expires
  std::chrono::seconds creation_ttl{0};
  std::chrono::seconds explicit_max_ttl{0};
  bool renewable = false;
  bool orphan = false;
  std::string display_name;
  Json data;  // the whole `data` object, without its `id` (the token itself)
};

// One KV version 2 secret as read.
struct KvSecret {
  SecretJson data;           // the key/value object
  std::int64_t version = 0;
  std::string created_time;  // RFC 3339
  std::string deletion_time;  // empty unless soft-deleted
  bool destroyed = false;
  Json custom_metadata;       // object or null
};

// The metadata of a KV version that a write created.
struct KvVersion {
  std::int64_t version = 0;
  std::string created_time;
  std::string deletion_time;
  bool destroyed = false;
};

// A lease's terms after a renewal.
struct LeaseRenewal {
  std::string lease_id;
  std::chrono::seconds lease_duration{0};
  bool renewable = false;
};

// A lease's properties from sys/leases/lookup.
struct LeaseInfo {
  std::string id;
  std::string issue_time;
  std::string expire_time;
  std::string last_renewal;
  std::chrono::seconds ttl{0};
  bool renewable = false;
  Json data;  // the whole `data` object (revocation state included, when queued)
};

// A dynamic PostgreSQL credential from database/creds/:role.
struct DatabaseCredential {
  std::string lease_id;
  std::chrono::seconds lease_duration{0};
  bool renewable = false;
  std::string username;
  SecretString password;
};

// Fields of pki/issue/:role and pki/sign/:role.
struct PkiIssueParams {
  std::string spiffe_id;                  // required
  std::optional<std::chrono::seconds> ttl;  // capped at the role's max_ttl by the server
};

// An X.509-SVID from pki/issue or pki/sign.
struct X509Svid {
  std::string certificate;          // PEM
  std::string issuing_ca;           // PEM
  std::vector<std::string> ca_chain;  // PEM each, issuing CA first
  SecretString private_key;         // PKCS#8 PEM; empty for pki/sign
  std::string private_key_type;
  std::string serial_number;
  std::int64_t expiration = 0;      // Unix seconds (notAfter)
  std::string spiffe_id;
  std::int64_t key_version = 0;
};

// A JWT-SVID from pki/jwt/issue/:role.
struct JwtSvid {
  SecretString token;  // JWS compact serialisation
  std::string spiffe_id;
  std::vector<std::string> audience;
  std::int64_t expires_at = 0;  // Unix seconds
  std::string kid;
};

// The retry rule of a raw Request.
enum class RetryMode {
  kByMethod,    // GET, HEAD and LIST are retried; other methods are tried once
  kIdempotent,  // the caller vouches that repeating the request is harmless
  kNever,
};

// ---------------------------------------------------------------------------------------------
// Client

namespace detail {

// Percent-encodes every byte of `path` outside RFC 3986's unreserved set and "/".
inline std::string EncodePath(std::string_view path) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : path) {
    const bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~' ||
                       c == '/';
    if (plain) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0x0F];
    }
  }
  return out;
}

// Returns why `host_port` (HOST[:PORT] of an address) is invalid, or "" when it is valid. HOST
// is a DNS name or IPv4 address, or an IPv6 address in brackets. cpp-httplib 0.11.4 parses a
// bracketed address only when it consists of digits and colons (such as [::1]), and would
// send any other text to the resolver as a host name, so those are rejected here.
inline std::string HostPortProblem(std::string_view host_port) {
  std::string_view host = host_port;
  std::string_view port;
  if (host.starts_with("[")) {
    const auto close = host.find(']');
    if (close == std::string_view::npos) return "missing \"]\" after the IPv6 address";
    const std::string_view ip = host.substr(1, close - 1);
    if (ip.empty() || ip.find_first_not_of("0123456789:") != std::string_view::npos) {
      return "the IPv6 address may contain only digits and colons (a cpp-httplib limit)";
    }
    const std::string_view rest = host.substr(close + 1);
    if (!rest.empty() && !rest.starts_with(":")) return "unexpected text after the IPv6 address";
    if (!rest.empty()) port = rest.substr(1);
    if (!rest.empty() && port.empty()) return "missing port after \":\"";
  } else {
    if (const auto colon = host.rfind(':'); colon != std::string_view::npos) {
      port = host.substr(colon + 1);
      host = host.substr(0, colon);
      if (port.empty()) return "missing port after \":\"";
    }
    if (host.empty() || host.size() > 253) return "the host name is empty or too long";
    std::size_t label = 0;
    for (char c : host) {
      const bool alnum =
          (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
      if (c == '.') {
        if (label == 0) return "the host name has an empty label";
        label = 0;
      } else if (alnum || c == '-') {
        if (++label > 63) return "a host name label is longer than 63 characters";
      } else {
        return "the host name may contain only letters, digits, \"-\" and \".\"";
      }
    }
  }
  if (!port.empty()) {
    const auto number = ParseCount(port);
    if (!number || port.size() > 5 || *number < 1 || *number > 65535) {
      return "the port must be a number from 1 to 65535";
    }
  }
  return "";
}

// Removes leading and trailing slashes.
inline std::string TrimSlashes(std::string_view path) {
  while (!path.empty() && path.front() == '/') path.remove_prefix(1);
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  return std::string(path);
}

inline ErrorCode CodeForStatus(int status) {
  switch (status) {
    case 400: return ErrorCode::kInvalidArgument;
    case 401: return ErrorCode::kUnauthenticated;
    case 403: return ErrorCode::kPermissionDenied;
    case 404: return ErrorCode::kNotFound;
    case 405:
    case 501: return ErrorCode::kUnimplemented;
    case 409: return ErrorCode::kAlreadyExists;
    case 412: return ErrorCode::kFailedPrecondition;
    case 429: return ErrorCode::kResourceExhausted;
    case 502:
    case 503:
    case 504: return ErrorCode::kUnavailable;
    default: break;
  }
  if (status >= 500) return ErrorCode::kInternal;
  return ErrorCode::kInvalidArgument;
}

// Returns true for the statuses that a retry may cure: 5xx other than 501 (not implemented
// or not initialised, which no retry changes).
inline bool RetryableStatus(int status) { return status >= 500 && status != 501; }

// Returns member `name` of `object`, or null when `object` is not an object or lacks it, so
// that an unexpected reply shape never throws.
inline const Json& Member(const Json& object, const char* name) {
  static const Json kNull;
  if (!object.is_object()) return kNull;
  auto found = object.find(name);
  return found == object.end() ? kNull : *found;
}

inline std::int64_t IntField(const Json& object, const char* name) {
  if (!object.is_object()) return 0;
  auto found = object.find(name);
  if (found == object.end()) return 0;
  if (found->is_number_integer() || found->is_number_unsigned()) return found->get<std::int64_t>();
  if (found->is_number_float()) return static_cast<std::int64_t>(found->get<double>());
  return 0;
}

inline std::string StringField(const Json& object, const char* name) {
  if (!object.is_object()) return {};
  auto found = object.find(name);
  if (found == object.end() || !found->is_string()) return {};
  return found->get<std::string>();
}

inline bool BoolField(const Json& object, const char* name) {
  if (!object.is_object()) return false;
  auto found = object.find(name);
  return found != object.end() && found->is_boolean() && found->get<bool>();
}

inline std::vector<std::string> StringList(const Json& object, const char* name) {
  std::vector<std::string> out;
  if (!object.is_object()) return out;
  auto found = object.find(name);
  if (found == object.end() || !found->is_array()) return out;
  for (const auto& item : *found) {
    if (item.is_string()) out.push_back(item.get<std::string>());
  }
  return out;
}

inline Auth ParseAuth(const Json& auth) {
  Auth out;
  out.client_token = SecretString(StringField(auth, "client_token"));
  out.accessor = StringField(auth, "accessor");
  out.policies = StringList(auth, "policies");
  if (auto meta = auth.find("metadata"); meta != auth.end() && meta->is_object()) {
    for (const auto& [key, value] : meta->items()) {
      if (value.is_string()) out.metadata[key] = value.get<std::string>();
    }
  }
  out.lease_duration = std::chrono::seconds(IntField(auth, "lease_duration"));
  out.renewable = BoolField(auth, "renewable");
  out.orphan = BoolField(auth, "orphan");
  out.entity_id = StringField(auth, "entity_id");
  return out;
}

// Returns a delay for retry `attempt` (0 first): base * 2^attempt capped at `max`, drawn at
// random from its upper half so that clients that failed together do not retry together.
inline std::chrono::milliseconds BackoffDelay(int attempt, std::chrono::milliseconds base,
                                              std::chrono::milliseconds max) {
  std::int64_t ceiling = base.count();
  for (int i = 0; i < attempt && ceiling < max.count(); ++i) ceiling *= 2;
  ceiling = std::min<std::int64_t>(ceiling, max.count());
  if (ceiling <= 1) return std::chrono::milliseconds(ceiling);
  thread_local std::mt19937_64 generator{std::random_device{}()};
  std::uniform_int_distribution<std::int64_t> pick(ceiling / 2, ceiling);
  return std::chrono::milliseconds(pick(generator));
}

}  // namespace detail

class LifetimeWatcher;

// A connection to one keyward (or Vault) server.
//
// Thread-safe: calls from several threads run concurrently, each on an HTTP connection taken
// from a pool (keep-alive, TCP_NODELAY) and returned after the call. The token may be changed
// with SetToken at any time; a call uses the token current when it starts. Typed calls return
// a Result; their retry behaviour is listed with each one and in docs/SDK.md.
class Client {
 public:
  // Checks the configuration: invalid_argument for an address that is not http(s)://HOST[:PORT]
  // or a client certificate without its key (or the reverse). A certificate file that does
  // not load shows up as an error of the first call.
  static Result<std::unique_ptr<Client>> Create(ClientConfig config) {
    std::string address = config.address;
    while (address.ends_with("/")) address.pop_back();
    const bool https = address.starts_with("https://");
    const auto scheme_end = address.find("://");
    const std::string host_port =
        scheme_end == std::string::npos ? address : address.substr(scheme_end + 3);
    if (host_port.find('@') != std::string::npos) {
      // The address is not echoed, because the part before "@" may be a password.
      return Error(ErrorCode::kInvalidArgument,
                   "invalid address: it contains user credentials (USER:PASSWORD@), which the "
                   "SDK does not send; remove them and set the token instead");
    }
    if (!https && !address.starts_with("http://")) {
      return Error(ErrorCode::kInvalidArgument,
                   "invalid address \"" + config.address + "\": expected http(s)://HOST[:PORT]");
    }
    if (std::string problem = detail::HostPortProblem(host_port); !problem.empty()) {
      return Error(ErrorCode::kInvalidArgument, "invalid address \"" + config.address +
                                                    "\": " + problem +
                                                    "; expected http(s)://HOST[:PORT]");
    }
    if (config.request_timeout.count() < 0) {
      return Error(ErrorCode::kInvalidArgument,
                   "invalid request_timeout: expected 0 (no limit) or more");
    }
    if (config.client_cert_file.empty() != config.client_key_file.empty()) {
      return Error(ErrorCode::kInvalidArgument,
                   "client certificate and client key must be given together");
    }
    if (config.max_retries < 0) {
      return Error(ErrorCode::kInvalidArgument, "invalid max_retries: expected 0 or more");
    }
    config.address = address;
    return std::unique_ptr<Client>(new Client(std::move(config)));
  }

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const ClientConfig& config() const { return config_; }

  // Replaces the token sent with every later call; an empty token sends none.
  void SetToken(SecretString token) {
    std::lock_guard lock(token_mutex_);
    token_ = std::move(token);
  }
  // Returns a copy of the current token.
  SecretString token() const {
    std::lock_guard lock(token_mutex_);
    return token_;
  }

  // --- Raw requests -------------------------------------------------------------------------

  // Sends `method` to /v1/<path> with `body` as JSON (null: no body) and returns the reply.
  // `path` is percent-encoded by the SDK; a query after "?" is sent as given. A status
  // outside 2xx is an Error with the status and the server's `errors`. Retries follow
  // `retry` (default: GET, HEAD and LIST only).
  Result<Response> Request(std::string_view method, std::string_view path,
                           const Json& body = nullptr, RetryMode retry = RetryMode::kByMethod) {
    bool idempotent = false;
    if (retry == RetryMode::kIdempotent) idempotent = true;
    if (retry == RetryMode::kByMethod) {
      idempotent = method == "GET" || method == "HEAD" || method == "LIST";
    }
    std::string target(path);
    std::string query;
    if (auto mark = target.find('?'); mark != std::string::npos) {
      query = target.substr(mark + 1);
      target.resize(mark);
    }
    return Send(method, target, body, idempotent, query);
  }

  // --- KV version 2 ------------------------------------------------------------------------

  // Reads the current version of `path`, or `version` when it is above 0. not_found (404) for
  // a missing secret or a deleted or destroyed version. Retried.
  Result<KvSecret> KvGet(std::string_view path, std::int64_t version = 0) {
    const std::string target = KvPath("data", path);
    const std::string query = version > 0 ? "version=" + std::to_string(version) : "";
    auto reply = Send("GET", target, nullptr, true, query);
    if (!reply.ok()) return reply.error();
    const Json& data = detail::Member(reply.value().body, "data");
    if (!detail::Member(data, "data").is_object()) {
      return BadReply("GET", target, "data.data");
    }
    KvSecret secret;
    secret.data = SecretJson(detail::Member(data, "data"));
    const Json& metadata = detail::Member(data, "metadata");
    secret.version = detail::IntField(metadata, "version");
    secret.created_time = detail::StringField(metadata, "created_time");
    secret.deletion_time = detail::StringField(metadata, "deletion_time");
    secret.destroyed = detail::BoolField(metadata, "destroyed");
    secret.custom_metadata = detail::Member(metadata, "custom_metadata");
    return secret;
  }

  // Writes `data` (a JSON object) as a new version. With `cas`, the write succeeds only if the
  // current version is `cas` (0: only if none exists); a mismatch is aborted (400). Not
  // retried: a success whose reply was lost would be written twice.
  Result<KvVersion> KvPut(std::string_view path, const Json& data,
                          std::optional<std::int64_t> cas = std::nullopt) {
    if (!data.is_object()) {
      return Error(ErrorCode::kInvalidArgument, "invalid KV data: expected a JSON object");
    }
    Json body = {{"data", data}};
    if (cas) body["options"] = {{"cas", *cas}};
    auto result = WriteVersion("POST", path, body);
    detail::WipeJson(body);
    return result;
  }

  // Merges `patch` into the current version (JSON merge patch, RFC 7396: null removes a key)
  // as a new version. not_found when the secret has no readable current version. Not retried.
  Result<KvVersion> KvPatch(std::string_view path, const Json& patch,
                            std::optional<std::int64_t> cas = std::nullopt) {
    if (!patch.is_object()) {
      return Error(ErrorCode::kInvalidArgument, "invalid KV patch: expected a JSON object");
    }
    Json body = {{"data", patch}};
    if (cas) body["options"] = {{"cas", *cas}};
    auto result = WriteVersion("PATCH", path, body);
    detail::WipeJson(body);
    return result;
  }

  // Lists the names below folder `path` ("" for the mount's top); folders end in "/". An
  // empty or missing folder gives an empty list. Retried.
  Result<std::vector<std::string>> KvList(std::string_view path) {
    const std::string target = KvPath("metadata", path);
    auto reply = Send("LIST", target, nullptr, true);
    if (!reply.ok()) {
      if (reply.error().status() == 404) return std::vector<std::string>{};
      return reply.error();
    }
    const Json& data = detail::Member(reply.value().body, "data");
    if (!detail::Member(data, "keys").is_array()) return BadReply("LIST", target, "data.keys");
    return detail::StringList(data, "keys");
  }

  // Soft-deletes `versions`, or the current version when `versions` is empty. Retried:
  // deleting a deleted version changes nothing.
  Status KvDelete(std::string_view path, const std::vector<std::int64_t>& versions = {}) {
    if (versions.empty()) return SendDiscard("DELETE", KvPath("data", path), nullptr);
    return SendDiscard("POST", KvPath("delete", path), {{"versions", versions}});
  }

  // Restores soft-deleted `versions` (at least one). Retried.
  Status KvUndelete(std::string_view path, const std::vector<std::int64_t>& versions) {
    if (versions.empty()) {
      return Error(ErrorCode::kInvalidArgument, "missing versions: name at least one version");
    }
    return SendDiscard("POST", KvPath("undelete", path), {{"versions", versions}});
  }

  // Wipes the data of `versions` (at least one) for good. Retried.
  Status KvDestroy(std::string_view path, const std::vector<std::int64_t>& versions) {
    if (versions.empty()) {
      return Error(ErrorCode::kInvalidArgument, "missing versions: name at least one version");
    }
    return SendDiscard("POST", KvPath("destroy", path), {{"versions", versions}});
  }

  // Reads the secret's metadata: `versions`, `current_version`, `max_versions`,
  // `cas_required`, `custom_metadata`, ... (the reply's `data`). Retried.
  Result<Json> KvMetadata(std::string_view path) {
    const std::string target = KvPath("metadata", path);
    auto reply = Send("GET", target, nullptr, true);
    if (!reply.ok()) return reply.error();
    const Json& data = detail::Member(reply.value().body, "data");
    if (!detail::Member(data, "current_version").is_number()) {
      return BadReply("GET", target, "data.current_version");
    }
    return data;
  }

  // Deletes every version and the metadata of `path`. Retried.
  Status KvDeleteMetadata(std::string_view path) {
    return SendDiscard("DELETE", KvPath("metadata", path), nullptr);
  }

  // --- Tokens -------------------------------------------------------------------------------

  // Creates a token (a child of the client's token, or an orphan). Never retried: a retry
  // after a lost reply would create a second token.
  Result<Auth> TokenCreate(const TokenCreateOptions& options = {}) {
    Json body = Json::object();
    if (!options.policies.empty()) body["policies"] = options.policies;
    if (!options.metadata.empty()) body["meta"] = options.metadata;
    if (!options.display_name.empty()) body["display_name"] = options.display_name;
    if (options.ttl) body["ttl"] = options.ttl->count();
    if (options.explicit_max_ttl) body["explicit_max_ttl"] = options.explicit_max_ttl->count();
    if (options.period) body["period"] = options.period->count();
    if (options.renewable) body["renewable"] = *options.renewable;
    if (options.num_uses) body["num_uses"] = *options.num_uses;
    if (options.no_default_policy) body["no_default_policy"] = true;
    if (!options.bound_paths.empty()) body["bound_paths"] = options.bound_paths;
    std::string path = "auth/token/create";
    if (!options.role_name.empty()) {
      path += "/" + options.role_name;
    } else if (options.orphan) {
      path = "auth/token/create-orphan";
    }
    return AuthCall(path, body, false);
  }

  // Looks up the client's own token. Retried.
  Result<TokenInfo> TokenLookupSelf() {
    auto reply = Send("GET", "auth/token/lookup-self", nullptr, true);
    if (!reply.ok()) return reply.error();
    return ParseTokenInfo("GET", "auth/token/lookup-self", reply.value().body);
  }

  // Looks up `token`. Retried (a lookup changes nothing).
  Result<TokenInfo> TokenLookup(const SecretString& token) {
    Json body = {{"token", token.Reveal()}};
    auto reply = Send("POST", "auth/token/lookup", body, true);
    detail::WipeJson(body);
    if (!reply.ok()) return reply.error();
    return ParseTokenInfo("POST", "auth/token/lookup", reply.value().body);
  }

  // Renews the client's token by `increment` (0: its creation TTL), never past its max TTL;
  // compare the returned lease_duration with the increment to see the cap. Retried: a
  // renewal sets the expiry to now + increment, so a repeat gives the same expiry.
  Result<Auth> TokenRenewSelf(std::chrono::seconds increment = std::chrono::seconds(0)) {
    Json body = Json::object();
    if (increment.count() > 0) body["increment"] = increment.count();
    return AuthCall("auth/token/renew-self", body, true);
  }

  // Renews `token` like TokenRenewSelf. Retried.
  Result<Auth> TokenRenew(const SecretString& token,
                          std::chrono::seconds increment = std::chrono::seconds(0)) {
    Json body = {{"token", token.Reveal()}};
    if (increment.count() > 0) body["increment"] = increment.count();
    auto result = AuthCall("auth/token/renew", body, true);
    detail::WipeJson(body);
    return result;
  }

  // Revokes the client's token and its descendants. Retried: when a first attempt succeeded
  // but its reply was lost, the retry reports permission_denied for the now revoked token.
  Status TokenRevokeSelf() {
    return SendDiscard("POST", "auth/token/revoke-self", Json::object());
  }

  // Revokes `token` and its descendants; an unknown token counts as revoked. Retried.
  Status TokenRevoke(const SecretString& token) {
    Json body = {{"token", token.Reveal()}};
    auto result = SendDiscard("POST", "auth/token/revoke", body);
    detail::WipeJson(body);
    return result;
  }

  // --- Logins (never retried: a secret ID may allow one use only) ---------------------------

  // Logs in with AppRole at auth/<mount>/login. Returns the auth block; the client's token is
  // unchanged (call SetToken with auth.client_token to use it).
  Result<Auth> AppRoleLogin(const SecretString& role_id, const SecretString& secret_id,
                            std::string_view mount = "approle") {
    Json body = {{"role_id", role_id.Reveal()}, {"secret_id", secret_id.Reveal()}};
    auto result = AuthCall("auth/" + detail::TrimSlashes(mount) + "/login", body, false);
    detail::WipeJson(body);
    return result;
  }

  // Logs in with the TLS client certificate of the configuration at auth/<mount>/login,
  // trying only role `name` when it is not empty. The address must be https://.
  Result<Auth> CertLogin(std::string_view name = "", std::string_view mount = "cert") {
    Json body = Json::object();
    if (!name.empty()) body["name"] = std::string(name);
    return AuthCall("auth/" + detail::TrimSlashes(mount) + "/login", body, false);
  }

  // --- Leases ------------------------------------------------------------------------------

  // Renews a lease by `increment` (0: its TTL), capped at its max TTL. Retried.
  Result<LeaseRenewal> LeaseRenew(std::string_view lease_id,
                                  std::chrono::seconds increment = std::chrono::seconds(0)) {
    Json body = {{"lease_id", std::string(lease_id)}};
    if (increment.count() > 0) body["increment"] = increment.count();
    auto reply = Send("PUT", "sys/leases/renew", body, true);
    if (!reply.ok()) return reply.error();
    const Json& reply_body = reply.value().body;
    if (!detail::Member(reply_body, "lease_duration").is_number()) {
      return BadReply("PUT", "sys/leases/renew", "lease_duration");
    }
    LeaseRenewal renewal;
    renewal.lease_id = detail::StringField(reply_body, "lease_id");
    renewal.lease_duration = std::chrono::seconds(detail::IntField(reply_body, "lease_duration"));
    renewal.renewable = detail::BoolField(reply_body, "renewable");
    return renewal;
  }

  // Revokes a lease and waits until its credential is gone; an unknown lease counts as
  // revoked. Retried.
  Status LeaseRevoke(std::string_view lease_id) {
    return SendDiscard("PUT", "sys/leases/revoke", {{"lease_id", std::string(lease_id)}});
  }

  // Looks up a lease. Retried.
  Result<LeaseInfo> LeaseLookup(std::string_view lease_id) {
    auto reply =
        Send("PUT", "sys/leases/lookup", {{"lease_id", std::string(lease_id)}}, true);
    if (!reply.ok()) return reply.error();
    const Json& data = detail::Member(reply.value().body, "data");
    if (!detail::Member(data, "ttl").is_number()) {
      return BadReply("PUT", "sys/leases/lookup", "data.ttl");
    }
    LeaseInfo info;
    info.id = detail::StringField(data, "id");
    info.issue_time = detail::StringField(data, "issue_time");
    info.expire_time = detail::StringField(data, "expire_time");
    info.last_renewal = detail::StringField(data, "last_renewal");
    info.ttl = std::chrono::seconds(detail::IntField(data, "ttl"));
    info.renewable = detail::BoolField(data, "renewable");
    info.data = data;
    return info;
  }

  // --- Database -----------------------------------------------------------------------------

  // Creates a PostgreSQL credential for `role` at <mount>/creds/<role>. Never retried,
  // although it is a GET: each call creates a database role and a lease.
  Result<DatabaseCredential> DatabaseCreds(std::string_view role,
                                           std::string_view mount = "database") {
    const std::string path = detail::TrimSlashes(mount) + "/creds/" + std::string(role);
    auto reply = Send("GET", path, nullptr, false);
    if (!reply.ok()) return reply.error();
    const Json& body = reply.value().body;
    const Json& data = detail::Member(body, "data");
    DatabaseCredential credential;
    credential.lease_id = detail::StringField(body, "lease_id");
    credential.lease_duration = std::chrono::seconds(detail::IntField(body, "lease_duration"));
    credential.renewable = detail::BoolField(body, "renewable");
    credential.username = detail::StringField(data, "username");
    credential.password = SecretString(detail::StringField(data, "password"));
    if (credential.username.empty() || credential.password.empty()) {
      return BadReply("GET", path, "data.username and data.password");
    }
    if (!detail::Member(body, "lease_duration").is_number()) {
      return BadReply("GET", path, "lease_duration");
    }
    return credential;
  }

  // --- PKI (SPIFFE) ------------------------------------------------------------------------

  // Generates a key and issues an X.509-SVID for params.spiffe_id under `role`. Never
  // retried: each call issues a certificate.
  Result<X509Svid> PkiIssue(std::string_view role, const PkiIssueParams& params,
                            std::string_view mount = "pki") {
    Json body = {{"spiffe_id", params.spiffe_id}};
    if (params.ttl) body["ttl"] = params.ttl->count();
    return SvidCall(detail::TrimSlashes(mount) + "/issue/" + std::string(role), body);
  }

  // Signs the public key of a PEM PKCS#10 `csr` into an X.509-SVID for params.spiffe_id
  // (the CSR's subject and extensions are ignored). Never retried.
  Result<X509Svid> PkiSign(std::string_view role, std::string_view csr,
                           const PkiIssueParams& params, std::string_view mount = "pki") {
    Json body = {{"csr", std::string(csr)}, {"spiffe_id", params.spiffe_id}};
    if (params.ttl) body["ttl"] = params.ttl->count();
    return SvidCall(detail::TrimSlashes(mount) + "/sign/" + std::string(role), body);
  }

  // Issues a JWT-SVID for `spiffe_id` with `audience` (at least one). Never retried.
  Result<JwtSvid> JwtSvidIssue(std::string_view role, std::string_view spiffe_id,
                               const std::vector<std::string>& audience,
                               std::optional<std::chrono::seconds> ttl = std::nullopt,
                               std::string_view mount = "pki") {
    if (audience.empty()) {
      return Error(ErrorCode::kInvalidArgument, "missing audience: name at least one audience");
    }
    Json body = {{"spiffe_id", std::string(spiffe_id)}, {"audience", audience}};
    if (ttl) body["ttl"] = ttl->count();
    const std::string path = detail::TrimSlashes(mount) + "/jwt/issue/" + std::string(role);
    auto reply = Send("POST", path, body, false);
    if (!reply.ok()) return reply.error();
    const Json& data = detail::Member(reply.value().body, "data");
    JwtSvid svid;
    svid.token = SecretString(detail::StringField(data, "token"));
    svid.spiffe_id = detail::StringField(data, "spiffe_id");
    svid.audience = detail::StringList(data, "audience");
    svid.expires_at = detail::IntField(data, "expires_at");
    svid.kid = detail::StringField(data, "kid");
    if (svid.token.empty()) return BadReply("POST", path, "data.token");
    if (svid.expires_at <= 0) return BadReply("POST", path, "data.expires_at");
    return svid;
  }

 private:
  friend class LifetimeWatcher;  // cancels the requests of its own client when it stops

  explicit Client(ClientConfig config) : config_(std::move(config)) {
    token_ = config_.token;
  }

  // --- Connection pool ------------------------------------------------------------------------

  // Takes an idle connection or makes a new one.
  std::unique_ptr<httplib::Client> Acquire() {
    {
      std::lock_guard lock(pool_mutex_);
      if (!idle_.empty()) {
        auto connection = std::move(idle_.back());
        idle_.pop_back();
        return connection;
      }
    }
    std::unique_ptr<httplib::Client> connection;
    if (config_.client_cert_file.empty()) {
      connection = std::make_unique<httplib::Client>(config_.address);
    } else {
      connection = std::make_unique<httplib::Client>(config_.address, config_.client_cert_file,
                                                     config_.client_key_file);
    }
    connection->set_keep_alive(true);
    connection->set_tcp_nodelay(true);
    connection->set_url_encode(false);
    connection->set_follow_location(false);
    SetTimeout(config_.connect_timeout, [&](time_t s, time_t us) {
      connection->set_connection_timeout(s, us);
    });
    SetTimeout(config_.read_timeout, [&](time_t s, time_t us) {
      connection->set_read_timeout(s, us);
      connection->set_write_timeout(s, us);
    });
    if (!config_.ca_file.empty()) connection->set_ca_cert_path(config_.ca_file);
    connection->enable_server_certificate_verification(!config_.tls_skip_verify);
    return connection;
  }

  // Keeps at most kMaxIdle connections; the rest close.
  void Release(std::unique_ptr<httplib::Client> connection) {
    static constexpr std::size_t kMaxIdle = 8;
    std::lock_guard lock(pool_mutex_);
    if (idle_.size() < kMaxIdle) idle_.push_back(std::move(connection));
  }

  template <class Setter>
  static void SetTimeout(std::chrono::milliseconds timeout, Setter set) {
    const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(timeout).count();
    set(static_cast<time_t>(micros / 1000000), static_cast<time_t>(micros % 1000000));
  }

  // --- Sending ----------------------------------------------------------------------------

  using Clock = std::chrono::steady_clock;

  // Sends one request; retries connection failures and retryable statuses when `idempotent`,
  // while config_.request_timeout leaves time for another attempt. A 2xx is a success;
  // anything else becomes an Error. `path` is not yet percent-encoded; `query` is sent as given.
  Result<Response> Send(std::string_view method, std::string_view path, const Json& body,
                        bool idempotent, std::string_view query = "") {
    const std::string target = path.starts_with("/v1/") ? std::string(path.substr(4))
                                                         : detail::TrimSlashes(path);
    httplib::Request request;
    request.method = std::string(method);
    request.path = "/v1/" + detail::EncodePath(target);
    if (!query.empty()) request.path += "?" + std::string(query);
    const std::string summary = request.method + " /v1/" + target;
    {
      SecretString token = this->token();
      if (!token.empty()) request.headers.emplace("X-Vault-Token", token.Reveal());
    }
    request.headers.emplace("X-Vault-Request", "true");
    if (!body.is_null()) {
      try {
        request.body = body.dump();
      } catch (const Json::exception&) {
        WipeRequest(request);
        return Error(ErrorCode::kInvalidArgument,
                     summary + ": invalid request body: strings must be valid UTF-8");
      }
      request.headers.emplace("Content-Type", method == "PATCH"
                                                  ? "application/merge-patch+json"
                                                  : "application/json");
    }
    std::optional<Clock::time_point> deadline;
    if (config_.request_timeout.count() > 0) deadline = Clock::now() + config_.request_timeout;
    const int attempts = idempotent ? config_.max_retries + 1 : 1;
    std::optional<Error> last_error;
    for (int attempt = 0; attempt < attempts; ++attempt) {
      if (attempt > 0) {
        const auto delay =
            detail::BackoffDelay(attempt - 1, config_.backoff_base, config_.backoff_max);
        // Skip a retry that could not finish before the deadline and return the last error.
        if (deadline && Clock::now() + delay >= *deadline) break;
        if (!SleepUnlessCancelled(delay)) break;
      }
      if (cancelled_.load()) break;
      bool retryable = false;
      auto outcome = SendOnce(request, summary, deadline, retryable);
      if (outcome.ok() || !retryable) {
        WipeRequest(request);
        return outcome;
      }
      last_error = outcome.error();
    }
    WipeRequest(request);
    if (cancelled_.load()) return CancelledError(summary);
    return *last_error;
  }

  // Overwrites the request body and every header value that the SDK set (the token among
  // them). httplib's serialised copy of the headers is out of reach (see docs/SDK.md).
  static void WipeRequest(httplib::Request& request) {
    detail::Wipe(request.body);
    for (auto& header : request.headers) detail::Wipe(header.second);
  }

  // Waits `delay`; returns false at once when Cancel() is called.
  bool SleepUnlessCancelled(std::chrono::milliseconds delay) {
    std::unique_lock lock(cancel_mutex_);
    return !cancel_wakeup_.wait_for(lock, delay, [this] { return cancelled_.load(); });
  }

  // Makes requests in flight stop at their next received chunk or retry, and later requests
  // fail at once. Used by LifetimeWatcher::Stop on the watcher's own client.
  void Cancel() {
    {
      std::lock_guard lock(cancel_mutex_);
      cancelled_ = true;
    }
    cancel_wakeup_.notify_all();
  }

  static Error CancelledError(const std::string& summary) {
    return Error(ErrorCode::kUnavailable, summary + ": request canceled: the client is stopping");
  }

  // Sends `request` once. Sets `retryable` when the failure is one a retry may cure. No wait
  // for the server (connect, each receive) is longer than what is left until `deadline`. The
  // body is read in chunks that each check the deadline, so a server that sends its body a
  // byte at a time cannot hold the call past it.
  Result<Response> SendOnce(httplib::Request& request, const std::string& summary,
                            std::optional<Clock::time_point> deadline, bool& retryable) {
    auto connection = Acquire();
    if (!connection->is_valid()) {
      return Error(ErrorCode::kInvalidArgument,
                   summary + ": the TLS client certificate or key could not be loaded");
    }
    auto connect_timeout = config_.connect_timeout;
    auto read_timeout = config_.read_timeout;
    if (deadline) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - Clock::now());
      if (left.count() <= 0) return DeadlineError(summary);
      connect_timeout = std::min(connect_timeout, left);
      read_timeout = std::min(read_timeout, left);
    }
    SetTimeout(connect_timeout, [&](time_t s, time_t us) {
      connection->set_connection_timeout(s, us);
    });
    SetTimeout(read_timeout, [&](time_t s, time_t us) {
      connection->set_read_timeout(s, us);
      connection->set_write_timeout(s, us);
    });

    Response response;
    bool cancelled = false;
    bool past_deadline = false;
    request.content_receiver = [&](const char* data, std::size_t length, std::uint64_t offset,
                                   std::uint64_t total) {
      if (cancelled_.load()) {
        cancelled = true;
        return false;
      }
      if (deadline && Clock::now() >= *deadline) {
        past_deadline = true;
        return false;
      }
      // Reserving the announced length up front avoids reallocations that would leave
      // copies of the reply in freed memory.
      static constexpr std::uint64_t kMaxReserve = 16u << 20;
      if (offset == 0 && total > 0) response.text.reserve(std::min(total, kMaxReserve));
      response.text.append(data, length);
      return true;
    };
    httplib::Response reply;
    httplib::Error failure = httplib::Error::Success;
    const auto started = Clock::now();
    const bool sent = connection->send(request, reply, failure);
    request.content_receiver = nullptr;
    if (!sent) {
      detail::Wipe(response.text);
      // The connection may be half-used: drop it instead of pooling it.
      if (cancelled) return CancelledError(summary);
      if (past_deadline) return DeadlineError(summary);
      retryable = true;
      const bool timed_out = Clock::now() - started >= read_timeout;
      if (deadline && timed_out && read_timeout < config_.read_timeout) {
        retryable = false;
        return DeadlineError(summary);
      }
      return TransportError(summary, failure, timed_out);
    }
    response.status = reply.status;
    response.content_type = reply.get_header_value("Content-Type");
    detail::Wipe(reply.body);
    Release(std::move(connection));

    const bool success = response.status >= 200 && response.status < 300;
    if (detail::NestedDeeperThan(response.text, detail::kMaxReplyDepth)) {
      if (success) {
        return Error(ErrorCode::kInternal,
                     summary + ": invalid reply, not a Vault response: JSON nested deeper than " +
                         std::to_string(detail::kMaxReplyDepth) + " levels",
                     response.status);
      }
    } else if (!response.text.empty()) {
      response.body = Json::parse(response.text, nullptr, false);
      if (response.body.is_discarded()) response.body = nullptr;
    }
    if (success) return response;
    retryable = detail::RetryableStatus(response.status);
    return StatusError(summary, response);
  }

  Error DeadlineError(const std::string& summary) const {
    return Error(ErrorCode::kDeadlineExceeded,
                 summary + ": timed out after the request timeout of " +
                     std::to_string(config_.request_timeout.count()) + " ms");
  }

  // `timed_out`: the read timeout passed, which httplib reports as a plain read error.
  Error TransportError(const std::string& summary, httplib::Error failure,
                       bool timed_out) const {
    switch (failure) {
      case httplib::Error::SSLConnection:
        return Error(ErrorCode::kUnavailable, summary + ": TLS handshake failed");
      case httplib::Error::SSLLoadingCerts:
        return Error(ErrorCode::kInvalidArgument,
                     summary + ": the CA file or client certificate could not be loaded");
      case httplib::Error::SSLServerVerification:
        return Error(ErrorCode::kUnavailable,
                     summary + ": server certificate verification failed (check the CA file)");
      case httplib::Error::ConnectionTimeout:
        return Error(ErrorCode::kDeadlineExceeded, summary + ": connect timed out");
      case httplib::Error::Read:
        if (timed_out) {
          return Error(ErrorCode::kDeadlineExceeded,
                       summary + ": timed out waiting for the reply");
        }
        return Error(ErrorCode::kUnavailable, summary + ": connection closed before the reply");
      default:
        return Error(ErrorCode::kUnavailable, summary + ": cannot reach " + config_.address +
                                                  " (" + httplib::to_string(failure) + ")");
    }
  }

  static Error StatusError(const std::string& summary, const Response& response) {
    std::vector<std::string> messages = detail::StringList(response.body, "errors");
    ErrorCode code = detail::CodeForStatus(response.status);
    for (const auto& message : messages) {
      if (message.find("check-and-set parameter did not match") != std::string::npos) {
        code = ErrorCode::kAborted;
      }
    }
    std::string text = summary + ": status " + std::to_string(response.status);
    for (const auto& message : messages) text += ": " + message;
    return Error(code, std::move(text), response.status, std::move(messages));
  }

  // The error of a 2xx reply without the fields a Vault server sends, as when the address
  // points at another HTTP service (a proxy's login page, say).
  static Error BadReply(std::string_view method, std::string_view path,
                        std::string_view field) {
    return Error(ErrorCode::kInternal, std::string(method) + " /v1/" + std::string(path) +
                                           ": invalid reply, not a Vault response: missing " +
                                           std::string(field) +
                                           " (check that the address is the vault server's)");
  }

  // Accepts the reply of a call that returns nothing: an empty body (204) or a JSON object.
  static Status Discard(std::string_view method, const std::string& path,
                        Result<Response> reply) {
    if (!reply.ok()) return reply.error();
    if (!reply.value().text.empty() && !reply.value().body.is_object()) {
      return BadReply(method, path, "a JSON object or an empty body");
    }
    return {};
  }

  // Sends a call whose reply carries nothing but success.
  Status SendDiscard(std::string_view method, const std::string& path, const Json& body) {
    return Discard(method, path, Send(method, path, body, true));
  }

  std::string KvPath(std::string_view kind, std::string_view path) const {
    std::string out = detail::TrimSlashes(config_.kv_mount) + "/" + std::string(kind);
    const std::string rest = detail::TrimSlashes(path);
    if (!rest.empty()) out += "/" + rest;
    return out;
  }

  Result<KvVersion> WriteVersion(std::string_view method, std::string_view path,
                                 const Json& body) {
    const std::string target = KvPath("data", path);
    auto reply = Send(method, target, body, false);
    if (!reply.ok()) return reply.error();
    const Json& data = detail::Member(reply.value().body, "data");
    KvVersion version;
    version.version = detail::IntField(data, "version");
    version.created_time = detail::StringField(data, "created_time");
    version.deletion_time = detail::StringField(data, "deletion_time");
    version.destroyed = detail::BoolField(data, "destroyed");
    if (version.version <= 0) return BadReply(method, target, "data.version");
    return version;
  }

  Result<Auth> AuthCall(const std::string& path, const Json& body, bool idempotent) {
    auto reply = Send("POST", path, body, idempotent);
    if (!reply.ok()) return reply.error();
    const Json& auth = detail::Member(reply.value().body, "auth");
    if (!auth.is_object()) return BadReply("POST", path, "auth block");
    if (!detail::Member(auth, "lease_duration").is_number()) {
      return BadReply("POST", path, "auth.lease_duration");
    }
    return detail::ParseAuth(auth);
  }

  // Reads the `data` of a token lookup. A reply without data.ttl is rejected, because the
  // watcher would read a missing TTL as "never expires".
  static Result<TokenInfo> ParseTokenInfo(std::string_view method, std::string_view path,
                                          const Json& body) {
    const Json& data = detail::Member(body, "data");
    if (!detail::Member(data, "ttl").is_number()) return BadReply(method, path, "data.ttl");
    TokenInfo info;
    info.accessor = detail::StringField(data, "accessor");
    info.policies = detail::StringList(data, "policies");
    info.ttl = std::chrono::seconds(detail::IntField(data, "ttl"));
    info.creation_ttl = std::chrono::seconds(detail::IntField(data, "creation_ttl"));
    info.explicit_max_ttl = std::chrono::seconds(detail::IntField(data, "explicit_max_ttl"));
    info.renewable = detail::BoolField(data, "renewable");
    info.orphan = detail::BoolField(data, "orphan");
    info.display_name = detail::StringField(data, "display_name");
    info.data = data;
    if (info.data.is_object()) info.data.erase("id");
    return info;
  }

  Result<X509Svid> SvidCall(const std::string& path, const Json& body) {
    auto reply = Send("POST", path, body, false);
    if (!reply.ok()) return reply.error();
    const Json& data = detail::Member(reply.value().body, "data");
    X509Svid svid;
    svid.certificate = detail::StringField(data, "certificate");
    svid.issuing_ca = detail::StringField(data, "issuing_ca");
    svid.ca_chain = detail::StringList(data, "ca_chain");
    svid.private_key = SecretString(detail::StringField(data, "private_key"));
    svid.private_key_type = detail::StringField(data, "private_key_type");
    svid.serial_number = detail::StringField(data, "serial_number");
    svid.expiration = detail::IntField(data, "expiration");
    svid.spiffe_id = detail::StringField(data, "spiffe_id");
    svid.key_version = detail::IntField(data, "key_version");
    if (svid.certificate.empty()) return BadReply("POST", path, "data.certificate");
    if (svid.expiration <= 0) return BadReply("POST", path, "data.expiration");
    return svid;
  }

  const ClientConfig config_;

  mutable std::mutex token_mutex_;
  SecretString token_;  // guarded by token_mutex_

  std::mutex pool_mutex_;
  std::vector<std::unique_ptr<httplib::Client>> idle_;  // guarded by pool_mutex_

  std::mutex cancel_mutex_;  // pairs with cancel_wakeup_ for backoff waits
  std::condition_variable cancel_wakeup_;
  std::atomic<bool> cancelled_{false};  // set by Cancel(), never cleared
};

// ---------------------------------------------------------------------------------------------
// Lifetime watcher

// How long a credential lives and whether sys/leases/renew can extend it. The watcher reads
// these through LeaseTermsOf, found by argument-dependent lookup, so a type of your own can
// join by declaring LeaseTermsOf(const YourType&) in its namespace.
struct LeaseTerms {
  std::string lease_id;  // empty: nothing to renew; the credential is fetched again instead
  std::chrono::seconds ttl{0};  // remaining lifetime; 0 means it never expires
  bool renewable = false;
};

inline LeaseTerms LeaseTermsOf(const DatabaseCredential& credential) {
  return {credential.lease_id, credential.lease_duration, credential.renewable};
}

namespace detail {
inline std::chrono::seconds SecondsUntil(std::int64_t unix_seconds) {
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  // A credential that has expired still gets one second, so that it is fetched at once
  // rather than treated as never expiring.
  return std::chrono::seconds(std::max<std::int64_t>(1, unix_seconds - now));
}
}  // namespace detail

inline LeaseTerms LeaseTermsOf(const X509Svid& svid) {
  return {"", detail::SecondsUntil(svid.expiration), false};
}

inline LeaseTerms LeaseTermsOf(const JwtSvid& svid) {
  return {"", detail::SecondsUntil(svid.expires_at), false};
}

// Settings of a LifetimeWatcher.
struct WatcherOptions {
  // Logs in again when the token can no longer be renewed (refused, not renewable, or its
  // max TTL is near). The watcher installs the returned token in the client. Empty: the
  // watcher only renews, and reports through on_error when renewal stops working.
  std::function<Result<Auth>(Client&)> login;
  // Called after every re-login, with the new auth, on the watcher's thread.
  std::function<void(const Auth&)> on_token_rotated;
  // Called with every error the watcher handles itself (a renewal, login or fetch failure
  // that it will retry, or an exception thrown by a callback), on the watcher's thread.
  std::function<void(const Error&)> on_error;
  // Renew when this fraction of the TTL granted last has passed (earlier for short TTLs, see
  // LifetimeWatcher).
  double renew_fraction = 2.0 / 3.0;
  // Delay after a failed step, doubled after each further failure up to max_retry_delay. A
  // retry that would come after the expiry is moved to shortly before it (never sooner than
  // retry_delay), and the doubling starts again from retry_delay after that attempt.
  std::chrono::milliseconds retry_delay{1000};
  std::chrono::milliseconds max_retry_delay{30000};
  // Keep the client's token renewed. Off: only the registered credentials are watched.
  bool watch_token = true;
};

// Keeps a client's token and registered credentials alive from a background thread.
//
// The token is renewed (auth/token/renew-self) when renew_fraction of its TTL has passed.
// When a renewal is refused, the token is not renewable, or a renewal comes back shorter
// than asked because the max TTL caps it, the watcher calls options.login and installs the
// new token. It logs in when the token's remaining life falls below max(3 s, TTL / 3),
// counting one second less than the reported TTL because servers round TTLs to whole
// seconds. For TTLs under about 7 s that lead is capped at half the TTL. Because Vault and
// keyward revoke a token's leases with the token, every leased credential is then fetched
// again.
//
// A credential registered with Watch is renewed through sys/leases/renew when it has a
// renewable lease. When renewal is refused or capped, or the credential has no lease (an
// SVID), the watcher calls its fetch function on the same schedule as a re-login. The new
// credential then goes to the rotation callback. Transient failures (unavailable, timeouts,
// 5xx) are retried with backoff before anything is fetched again.
//
// The watcher's requests go through a client of its own, a copy of `client`'s configuration
// that follows its token. login and fetch functions receive that client. An exception thrown
// by login, a fetch function or a callback is caught and reported to on_error, and the step
// counts as failed.
//
// Thread-safe. Callbacks run on the watcher's thread, one at a time. They may call Unwatch,
// but must not call Stop or destroy the watcher. The client and whatever the callbacks use
// must outlive the watcher. Stop (and the destructor) interrupts a wait at once, and the
// requests of the watcher's own client at their next retry or received chunk of the reply.
// A request waiting for a server that sends nothing takes up to one connect_timeout or
// read_timeout (capped by request_timeout) to end. NOTE: a server that trickles its headers
// keeps a request open as long as it keeps sending, because cpp-httplib 0.11.4 has no hook there.
// Calls that a callback makes through another client are not interrupted.
class LifetimeWatcher {
 public:
  // Starts the thread. When watching the token, the first step looks the token up to learn
  // its TTL (or logs in when the client has no token and options.login is set).
  LifetimeWatcher(Client& client, WatcherOptions options)
      : client_(client), worker_(new Client(client.config())), options_(std::move(options)) {
    if (options_.watch_token) {
      token_.active = true;
      token_.due = Clock::now();
      token_.needs_lookup = true;
    }
    thread_ = std::thread([this] { Run(); });
  }

  ~LifetimeWatcher() { Stop(); }
  LifetimeWatcher(const LifetimeWatcher&) = delete;
  LifetimeWatcher& operator=(const LifetimeWatcher&) = delete;

  // Registers `current` (a credential just fetched) to be kept alive. `fetch` gets a fresh
  // one; `on_rotate` receives every fetched credential. Returns an id for Unwatch.
  template <class T>
  std::uint64_t Watch(const T& current, std::function<Result<T>(Client&)> fetch,
                      std::function<void(const T&)> on_rotate) {
    auto entry = std::make_shared<Entry>();
    entry->terms = LeaseTermsOf(current);
    entry->increment = entry->terms.ttl;
    entry->fetch = [fetch = std::move(fetch),
                    on_rotate = std::move(on_rotate)](Client& client) -> Result<LeaseTerms> {
      auto fresh = Guarded("fetch function", [&] { return fetch(client); });
      if (!fresh.ok()) return fresh.error();
      LeaseTerms terms = LeaseTermsOf(fresh.value());
      if (on_rotate) {
        auto delivered = Guarded("rotation callback", [&]() -> Status {
          on_rotate(fresh.value());
          return {};
        });
        if (!delivered.ok()) return delivered.error();
      }
      return terms;
    };
    std::lock_guard lock(mutex_);
    entry->id = ++last_id_;
    entry->due = StepTime(entry->terms.ttl, Renews(entry->terms));
    entry->expires = Clock::now() + entry->terms.ttl;
    entries_.push_back(entry);
    wake_ = true;
    wakeup_.notify_all();
    return entry->id;
  }

  // Stops watching credential `id`; an unknown id is ignored. When the watcher is fetching or
  // renewing that credential, waits until it has finished, so that no callback of `id` runs
  // after Unwatch returns. Called from a callback, it returns at once instead.
  void Unwatch(std::uint64_t id) {
    std::unique_lock lock(mutex_);
    std::erase_if(entries_, [id](const auto& entry) { return entry->id == id; });
    wake_ = true;
    wakeup_.notify_all();
    if (std::this_thread::get_id() == thread_.get_id()) return;
    step_done_.wait(lock, [&] { return stepping_id_ != id; });
  }

  // Stops the thread and waits for it; later calls do nothing.
  void Stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      wakeup_.notify_all();
    }
    worker_->Cancel();
    if (thread_.joinable() && std::this_thread::get_id() != thread_.get_id()) thread_.join();
  }

  // Number of re-logins and of credential fetches so far (for monitoring and tests).
  std::uint64_t logins() const { return logins_.load(); }
  std::uint64_t fetches() const { return fetches_.load(); }

 private:
  using Clock = std::chrono::steady_clock;
  using Milliseconds = std::chrono::milliseconds;

  struct Entry {
    std::uint64_t id = 0;
    LeaseTerms terms;
    std::chrono::seconds increment{0};  // the TTL asked for at each renewal
    bool exhausted = false;   // the last renewal was capped: fetch next time
    bool must_fetch = false;  // the lease died with a rotated token
    int failures = 0;
    Clock::time_point due;
    Clock::time_point expires;
    std::function<Result<LeaseTerms>(Client&)> fetch;
  };

  struct TokenState {
    bool active = false;
    bool needs_lookup = false;
    bool renewable = false;
    bool exhausted = false;
    std::chrono::seconds increment{0};
    int failures = 0;
    Clock::time_point due;
    Clock::time_point expires;
  };

  // Runs `call` (a user function returning a Result or Status) and turns an exception it
  // throws into an internal error, so that it cannot end the watcher's thread.
  template <class Call>
  static auto Guarded(const char* name, Call&& call) -> decltype(call()) {
    try {
      return call();
    } catch (const Error& error) {
      return Error(error.code(), std::string(name) + " threw: " + error.message(),
                   error.status(), error.server_messages());
    } catch (const std::exception& error) {
      return Error(ErrorCode::kInternal, std::string(name) + " threw: " + error.what());
    } catch (...) {
      return Error(ErrorCode::kInternal, std::string(name) + " threw an unknown exception");
    }
  }

  static bool Renews(const LeaseTerms& terms) {
    return terms.renewable && !terms.lease_id.empty();
  }

  // Returns true when a renewal granted clearly less than `increment`, because the max TTL
  // caps it. TTLs are whole seconds, and the server may cross a second boundary between
  // setting the expiry and reporting the TTL, so a grant one second short counts as full,
  // unless that second is more than a third of the increment.
  static bool Capped(std::chrono::seconds granted, std::chrono::seconds increment) {
    if (granted.count() <= 0) return true;
    return granted + std::chrono::seconds(1) < increment || granted * 3 < increment * 2;
  }

  static bool Transient(const Error& error) {
    return error.code() == ErrorCode::kUnavailable ||
           error.code() == ErrorCode::kDeadlineExceeded ||
           error.code() == ErrorCode::kInternal;
  }

  // Returns when to act on a credential granted `ttl` just now: renew it (`renew`), or else
  // replace it (log in again, fetch again). The credential may have one second less than
  // `ttl` left, because servers round TTLs to whole seconds. A replacement starts when
  // max(3 s, ttl / 3) of that remains, or half of it for short TTLs, and a renewal comes at
  // renew_fraction of `ttl` or at that point, whichever is first. A quarter of `ttl` (at
  // least 50 ms) always passes, so that credentials of a second or two do not spin. A TTL of
  // 0 never comes due.
  Clock::time_point StepTime(std::chrono::seconds ttl, bool renew) const {
    if (ttl.count() <= 0) return Clock::time_point::max();
    const Milliseconds granted = ttl;
    const Milliseconds life = granted - Milliseconds(1000);
    const Milliseconds lead = std::min(std::max(Milliseconds(3000), granted / 3), life / 2);
    Milliseconds wait = life - lead;
    if (renew) {
      const auto fraction = Milliseconds(static_cast<std::int64_t>(
          static_cast<double>(granted.count()) * options_.renew_fraction));
      wait = std::min(wait, fraction);
    }
    wait = std::max(wait, std::max(granted / 4, Milliseconds(50)));
    return Clock::now() + wait;
  }

  // Counts a failure and returns the time of the next attempt. See WatcherOptions::retry_delay.
  Clock::time_point NextRetry(int& failures, Clock::time_point expires) const {
    ++failures;
    auto delay = options_.retry_delay;
    for (int i = 1; i < failures && delay < options_.max_retry_delay; ++i) delay *= 2;
    delay = std::min(delay, options_.max_retry_delay);
    const auto now = Clock::now();
    if (expires > now && now + delay > expires) {
      failures = 0;
      return std::max(now + options_.retry_delay, expires - options_.retry_delay / 2);
    }
    return now + delay;
  }

  // Passes `error` to on_error, except while stopping (the errors are then the watcher's own
  // cancellations). An exception from on_error is dropped, because there is nowhere left to
  // report it.
  void Report(const Error& error) {
    if (!options_.on_error) return;
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
    }
    try {
      options_.on_error(error);
    } catch (...) {
    }
  }

  void Run() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      Clock::time_point next = Clock::time_point::max();
      if (token_.active) next = token_.due;
      for (const auto& entry : entries_) next = std::min(next, entry->due);
      wake_ = false;
      if (next == Clock::time_point::max()) {
        wakeup_.wait(lock, [this] { return stopping_ || wake_; });
      } else {
        wakeup_.wait_until(lock, next, [this] { return stopping_ || wake_; });
      }
      if (stopping_) break;
      const auto now = Clock::now();
      if (token_.active && token_.due <= now) {
        lock.unlock();
        StepToken();
        lock.lock();
        continue;
      }
      std::shared_ptr<Entry> due;
      for (const auto& entry : entries_) {
        if (entry->due <= now) {
          due = entry;
          break;
        }
      }
      if (!due) continue;
      stepping_id_ = due->id;
      lock.unlock();
      StepEntry(*due);
      lock.lock();
      stepping_id_ = 0;
      step_done_.notify_all();
    }
  }

  // Runs on the watcher thread without mutex_; only it writes token_ after construction.
  void StepToken() {
    worker_->SetToken(client_.token());
    if (token_.needs_lookup) {
      LookUpToken();
      return;
    }
    if (token_.renewable && !token_.exhausted) {
      auto renewed = worker_->TokenRenewSelf(token_.increment);
      if (renewed.ok()) {
        const auto ttl = renewed.value().lease_duration;
        token_.failures = 0;
        token_.exhausted = Capped(ttl, token_.increment);
        token_.renewable = renewed.value().renewable;
        token_.expires = Clock::now() + ttl;
        const bool renew_again = token_.renewable && !token_.exhausted;
        SetTokenDue(ttl.count() > 0 ? StepTime(ttl, renew_again) : Clock::now());
        return;
      }
      Report(renewed.error());
      if (Transient(renewed.error()) && Clock::now() < token_.expires) {
        SetTokenDue(NextRetry(token_.failures, token_.expires));
        return;
      }
    }
    Relogin();
  }

  void LookUpToken() {
    if (client_.token().empty() && options_.login) {
      Relogin();
      return;
    }
    auto info = worker_->TokenLookupSelf();
    if (!info.ok()) {
      Report(info.error());
      if (Transient(info.error())) {
        SetTokenDue(NextRetry(token_.failures, Clock::time_point::max()));
      } else {
        Relogin();
      }
      return;
    }
    token_.needs_lookup = false;
    token_.failures = 0;
    token_.renewable = info.value().renewable;
    token_.increment = info.value().creation_ttl.count() > 0 ? info.value().creation_ttl
                                                             : info.value().ttl;
    token_.exhausted = false;
    token_.expires = Clock::now() + info.value().ttl;
    // A token without a TTL (root) never needs renewing.
    SetTokenDue(StepTime(info.value().ttl, token_.renewable));
  }

  void Relogin() {
    if (!options_.login) {
      Report(Error(ErrorCode::kFailedPrecondition,
                   "token can no longer be renewed and no login function is set"));
      std::lock_guard lock(mutex_);
      token_.active = false;
      return;
    }

    auto auth = Guarded("login function", [&] { return options_.login(*worker_); });
    if (!auth.ok()) {
      Report(auth.error());
      SetTokenDue(NextRetry(token_.failures, token_.expires));
      return;
    }

    client_.SetToken(auth.value().client_token);
    worker_->SetToken(auth.value().client_token);
    ++logins_;
    const auto ttl = auth.value().lease_duration;
    token_.needs_lookup = false;
    token_.failures = 0;
    token_.renewable = auth.value().renewable;
    token_.increment = ttl;
    token_.exhausted = false;
    token_.expires = Clock::now() + ttl;

    {
      std::lock_guard lock(mutex_);
      token_.due = StepTime(ttl, token_.renewable);
      for (const auto& entry : entries_) {
        if (!entry->terms.lease_id.empty()) {
          entry->must_fetch = true;
          entry->due = Clock::now();
        }
      }
    }

    if (options_.on_token_rotated) {
      // The new token is installed either way; a throwing callback is only reported.
      auto delivered = Guarded("token rotation callback", [&]() -> Status {
        options_.on_token_rotated(auth.value());
        return {};
      });
      if (!delivered.ok()) Report(delivered.error());
    }
  }

  void SetTokenDue(Clock::time_point due) {
    std::lock_guard lock(mutex_);
    token_.due = due;
  }

  // Runs on the watcher thread without mutex_, except where it publishes the next due time.
  void StepEntry(Entry& entry) {
    worker_->SetToken(client_.token());
    const bool renew = !entry.must_fetch && !entry.exhausted && Renews(entry.terms);
    if (renew) {
      auto renewed = worker_->LeaseRenew(entry.terms.lease_id, entry.increment);
      if (renewed.ok()) {
        const auto ttl = renewed.value().lease_duration;
        std::lock_guard lock(mutex_);
        entry.failures = 0;
        entry.terms.ttl = ttl;
        entry.exhausted = Capped(ttl, entry.increment);
        entry.expires = Clock::now() + ttl;
        entry.due = ttl.count() > 0 ? StepTime(ttl, !entry.exhausted) : Clock::now();
        return;
      }
      Report(renewed.error());
      if (Transient(renewed.error()) && Clock::now() < entry.expires) {
        std::lock_guard lock(mutex_);
        entry.due = NextRetry(entry.failures, entry.expires);
        return;
      }
    }

    auto fetched = entry.fetch(*worker_);
    ++fetches_;
    if (!fetched.ok()) {
      Report(fetched.error());
      std::lock_guard lock(mutex_);
      entry.due = NextRetry(entry.failures, entry.expires);
      return;
    }

    std::lock_guard lock(mutex_);
    entry.terms = fetched.value();
    entry.increment = entry.terms.ttl;
    entry.exhausted = false;
    entry.must_fetch = false;
    entry.failures = 0;
    entry.expires = Clock::now() + entry.terms.ttl;
    entry.due = StepTime(entry.terms.ttl, Renews(entry.terms));
  }

  Client& client_;
  const std::unique_ptr<Client> worker_;  // the watcher's own client; Stop cancels its calls
  const WatcherOptions options_;

  std::mutex mutex_;
  std::condition_variable wakeup_;
  std::condition_variable step_done_;  // a step of an entry finished (for Unwatch)
  bool stopping_ = false;  // guarded by mutex_
  bool wake_ = false;      // guarded by mutex_: the schedule changed
  std::uint64_t stepping_id_ = 0;  // guarded by mutex_: the entry being stepped, 0 for none
  TokenState token_;       // due guarded by mutex_; the rest written only by the thread
  std::vector<std::shared_ptr<Entry>> entries_;  // guarded by mutex_
  std::uint64_t last_id_ = 0;                    // guarded by mutex_
  std::atomic<std::uint64_t> logins_{0};
  std::atomic<std::uint64_t> fetches_{0};
  std::thread thread_;
};

}  // namespace keyward
