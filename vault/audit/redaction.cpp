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

namespace {

// Counts the scalar values in `node`. invalid_argument when arrays and objects nest deeper
// than kMaxBodyDepth, checked before anything recurses further.
Result<std::size_t> CountValues(const nlohmann::json& node, int depth) {
  if (!node.is_object() && !node.is_array()) return 1;
  if (depth >= kMaxBodyDepth) {
    return InvalidArgument("body nests deeper than " + std::to_string(kMaxBodyDepth) + " levels");
  }
  std::size_t count = 0;
  for (const auto& child : node) {
    KW_ASSIGN_OR_RETURN(const std::size_t child_count, CountValues(child, depth + 1));
    count += child_count;
  }
  return count;
}

// Returns the part of a sys/audit listing's response that stays in its record: the envelope,
// with the array under "data" replaced by its length.
nlohmann::json SummarizeListing(const nlohmann::json& body, std::string_view array_key) {
  nlohmann::json summary = nlohmann::json::object();
  for (const auto& [key, value] : body.items()) {
    if (key != "data" || !value.is_object()) {
      summary[key] = value;
      continue;
    }
    nlohmann::json data = nlohmann::json::object();
    for (const auto& [data_key, data_value] : value.items()) {
      const bool listing = data_key == array_key && data_value.is_array();
      data[data_key] = listing ? nlohmann::json(data_value.size()) : data_value;
    }
    summary[key] = std::move(data);
  }
  return summary;
}

}  // namespace

std::optional<nlohmann::json> SummarizeResponse(std::string_view path,
                                                const nlohmann::json& response_body) {
  if (!response_body.is_object()) return std::nullopt;
  if (path == "sys/audit/records") return SummarizeListing(response_body, "records");
  if (path == "sys/audit/checkpoints") return SummarizeListing(response_body, "checkpoints");
  return std::nullopt;
}

Result<nlohmann::json> Redactor::Redact(const nlohmann::json& body, BodyKind kind) {
  kind_ = kind;
  KW_ASSIGN_OR_RETURN(const std::size_t values, CountValues(body, /*depth=*/0));

  // Each redacted value costs an HSM call and up to 78 bytes of record, so a large body is
  // hashed whole. Its text is measured even when the count is low, because object keys stay
  // in clear and strings under allowlisted keys do too.
  std::string text = CanonicalJson(body);
  if (values > kMaxBodyValues || text.size() > kMaxBodyBytes) return HashWholeBody(text, values);
  WipeString(text);
  return RedactNode(body, /*clear_strings=*/false, Position::kRoot);
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

// Wipes `text` in every case.
Result<nlohmann::json> Redactor::HashWholeBody(std::string& text, std::size_t values) {
  const std::size_t bytes = text.size();
  Result<std::string> hmac = HmacValue(token_, key_, text);
  WipeString(text);
  if (!hmac) return tl::unexpected(hmac.error());
  return nlohmann::json{{"hmac_of_body", std::move(*hmac)}, {"bytes", bytes}, {"values", values}};
}

Result<nlohmann::json> Redactor::RedactNode(const nlohmann::json& node, bool clear_strings,
                                            Position position) {
  using Type = nlohmann::json::value_t;
  // Redact has checked the depth, so the recursion below stays within kMaxBodyDepth.
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
      nlohmann::json out = nlohmann::json::object();
      for (const auto& [key, value] : node.items()) {
        const Position child = ChildPosition(position, key);
        const bool clear = child != Position::kPayload && IsClearKey(key);
        KW_ASSIGN_OR_RETURN(nlohmann::json redacted, RedactNode(value, clear, child));
        if (key.size() <= kMaxClearKeyBytes) {
          out[key] = std::move(redacted);
        } else {
          KW_ASSIGN_OR_RETURN(const std::string key_hmac, CachedHmac(key));
          out[key_hmac] = std::move(redacted);
        }
      }
      return out;
    }
    case Type::array: {
      // Elements inherit the array's key, so "errors": ["..."] stays in clear.
      nlohmann::json out = nlohmann::json::array();
      for (const auto& element : node) {
        KW_ASSIGN_OR_RETURN(nlohmann::json redacted, RedactNode(element, clear_strings, position));
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
