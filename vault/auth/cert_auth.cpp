#include "vault/auth/cert_auth.hpp"

#include <chrono>
#include <ctime>
#include <memory>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "base/cidr.hpp"
#include "vault/auth/spiffe_id.hpp"
#include "vault/auth/x509_svid.hpp"

namespace kw::vault::auth {
namespace {

using nlohmann::json;

constexpr std::string_view kRolePrefix = "auth/cert/role/";
constexpr std::size_t kMaxRoleNameBytes = 128;

// Login reasons. They state what failed for the certificate and never which role, CA or
// allowed name was involved.
constexpr std::string_view kNoCertificate = "no client certificate presented";
// One reason for an untrusted chain and for names no role allows, so that a login cannot tell
// which role names exist or whether some role trusts its CA.
constexpr std::string_view kNoMatch =
    "no role accepts the client certificate: its CA is not trusted, it is expired or not yet "
    "valid, or its names are not allowed";

std::string RoleKey(std::string_view name) { return std::string(kRolePrefix) + std::string(name); }
std::string RoleAad(std::string_view name) { return "keyward:cert-role:" + std::string(name); }

struct StoreDeleter {
  void operator()(X509_STORE* store) const { X509_STORE_free(store); }
};
struct StoreContextDeleter {
  void operator()(X509_STORE_CTX* context) const { X509_STORE_CTX_free(context); }
};
struct StackDeleter {
  // The stack borrows its certificates: only the stack itself is freed.
  void operator()(STACK_OF(X509)* stack) const { sk_X509_free(stack); }
};

Status ValidateRoleName(std::string_view name) {
  if (name.empty() || name.size() > kMaxRoleNameBytes) {
    return InvalidArgument("invalid role name: expected 1 to 128 characters");
  }
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) {
      return InvalidArgument(
          "invalid role name \"" + std::string(name) +
          "\": use only letters, digits, '-', '_' and '.'");
    }
  }
  return OkStatus();
}

json RoleToStored(const CertRole& role) {
  json stored = CertRoleToJson(role);
  stored["name"] = role.name;
  return stored;
}

Result<CertRole> RoleFromStored(std::string_view text) {
  try {
    const json j = json::parse(text);
    CertRole role;
    role.name = j.at("name").get<std::string>();
    role.certificate = j.at("certificate").get<std::string>();
    role.allowed_spiffe_ids = j.at("allowed_spiffe_ids").get<std::vector<std::string>>();
    role.allowed_common_names = j.at("allowed_common_names").get<std::vector<std::string>>();
    role.token_policies = j.at("token_policies").get<std::vector<std::string>>();
    role.token_ttl = j.at("token_ttl").get<std::int64_t>();
    role.token_max_ttl = j.at("token_max_ttl").get<std::int64_t>();
    role.token_num_uses = j.at("token_num_uses").get<std::int64_t>();
    role.display_name = j.at("display_name").get<std::string>();
    role.token_bound_cidrs = j.at("token_bound_cidrs").get<std::vector<std::string>>();
    return role;
  } catch (const json::exception&) {
    return DataLoss("stored certificate role is malformed");
  }
}

// Verifies `leaf` with the `untrusted` intermediates against the CA certificates of `bundle`
// at `now` for the sslclient purpose. Returns whether it verified. Every certificate above the
// leaf in the chain OpenSSL built must be CA:TRUE: OpenSSL would otherwise let a trust anchor
// without basicConstraints (a pinned v1 or v3 client certificate) issue certificates.
Result<bool> VerifyChain(const std::vector<X509Ptr>& bundle, X509* leaf, STACK_OF(X509)* untrusted,
                         std::time_t now) {
  std::unique_ptr<X509_STORE, StoreDeleter> store(X509_STORE_new());
  std::unique_ptr<X509_STORE_CTX, StoreContextDeleter> context(X509_STORE_CTX_new());
  if (!store || !context) return Internal("verify client certificate: out of memory");
  for (const X509Ptr& certificate : bundle) {
    if (X509_STORE_add_cert(store.get(), certificate.get()) != 1) {
      ERR_clear_error();  // a duplicate certificate in the bundle
    }
  }
  if (X509_STORE_CTX_init(context.get(), store.get(), leaf, untrusted) != 1) {
    ERR_clear_error();
    return Internal("verify client certificate: X509_STORE_CTX_init failed");
  }
  X509_STORE_CTX_set_purpose(context.get(), X509_PURPOSE_SSL_CLIENT);
  X509_VERIFY_PARAM* params = X509_STORE_CTX_get0_param(context.get());
  X509_VERIFY_PARAM_set_time(params, now);
  // As in Vault (Go's crypto/x509), every certificate of the bundle is a trust anchor, so a
  // role may trust an intermediate CA without its root.
  X509_VERIFY_PARAM_set_flags(params, X509_V_FLAG_PARTIAL_CHAIN);
  const int verified = X509_verify_cert(context.get());
  ERR_clear_error();
  if (verified != 1) return false;
  STACK_OF(X509)* built = X509_STORE_CTX_get0_chain(context.get());
  for (int i = 1; built != nullptr && i < sk_X509_num(built); ++i) {
    if (X509_check_ca(sk_X509_value(built, i)) != 1) return false;
  }
  return true;
}

bool AnyMatches(const std::vector<std::string>& patterns, const SpiffeId& id) {
  for (const std::string& pattern : patterns) {
    if (SpiffeIdMatches(pattern, id)) return true;
  }
  return false;
}

bool NamesAllowed(const CertRole& role, const std::optional<SpiffeId>& id,
                  const std::string& common_name) {
  if (!role.allowed_spiffe_ids.empty() && (!id || !AnyMatches(role.allowed_spiffe_ids, *id))) {
    return false;
  }
  if (!role.allowed_common_names.empty()) {
    if (common_name.empty()) return false;
    bool found = false;
    for (const std::string& allowed : role.allowed_common_names) found |= allowed == common_name;
    if (!found) return false;
  }
  return true;
}

TokenRequest RequestFor(const CertRole& role, const std::optional<SpiffeId>& id,
                        const std::string& common_name) {
  TokenRequest request;
  request.policies = role.token_policies;
  request.path = "auth/cert/login";
  request.display_name = "cert-" + (role.display_name.empty() ? role.name : role.display_name);
  request.meta["cert_name"] = role.name;
  if (id) {
    request.meta["spiffe_id"] = id->str();
    request.entity_id = "cert:" + id->str();
  } else {
    request.meta["common_name"] = common_name;
    request.entity_id = "cert:" + common_name;
  }
  if (role.token_ttl > 0) request.ttl = role.token_ttl;
  if (role.token_max_ttl > 0) request.explicit_max_ttl = role.token_max_ttl;
  request.num_uses = role.token_num_uses;
  request.bound_cidrs = role.token_bound_cidrs;
  request.renewable = true;
  return request;
}

}  // namespace

json CertRoleToJson(const CertRole& role) {
  return {{"certificate", role.certificate},
          {"allowed_spiffe_ids", role.allowed_spiffe_ids},
          {"allowed_uri_sans", role.allowed_spiffe_ids},
          {"allowed_common_names", role.allowed_common_names},
          {"token_policies", role.token_policies},
          {"policies", role.token_policies},
          {"token_ttl", role.token_ttl},
          {"token_max_ttl", role.token_max_ttl},
          {"token_num_uses", role.token_num_uses},
          {"display_name", role.display_name},
          {"token_bound_cidrs", role.token_bound_cidrs}};
}

Status ValidateCertRole(const CertRole& role) {
  KW_RETURN_IF_ERROR(ValidateRoleName(role.name));
  KW_RETURN_IF_ERROR(CheckAttachablePolicies(role.token_policies, "token_policies"));
  if (role.certificate.empty()) {
    return InvalidArgument("missing field \"certificate\": give the PEM CA bundle that verifies "
                           "client certificates");
  }
  if (auto parsed = ParsePemCertificates(role.certificate); !parsed) {
    return tl::unexpected(parsed.error().WithContext("invalid field \"certificate\""));
  }
  for (const std::string& pattern : role.allowed_spiffe_ids) {
    if (auto valid = ValidateSpiffeIdPattern(pattern); !valid) {
      return tl::unexpected(valid.error().WithContext(
          "invalid field \"allowed_spiffe_ids\" (expected a SPIFFE ID or a SPIFFE ID followed by "
          "\"/*\")"));
    }
  }
  for (const std::string& name : role.allowed_common_names) {
    if (name.empty()) return InvalidArgument("invalid field \"allowed_common_names\": empty name");
  }
  if (auto cidrs = ParseCidrList(role.token_bound_cidrs); !cidrs) {
    return tl::unexpected(cidrs.error().WithContext("invalid field \"token_bound_cidrs\""));
  }
  if (role.token_ttl < 0 || role.token_max_ttl < 0 || role.token_num_uses < 0) {
    return InvalidArgument("token_ttl, token_max_ttl and token_num_uses must not be negative");
  }
  if (role.token_max_ttl > 0 && role.token_ttl > role.token_max_ttl) {
    return InvalidArgument("invalid field \"token_ttl\": it must not exceed token_max_ttl");
  }
  return OkStatus();
}

Status CertAuth::WriteRole(const CertRole& role, storage::WriteBatch& batch) const {
  KW_RETURN_IF_ERROR(ValidateCertRole(role));
  const std::string text = RoleToStored(role).dump();
  KW_ASSIGN_OR_RETURN(Bytes sealed, barrier_.Encrypt(AsBytes(text), RoleAad(role.name)));
  batch.Put(RoleKey(role.name), std::move(sealed));
  return OkStatus();
}

Result<std::optional<CertRole>> CertAuth::LoadRole(std::string_view name) const {
  if (!ValidateRoleName(name)) return std::optional<CertRole>();
  KW_ASSIGN_OR_RETURN(auto stored, storage_.Get(RoleKey(name)));
  if (!stored) return std::optional<CertRole>();
  KW_ASSIGN_OR_RETURN(SecretBuffer plain, barrier_.Decrypt(*stored, RoleAad(name)));
  KW_ASSIGN_OR_RETURN(CertRole role, RoleFromStored(plain.RevealText()));
  if (role.name != name) return DataLoss("stored certificate role names another role");
  return std::optional<CertRole>(std::move(role));
}

Result<CertRole> CertAuth::ReadRole(std::string_view name) const {
  KW_ASSIGN_OR_RETURN(auto role, LoadRole(name));
  if (!role) return NotFound("certificate role \"" + std::string(name) + "\" not found");
  return std::move(*role);
}

Result<std::vector<std::string>> CertAuth::ListRoles() const {
  KW_ASSIGN_OR_RETURN(std::vector<std::string> names, storage_.List(kRolePrefix));
  std::erase_if(names, [](const std::string& name) { return name.ends_with('/'); });
  return names;
}

Status CertAuth::DeleteRole(std::string_view name, storage::WriteBatch& batch) const {
  KW_RETURN_IF_ERROR(ValidateRoleName(name));
  batch.Delete(RoleKey(name));
  return OkStatus();
}

Result<TokenRequest> CertAuth::Login(std::span<const std::string> chain_der,
                                     std::optional<std::string_view> role_name) const {
  if (chain_der.empty()) return PermissionDenied(std::string(kNoCertificate));
  std::vector<X509Ptr> chain;
  for (const std::string& der : chain_der) {
    auto certificate = ParseDerCertificate(der);
    if (!certificate) return PermissionDenied("the client certificate chain does not parse");
    chain.push_back(std::move(*certificate));
  }
  X509* leaf = chain.front().get();
  std::unique_ptr<STACK_OF(X509), StackDeleter> untrusted(sk_X509_new_null());
  if (!untrusted) return Internal("cert login: out of memory");
  for (std::size_t i = 1; i < chain.size(); ++i) sk_X509_push(untrusted.get(), chain[i].get());

  // The X.509-SVID rules concern the presented chain alone, so their outcome is computed once.
  std::optional<SpiffeId> id;
  std::optional<Error> svid_error;
  if (!UriSans(leaf).empty()) {
    std::vector<X509*> raw;
    for (const X509Ptr& certificate : chain) raw.push_back(certificate.get());
    auto checked = CheckX509Svid(raw);
    if (checked) {
      id = std::move(*checked);
    } else {
      svid_error = checked.error();
    }
  }
  const std::string common_name = CommonName(leaf);

  std::vector<std::string> names;
  if (role_name) {
    names.emplace_back(*role_name);
  } else {
    KW_ASSIGN_OR_RETURN(names, ListRoles());
  }
  const std::time_t now = std::chrono::system_clock::to_time_t(clock_.Now());
  for (const std::string& name : names) {
    KW_ASSIGN_OR_RETURN(std::optional<CertRole> role, LoadRole(name));
    if (!role) continue;
    KW_ASSIGN_OR_RETURN(std::vector<X509Ptr> bundle, ParsePemCertificates(role->certificate));
    KW_ASSIGN_OR_RETURN(bool verified, VerifyChain(bundle, leaf, untrusted.get(), now));
    if (!verified) continue;
    if (svid_error) break;
    if (NamesAllowed(*role, id, common_name)) return RequestFor(*role, id, common_name);
  }
  // A broken X.509-SVID rule is reported even when no bundle verified the chain: it describes
  // the presented certificate only, so it reveals nothing about the roles.
  if (svid_error) return PermissionDenied(svid_error->message());
  return PermissionDenied(std::string(kNoMatch));
}

}  // namespace kw::vault::auth
