#include "api/approle_handlers.hpp"

#include <chrono>

#include "api/auth_reply.hpp"
#include "api/json_fields.hpp"
#include "base/log.hpp"
#include "vault/auth/approle.hpp"

namespace kw::api {
namespace {

using vault::auth::AppRole;
using vault::auth::AppRoleRole;
using vault::auth::SecretIdEntry;

constexpr std::string_view kMount = "auth/approle/";
// Vault prints a time that is not set as Go's zero time.
constexpr std::string_view kZeroTime = "0001-01-01T00:00:00Z";

bool IsWrite(const RequestContext& c) { return c.operation == "update"; }

const nlohmann::json& Fields(const RequestContext& c) {
  static const nlohmann::json kEmpty = nlohmann::json::object();
  return c.body.is_object() ? c.body : kEmpty;
}

Result<std::optional<std::int64_t>> OptionalSeconds(const nlohmann::json& body,
                                                    std::string_view field) {
  KW_ASSIGN_OR_RETURN(auto duration, OptionalDuration(body, field));
  if (!duration) return std::optional<std::int64_t>();
  return std::optional<std::int64_t>(duration->count());
}

std::string TimeText(std::int64_t unix_seconds) {
  if (unix_seconds == 0) return std::string(kZeroTime);
  return FormatRfc3339(TimePoint(std::chrono::seconds(unix_seconds)));
}

nlohmann::json RoleToJson(const AppRoleRole& role) {
  return {{"bind_secret_id", role.bind_secret_id},
          {"local_secret_ids", false},
          {"policies", role.token_policies},
          {"period", role.token_period},
          {"secret_id_bound_cidrs", role.secret_id_bound_cidrs},
          {"secret_id_num_uses", role.secret_id_num_uses},
          {"secret_id_ttl", role.secret_id_ttl},
          {"token_bound_cidrs", role.token_bound_cidrs},
          {"token_explicit_max_ttl", 0},
          {"token_max_ttl", role.token_max_ttl},
          {"token_no_default_policy", role.token_no_default_policy},
          {"token_num_uses", role.token_num_uses},
          {"token_period", role.token_period},
          {"token_policies", role.token_policies},
          {"token_ttl", role.token_ttl},
          {"token_type", "default"}};
}

nlohmann::json SecretIdToJson(const SecretIdEntry& entry) {
  return {{"cidr_list", entry.cidr_list},
          {"creation_time", TimeText(entry.creation_time)},
          {"expiration_time", TimeText(entry.expiration_time)},
          {"last_updated_time", TimeText(entry.last_updated_time)},
          {"metadata", entry.metadata},
          {"secret_id_accessor", entry.accessor},
          {"secret_id_num_uses", entry.num_uses},
          {"secret_id_ttl", entry.ttl},
          {"token_bound_cidrs", entry.token_bound_cidrs}};
}

Result<vault::auth::AppRoleUpdate> ReadRoleUpdate(const nlohmann::json& body) {
  vault::auth::AppRoleUpdate update;
  KW_ASSIGN_OR_RETURN(update.token_policies, OptionalStringList(body, "token_policies"));
  if (!update.token_policies) {
    KW_ASSIGN_OR_RETURN(update.token_policies, OptionalStringList(body, "policies"));
  }
  KW_ASSIGN_OR_RETURN(update.token_ttl, OptionalSeconds(body, "token_ttl"));
  KW_ASSIGN_OR_RETURN(update.token_max_ttl, OptionalSeconds(body, "token_max_ttl"));
  KW_ASSIGN_OR_RETURN(update.token_num_uses, OptionalInt(body, "token_num_uses"));
  KW_ASSIGN_OR_RETURN(update.token_period, OptionalSeconds(body, "token_period"));
  if (!update.token_period) {
    KW_ASSIGN_OR_RETURN(update.token_period, OptionalSeconds(body, "period"));
  }
  KW_ASSIGN_OR_RETURN(update.token_bound_cidrs, OptionalStringList(body, "token_bound_cidrs"));
  KW_ASSIGN_OR_RETURN(update.token_no_default_policy,
                      OptionalBool(body, "token_no_default_policy"));
  KW_ASSIGN_OR_RETURN(update.secret_id_ttl, OptionalSeconds(body, "secret_id_ttl"));
  KW_ASSIGN_OR_RETURN(update.secret_id_num_uses, OptionalInt(body, "secret_id_num_uses"));
  KW_ASSIGN_OR_RETURN(update.bind_secret_id, OptionalBool(body, "bind_secret_id"));
  KW_ASSIGN_OR_RETURN(update.secret_id_bound_cidrs,
                      OptionalStringList(body, "secret_id_bound_cidrs"));
  KW_ASSIGN_OR_RETURN(auto token_type, OptionalString(body, "token_type"));
  if (token_type && *token_type != "default" && *token_type != "service") {
    return InvalidArgument(
        "invalid value for field \"token_type\": only \"default\" and \"service\" are supported");
  }
  return update;
}

// Reads `metadata` as Vault takes it: a string holding a JSON object, or the object itself,
// with string values.
Result<std::map<std::string, std::string>> ReadMetadata(const nlohmann::json& body) {
  const auto type_error = InvalidArgument(
      "invalid value for field \"metadata\": expected a JSON object of strings, or a string "
      "holding one");
  if (!body.contains("metadata") || body["metadata"].is_null()) return {};
  nlohmann::json object = body["metadata"];
  if (object.is_string()) {
    const std::string& text = object.get_ref<const std::string&>();
    if (text.empty()) return {};
    // Parsed with the request body's depth, size and duplicate-key limits.
    auto parsed = ParseBody(text);
    if (!parsed) return type_error;
    object = std::move(*parsed);
  }
  if (!object.is_object()) return type_error;
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : object.items()) {
    if (!value.is_string()) return type_error;
    out[key] = value.get<std::string>();
  }
  return out;
}

Result<vault::auth::SecretIdRequest> ReadSecretIdRequest(const nlohmann::json& body) {
  vault::auth::SecretIdRequest request;
  KW_ASSIGN_OR_RETURN(request.metadata, ReadMetadata(body));
  KW_ASSIGN_OR_RETURN(auto cidr_list, OptionalStringList(body, "cidr_list"));
  if (cidr_list) request.cidr_list = std::move(*cidr_list);
  KW_ASSIGN_OR_RETURN(auto token_cidrs, OptionalStringList(body, "token_bound_cidrs"));
  if (token_cidrs) request.token_bound_cidrs = std::move(*token_cidrs);
  KW_ASSIGN_OR_RETURN(request.ttl, OptionalSeconds(body, "ttl"));
  KW_ASSIGN_OR_RETURN(request.num_uses, OptionalInt(body, "num_uses"));
  return request;
}

// Moves the string field `field` into locked memory; invalid_argument when it is missing.
Result<SecretBuffer> RequiredSecret(const nlohmann::json& body, std::string_view field) {
  KW_ASSIGN_OR_RETURN(auto text, OptionalString(body, field));
  if (!text || text->empty()) return InvalidArgument("missing " + std::string(field));
  SecretBuffer secret = SecretBuffer::CopyFrom(*text);
  WipeString(*text);
  return secret;
}

Result<std::string> RequiredString(const nlohmann::json& body, std::string_view field) {
  KW_ASSIGN_OR_RETURN(auto text, OptionalString(body, field));
  if (!text || text->empty()) return InvalidArgument("missing " + std::string(field));
  return std::move(*text);
}

Reply NotFoundReply() { return ErrorReply(404, {}); }

Result<Reply> HandleLogin(RequestContext& c, AppRole& approle) {
  if (!IsWrite(c)) return MethodNotAllowed(c);
  const nlohmann::json& body = Fields(c);
  KW_ASSIGN_OR_RETURN(std::string role_id, RequiredString(body, "role_id"));
  KW_ASSIGN_OR_RETURN(auto secret_text, OptionalString(body, "secret_id"));
  SecretBuffer secret_id;
  if (secret_text) {
    secret_id = SecretBuffer::CopyFrom(*secret_text);
    WipeString(*secret_text);
  }
  // The router counts the outcome for the login lockout: a 400 from here is a failed login.
  auto request = approle.Login(role_id, secret_id, c.http.remote_address, c.batch);
  if (!request) return tl::unexpected(request.error());
  if (c.login_verified) c.login_verified();
  KW_ASSIGN_OR_RETURN(auto created, c.vault->tokens->CreateForLogin(std::move(*request), c.batch));
  return Reply{200, AuthEnvelope(c, created)};
}

Result<Reply> HandleRole(RequestContext& c, AppRole& approle, const std::string& name) {
  if (c.operation == "read") {
    auto role = approle.ReadRole(name);
    if (!role && role.error().code() == Code::kNotFound) return NotFoundReply();
    if (!role) return tl::unexpected(role.error());
    return Reply{200, Envelope(c, RoleToJson(*role))};
  }
  if (IsWrite(c)) {
    KW_ASSIGN_OR_RETURN(auto update, ReadRoleUpdate(Fields(c)));
    KW_RETURN_IF_ERROR(approle.WriteRole(name, update, c.batch));
    return Reply{204, nullptr};
  }
  if (c.operation == "delete") {
    auto deleted = approle.DeleteRole(name, c.batch);
    if (!deleted && deleted.error().code() != Code::kNotFound) {
      return tl::unexpected(deleted.error());
    }
    return Reply{204, nullptr};
  }
  return MethodNotAllowed(c);
}

Result<Reply> HandleRoleId(RequestContext& c, AppRole& approle, const std::string& name) {
  if (c.operation == "read") {
    auto role = approle.ReadRole(name);
    if (!role && role.error().code() == Code::kNotFound) return NotFoundReply();
    if (!role) return tl::unexpected(role.error());
    return Reply{200, Envelope(c, {{"role_id", role->role_id}})};
  }
  if (IsWrite(c)) {
    KW_ASSIGN_OR_RETURN(std::string role_id, RequiredString(Fields(c), "role_id"));
    KW_RETURN_IF_ERROR(approle.SetRoleId(name, role_id, c.batch));
    return Reply{204, nullptr};
  }
  return MethodNotAllowed(c);
}

Result<Reply> HandleSecretId(RequestContext& c, AppRole& approle, const std::string& name) {
  if (c.operation == "list") {
    KW_ASSIGN_OR_RETURN(auto accessors, approle.ListSecretIdAccessors(name));
    if (accessors.empty()) return NotFoundReply();
    return Reply{200, Envelope(c, {{"keys", accessors}})};
  }
  if (!IsWrite(c)) return MethodNotAllowed(c);
  KW_ASSIGN_OR_RETURN(auto request, ReadSecretIdRequest(Fields(c)));
  KW_ASSIGN_OR_RETURN(auto generated, approle.GenerateSecretId(name, request, c.batch));
  // The only response that carries a secret ID. The router's audit redaction hashes it.
  return Reply{200, Envelope(c, {{"secret_id", std::string(generated.secret_id.RevealText())},
                                 {"secret_id_accessor", generated.entry.accessor},
                                 {"secret_id_ttl", generated.entry.ttl},
                                 {"secret_id_num_uses", generated.entry.num_uses}})};
}

// Serves secret-id/lookup, secret-id/destroy, secret-id-accessor/lookup and
// secret-id-accessor/destroy. A lookup of an unknown secret ID gets 204 and of an unknown
// accessor 404, as in Vault.
Result<Reply> HandleSecretIdAction(RequestContext& c, AppRole& approle, const std::string& name,
                                   bool by_accessor, std::string_view action) {
  const bool destroy = action == "destroy";
  if (!IsWrite(c) && !(destroy && c.operation == "delete")) return MethodNotAllowed(c);
  const nlohmann::json& body = Fields(c);
  if (by_accessor) {
    KW_ASSIGN_OR_RETURN(std::string accessor, RequiredString(body, "secret_id_accessor"));
    if (destroy) {
      KW_RETURN_IF_ERROR(approle.DestroySecretIdAccessor(name, accessor, c.batch));
      return Reply{204, nullptr};
    }
    auto entry = approle.LookupSecretIdAccessor(name, accessor);
    if (!entry && entry.error().code() == Code::kNotFound) {
      return ErrorReply(404, {entry.error().message()});
    }
    if (!entry) return tl::unexpected(entry.error());
    return Reply{200, Envelope(c, SecretIdToJson(*entry))};
  }
  KW_ASSIGN_OR_RETURN(SecretBuffer secret_id, RequiredSecret(body, "secret_id"));
  if (destroy) {
    KW_RETURN_IF_ERROR(approle.DestroySecretId(name, secret_id, c.batch));
    return Reply{204, nullptr};
  }
  auto entry = approle.LookupSecretId(name, secret_id);
  if (!entry && entry.error().code() == Code::kNotFound) return Reply{204, nullptr};
  if (!entry) return tl::unexpected(entry.error());
  return Reply{200, Envelope(c, SecretIdToJson(*entry))};
}

Result<Reply> HandleRoles(RequestContext& c, AppRole& approle, std::string_view rest) {
  // rest is below "role/": <name>[/<action>[/<sub-action>]]
  const std::size_t slash = rest.find('/');
  KW_ASSIGN_OR_RETURN(const std::string name, AppRole::NormalizeRoleName(rest.substr(0, slash)));
  const std::string_view action =
      slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  if (action.empty()) return HandleRole(c, approle, name);
  if (action == "role-id") return HandleRoleId(c, approle, name);
  if (action == "secret-id") return HandleSecretId(c, approle, name);
  for (const bool by_accessor : {false, true}) {
    const std::string_view prefix = by_accessor ? "secret-id-accessor/" : "secret-id/";
    if (!action.starts_with(prefix)) continue;
    const std::string_view sub = action.substr(prefix.size());
    if (sub == "lookup" || sub == "destroy") {
      return HandleSecretIdAction(c, approle, name, by_accessor, sub);
    }
  }
  return ErrorReply(404, {"no handler for route \"" + c.path + "\""});
}

}  // namespace

Result<Reply> HandleAppRole(RequestContext& c) {
  if (!c.vault->approle) return ErrorReply(404, {"no handler for route \"" + c.path + "\""});
  AppRole& approle = *c.vault->approle;
  const std::string_view rest =
      c.path.size() > kMount.size() ? std::string_view(c.path).substr(kMount.size()) : "";
  if (rest == "login") return HandleLogin(c, approle);
  if (rest == "role") {
    if (c.operation != "list") return MethodNotAllowed(c);
    KW_ASSIGN_OR_RETURN(auto names, approle.ListRoles());
    if (names.empty()) return NotFoundReply();
    return Reply{200, Envelope(c, {{"keys", names}})};
  }
  if (rest.starts_with("role/")) return HandleRoles(c, approle, rest.substr(5));
  if (rest == "tidy/secret-id") {
    if (!IsWrite(c)) return MethodNotAllowed(c);
    KW_ASSIGN_OR_RETURN(std::size_t removed, approle.TidySecretIds(c.batch));
    return Reply{200, Envelope(c, {{"secret_ids_deleted", removed}})};
  }
  return ErrorReply(404, {"no handler for route \"" + c.path + "\""});
}

}  // namespace kw::api
