#include "vault/database/static_roles.hpp"

#include <algorithm>
#include <chrono>

#include "base/clock.hpp"
#include "base/log.hpp"
#include "vault/database/postgres_engine.hpp"

namespace kw::vault::database {
namespace {

// Commits of one rotation that lose Expect races to concurrent writes before giving up.
constexpr int kMaxRotationAttempts = 8;

std::int64_t NowSeconds(const Clock& clock) {
  return std::chrono::duration_cast<std::chrono::seconds>(clock.Now().time_since_epoch())
      .count();
}

std::string FormatUnix(std::int64_t seconds) {
  return FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::seconds(seconds)));
}

std::string RotationPath(std::string_view name) {
  return "database/rotate-role/" + std::string(name);
}

}  // namespace

std::int64_t StaticRole::Ttl(std::int64_t now) const {
  return std::max<std::int64_t>(0, NextRotation() - now);
}

nlohmann::json StaticRole::ToPublicJson(std::int64_t now) const {
  return {
      {"db_name", db_name},
      {"username", username},
      {"rotation_period", rotation_period},
      {"rotation_statements", rotation_statements},
      {"last_vault_rotation", FormatUnix(last_vault_rotation)},
      {"ttl", Ttl(now)},
      {"credential_type", "password"},
  };
}

nlohmann::json StaticRole::ToCredsJson(std::int64_t now) const {
  return {
      {"username", username},
      {"password", std::string(password.RevealText())},
      {"last_vault_rotation", FormatUnix(last_vault_rotation)},
      {"rotation_period", rotation_period},
      {"ttl", Ttl(now)},
  };
}

Status ValidateStaticRole(const StaticRole& role) {
  KW_RETURN_IF_ERROR(ValidateObjectName("static role", role.name));
  if (role.db_name.empty()) return InvalidArgument("missing db_name: name a database config");
  if (role.username.empty()) {
    return InvalidArgument("missing username: name the existing PostgreSQL user to manage");
  }
  if (role.username.size() > kMaxRoleNameBytes) {
    return InvalidArgument("invalid username: PostgreSQL names have at most 63 bytes");
  }
  if (role.rotation_period < kMinRotationPeriod) {
    return InvalidArgument("invalid rotation_period: use at least " +
                           std::to_string(kMinRotationPeriod) + " seconds");
  }
  for (const std::string& statement : SplitStatements(role.rotation_statements)) {
    if (auto valid = ValidateTemplate(statement); !valid) {
      return tl::unexpected(valid.error().WithContext("invalid rotation_statements"));
    }
  }
  return OkStatus();
}

SecretBuffer EncodeStaticRole(const StaticRole& role) {
  nlohmann::json record = {
      {"name", role.name},
      {"db_name", role.db_name},
      {"username", role.username},
      {"rotation_period", role.rotation_period},
      {"rotation_statements", role.rotation_statements},
      {"password", std::string(role.password.RevealText())},
      {"last_vault_rotation", role.last_vault_rotation},
  };
  std::string text = record.dump();
  WipeString(record["password"].get_ref<std::string&>());
  SecretBuffer plain = SecretBuffer::CopyFrom(text);
  WipeString(text);
  return plain;
}

Result<StaticRole> DecodeStaticRole(std::string_view name, const SecretBuffer& plain) {
  try {
    nlohmann::json record = nlohmann::json::parse(plain.RevealText());
    StaticRole role;
    role.name = record.at("name").get<std::string>();
    if (role.name != name) return DataLoss("static role record names another role");
    role.db_name = record.at("db_name").get<std::string>();
    role.username = record.at("username").get<std::string>();
    role.rotation_period = record.at("rotation_period").get<std::int64_t>();
    role.rotation_statements = record.at("rotation_statements").get<std::vector<std::string>>();
    std::string& password = record.at("password").get_ref<std::string&>();
    role.password = SecretBuffer::CopyFrom(password);
    WipeString(password);
    role.last_vault_rotation = record.at("last_vault_rotation").get<std::int64_t>();
    return role;
  } catch (const nlohmann::json::exception&) {
    return DataLoss("static role record \"" + std::string(name) + "\" is malformed");
  }
}

Result<std::optional<StoredStaticRole>> PostgresEngine::LoadStaticRole(
    std::string_view name) const {
  KW_ASSIGN_OR_RETURN(auto loaded, static_roles_.Get(name));
  if (!loaded) return std::optional<StoredStaticRole>();
  KW_ASSIGN_OR_RETURN(StaticRole role, DecodeStaticRole(name, loaded->plain));
  return std::optional<StoredStaticRole>(StoredStaticRole{std::move(role), std::move(loaded->raw)});
}

Result<std::vector<std::string>> PostgresEngine::ListStaticRoles() const {
  return static_roles_.List();
}

Status PostgresEngine::StageStaticRole(StaticRole role, const std::optional<Bytes>& previous,
                                       storage::WriteBatch& batch) {
  KW_RETURN_IF_ERROR(ValidateStaticRole(role));
  if (previous) {
    KW_ASSIGN_OR_RETURN(auto current, LoadStaticRole(role.name));
    if (current && (current->role.db_name != role.db_name ||
                    current->role.username != role.username)) {
      return InvalidArgument("invalid update of static role \"" + role.name +
                             "\": db_name and username cannot change; delete the role and "
                             "create it again");
    }
    SecretBuffer plain = EncodeStaticRole(role);
    return static_roles_.Stage(role.name, plain.Reveal(), previous, batch);
  }

  KW_ASSIGN_OR_RETURN(StoredConfig stored, RequireConfig(role.db_name));
  if (!stored.config.AllowsRole(role.name)) {
    return InvalidArgument("static role \"" + role.name + "\" is not in the allowed_roles of "
                           "database config \"" + role.db_name + "\"; add it there first");
  }
  if (role.username == stored.config.username) {
    return InvalidArgument("invalid username: \"" + role.username + "\" is the user of "
                           "database config \"" + role.db_name +
                           "\"; use rotate-root for it");
  }
  KW_ASSIGN_OR_RETURN(auto pool, PoolFor(stored));
  {
    KW_ASSIGN_OR_RETURN(auto connection, pool->Acquire());
    KW_ASSIGN_OR_RETURN(std::string literal, connection->QuoteLiteral(role.username));
    KW_ASSIGN_OR_RETURN(QueryRows exists,
                        connection->Execute("SELECT 1 FROM pg_roles WHERE rolname = " + literal));
    if (exists.rows.empty()) {
      return InvalidArgument("invalid username: PostgreSQL user \"" + role.username +
                             "\" does not exist; create it first");
    }
    // The user the config logs in as may come from connection_url alone, so the server is
    // asked. Superusers are rejected as well, because taking one over would lock out its
    // other users, other keyward configs included.
    KW_ASSIGN_OR_RETURN(QueryRows current, connection->Execute("SELECT current_user"));
    if (!current.rows.empty() && !current.rows[0].empty() &&
        current.rows[0][0] == role.username) {
      return InvalidArgument("invalid username: \"" + role.username + "\" is the user of "
                             "database config \"" + role.db_name +
                             "\"; use rotate-root for it");
    }
    KW_ASSIGN_OR_RETURN(QueryRows super,
                        connection->Execute("SELECT 1 FROM pg_roles WHERE rolsuper AND rolname = " +
                                            literal));
    if (!super.rows.empty()) {
      return InvalidArgument("invalid username: \"" + role.username +
                             "\" is a PostgreSQL superuser, which keyward does not manage as a "
                             "static role");
    }
  }
  // One static role per PostgreSQL user and config: two would hand out different passwords.
  if (auto names = ListStaticRoles(); names) {
    for (const auto& other : *names) {
      KW_ASSIGN_OR_RETURN(auto existing, LoadStaticRole(other));
      if (existing && existing->role.db_name == role.db_name &&
          existing->role.username == role.username) {
        return InvalidArgument("invalid username: static role \"" + other + "\" already "
                               "manages \"" + role.username + "\" on config \"" +
                               role.db_name + "\"");
      }
    }
  } else if (names.error().code() != Code::kNotFound) {
    return tl::unexpected(names.error());
  }
  KW_ASSIGN_OR_RETURN(StaticRole rotated, ChangeStaticPassword(std::move(role)));
  SecretBuffer plain = EncodeStaticRole(rotated);
  KW_RETURN_IF_ERROR(static_roles_.Stage(rotated.name, plain.Reveal(), std::nullopt, batch));
  log::Info("database static role created and its password rotated",
            {{"role", rotated.name}, {"username", rotated.username}});
  return OkStatus();
}

void PostgresEngine::StageStaticRoleDelete(std::string_view name, storage::WriteBatch& batch) {
  static_roles_.StageDelete(name, batch);
}

Result<StaticRole> PostgresEngine::ChangeStaticPassword(StaticRole role) {
  KW_ASSIGN_OR_RETURN(StoredConfig stored, RequireConfig(role.db_name));
  KW_ASSIGN_OR_RETURN(auto pool, PoolFor(stored));
  KW_ASSIGN_OR_RETURN(auto connection, pool->Acquire());

  SecretBuffer password = GeneratePassword();
  std::vector<std::string> statements = role.rotation_statements;
  if (statements.empty()) statements.emplace_back(kDefaultStaticRotationStatement);
  const TemplateValues values{.name = role.username,
                              .password = password.RevealText(),
                              .expiration = ""};
  KW_RETURN_IF_ERROR(connection->Execute("BEGIN"));
  Status changed = RunStatements(*connection, statements, values);
  if (changed) changed = connection->Execute("COMMIT").map([](const QueryRows&) {});
  if (!changed) {
    (void)connection->Execute("ROLLBACK");
    return tl::unexpected(changed.error().WithContext("rotate static role \"" + role.name + "\""));
  }
  role.password = std::move(password);
  role.last_vault_rotation = NowSeconds(clock_);
  return role;
}

Status PostgresEngine::RotateStaticRole(std::string_view name, storage::WriteBatch& batch) {
  KW_ASSIGN_OR_RETURN(auto stored, LoadStaticRole(name));
  if (!stored) return NotFound("static role \"" + std::string(name) + "\" does not exist");
  KW_ASSIGN_OR_RETURN(StaticRole rotated, ChangeStaticPassword(std::move(stored->role)));
  SecretBuffer plain = EncodeStaticRole(rotated);
  KW_RETURN_IF_ERROR(static_roles_.Stage(rotated.name, plain.Reveal(), stored->raw, batch));
  log::Info("database static role password rotated",
            {{"role", rotated.name}, {"username", rotated.username}});
  return OkStatus();
}

Status PostgresEngine::RotateOneDue(std::string_view name, const lease::InternalCommit& commit) {
  // After an aborted commit the role is rotated again even if a concurrent rotation made it
  // no longer due: PostgreSQL has this attempt's password, which nothing stored.
  bool changed_in_postgres = false;
  Status result = OkStatus();
  for (int attempt = 1; attempt <= kMaxRotationAttempts; ++attempt) {
    auto stored = LoadStaticRole(name);
    if (!stored) {
      result = tl::unexpected(stored.error());
      break;
    }
    if (!*stored) return OkStatus();  // deleted meanwhile
    if (!changed_in_postgres && (*stored)->role.NextRotation() > NowSeconds(clock_)) {
      return OkStatus();
    }
    const Bytes previous = (*stored)->raw;
    auto rotated = ChangeStaticPassword(std::move((*stored)->role));
    if (!rotated) {
      result = tl::unexpected(rotated.error());
      break;
    }
    changed_in_postgres = true;

    storage::WriteBatch batch;
    SecretBuffer plain = EncodeStaticRole(*rotated);
    result = static_roles_.Stage(rotated->name, plain.Reveal(), previous, batch);
    if (result) {
      const nlohmann::json response = {
          {"data", {{"username", rotated->username},
                    {"last_vault_rotation", FormatUnix(rotated->last_vault_rotation)}}}};
      result = commit(std::move(batch), RotationPath(name), response);
    }
    if (result) {
      log::Info("database static role password rotated on schedule",
                {{"role", rotated->name}, {"username", rotated->username}});
      return OkStatus();
    }
    if (result.error().code() != Code::kAborted) break;
  }
  if (!changed_in_postgres) return result;
  log::Error("database static role password changed in PostgreSQL but not stored: keyward "
             "no longer knows it; rotate the role again with database/rotate-role",
             {{"role", std::string(name)}, {log::kError, result.error().message()}});
  return result;
}

Status PostgresEngine::RotateDueStaticRoles(const lease::InternalCommit& commit) {
  auto names = ListStaticRoles();
  if (!names) {
    if (names.error().code() == Code::kNotFound) return OkStatus();
    return tl::unexpected(names.error());
  }
  const std::int64_t now = NowSeconds(clock_);
  Status first_error = OkStatus();
  for (const std::string& name : *names) {
    auto stored = LoadStaticRole(name);
    Status rotated = OkStatus();
    if (!stored) {
      rotated = tl::unexpected(stored.error());
    } else if (*stored && (*stored)->role.NextRotation() <= now) {
      rotated = RotateOneDue(name, commit);
    }
    if (!rotated) {
      log::Error("database static role rotation failed; retried at the next sweep",
                 {{"role", name}, {log::kError, rotated.error().message()}});
      if (first_error) first_error = rotated;
    }
  }
  return first_error;
}

}  // namespace kw::vault::database
