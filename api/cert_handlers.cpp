#include "api/cert_handlers.hpp"

#include "api/auth_reply.hpp"
#include "api/json_fields.hpp"
#include "vault/auth/cert_auth.hpp"

namespace kw::api {
namespace {

using vault::auth::CertAuth;
using vault::auth::CertRole;

constexpr std::string_view kMount = "auth/cert/";

bool IsWrite(const RequestContext& c) { return c.method == "POST" || c.method == "PUT"; }

Reply NotFoundReply() { return ErrorReply(404, {}); }

const nlohmann::json& Fields(const RequestContext& c) {
  static const nlohmann::json kEmpty = nlohmann::json::object();
  return c.body.is_object() ? c.body : kEmpty;
}

// Reads the first of `names` that the body has (Vault's old and new field names).
Result<std::optional<std::vector<std::string>>> StringListField(
    const nlohmann::json& body, std::initializer_list<std::string_view> names) {
  for (const std::string_view name : names) {
    KW_ASSIGN_OR_RETURN(auto list, OptionalStringList(body, name));
    if (list) return list;
  }
  return std::optional<std::vector<std::string>>();
}

Result<std::optional<std::int64_t>> Seconds(const nlohmann::json& body, std::string_view name) {
  KW_ASSIGN_OR_RETURN(auto duration, OptionalDuration(body, name));
  if (!duration) return std::optional<std::int64_t>();
  return std::optional<std::int64_t>(duration->count());
}

// Applies the body's fields to `role`: fields that are absent keep their value, as Vault's
// role update does.
Status ApplyFields(const nlohmann::json& body, CertRole& role) {
  KW_ASSIGN_OR_RETURN(auto certificate, OptionalString(body, "certificate"));
  if (certificate) role.certificate = std::move(*certificate);
  KW_ASSIGN_OR_RETURN(auto ids, StringListField(body, {"allowed_spiffe_ids", "allowed_uri_sans"}));
  if (ids) role.allowed_spiffe_ids = std::move(*ids);
  KW_ASSIGN_OR_RETURN(auto names, StringListField(body, {"allowed_common_names"}));
  if (names) role.allowed_common_names = std::move(*names);
  KW_ASSIGN_OR_RETURN(auto policies, StringListField(body, {"token_policies", "policies"}));
  if (policies) role.token_policies = std::move(*policies);
  KW_ASSIGN_OR_RETURN(auto cidrs, StringListField(body, {"token_bound_cidrs"}));
  if (cidrs) role.token_bound_cidrs = std::move(*cidrs);
  KW_ASSIGN_OR_RETURN(auto display_name, OptionalString(body, "display_name"));
  if (display_name) role.display_name = std::move(*display_name);

  KW_ASSIGN_OR_RETURN(auto ttl, Seconds(body, "token_ttl"));
  if (!ttl) {
    KW_ASSIGN_OR_RETURN(ttl, Seconds(body, "ttl"));
  }
  if (ttl) role.token_ttl = *ttl;
  KW_ASSIGN_OR_RETURN(auto max_ttl, Seconds(body, "token_max_ttl"));
  if (!max_ttl) {
    KW_ASSIGN_OR_RETURN(max_ttl, Seconds(body, "max_ttl"));
  }
  if (max_ttl) role.token_max_ttl = *max_ttl;
  KW_ASSIGN_OR_RETURN(auto num_uses, OptionalInt(body, "token_num_uses"));
  if (num_uses) role.token_num_uses = *num_uses;
  return OkStatus();
}

Result<Reply> HandleRole(RequestContext& c, CertAuth& cert, std::string_view name) {
  if (name.empty() || name.find('/') != std::string_view::npos) {
    return ErrorReply(404, {"no handler for route \"" + c.path + "\""});
  }
  if (c.operation == "read") {
    auto role = cert.ReadRole(name);
    if (!role && role.error().code() == Code::kNotFound) return NotFoundReply();
    if (!role) return tl::unexpected(role.error());
    return Reply{200, Envelope(c, vault::auth::CertRoleToJson(*role))};
  }
  if (IsWrite(c)) {
    CertRole role;
    auto existing = cert.ReadRole(name);
    if (existing) {
      role = std::move(*existing);
    } else if (existing.error().code() != Code::kNotFound) {
      return tl::unexpected(existing.error());
    }
    role.name = std::string(name);
    KW_RETURN_IF_ERROR(ApplyFields(Fields(c), role));
    KW_RETURN_IF_ERROR(cert.WriteRole(role, c.batch));
    return Reply{204, nullptr};
  }
  if (c.method == "DELETE") {
    KW_RETURN_IF_ERROR(cert.DeleteRole(name, c.batch));
    return Reply{204, nullptr};
  }
  return MethodNotAllowed(c);
}

Result<Reply> HandleLogin(RequestContext& c, CertAuth& cert) {
  if (!IsWrite(c)) return MethodNotAllowed(c);
  if (!c.http.tls) return ErrorReply(400, {"client certificate required: connect over TLS"});
  KW_ASSIGN_OR_RETURN(auto name, OptionalString(Fields(c), "name"));
  std::optional<std::string_view> role_name;
  if (name && !name->empty()) role_name = *name;

  auto request = cert.Login(c.http.client_certificate_chain, role_name);
  if (!request && request.error().code() == Code::kPermissionDenied) {
    // The reason names no role content (see CertAuth::Login), so the client may see it.
    return ErrorReply(403, {"permission denied", request.error().message()});
  }
  if (!request) return tl::unexpected(request.error());
  KW_ASSIGN_OR_RETURN(auto created, c.vault->tokens->CreateForLogin(std::move(*request), c.batch));
  return Reply{200, AuthEnvelope(c, created)};
}

}  // namespace

Result<Reply> HandleCert(RequestContext& c) {
  if (!c.vault->cert) return ErrorReply(404, {"no handler for route \"" + c.path + "\""});
  CertAuth& cert = *c.vault->cert;
  const std::string_view rest =
      c.path.size() > kMount.size() ? std::string_view(c.path).substr(kMount.size()) : "";
  if (rest == "login") return HandleLogin(c, cert);
  if (rest == "certs") {
    if (c.operation != "list") return MethodNotAllowed(c);
    KW_ASSIGN_OR_RETURN(auto names, cert.ListRoles());
    if (names.empty()) return NotFoundReply();
    return Reply{200, Envelope(c, {{"keys", names}})};
  }
  if (rest.starts_with("certs/")) return HandleRole(c, cert, rest.substr(6));
  return ErrorReply(404, {"no handler for route \"" + c.path + "\""});
}

}  // namespace kw::api
