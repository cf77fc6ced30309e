#include "api/database_handlers.hpp"

#include "api/json_fields.hpp"
#include "base/log.hpp"
#include "vault/database/postgres_engine.hpp"
#include "vault/lease/lease_manager.hpp"

namespace kw::api {
namespace {

using vault::database::DatabaseConfig;
using vault::database::DynamicRole;
using vault::database::PostgresEngine;
using vault::database::StaticRole;

constexpr std::string_view kPrefix = "database/";

bool IsWrite(const RequestContext& c) { return c.method == "POST" || c.method == "PUT"; }

const nlohmann::json& Body(const RequestContext& c) {
  static const nlohmann::json kEmpty = nlohmann::json::object();
  return c.body.is_object() ? c.body : kEmpty;
}

Reply NotFoundReply() { return ErrorReply(404, {}); }

// The lease manager of the unsealed vault; null when the server runs without one.
vault::lease::LeaseManager* LeasesOf(RequestContext& c) { return c.vault->leases.get(); }

// A list of SQL statements: a JSON array of strings, or one string (which may hold several
// statements separated by ';'). Unlike OptionalStringList, a string is never split at commas.
Result<std::optional<std::vector<std::string>>> OptionalStatements(const nlohmann::json& body,
                                                                   std::string_view field) {
  using List = std::vector<std::string>;
  const auto found = body.find(field);
  if (found == body.end() || found->is_null()) return std::optional<List>();
  if (found->is_string()) {
    const std::string& text = found->get_ref<const std::string&>();
    return std::optional<List>(text.empty() ? List{} : List{text});
  }
  if (!found->is_array()) {
    return InvalidArgument("invalid type for field \"" + std::string(field) +
                           "\": expected a string or a list of strings");
  }
  List out;
  for (const auto& item : *found) {
    if (!item.is_string()) {
      return InvalidArgument("invalid type for field \"" + std::string(field) +
                             "\": expected a list of strings");
    }
    out.push_back(item.get<std::string>());
  }
  return std::optional<List>(std::move(out));
}

Result<Reply> ListReply(RequestContext& c, Result<std::vector<std::string>> names) {
  if (!names && names.error().code() == Code::kNotFound) return NotFoundReply();
  if (!names) return tl::unexpected(names.error());
  return Reply{200, Envelope(c, {{"keys", *names}})};
}

// Applies the body's fields to `config` (a new one or the stored one).
Status ApplyConfigFields(const nlohmann::json& body, DatabaseConfig& config) {
  KW_ASSIGN_OR_RETURN(auto plugin, OptionalString(body, "plugin_name"));
  if (plugin) config.plugin_name = *plugin;
  KW_ASSIGN_OR_RETURN(auto url, OptionalString(body, "connection_url"));
  if (url) config.connection_url = *url;
  KW_ASSIGN_OR_RETURN(auto username, OptionalString(body, "username"));
  if (username) config.username = *username;
  if (auto found = body.find("password"); found != body.end() && !found->is_null()) {
    if (!found->is_string()) {
      return InvalidArgument("invalid type for field \"password\": expected a string");
    }
    config.password = SecretBuffer::CopyFrom(found->get_ref<const std::string&>());
  }
  KW_ASSIGN_OR_RETURN(auto allowed, OptionalStringList(body, "allowed_roles"));
  if (allowed) config.allowed_roles = *allowed;
  KW_ASSIGN_OR_RETURN(auto verify, OptionalBool(body, "verify_connection"));
  config.verify_connection = verify.value_or(true);
  KW_ASSIGN_OR_RETURN(auto max_open, OptionalInt(body, "max_open_connections"));
  if (max_open) config.max_open_connections = *max_open;
  KW_ASSIGN_OR_RETURN(auto rotation, OptionalStatements(body, "root_rotation_statements"));
  if (rotation) config.root_rotation_statements = *rotation;
  return OkStatus();
}

Result<Reply> HandleConfig(RequestContext& c, PostgresEngine& engine, std::string_view name) {
  if (name.empty()) {
    if (c.operation == "list") return ListReply(c, engine.ListConfigs());
    return MethodNotAllowed(c);
  }
  if (c.operation == "read") {
    KW_ASSIGN_OR_RETURN(auto stored, engine.LoadConfig(name));
    if (!stored) return NotFoundReply();
    return Reply{200, Envelope(c, stored->config.ToPublicJson())};
  }
  if (IsWrite(c)) {
    KW_ASSIGN_OR_RETURN(auto stored, engine.LoadConfig(name));
    DatabaseConfig config;
    std::optional<Bytes> previous;
    if (stored) {
      config = std::move(stored->config);
      previous = std::move(stored->raw);
    } else {
      config.name = std::string(name);
      if (!Body(c).contains("plugin_name")) {
        return InvalidArgument("missing plugin_name: use postgresql-database-plugin");
      }
    }
    KW_RETURN_IF_ERROR(ApplyConfigFields(Body(c), config));
    KW_RETURN_IF_ERROR(engine.StageConfig(config, previous, c.batch));
    // Pooled connections still use the old settings: drop them once the new ones are stored.
    c.after_commit = [&engine, name = std::string(name)] { engine.ResetConnections(name); };
    return Reply{204, nullptr};
  }
  if (c.method == "DELETE") {
    engine.StageConfigDelete(name, c.batch);
    return Reply{204, nullptr};
  }
  return MethodNotAllowed(c);
}

Status ApplyRoleFields(const nlohmann::json& body, DynamicRole& role) {
  KW_ASSIGN_OR_RETURN(auto db_name, OptionalString(body, "db_name"));
  if (db_name) role.db_name = *db_name;
  struct StatementField {
    std::string_view name;
    std::vector<std::string>* target;
  };
  for (const StatementField& field :
       {StatementField{"creation_statements", &role.creation_statements},
        StatementField{"revocation_statements", &role.revocation_statements},
        StatementField{"renew_statements", &role.renew_statements},
        StatementField{"rollback_statements", &role.rollback_statements}}) {
    KW_ASSIGN_OR_RETURN(auto statements, OptionalStatements(body, field.name));
    if (statements) *field.target = std::move(*statements);
  }
  KW_ASSIGN_OR_RETURN(auto default_ttl, OptionalDuration(body, "default_ttl"));
  if (default_ttl) role.default_ttl = default_ttl->count();
  KW_ASSIGN_OR_RETURN(auto max_ttl, OptionalDuration(body, "max_ttl"));
  if (max_ttl) role.max_ttl = max_ttl->count();
  KW_ASSIGN_OR_RETURN(auto elevated, OptionalBool(body, "elevated"));
  if (elevated) role.elevated = *elevated;
  return OkStatus();
}

Result<Reply> HandleRoles(RequestContext& c, PostgresEngine& engine, std::string_view name) {
  if (name.empty()) {
    if (c.operation == "list") return ListReply(c, engine.ListRoles());
    return MethodNotAllowed(c);
  }
  if (c.operation == "read") {
    KW_ASSIGN_OR_RETURN(auto role, engine.LoadRole(name));
    if (!role) return NotFoundReply();
    return Reply{200, Envelope(c, role->ToJson())};
  }
  if (IsWrite(c)) {
    KW_ASSIGN_OR_RETURN(auto existing, engine.LoadRole(name));
    DynamicRole role;
    if (existing) role = std::move(*existing);
    role.name = std::string(name);
    KW_RETURN_IF_ERROR(ApplyRoleFields(Body(c), role));
    KW_RETURN_IF_ERROR(engine.StageRole(role, c.batch));
    return Reply{204, nullptr};
  }
  if (c.method == "DELETE") {
    engine.StageRoleDelete(name, c.batch);
    return Reply{204, nullptr};
  }
  return MethodNotAllowed(c);
}

// Requests whose credential is older than this without a committed lease are treated as
// failed, and their PostgreSQL roles dropped.
constexpr std::chrono::seconds kAbandonedAfter{60};

// Drops the PostgreSQL roles of credentials whose request never committed its lease.
void DropAbandoned(PostgresEngine& engine, vault::lease::LeaseManager& leases) {
  for (const vault::lease::Lease& lease : engine.TakeAbandoned(kAbandonedAfter)) {
    auto committed = leases.Lookup(lease.id);
    if (committed || committed.error().code() != Code::kNotFound) continue;
    if (auto dropped = engine.RevokeCredential(lease); !dropped) {
      log::Error("database role of an uncommitted request not dropped",
                 {{log::kLeaseId, lease.id}, {log::kError, dropped.error().message()}});
    }
  }
}

// Issues a credential: quota check, CREATE ROLE in PostgreSQL, then the lease in the request's
// batch. If the lease cannot be staged, the new PostgreSQL role is dropped again. When the
// router reruns this handler after a lost commit race, it reuses the first run's credential.
// A request that never commits has its role dropped by a later request.
// TODO: a server crash between CREATE ROLE and the commit leaves the role without a lease;
// its password still expires at the lease end (VALID UNTIL), but the role stays.
Result<Reply> HandleCreds(RequestContext& c, PostgresEngine& engine, std::string_view name) {
  if (c.operation != "read" && !IsWrite(c)) return MethodNotAllowed(c);
  if (name.empty()) return InvalidArgument("missing role name: use database/creds/<role>");
  vault::lease::LeaseManager* leases = LeasesOf(c);
  if (leases == nullptr) return Unavailable("the lease manager is not running");
  DropAbandoned(engine, *leases);

  KW_ASSIGN_OR_RETURN(auto role, engine.LoadRole(name));
  if (!role) return InvalidArgument("unknown role: " + std::string(name));
  auto pending = engine.FindPending(c.request_id);
  if (!pending) {
    KW_RETURN_IF_ERROR(leases->CheckQuota(vault::database::kMount, role->name));
    vault::lease::Lease lease = leases->NewLease(vault::database::kMount, role->name,
                                                 c.identity.accessor, role->default_ttl,
                                                 role->max_ttl);
    const std::string display_name =
        c.identity.entry != nullptr ? c.identity.entry->display_name : std::string("token");
    KW_ASSIGN_OR_RETURN(auto credential,
                        engine.CreateCredential(*role, display_name, lease.expire_time));
    lease.engine_data = PostgresEngine::LeaseData(*role, credential.username);
    pending = PostgresEngine::PendingCredential{credential.username,
                                                std::move(credential.password), lease,
                                                std::chrono::steady_clock::now()};
    engine.RememberPending(c.request_id, {pending->username,
                                          SecretBuffer::CopyFrom(pending->password.Reveal()),
                                          pending->lease, pending->created});
  }

  auto staged = leases->StageCreate(pending->lease, c.batch);
  if (!staged) {
    engine.ForgetPending(c.request_id);
    if (auto dropped = engine.RevokeCredential(pending->lease); !dropped) {
      log::Error("database role left without a lease",
                 {{"role", role->name}, {log::kRequestId, c.request_id},
                  {log::kError, dropped.error().message()}});
    }
    return tl::unexpected(staged.error());
  }

  // The worker sleeps until the earliest expiry it knew of: wake it for this lease.
  c.after_commit = [state = c.vault, request_id = c.request_id] {
    state->database->ForgetPending(request_id);
    state->leases->Wake();
  };
  nlohmann::json data = {{"username", pending->username},
                         {"password", std::string(pending->password.RevealText())}};
  nlohmann::json body = Envelope(c, std::move(data));
  body["lease_id"] = staged->id;
  body["lease_duration"] = staged->expire_time - staged->issue_time;
  body["renewable"] = staged->renewable;
  if (role->elevated) {
    // Elevated credentials name who asked for them, in the reply and so in its audit record.
    body["metadata"] = {{"elevated", true}, {"requested_by", c.identity.accessor}};
  }
  return Reply{200, std::move(body)};
}

Result<Reply> HandleRotateRoot(RequestContext& c, PostgresEngine& engine, std::string_view name) {
  if (!IsWrite(c)) return MethodNotAllowed(c);
  KW_RETURN_IF_ERROR(engine.RotateRoot(name, c.batch));
  c.after_commit = [&engine, name = std::string(name)] { engine.ResetConnections(name); };
  return Reply{204, nullptr};
}

// Applies the body's fields to `role` (a new one or the stored one).
Status ApplyStaticRoleFields(const nlohmann::json& body, StaticRole& role) {
  KW_ASSIGN_OR_RETURN(auto db_name, OptionalString(body, "db_name"));
  if (db_name) role.db_name = *db_name;
  KW_ASSIGN_OR_RETURN(auto username, OptionalString(body, "username"));
  if (username) role.username = *username;
  KW_ASSIGN_OR_RETURN(auto period, OptionalDuration(body, "rotation_period"));
  if (period) role.rotation_period = period->count();
  KW_ASSIGN_OR_RETURN(auto statements, OptionalStatements(body, "rotation_statements"));
  if (statements) role.rotation_statements = std::move(*statements);
  return OkStatus();
}

std::int64_t NowSeconds(const RequestContext& c) {
  return std::chrono::duration_cast<std::chrono::seconds>(
             c.core.clock().Now().time_since_epoch())
      .count();
}

Result<Reply> HandleStaticRoles(RequestContext& c, PostgresEngine& engine,
                                std::string_view name) {
  if (name.empty()) {
    if (c.operation == "list") return ListReply(c, engine.ListStaticRoles());
    return MethodNotAllowed(c);
  }
  if (c.operation == "read") {
    KW_ASSIGN_OR_RETURN(auto stored, engine.LoadStaticRole(name));
    if (!stored) return NotFoundReply();
    return Reply{200, Envelope(c, stored->role.ToPublicJson(NowSeconds(c)))};
  }
  if (IsWrite(c)) {
    KW_ASSIGN_OR_RETURN(auto stored, engine.LoadStaticRole(name));
    StaticRole role;
    std::optional<Bytes> previous;
    if (stored) {
      role = std::move(stored->role);
      previous = std::move(stored->raw);
    } else {
      role.name = std::string(name);
      if (!Body(c).contains("rotation_period")) {
        return InvalidArgument("missing rotation_period: give the seconds between rotations "
                               "(at least 5) or a duration such as \"24h\"");
      }
    }
    KW_RETURN_IF_ERROR(ApplyStaticRoleFields(Body(c), role));
    KW_RETURN_IF_ERROR(engine.StageStaticRole(std::move(role), previous, c.batch));
    return Reply{204, nullptr};
  }
  if (c.method == "DELETE") {
    engine.StageStaticRoleDelete(name, c.batch);
    return Reply{204, nullptr};
  }
  return MethodNotAllowed(c);
}

Result<Reply> HandleStaticCreds(RequestContext& c, PostgresEngine& engine,
                                std::string_view name) {
  if (c.operation != "read") return MethodNotAllowed(c);
  KW_ASSIGN_OR_RETURN(auto stored, engine.LoadStaticRole(name));
  if (!stored) return InvalidArgument("unknown static role: " + std::string(name));
  return Reply{200, Envelope(c, stored->role.ToCredsJson(NowSeconds(c)))};
}

Result<Reply> HandleRotateRole(RequestContext& c, PostgresEngine& engine, std::string_view name) {
  if (!IsWrite(c)) return MethodNotAllowed(c);
  auto rotated = engine.RotateStaticRole(name, c.batch);
  if (!rotated && rotated.error().code() == Code::kNotFound) {
    return InvalidArgument("unknown static role: " + std::string(name));
  }
  KW_RETURN_IF_ERROR(rotated);
  return Reply{204, nullptr};
}

Result<Reply> HandleReset(RequestContext& c, PostgresEngine& engine, std::string_view name) {
  if (!IsWrite(c)) return MethodNotAllowed(c);
  KW_ASSIGN_OR_RETURN(auto stored, engine.LoadConfig(name));
  if (!stored) return NotFoundReply();
  engine.ResetConnections(name);
  return Reply{204, nullptr};
}

}  // namespace

Result<Reply> HandleDatabase(RequestContext& c) {
  PostgresEngine* engine = c.vault->database.get();
  if (engine == nullptr) return Unavailable("the database secrets engine is not running");
  // The router also sends the bare mount path "database" here.
  if (!c.path.starts_with(kPrefix)) {
    return ErrorReply(404, {"no handler for route \"" + c.path + "\""});
  }
  std::string_view rest = std::string_view(c.path).substr(kPrefix.size());
  const std::size_t slash = rest.find('/');
  const std::string_view section = rest.substr(0, slash);
  const std::string_view name =
      slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  if (name.find('/') != std::string_view::npos) {
    return ErrorReply(404, {"no handler for route \"" + c.path + "\""});
  }

  if (section == "config") return HandleConfig(c, *engine, name);
  if (section == "roles") return HandleRoles(c, *engine, name);
  if (section == "creds") return HandleCreds(c, *engine, name);
  if (section == "rotate-root") return HandleRotateRoot(c, *engine, name);
  if (section == "reset") return HandleReset(c, *engine, name);
  if (section == "static-roles") return HandleStaticRoles(c, *engine, name);
  if (section == "static-creds") return HandleStaticCreds(c, *engine, name);
  if (section == "rotate-role") return HandleRotateRole(c, *engine, name);
  return ErrorReply(404, {"no handler for route \"" + c.path + "\""});
}

}  // namespace kw::api
