#include "vault/database/database_config.hpp"

#include <algorithm>

#include "base/clock.hpp"
#include "vault/database/postgres_connection.hpp"

namespace kw::vault::database {

bool DatabaseConfig::AllowsRole(std::string_view role) const {
  return std::any_of(allowed_roles.begin(), allowed_roles.end(),
                     [&](const std::string& allowed) { return allowed == "*" || allowed == role; });
}

nlohmann::json DatabaseConfig::ToPublicJson() const {
  nlohmann::json details = {
      {"connection_url", RedactConnectionUrl(connection_url)},
      {"username", username},
      {"max_open_connections", max_open_connections},
  };
  return {
      {"plugin_name", plugin_name},
      {"plugin_version", ""},
      {"connection_details", std::move(details)},
      {"allowed_roles", allowed_roles},
      {"verify_connection", verify_connection},
      {"root_credentials_rotate_statements", root_rotation_statements},
      {"password_policy", ""},
      {"last_root_rotation_time",
       root_rotation_time == 0 ? nlohmann::json("")
                               : nlohmann::json(FormatRfc3339(std::chrono::system_clock::time_point(
                                     std::chrono::seconds(root_rotation_time))))},
  };
}

Status ValidateObjectName(std::string_view kind, std::string_view name) {
  if (name.empty() || name.size() > 128) {
    return InvalidArgument("invalid " + std::string(kind) + " name: use 1 to 128 characters");
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) {
      return InvalidArgument("invalid " + std::string(kind) +
                             " name: use letters, digits, '_', '-' and '.'");
    }
  }
  return OkStatus();
}

Result<std::optional<EncryptedRecords::Loaded>> EncryptedRecords::Get(std::string_view name) const {
  KW_ASSIGN_OR_RETURN(auto raw, storage_.Get(Key(name)));
  if (!raw) return std::optional<Loaded>();
  KW_ASSIGN_OR_RETURN(SecretBuffer plain, barrier_.Decrypt(*raw, Aad(name)));
  return std::optional<Loaded>(Loaded{std::move(plain), std::move(*raw)});
}

Status EncryptedRecords::Stage(std::string_view name, std::span<const std::uint8_t> plain,
                               const std::optional<Bytes>& previous,
                               storage::WriteBatch& batch) const {
  KW_ASSIGN_OR_RETURN(Bytes sealed, barrier_.Encrypt(plain, Aad(name)));
  batch.Expect(Key(name), previous);
  batch.Put(Key(name), std::move(sealed));
  return OkStatus();
}

void EncryptedRecords::StageDelete(std::string_view name, storage::WriteBatch& batch) const {
  batch.Delete(Key(name));
}

Result<std::vector<std::string>> EncryptedRecords::List() const {
  KW_ASSIGN_OR_RETURN(auto names, storage_.List(prefix_));
  if (names.empty()) return NotFound("no entries under " + prefix_);
  return names;
}

SecretBuffer EncodeConfig(const DatabaseConfig& config) {
  nlohmann::json record = {
      {"name", config.name},
      {"plugin_name", config.plugin_name},
      {"connection_url", config.connection_url},
      {"username", config.username},
      {"password", std::string(config.password.RevealText())},
      {"allowed_roles", config.allowed_roles},
      {"verify_connection", config.verify_connection},
      {"max_open_connections", config.max_open_connections},
      {"root_rotation_statements", config.root_rotation_statements},
      {"root_rotation_time", config.root_rotation_time},
  };
  std::string text = record.dump();
  WipeString(record["password"].get_ref<std::string&>());
  SecretBuffer plain = SecretBuffer::CopyFrom(text);
  WipeString(text);
  return plain;
}

Result<DatabaseConfig> DecodeConfig(std::string_view name, const SecretBuffer& plain) {
  try {
    nlohmann::json record = nlohmann::json::parse(plain.RevealText());
    DatabaseConfig config;
    config.name = record.at("name").get<std::string>();
    if (config.name != name) return DataLoss("database config record names another config");
    config.plugin_name = record.at("plugin_name").get<std::string>();
    config.connection_url = record.at("connection_url").get<std::string>();
    config.username = record.at("username").get<std::string>();
    std::string& password = record.at("password").get_ref<std::string&>();
    config.password = SecretBuffer::CopyFrom(password);
    WipeString(password);
    config.allowed_roles = record.at("allowed_roles").get<std::vector<std::string>>();
    config.verify_connection = record.at("verify_connection").get<bool>();
    config.max_open_connections = record.at("max_open_connections").get<std::int64_t>();
    config.root_rotation_statements =
        record.at("root_rotation_statements").get<std::vector<std::string>>();
    config.root_rotation_time = record.value("root_rotation_time", std::int64_t{0});
    return config;
  } catch (const nlohmann::json::exception&) {
    return DataLoss("database config record \"" + std::string(name) + "\" is malformed");
  }
}

}  // namespace kw::vault::database
