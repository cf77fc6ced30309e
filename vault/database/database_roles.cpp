#include "vault/database/database_roles.hpp"

#include <sodium.h>

#include "base/bytes.hpp"

namespace kw::vault::database {
namespace {

constexpr std::string_view kPasswordAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
constexpr std::string_view kNameAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
constexpr std::size_t kNameRandomLength = 20;
constexpr std::size_t kNamePartLength = 8;

// Lower-cases `text`, replaces characters outside [a-z0-9_] by '_' and cuts it to 8 bytes.
std::string NamePart(std::string_view text) {
  std::string part;
  for (char c : text.substr(0, kNamePartLength)) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    part.push_back(ok ? c : '_');
  }
  return part;
}

// Returns `length` characters drawn uniformly from `alphabet`.
void FillRandom(std::span<std::uint8_t> out, std::string_view alphabet) {
  InitSodium();
  for (std::uint8_t& c : out) {
    c = static_cast<std::uint8_t>(
        alphabet[randombytes_uniform(static_cast<std::uint32_t>(alphabet.size()))]);
  }
}

}  // namespace

nlohmann::json DynamicRole::ToJson() const {
  return {
      {"db_name", db_name},
      {"creation_statements", creation_statements},
      {"revocation_statements", revocation_statements},
      {"renew_statements", renew_statements},
      {"rollback_statements", rollback_statements},
      {"default_ttl", default_ttl},
      {"max_ttl", max_ttl},
      {"elevated", elevated},
      {"credential_type", "password"},
  };
}

std::string EncodeRole(const DynamicRole& role) {
  nlohmann::json record = role.ToJson();
  record["name"] = role.name;
  return record.dump();
}

Result<DynamicRole> DecodeRole(std::string_view name, std::string_view text) {
  try {
    const nlohmann::json record = nlohmann::json::parse(text);
    DynamicRole role;
    role.name = record.at("name").get<std::string>();
    if (role.name != name) return DataLoss("database role record names another role");
    role.db_name = record.at("db_name").get<std::string>();
    role.creation_statements = record.at("creation_statements").get<std::vector<std::string>>();
    role.revocation_statements =
        record.at("revocation_statements").get<std::vector<std::string>>();
    role.renew_statements = record.at("renew_statements").get<std::vector<std::string>>();
    role.rollback_statements = record.at("rollback_statements").get<std::vector<std::string>>();
    role.default_ttl = record.at("default_ttl").get<std::int64_t>();
    role.max_ttl = record.at("max_ttl").get<std::int64_t>();
    role.elevated = record.value("elevated", false);
    return role;
  } catch (const nlohmann::json::exception&) {
    return DataLoss("database role record \"" + std::string(name) + "\" is malformed");
  }
}

std::string GenerateUsername(std::string_view display_name, std::string_view role_name,
                             std::int64_t now) {
  std::string random(kNameRandomLength, '\0');
  FillRandom({reinterpret_cast<std::uint8_t*>(random.data()), random.size()}, kNameAlphabet);
  std::string name = "v-" + NamePart(display_name) + "-" + NamePart(role_name) + "-" + random +
                     "-" + std::to_string(now);
  if (name.size() > kMaxRoleNameBytes) name.resize(kMaxRoleNameBytes);
  return name;
}

SecretBuffer GeneratePassword() {
  SecretBuffer password(kPasswordLength);
  FillRandom(password.Reveal(), kPasswordAlphabet);
  return password;
}

}  // namespace kw::vault::database
