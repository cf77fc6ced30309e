#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "base/result.hpp"
#include "hsm/token.hpp"

namespace kw::vault::audit::detail {

// The prefix of every value HMAC in a record and of every sys/audit-hash result.
inline constexpr std::string_view kHmacPrefix = "hmac-sha256:";

// Maximum nesting of arrays and objects in a body. Deeper bodies are rejected rather than
// walked, so that a hostile body cannot exhaust the stack.
inline constexpr int kMaxBodyDepth = 128;

// Bounds on a body that is redacted value by value. A body with more scalar values than
// kMaxBodyValues, or whose canonical JSON text is longer than kMaxBodyBytes, is recorded as
// {"hmac_of_body": <HMAC of that text>, "bytes": <text length>, "values": <scalar count>}:
// one HSM call, and a record body of fixed size. Below both bounds a redacted body's JSON text
// is at most kMaxBodyBytes + 77 bytes per value (a scalar of 1 byte becomes a 78-byte quoted
// HMAC), 144,384 bytes.
inline constexpr std::size_t kMaxBodyValues = 1024;
inline constexpr std::size_t kMaxBodyBytes = 64 * 1024;

// Object keys longer than this are replaced by their HMAC, because keys stay in clear and a
// long key can carry data.
inline constexpr std::size_t kMaxClearKeyBytes = 256;

// Returns true when string values under the object key `key` are non-secret metadata and stay
// in clear. The allowlist is fixed and small; docs/AUDIT.md lists it with the reasons.
bool IsClearKey(std::string_view key);

// Returns "hmac-sha256:<lower-case hex>" of HMAC-SHA256(`key`, `value`) computed in the HSM.
// invalid_argument when `value` starts with byte 0xFF, which no valid UTF-8 string does and
// which is reserved for the head MAC.
Result<std::string> HmacValue(hsm::Token& token, hsm::KeyHandle key, std::string_view value);

// The body being redacted. The payload that contains user data is at a different place in each.
enum class BodyKind { kRequest, kResponse };

// Returns the response body that the record of a request to `path` keeps in place of
// `response_body`, or nullopt to keep `response_body` itself. The responses of
// sys/audit/records and sys/audit/checkpoints embed stored records and checkpoints, so their
// "records" and "checkpoints" arrays are replaced by their lengths. Recording them whole would
// make each query's record contain the previous query's record.
std::optional<nlohmann::json> SummarizeResponse(std::string_view path,
                                                const nlohmann::json& response_body);

// Replaces secret values in request and response bodies for one audit entry. Every string
// value is replaced by its HMAC unless the object key it sits under (directly, or through
// arrays) is on the allowlist. The allowlist does not apply inside user-supplied payloads,
// whose keys the user chooses: a request's top-level "data", a response's "data"."data",
// and any "custom_metadata" or "meta" object. There numbers and booleans are replaced by the
// HMAC of their JSON text too. Numbers, booleans, null and object keys of at most
// kMaxClearKeyBytes stay in clear. Binary values are HMACed like strings. A body past
// kMaxBodyValues or kMaxBodyBytes becomes one HMAC of its text. Identical strings cost one
// HSM call per Redactor. One per entry, one thread; the destructor wipes the cached plaintext
// strings.
class Redactor {
 public:
  Redactor(hsm::Token& token, hsm::KeyHandle key) : token_(token), key_(key) {}
  Redactor(const Redactor&) = delete;
  Redactor& operator=(const Redactor&) = delete;
  ~Redactor();

  // Returns a redacted copy of `body`, or the hmac_of_body summary when it exceeds
  // kMaxBodyValues or kMaxBodyBytes. invalid_argument when it nests deeper than
  // kMaxBodyDepth; the HSM's error when an HMAC fails.
  Result<nlohmann::json> Redact(const nlohmann::json& body, BodyKind kind);

 private:
  // Position of a node relative to the user payloads.
  enum class Position { kRoot, kResponseData, kPayload, kOther };

  Result<nlohmann::json> HashWholeBody(std::string& text, std::size_t values);
  Result<nlohmann::json> RedactNode(const nlohmann::json& node, bool clear_strings,
                                    Position position);
  Position ChildPosition(Position parent, std::string_view key) const;
  Result<std::string> CachedHmac(const std::string& value);

  hsm::Token& token_;
  hsm::KeyHandle key_;
  BodyKind kind_ = BodyKind::kRequest;
  std::unordered_map<std::string, std::string> cache_;  // plaintext -> HMAC string
};

}  // namespace kw::vault::audit::detail
