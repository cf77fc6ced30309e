#include "api/token_handlers.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>

#include "api/auth_reply.hpp"
#include "api/json_fields.hpp"
#include "base/cidr.hpp"
#include "base/log.hpp"

namespace kw::api {
namespace {

using vault::auth::TokenEntry;
using vault::auth::TokenRequest;
using vault::auth::TokenRole;

constexpr std::string_view kPrefix = "auth/token/";

std::int64_t NowSeconds(const RequestContext& c) {
  return std::chrono::duration_cast<std::chrono::seconds>(
             c.core.clock().Now().time_since_epoch())
      .count();
}

std::string FormatUnix(std::int64_t seconds) {
  return FormatRfc3339(TimePoint(std::chrono::seconds(seconds)));
}

bool IsWrite(const RequestContext& c) { return c.method == "POST" || c.method == "PUT"; }

// Returns `text` lower-cased (ASCII), as role names are compared.
std::string LowerCase(std::string_view text) {
  std::string lowered(text);
  std::transform(lowered.begin(), lowered.end(), lowered.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return lowered;
}

// Lower-cases a display name and turns every character outside [a-z0-9-] into '-', as
// Vault does, capped at 64 characters.
std::string SanitizeDisplayName(std::string_view raw) {
  std::string name;
  for (char ch : raw.substr(0, 64)) {
    const auto c = static_cast<unsigned char>(std::tolower(static_cast<unsigned char>(ch)));
    name.push_back((std::isalnum(c) != 0 && c < 0x80) || c == '-' ? static_cast<char>(c) : '-');
  }
  return name;
}

// The lookup data of `e`, as Vault's token lookup returns it, plus keyward's delegation
// fields. `id` is the token text when the caller presented it, else empty.
nlohmann::json LookupData(const RequestContext& c, const TokenEntry& e, std::string_view id) {
  const std::int64_t now = NowSeconds(c);
  nlohmann::json data = {
      {"accessor", e.accessor},
      {"creation_time", e.creation_time},
      {"creation_ttl", e.creation_ttl},
      {"display_name", e.display_name},
      {"entity_id", e.entity_id},
      {"expire_time", e.expire_time == 0 ? nlohmann::json(nullptr)
                                         : nlohmann::json(FormatUnix(e.expire_time))},
      {"explicit_max_ttl", e.explicit_max_ttl},
      {"id", std::string(id)},
      {"issue_time", FormatUnix(e.creation_time)},
      {"meta", e.meta.empty() ? nlohmann::json(nullptr) : nlohmann::json(e.meta)},
      {"num_uses", e.num_uses},
      {"orphan", e.orphan()},
      {"path", e.path},
      {"policies", e.policies},
      {"renewable", e.renewable},
      {"ttl", e.Ttl(now)},
      {"type", "service"},
      {"parent_accessor", e.parent},
      {"delegation_chain", e.chain},
      {"bound_paths", e.bound_paths},
      {"bound_cidrs", e.bound_cidrs},
  };
  if (e.period > 0) data["period"] = e.period;
  if (!e.role.empty()) data["role"] = e.role;
  return data;
}

// The `auth` block of a renewal: Vault returns the token's new lease.
Reply RenewReply(const RequestContext& c, const TokenEntry& e, std::string_view token) {
  nlohmann::json body = Envelope(c, nullptr);
  body["auth"] = {{"client_token", std::string(token)},
                  {"accessor", e.accessor},
                  {"policies", e.policies},
                  {"token_policies", e.policies},
                  {"metadata", e.meta.empty() ? nlohmann::json(nullptr) : nlohmann::json(e.meta)},
                  {"lease_duration", e.Ttl(NowSeconds(c))},
                  {"renewable", e.renewable},
                  {"entity_id", e.entity_id},
                  {"token_type", "service"},
                  {"orphan", e.orphan()}};
  return Reply{200, std::move(body)};
}

Reply NoContent() { return Reply{204, nullptr}; }

Result<std::string> RequiredString(const RequestContext& c, std::string_view field) {
  KW_ASSIGN_OR_RETURN(auto value, OptionalString(c.body, field));
  if (!value || value->empty()) {
    return InvalidArgument("missing " + std::string(field));
  }
  return *value;
}

Result<std::int64_t> Seconds(const RequestContext& c, std::string_view field) {
  KW_ASSIGN_OR_RETURN(auto value, OptionalDuration(c.body, field));
  return value ? value->count() : 0;
}

// Reads the create fields of the request body into `request`.
Status ReadCreateFields(const RequestContext& c, TokenRequest& request) {
  KW_ASSIGN_OR_RETURN(auto policies, OptionalStringList(c.body, "policies"));
  if (policies) request.policies = std::move(*policies);
  KW_ASSIGN_OR_RETURN(auto meta, OptionalStringMap(c.body, "meta"));
  if (meta) request.meta = std::move(*meta);
  KW_ASSIGN_OR_RETURN(auto display_name, OptionalString(c.body, "display_name"));
  if (display_name) request.display_name = SanitizeDisplayName(*display_name);
  KW_ASSIGN_OR_RETURN(auto ttl, OptionalDuration(c.body, "ttl"));
  if (ttl) request.ttl = ttl->count();
  // `lease` is Vault's old name for ttl.
  KW_ASSIGN_OR_RETURN(auto lease, OptionalDuration(c.body, "lease"));
  if (lease && !ttl) request.ttl = lease->count();
  KW_ASSIGN_OR_RETURN(auto explicit_max, OptionalDuration(c.body, "explicit_max_ttl"));
  if (explicit_max) request.explicit_max_ttl = explicit_max->count();
  KW_ASSIGN_OR_RETURN(auto period, OptionalDuration(c.body, "period"));
  if (period) request.period = period->count();
  KW_ASSIGN_OR_RETURN(auto renewable, OptionalBool(c.body, "renewable"));
  if (renewable) request.renewable = *renewable;
  KW_ASSIGN_OR_RETURN(auto num_uses, OptionalInt(c.body, "num_uses"));
  if (num_uses) request.num_uses = *num_uses;
  KW_ASSIGN_OR_RETURN(auto no_default, OptionalBool(c.body, "no_default_policy"));
  if (no_default) request.no_default_policy = *no_default;
  KW_ASSIGN_OR_RETURN(auto bound_paths, OptionalStringList(c.body, "bound_paths"));
  if (bound_paths) request.bound_paths = std::move(*bound_paths);
  KW_ASSIGN_OR_RETURN(auto bound_cidrs, OptionalStringList(c.body, "bound_cidrs"));
  if (bound_cidrs) request.bound_cidrs = std::move(*bound_cidrs);
  KW_ASSIGN_OR_RETURN(auto type, OptionalString(c.body, "type"));
  if (type && *type != "service" && *type != "default") {
    return InvalidArgument("type: keyward issues service tokens only; omit type or use \"service\"");
  }
  KW_ASSIGN_OR_RETURN(auto id, OptionalString(c.body, "id"));
  if (id && !id->empty()) {
    request.id = SecretBuffer::CopyFrom(*id);
    WipeString(*id);
  }
  for (const auto& glob : request.bound_paths) {
    if (glob.empty() || glob.size() > 512 || glob.starts_with('/')) {
      return InvalidArgument("bound_paths: each entry is a path below /v1/ such as "
                             "\"secret/data/app/*\"");
    }
  }
  return OkStatus();
}

// Applies `role` to `request`: its policy bounds and token settings.
Status ApplyRole(const TokenRole& role, TokenRequest& request) {
  if (request.policies.empty()) request.policies = role.allowed_policies;

  for (const auto& raw : request.policies) {
    const std::string name = vault::auth::NormalizePolicyName(raw);
    if (name.empty() || name == "default") continue;
    if (!role.allowed_policies.empty() &&
        std::find(role.allowed_policies.begin(), role.allowed_policies.end(), name) ==
            role.allowed_policies.end()) {
      return PermissionDenied("policies: role \"" + role.name + "\" does not allow policy \"" +
                              name + "\"");
    }
    if (std::find(role.disallowed_policies.begin(), role.disallowed_policies.end(), name) !=
        role.disallowed_policies.end()) {
      return PermissionDenied("policies: role \"" + role.name + "\" disallows policy \"" + name +
                              "\"");
    }
  }
  request.role = role.name;
  request.orphan = role.orphan;
  if (!role.renewable) request.renewable = false;
  if (role.token_period > 0) request.period = role.token_period;
  if (role.token_explicit_max_ttl > 0) {
    request.explicit_max_ttl = request.explicit_max_ttl
                                   ? std::min(*request.explicit_max_ttl, role.token_explicit_max_ttl)
                                   : role.token_explicit_max_ttl;
  }
  if (!request.ttl && role.token_ttl > 0) request.ttl = role.token_ttl;
  if (role.token_num_uses > 0 &&
      (request.num_uses == 0 || request.num_uses > role.token_num_uses)) {
    request.num_uses = role.token_num_uses;
  }
  if (role.token_no_default_policy) request.no_default_policy = true;
  if (!role.token_bound_cidrs.empty()) request.bound_cidrs = role.token_bound_cidrs;
  return OkStatus();
}

Result<Reply> CreateChecked(RequestContext& c, std::string_view rest);

// Delegation refusals name the rule: the caller is authenticated and the message is about its
// own token, so it reveals nothing about other paths.
Result<Reply> Create(RequestContext& c, std::string_view rest) {
  auto reply = CreateChecked(c, rest);
  if (!reply && reply.error().code() == Code::kPermissionDenied) {
    return ErrorReply(403, {"permission denied: " + reply.error().message()});
  }
  return reply;
}

Result<Reply> CreateChecked(RequestContext& c, std::string_view rest) {
  if (!IsWrite(c)) return MethodNotAllowed(c);
  TokenRequest request;
  KW_RETURN_IF_ERROR(ReadCreateFields(c, request));
  KW_ASSIGN_OR_RETURN(auto no_parent, OptionalBool(c.body, "no_parent"));
  KW_ASSIGN_OR_RETURN(auto role_name, OptionalString(c.body, "role_name"));
  std::string role;
  if (rest.starts_with("create/")) {
    role = std::string(rest.substr(7));
  } else if (role_name && !role_name->empty()) {
    role = *role_name;
  }
  if (rest == "create-orphan") {
    request.orphan = true;  // the router required sudo on this path
  } else if (no_parent.value_or(false)) {
    if (!c.identity.root) {
      return PermissionDenied("no_parent: only root tokens create orphans this way; use "
                              "auth/token/create-orphan, which needs sudo");
    }
    request.orphan = true;
  }
  if (!role.empty()) {
    role = LowerCase(role);
    auto loaded = c.vault->token_roles->Get(role);
    if (!loaded) {
      if (loaded.error().code() == Code::kNotFound) {
        return InvalidArgument("unknown role " + role);
      }
      return tl::unexpected(loaded.error());
    }
    KW_RETURN_IF_ERROR(ApplyRole(*loaded, request));
  }
  request.display_name = request.display_name.empty() ? "token" : "token-" + request.display_name;
  request.path = "auth/token/" + std::string(rest);
  KW_ASSIGN_OR_RETURN(auto created,
                      c.vault->tokens->Create(*c.identity.entry, std::move(request), c.batch));
  return Reply{200, AuthEnvelope(c, created)};
}

// Resolves the token a lookup, renew or revoke names: the "token" field, or the caller.
Result<std::shared_ptr<const TokenEntry>> NamedToken(RequestContext& c, std::string& text) {
  KW_ASSIGN_OR_RETURN(text, RequiredString(c, "token"));
  auto entry = c.vault->tokens->LookupToken(text);
  if (!entry && entry.error().code() == Code::kNotFound) return PermissionDenied("bad token");
  return entry;
}

Result<std::shared_ptr<const TokenEntry>> NamedAccessor(RequestContext& c) {
  KW_ASSIGN_OR_RETURN(std::string accessor, RequiredString(c, "accessor"));
  auto entry = c.vault->tokens->LookupAccessor(accessor);
  if (!entry && entry.error().code() == Code::kNotFound) {
    return InvalidArgument("invalid accessor");
  }
  return entry;
}

Result<Reply> Revoke(RequestContext& c, const TokenEntry& entry, bool orphan_children) {
  KW_ASSIGN_OR_RETURN(auto revoked,
                      c.vault->tokens->Revoke(entry.accessor, orphan_children, c.batch));
  // NOTE: leases do not exist yet; once they do, the leases of every revoked accessor are
  // revoked here in the same batch.
  log::Info("tokens revoked", {{log::kRequestId, c.request_id},
                               {log::kAccessor, entry.accessor},
                               {"count", revoked.size()}});
  return NoContent();
}

Result<Reply> HandleRoles(RequestContext& c, std::string_view name) {
  if (name.empty()) {
    if (c.operation != "list") return MethodNotAllowed(c);
    auto names = c.vault->token_roles->List();
    // Vault returns 404 with an empty errors array for an empty list and for a missing role.
    if (!names && names.error().code() == Code::kNotFound) return ErrorReply(404, {});
    if (!names) return tl::unexpected(names.error());
    return Reply{200, Envelope(c, {{"keys", *names}})};
  }
  const std::string role_name = LowerCase(name);
  if (c.operation == "read") {
    auto loaded = c.vault->token_roles->Get(role_name);
    if (!loaded && loaded.error().code() == Code::kNotFound) return ErrorReply(404, {});
    if (!loaded) return tl::unexpected(loaded.error());
    const TokenRole& role = *loaded;
    return Reply{200, Envelope(c, {{"name", role.name},
                                   {"allowed_policies", role.allowed_policies},
                                   {"disallowed_policies", role.disallowed_policies},
                                   {"orphan", role.orphan},
                                   {"renewable", role.renewable},
                                   {"token_period", role.token_period},
                                   {"token_explicit_max_ttl", role.token_explicit_max_ttl},
                                   {"token_ttl", role.token_ttl},
                                   {"token_num_uses", role.token_num_uses},
                                   {"token_no_default_policy", role.token_no_default_policy},
                                   {"token_bound_cidrs", role.token_bound_cidrs},
                                   {"token_type", "service"},
                                   {"path_suffix", role.path_suffix}})};
  }
  if (c.operation == "delete") {
    KW_RETURN_IF_ERROR(c.vault->token_roles->StageDelete(role_name, c.batch));
    return NoContent();
  }
  if (!IsWrite(c)) return MethodNotAllowed(c);
  TokenRole role;
  if (auto existing = c.vault->token_roles->Get(role_name)) {
    role = *existing;
  } else if (existing.error().code() != Code::kNotFound) {
    return tl::unexpected(existing.error());
  }
  role.name = role_name;
  auto policy_list = [&](std::string_view field, std::vector<std::string>& out) -> Status {
    KW_ASSIGN_OR_RETURN(auto list, OptionalStringList(c.body, field));
    if (!list) return OkStatus();
    out.clear();
    for (const auto& raw : *list) {
      std::string name_item = vault::auth::NormalizePolicyName(raw);
      if (name_item.empty()) continue;
      if (name_item == "root" && field == "allowed_policies") {
        return InvalidArgument("allowed_policies: \"root\" cannot be granted through a role");
      }
      out.push_back(std::move(name_item));
    }
    return OkStatus();
  };
  KW_RETURN_IF_ERROR(policy_list("allowed_policies", role.allowed_policies));
  KW_RETURN_IF_ERROR(policy_list("disallowed_policies", role.disallowed_policies));
  KW_ASSIGN_OR_RETURN(auto orphan, OptionalBool(c.body, "orphan"));
  if (orphan) role.orphan = *orphan;
  KW_ASSIGN_OR_RETURN(auto renewable, OptionalBool(c.body, "renewable"));
  if (renewable) role.renewable = *renewable;
  for (auto [field, target] : {std::pair{"token_period", &role.token_period},
                               std::pair{"period", &role.token_period},
                               std::pair{"token_explicit_max_ttl", &role.token_explicit_max_ttl},
                               std::pair{"explicit_max_ttl", &role.token_explicit_max_ttl},
                               std::pair{"token_ttl", &role.token_ttl}}) {
    KW_ASSIGN_OR_RETURN(auto value, OptionalDuration(c.body, field));
    if (value) *target = value->count();
  }
  KW_ASSIGN_OR_RETURN(auto num_uses, OptionalInt(c.body, "token_num_uses"));
  if (num_uses) {
    if (*num_uses < 0) return InvalidArgument("token_num_uses: must not be negative");
    role.token_num_uses = *num_uses;
  }
  KW_ASSIGN_OR_RETURN(auto no_default, OptionalBool(c.body, "token_no_default_policy"));
  if (no_default) role.token_no_default_policy = *no_default;
  KW_ASSIGN_OR_RETURN(auto cidrs, OptionalStringList(c.body, "token_bound_cidrs"));
  if (cidrs) role.token_bound_cidrs = std::move(*cidrs);
  if (auto parsed = ParseCidrList(role.token_bound_cidrs); !parsed) {
    return InvalidArgument("token_bound_cidrs: " + parsed.error().message());
  }
  KW_ASSIGN_OR_RETURN(auto suffix, OptionalString(c.body, "path_suffix"));
  if (suffix) role.path_suffix = std::move(*suffix);
  KW_RETURN_IF_ERROR(c.vault->token_roles->StagePut(role, c.batch));
  return NoContent();
}

}  // namespace

Result<Reply> HandleToken(RequestContext& c, std::string_view token) {
  const std::string_view rest = std::string_view(c.path).substr(kPrefix.size());
  const TokenEntry& self = *c.identity.entry;

  if (rest == "create" || rest == "create-orphan" || rest.starts_with("create/")) {
    return Create(c, rest);
  }
  if (rest == "lookup-self") {
    if (c.operation != "read" && !IsWrite(c)) return MethodNotAllowed(c);
    return Reply{200, Envelope(c, LookupData(c, self, token))};
  }
  if (rest == "lookup") {
    if (!IsWrite(c)) return MethodNotAllowed(c);
    std::string text;
    KW_ASSIGN_OR_RETURN(auto entry, NamedToken(c, text));
    return Reply{200, Envelope(c, LookupData(c, *entry, text))};
  }
  if (rest == "lookup-accessor") {
    if (!IsWrite(c)) return MethodNotAllowed(c);
    KW_ASSIGN_OR_RETURN(auto entry, NamedAccessor(c));
    return Reply{200, Envelope(c, LookupData(c, *entry, ""))};
  }
  if (rest == "renew-self" || rest == "renew" || rest == "renew-accessor") {
    if (!IsWrite(c)) return MethodNotAllowed(c);
    KW_ASSIGN_OR_RETURN(std::int64_t increment, Seconds(c, "increment"));
    std::string text(token);
    std::shared_ptr<const TokenEntry> target = c.identity.entry;
    if (rest == "renew") {
      KW_ASSIGN_OR_RETURN(target, NamedToken(c, text));
    } else if (rest == "renew-accessor") {
      KW_ASSIGN_OR_RETURN(target, NamedAccessor(c));
      text.clear();
    }
    KW_ASSIGN_OR_RETURN(auto renewed,
                        c.vault->tokens->Renew(target->accessor, increment, c.batch));
    return RenewReply(c, *renewed, text);
  }
  if (rest == "revoke-self") {
    if (!IsWrite(c)) return MethodNotAllowed(c);
    return Revoke(c, self, false);
  }
  if (rest == "revoke" || rest == "revoke-orphan") {
    if (!IsWrite(c)) return MethodNotAllowed(c);
    std::string text;
    auto entry = NamedToken(c, text);
    // Revoking a token that does not exist (or no longer does) succeeds, as in Vault.
    if (!entry && entry.error().code() == Code::kPermissionDenied) return NoContent();
    if (!entry) return tl::unexpected(entry.error());
    return Revoke(c, **entry, rest == "revoke-orphan");
  }
  if (rest == "revoke-accessor") {
    if (!IsWrite(c)) return MethodNotAllowed(c);
    KW_ASSIGN_OR_RETURN(auto entry, NamedAccessor(c));
    return Revoke(c, *entry, false);
  }
  if (rest == "roles") return HandleRoles(c, "");
  if (rest.starts_with("roles/")) return HandleRoles(c, rest.substr(6));
  if (rest == "accessors") {
    if (c.operation != "list") return MethodNotAllowed(c);
    KW_ASSIGN_OR_RETURN(auto keys, c.core.storage().List("sys/token/accessor/"));
    return Reply{200, Envelope(c, {{"keys", keys}})};
  }
  if (rest == "tidy") {
    if (!IsWrite(c)) return MethodNotAllowed(c);
    KW_ASSIGN_OR_RETURN(auto expired, c.vault->tokens->SweepExpired(10'000, c.batch));
    KW_ASSIGN_OR_RETURN(std::size_t dangling, c.vault->tokens->Tidy(c.batch));
    nlohmann::json body = Envelope(c, {{"expired_tokens_revoked", expired.size()},
                                       {"index_entries_removed", dangling}});
    body["warnings"] = {"Tidy operation completed"};
    return Reply{200, std::move(body)};
  }
  return ErrorReply(404, {"no handler for route \"" + c.path + "\""});
}

}  // namespace kw::api
