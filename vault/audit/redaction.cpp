#include "vault/audit/redaction.hpp"

#include <algorithm>
#include <array>

#include "base/bytes.hpp"
#include "base/secret_buffer.hpp"
#include "vault/audit/audit_record.hpp"

namespace kw::vault::audit::detail {

namespace {

// Object keys whose string values are metadata that keyward never fills with secrets. Keep
// docs/AUDIT.md in step with this list.
constexpr std::array<std::string_view, 15> kClearKeys = {
    "accessor",       // token accessors are identifiers, not credentials, in keyward
    "created_time",   // KV metadata timestamps
    "creation_time",  //
    "deletion_time",  //
    "errors",         // keyward's error messages never contain secrets
    "expire_time",    // token and lease timestamps
    "issue_time",     //
    "last_renewal",   //
    "lease_id",       // lease ids name a lease; revoking one needs a token with the right policy
    "request_id",     //
    "serial_number",  // certificate serial numbers are public, and trace an issuance
    "spiffe_id",      // workload identities name who acted, like accessors
    "type",           // mount, engine and key types
    "updated_time",   //
    "version",        // KV version numbers, sometimes sent as strings
};

}  // namespace

bool IsClearKey(std::string_view key) {
  return std::find(kClearKeys.begin(), kClearKeys.end(), key) != kClearKeys.end();
}

Result<std::string> HmacValue(hsm::Token& token, hsm::KeyHandle key, std::string_view value) {
  if (!IsHmacableValue(value)) {
    return InvalidArgument("value to hash starts with byte 0xFF, which is not valid UTF-8");
  }
  KW_ASSIGN_OR_RETURN(const Bytes mac, token.HmacSha256(key, AsBytes(value)));
  return std::string(kHmacPrefix) + ToHex(mac);
}

Redactor::~Redactor() {
  while (!cache_.empty()) {
    auto node = cache_.extract(cache_.begin());
    WipeString(node.key());
  }
}

Result<nlohmann::json> Redactor::Redact(const nlohmann::json& body, BodyKind kind) {
  kind_ = kind;
  return RedactNode(body, /*clear_strings=*/false, Position::kRoot, /*depth=*/0);
}

Redactor::Position Redactor::ChildPosition(Position parent, std::string_view key) const {
  if (parent == Position::kPayload) return Position::kPayload;
  if (key == "custom_metadata" || key == "meta") return Position::kPayload;
  if (parent == Position::kRoot && key == "data") {
    return kind_ == BodyKind::kRequest ? Position::kPayload : Position::kResponseData;
  }
  if (parent == Position::kResponseData && key == "data") return Position::kPayload;
  return Position::kOther;
}

namespace {

// Counts the scalar values in `node`, stopping once `limit` is passed.
std::size_t CountScalars(const nlohmann::json& node, std::size_t limit) {
  if (!node.is_object() && !node.is_array()) return 1;
  std::size_t count = 0;
  for (const auto& child : node) {
    count += CountScalars(child, limit - std::min(count, limit));
    if (count > limit) break;
  }
  return count;
}

}  // namespace

Result<nlohmann::json> Redactor::RedactNode(const nlohmann::json& node, bool clear_strings,
                                            Position position, int depth) {
  using Type = nlohmann::json::value_t;
  // A payload costs one HSM call per value. Past kMaxPayloadValues the whole payload is
  // hashed as one value (its JSON text), so that one read cannot tie up the HSM.
  if (position == Position::kPayload && (node.is_object() || node.is_array()) &&
      CountScalars(node, kMaxPayloadValues) > kMaxPayloadValues) {
    std::string text = node.dump();
    Result<std::string> hmac = CachedHmac(text);
    WipeString(text);
    if (!hmac) return tl::unexpected(hmac.error());
    return nlohmann::json{{"hmac_of_payload", std::move(*hmac)}};
  }
  switch (node.type()) {
    case Type::string: {
      if (clear_strings) return node;
      KW_ASSIGN_OR_RETURN(std::string hmac, CachedHmac(node.get_ref<const std::string&>()));
      return nlohmann::json(std::move(hmac));
    }
    case Type::binary: {
      const auto& bytes = node.get_binary();
      std::string text(bytes.begin(), bytes.end());
      Result<std::string> hmac = CachedHmac(text);
      WipeString(text);
      if (!hmac) return tl::unexpected(hmac.error());
      return nlohmann::json(std::move(*hmac));
    }
    case Type::object: {
      if (depth >= kMaxBodyDepth) {
        return InvalidArgument("body nests deeper than " + std::to_string(kMaxBodyDepth) +
                               " levels");
      }
      nlohmann::json out = nlohmann::json::object();
      for (const auto& [key, value] : node.items()) {
        const Position child = ChildPosition(position, key);
        const bool clear = child != Position::kPayload && IsClearKey(key);
        KW_ASSIGN_OR_RETURN(out[key], RedactNode(value, clear, child, depth + 1));
      }
      return out;
    }
    case Type::array: {
      if (depth >= kMaxBodyDepth) {
        return InvalidArgument("body nests deeper than " + std::to_string(kMaxBodyDepth) +
                               " levels");
      }
      // Elements inherit the array's key, so "errors": ["..."] stays in clear.
      nlohmann::json out = nlohmann::json::array();
      for (const auto& element : node) {
        KW_ASSIGN_OR_RETURN(nlohmann::json redacted,
                            RedactNode(element, clear_strings, position, depth + 1));
        out.push_back(std::move(redacted));
      }
      return out;
    }
    case Type::boolean:
    case Type::number_integer:
    case Type::number_unsigned:
    case Type::number_float: {
      // Inside a user payload a number can be a PIN or a key: hash its JSON text. Elsewhere
      // numbers and booleans are counters and flags, and stay in clear as in Vault.
      if (position != Position::kPayload) return node;
      std::string text = node.dump();
      Result<std::string> hmac = CachedHmac(text);
      WipeString(text);
      if (!hmac) return tl::unexpected(hmac.error());
      return nlohmann::json(std::move(*hmac));
    }
    default:
      return node;  // null
  }
}

Result<std::string> Redactor::CachedHmac(const std::string& value) {
  if (const auto found = cache_.find(value); found != cache_.end()) return found->second;
  KW_ASSIGN_OR_RETURN(std::string hmac, HmacValue(token_, key_, value));
  cache_.emplace(value, hmac);
  return hmac;
}

}  // namespace kw::vault::audit::detail
