#include "vault/audit/audit_record.hpp"

#include <charconv>
#include <cstdio>

namespace kw::vault::audit::detail {

namespace {

bool IsLowerHex(std::string_view text, std::size_t length) {
  if (text.size() != length) return false;
  for (const char c : text) {
    const bool digit = c >= '0' && c <= '9';
    const bool letter = c >= 'a' && c <= 'f';
    if (!digit && !letter) return false;
  }
  return true;
}

std::string NumberedKey(std::string_view prefix, std::uint64_t number) {
  char digits[kSequenceDigits + 1];
  std::snprintf(digits, sizeof digits, "%020llu", static_cast<unsigned long long>(number));
  return std::string(prefix) + digits;
}

std::optional<std::uint64_t> ParseNumberedKey(std::string_view prefix, std::string_view key) {
  if (!key.starts_with(prefix)) return std::nullopt;
  const std::string_view digits = key.substr(prefix.size());
  if (digits.size() != kSequenceDigits) return std::nullopt;
  std::uint64_t sequence = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), sequence);
  if (error != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return sequence;
}

}  // namespace

std::string RecordKey(std::uint64_t sequence) { return NumberedKey(kLogPrefix, sequence); }

std::optional<std::uint64_t> ParseRecordKey(std::string_view key) {
  return ParseNumberedKey(kLogPrefix, key);
}

std::string CheckpointKey(std::uint64_t size) { return NumberedKey(kCheckpointPrefix, size); }

std::optional<std::uint64_t> ParseCheckpointKey(std::string_view key) {
  return ParseNumberedKey(kCheckpointPrefix, key);
}

bool NestsDeeperThan(std::string_view text, std::size_t max_depth) {
  std::size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : text) {
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
      if (++depth > max_depth) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

std::string CanonicalJson(const nlohmann::json& value) {
  return value.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
}

std::string RecordHash(std::string_view canonical) { return ToHex(Sha256(AsBytes(canonical))); }

Bytes HeadMacMessage(const Head& head) {
  const std::string text = "keyward-audit-head:" + std::to_string(head.sequence) + ":" + head.hash;
  Bytes message;
  message.reserve(text.size() + 1);
  message.push_back(0xFF);
  message.insert(message.end(), text.begin(), text.end());
  return message;
}

bool IsHmacableValue(std::string_view value) {
  return value.empty() || static_cast<unsigned char>(value.front()) != 0xFF;
}

std::string EncodeHead(const Head& head, ByteSpan mac) {
  const nlohmann::json stored = {{"seq", head.sequence}, {"hash", head.hash}, {"mac", ToHex(mac)}};
  return CanonicalJson(stored);
}

Result<StoredHead> DecodeSequenceHashMac(ByteSpan stored, std::string_view what) {
  const std::string name(what);
  const nlohmann::json parsed = nlohmann::json::parse(AsText(stored), nullptr,
                                                      /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return DataLoss(name + " is not a JSON object");
  }
  const auto sequence = parsed.find("seq");
  const auto hash = parsed.find("hash");
  const auto mac = parsed.find("mac");
  if (sequence == parsed.end() || !sequence->is_number_unsigned()) {
    return DataLoss(name + " field seq is missing or not an unsigned integer");
  }
  if (hash == parsed.end() || !hash->is_string() ||
      !IsLowerHex(hash->get_ref<const std::string&>(), 64)) {
    return DataLoss(name + " field hash is missing or not 64 lower-case hex digits");
  }
  if (mac == parsed.end() || !mac->is_string() ||
      !IsLowerHex(mac->get_ref<const std::string&>(), 64)) {
    return DataLoss(name + " field mac is missing or not 64 lower-case hex digits");
  }

  StoredHead result;
  result.head.sequence = sequence->get<std::uint64_t>();
  result.head.hash = hash->get<std::string>();
  result.mac = *FromHex(mac->get_ref<const std::string&>());
  return result;
}

Result<StoredHead> DecodeHead(ByteSpan stored) { return DecodeSequenceHashMac(stored, "audit head"); }

}  // namespace kw::vault::audit::detail
