#include "api/pki_handlers.hpp"

#include "api/json_fields.hpp"
#include "vault/pki/pki_engine.hpp"
#include "vault/pki/x509_builder.hpp"

namespace kw::api {
namespace {

using vault::pki::CallerIdentity;
using vault::pki::CertRecord;
using vault::pki::DerToPem;
using vault::pki::IssuedSvid;
using vault::pki::PkiEngine;
using vault::pki::PkiRole;

constexpr std::string_view kPrefix = "pki/";

bool IsWrite(const RequestContext& c) { return c.method == "POST" || c.method == "PUT"; }

const nlohmann::json& Body(const RequestContext& c) {
  static const nlohmann::json kEmpty = nlohmann::json::object();
  return c.body.is_object() ? c.body : kEmpty;
}

Reply NotFoundReply() { return ErrorReply(404, {}); }

Reply Raw(std::string text, std::string_view content_type) {
  Reply reply;
  reply.text = std::move(text);
  reply.headers.emplace_back("Content-Type", std::string(content_type));
  return reply;
}

std::string PemOf(const Bytes& der) { return DerToPem(der, "CERTIFICATE"); }

std::string Joined(const std::vector<Bytes>& ders, std::string_view label) {
  std::string out;
  for (const Bytes& der : ders) out += DerToPem(der, label);
  return out;
}

// The login metadata that role templates may read (see CallerIdentity).
CallerIdentity CallerOf(const RequestContext& c) {
  CallerIdentity caller;
  const auto& entry = c.identity.entry;
  if (!entry) return caller;
  auto meta = [&](const char* key) {
    auto found = entry->meta.find(key);
    return found == entry->meta.end() ? std::string() : found->second;
  };
  if (entry->path == "auth/cert/login") {
    caller.from_login = true;
    caller.spiffe_id = meta("spiffe_id");
    caller.role_name = meta("cert_name");
    caller.meta = entry->meta;
  } else if (entry->path == "auth/approle/login") {
    // The login sets role_name itself, over any secret id metadata of that name.
    caller.from_login = true;
    caller.role_name = meta("role_name");
    caller.meta = entry->meta;
  }
  return caller;
}

Result<std::string> RequiredString(const nlohmann::json& body, std::string_view field,
                                   std::string_view hint) {
  KW_ASSIGN_OR_RETURN(auto value, OptionalString(body, field));
  if (!value || value->empty()) {
    return InvalidArgument("missing field \"" + std::string(field) + "\": " + std::string(hint));
  }
  return std::move(*value);
}

Result<Reply> ListReply(RequestContext& c, const std::vector<std::string>& keys) {
  if (keys.empty()) return NotFoundReply();
  return Reply{200, Envelope(c, {{"keys", keys}})};
}

nlohmann::json RoleJson(const PkiRole& role) {
  return {{"allowed_spiffe_ids", role.allowed_spiffe_ids},
          {"ttl", role.ttl.count()},
          {"max_ttl", role.max_ttl.count()},
          {"key_type", role.key_type},
          {"key_bits", role.key_bits},
          {"not_before_skew", role.not_before_skew.count()},
          {"jwt_ttl", role.jwt_ttl.count()},
          {"jwt_max_ttl", role.jwt_max_ttl.count()}};
}

Status ApplyRoleFields(const nlohmann::json& body, PkiRole& role) {
  KW_ASSIGN_OR_RETURN(auto ids, OptionalStringList(body, "allowed_spiffe_ids"));
  if (ids) role.allowed_spiffe_ids = std::move(*ids);
  auto duration = [&](std::string_view field, std::chrono::seconds& out) -> Status {
    KW_ASSIGN_OR_RETURN(auto value, OptionalDuration(body, field));
    if (value) out = *value;
    return OkStatus();
  };
  KW_RETURN_IF_ERROR(duration("ttl", role.ttl));
  KW_RETURN_IF_ERROR(duration("max_ttl", role.max_ttl));
  KW_RETURN_IF_ERROR(duration("not_before_skew", role.not_before_skew));
  KW_RETURN_IF_ERROR(duration("jwt_ttl", role.jwt_ttl));
  KW_RETURN_IF_ERROR(duration("jwt_max_ttl", role.jwt_max_ttl));
  KW_ASSIGN_OR_RETURN(auto key_type, OptionalString(body, "key_type"));
  if (key_type) role.key_type = *key_type;
  KW_ASSIGN_OR_RETURN(auto key_bits, OptionalInt(body, "key_bits"));
  if (key_bits) {
    if (*key_bits < 0 || *key_bits > 16384) {
      return InvalidArgument("invalid field \"key_bits\": use 0 for the key type's default");
    }
    role.key_bits = static_cast<int>(*key_bits);
  }
  return OkStatus();
}

nlohmann::json SvidJson(IssuedSvid& issued) {
  std::vector<std::string> chain;
  for (const Bytes& der : issued.ca_chain) chain.push_back(PemOf(der));
  nlohmann::json data = {{"certificate", PemOf(issued.certificate)},
                         {"issuing_ca", chain.empty() ? std::string() : chain.front()},
                         {"ca_chain", chain},
                         {"serial_number", issued.serial},
                         {"expiration", issued.expiration},
                         {"spiffe_id", issued.spiffe_id},
                         {"key_version", issued.key_version}};
  if (issued.private_key_pem) {
    data["private_key"] = std::string(issued.private_key_pem->RevealText());
    data["private_key_type"] = issued.private_key_type;
  }
  return data;
}

nlohmann::json CaResultJson(const vault::pki::CaResult& result) {
  nlohmann::json data = {{"key_version", result.key_version},
                         {"trust_domain", result.trust_domain}};
  if (!result.certificate.empty()) {
    data["certificate"] = PemOf(result.certificate);
    data["issuing_ca"] = PemOf(result.certificate);
    data["activate_at"] = result.activate_at;
    if (auto info = vault::pki::ParseCertificateDer(result.certificate)) {
      data["serial_number"] = info->serial;
      data["expiration"] = info->not_after;
    }
  }
  if (!result.csr.empty()) data["csr"] = DerToPem(result.csr, "CERTIFICATE REQUEST");
  return data;
}

Result<Reply> HandleCa(RequestContext& c, PkiEngine& pki, std::string_view rest) {
  const nlohmann::json& body = Body(c);
  if (rest == "root/generate/internal" || rest == "root/generate/exported") {
    if (!IsWrite(c)) return MethodNotAllowed(c);
    if (rest == "root/generate/exported") {
      return ErrorReply(400, {"the CA key never leaves the HSM: use root/generate/internal"});
    }
    KW_ASSIGN_OR_RETURN(std::string trust_domain,
                        RequiredString(body, "trust_domain", "name the SPIFFE trust domain"));
    KW_ASSIGN_OR_RETURN(auto common_name, OptionalString(body, "common_name"));
    KW_ASSIGN_OR_RETURN(auto ttl, OptionalDuration(body, "ttl"));
    KW_ASSIGN_OR_RETURN(vault::pki::CaResult result,
                        pki.GenerateRoot(trust_domain, common_name.value_or(""),
                                         ttl.value_or(std::chrono::hours(8760)), c.batch));
    return Reply{200, Envelope(c, CaResultJson(result))};
  }
  if (rest == "intermediate/generate/internal") {
    if (!IsWrite(c)) return MethodNotAllowed(c);
    KW_ASSIGN_OR_RETURN(auto trust_domain, OptionalString(body, "trust_domain"));
    KW_ASSIGN_OR_RETURN(auto common_name, OptionalString(body, "common_name"));
    KW_ASSIGN_OR_RETURN(auto delay, OptionalDuration(body, "activation_delay"));
    KW_ASSIGN_OR_RETURN(vault::pki::CaResult result,
                        pki.GenerateIntermediate(trust_domain.value_or(""),
                                                 common_name.value_or(""),
                                                 delay.value_or(std::chrono::seconds(0)),
                                                 c.batch));
    return Reply{200, Envelope(c, CaResultJson(result))};
  }
  if (rest == "intermediate/set-signed") {
    if (!IsWrite(c)) return MethodNotAllowed(c);
    KW_ASSIGN_OR_RETURN(std::string pem,
                        RequiredString(body, "certificate",
                                       "send the signed intermediate and its chain as PEM"));
    KW_ASSIGN_OR_RETURN(vault::pki::CaResult result, pki.SetSigned(pem, c.batch));
    return Reply{200, Envelope(c, CaResultJson(result))};
  }
  if (rest == "rotate") {
    if (!IsWrite(c)) return MethodNotAllowed(c);
    KW_ASSIGN_OR_RETURN(auto ttl, OptionalDuration(body, "ttl"));
    KW_ASSIGN_OR_RETURN(auto delay, OptionalDuration(body, "activation_delay"));
    KW_ASSIGN_OR_RETURN(vault::pki::CaResult result, pki.Rotate(ttl, delay, c.batch));
    return Reply{200, Envelope(c, CaResultJson(result))};
  }
  return NotFoundReply();
}

Result<Reply> HandlePublic(RequestContext& c, PkiEngine& pki, std::string_view rest) {
  if (c.method != "GET" && c.method != "HEAD") return MethodNotAllowed(c);
  if (rest == "bundle") {
    KW_ASSIGN_OR_RETURN(std::string bundle, pki.BundleJson());
    return Raw(std::move(bundle), "application/json");
  }
  if (rest == "jwks") {
    KW_ASSIGN_OR_RETURN(nlohmann::json jwks, pki.Jwks());
    return Raw(jwks.dump(), "application/json");
  }
  if (rest == "ca" || rest == "ca/pem" || rest == "ca_chain") {
    KW_ASSIGN_OR_RETURN(std::vector<Bytes> chain, pki.ActiveChain());
    if (rest == "ca") {
      return Raw(std::string(AsText(chain.front())), "application/pkix-cert");
    }
    if (rest == "ca/pem") return Raw(PemOf(chain.front()), "application/pem-certificate-chain");
    return Raw(Joined(chain, "CERTIFICATE"), "application/pem-certificate-chain");
  }
  if (rest == "crl" || rest == "crl/pem") {
    KW_ASSIGN_OR_RETURN(std::vector<Bytes> crls, pki.Crls());
    if (crls.empty()) return ErrorReply(404, {"no CA key version is active"});
    if (rest == "crl") return Raw(std::string(AsText(crls.front())), "application/pkix-crl");
    return Raw(Joined(crls, "X509 CRL"), "application/x-pem-file");
  }
  return NotFoundReply();
}

Result<Reply> HandleRoles(RequestContext& c, PkiEngine& pki, std::string_view name) {
  if (name.empty()) {
    if (c.operation != "list") return MethodNotAllowed(c);
    KW_ASSIGN_OR_RETURN(std::vector<std::string> names, pki.ListRoles());
    return ListReply(c, names);
  }
  if (c.operation == "read") {
    KW_ASSIGN_OR_RETURN(std::optional<PkiRole> role, pki.LoadRole(name));
    if (!role) return NotFoundReply();
    return Reply{200, Envelope(c, RoleJson(*role))};
  }
  if (c.operation == "delete") {
    KW_RETURN_IF_ERROR(pki.StageRoleDelete(name, c.batch));
    return Reply{204, nullptr};
  }
  if (!IsWrite(c)) return MethodNotAllowed(c);
  KW_ASSIGN_OR_RETURN(std::optional<PkiRole> stored, pki.LoadRole(name));
  PkiRole role = stored.value_or(PkiRole{});
  role.name = std::string(name);
  KW_RETURN_IF_ERROR(ApplyRoleFields(Body(c), role));
  KW_RETURN_IF_ERROR(pki.StageRole(role, c.batch));
  return Reply{204, nullptr};
}

Result<Reply> HandleCerts(RequestContext& c, PkiEngine& pki, std::string_view rest) {
  if (rest == "certs" || rest == "certs/revoked") {
    if (c.operation != "list") return MethodNotAllowed(c);
    KW_ASSIGN_OR_RETURN(std::vector<CertRecord> records, pki.ListCerts());
    const bool revoked_only = rest == "certs/revoked";
    std::vector<std::string> keys;
    nlohmann::json info = nlohmann::json::object();
    for (const CertRecord& record : records) {
      if (revoked_only && record.revoked_at == 0) continue;
      keys.push_back(record.serial);
      info[record.serial] = {{"spiffe_id", record.spiffe_id},
                             {"expiration", record.not_after},
                             {"role", record.role},
                             {"key_version", record.key_version},
                             {"revoked", record.revoked_at != 0}};
    }
    if (keys.empty()) return NotFoundReply();
    return Reply{200, Envelope(c, {{"keys", keys}, {"key_info", info}})};
  }
  // cert/<serial>
  const std::string_view serial = rest.substr(std::string_view("cert/").size());
  if (c.operation != "read") return MethodNotAllowed(c);
  KW_ASSIGN_OR_RETURN(std::optional<CertRecord> record, pki.LoadCert(serial));
  if (!record) return NotFoundReply();
  return Reply{200, Envelope(c, {{"certificate", PemOf(record->der)},
                                 {"serial_number", record->serial},
                                 {"spiffe_id", record->spiffe_id},
                                 {"expiration", record->not_after},
                                 {"revocation_time", record->revoked_at}})};
}

Result<Reply> HandleBundles(RequestContext& c, PkiEngine& pki, std::string_view trust_domain) {
  if (trust_domain.empty()) {
    if (c.operation != "list") return MethodNotAllowed(c);
    KW_ASSIGN_OR_RETURN(std::vector<std::string> names, pki.ListFederatedBundles());
    return ListReply(c, names);
  }
  if (c.operation == "read") {
    KW_ASSIGN_OR_RETURN(std::optional<std::string> text, pki.LoadFederatedBundleJson(trust_domain));
    if (!text) return NotFoundReply();
    return Reply{200, Envelope(c, {{"trust_domain", trust_domain},
                                   {"bundle", nlohmann::json::parse(*text, nullptr, false)}})};
  }
  if (c.operation == "delete") {
    KW_RETURN_IF_ERROR(pki.StageFederatedBundleDelete(trust_domain, c.batch));
    return Reply{204, nullptr};
  }
  if (!IsWrite(c)) return MethodNotAllowed(c);
  const nlohmann::json& body = Body(c);
  auto found = body.find("bundle");
  if (found == body.end() || found->is_null()) {
    return InvalidArgument("missing field \"bundle\": send the SPIFFE bundle (JSON) of \"" +
                           std::string(trust_domain) + "\"");
  }
  std::string text;
  if (found->is_string()) {
    text = found->get<std::string>();
  } else if (found->is_object()) {
    text = found->dump();
  } else {
    return InvalidArgument("invalid type for field \"bundle\": expected a JSON object or text");
  }
  KW_RETURN_IF_ERROR(pki.StageFederatedBundle(trust_domain, text, c.batch));
  return Reply{204, nullptr};
}

Result<Reply> HandleIssue(RequestContext& c, PkiEngine& pki, std::string_view rest) {
  if (!IsWrite(c)) return MethodNotAllowed(c);
  const nlohmann::json& body = Body(c);
  KW_ASSIGN_OR_RETURN(auto ttl, OptionalDuration(body, "ttl"));
  KW_ASSIGN_OR_RETURN(auto spiffe_id, OptionalString(body, "spiffe_id"));
  const CallerIdentity caller = CallerOf(c);
  if (rest.starts_with("issue/")) {
    KW_ASSIGN_OR_RETURN(IssuedSvid issued,
                        pki.Issue(rest.substr(6), spiffe_id.value_or(""), ttl, caller, c.batch));
    return Reply{200, Envelope(c, SvidJson(issued))};
  }
  if (rest.starts_with("sign/")) {
    KW_ASSIGN_OR_RETURN(std::string csr, RequiredString(body, "csr", "send the PEM CSR"));
    KW_ASSIGN_OR_RETURN(IssuedSvid issued, pki.Sign(rest.substr(5), csr, spiffe_id.value_or(""),
                                                    ttl, caller, c.batch));
    return Reply{200, Envelope(c, SvidJson(issued))};
  }
  // jwt/issue/<role>
  KW_ASSIGN_OR_RETURN(auto audience, OptionalStringList(body, "audience"));
  KW_ASSIGN_OR_RETURN(vault::pki::IssuedJwt issued,
                      pki.IssueJwt(rest.substr(10), spiffe_id.value_or(""),
                                   audience.value_or(std::vector<std::string>()), ttl, caller,
                                   c.batch));
  return Reply{200, Envelope(c, {{"token", issued.token},
                                 {"spiffe_id", issued.spiffe_id},
                                 {"audience", issued.audience},
                                 {"expires_at", issued.expires_at},
                                 {"kid", issued.kid}})};
}

}  // namespace

bool IsPublicPkiPath(std::string_view method, std::string_view path) {
  if (method != "GET" && method != "HEAD") return false;
  return path == "pki/bundle" || path == "pki/jwks" || path == "pki/ca" || path == "pki/ca/pem" ||
         path == "pki/ca_chain" || path == "pki/crl" || path == "pki/crl/pem";
}

Result<Reply> HandlePki(RequestContext& c) {
  PkiEngine* pki = c.vault->pki.get();
  if (pki == nullptr) return ErrorReply(404, {"no handler for route \"" + c.path + "\""});
  if (!c.path.starts_with(kPrefix)) return NotFoundReply();
  const std::string_view rest = std::string_view(c.path).substr(kPrefix.size());

  if (IsPublicPkiPath(c.method, c.path)) return HandlePublic(c, *pki, rest);
  if (rest.starts_with("root/") || rest.starts_with("intermediate/") || rest == "rotate") {
    return HandleCa(c, *pki, rest);
  }
  if (rest == "roles") return HandleRoles(c, *pki, "");
  if (rest.starts_with("roles/")) return HandleRoles(c, *pki, rest.substr(6));
  if (rest.starts_with("issue/") || rest.starts_with("sign/") ||
      rest.starts_with("jwt/issue/")) {
    return HandleIssue(c, *pki, rest);
  }
  if (rest == "jwt/verify") {
    if (!IsWrite(c)) return MethodNotAllowed(c);
    const nlohmann::json& body = Body(c);
    KW_ASSIGN_OR_RETURN(std::string token,
                        RequiredString(body, "token", "send the JWT-SVID to verify"));
    KW_ASSIGN_OR_RETURN(std::string audience,
                        RequiredString(body, "audience", "name the audience to check for"));
    KW_ASSIGN_OR_RETURN(vault::pki::VerifiedJwtSvid verified, pki->VerifyJwt(token, audience));
    return Reply{200, Envelope(c, {{"spiffe_id", verified.spiffe_id},
                                   {"audience", verified.audience},
                                   {"expires_at", verified.expires_at},
                                   {"kid", verified.kid},
                                   {"claims", verified.claims}})};
  }
  if (rest == "certs" || rest == "certs/revoked" || rest.starts_with("cert/")) {
    return HandleCerts(c, *pki, rest);
  }
  if (rest == "revoke") {
    if (!IsWrite(c)) return MethodNotAllowed(c);
    KW_ASSIGN_OR_RETURN(std::string serial,
                        RequiredString(Body(c), "serial_number",
                                       "name the certificate's serial number"));
    KW_ASSIGN_OR_RETURN(std::int64_t revoked_at, pki->Revoke(serial, c.batch));
    return Reply{200, Envelope(c, {{"revocation_time", revoked_at}})};
  }
  if (rest == "tidy") {
    if (!IsWrite(c)) return MethodNotAllowed(c);
    KW_ASSIGN_OR_RETURN(auto buffer, OptionalDuration(Body(c), "safety_buffer"));
    KW_ASSIGN_OR_RETURN(vault::pki::TidyResult result,
                        pki->Tidy(buffer.value_or(std::chrono::hours(72)), c.batch));
    return Reply{200, Envelope(c, {{"certificates_removed", result.certificates_removed},
                                   {"more", result.more}})};
  }
  if (rest == "bundles") return HandleBundles(c, *pki, "");
  if (rest.starts_with("bundles/")) return HandleBundles(c, *pki, rest.substr(8));
  if (rest == "config") {
    if (c.operation != "read") return MethodNotAllowed(c);
    KW_ASSIGN_OR_RETURN(vault::pki::CaState state, pki->State());
    nlohmann::json versions = nlohmann::json::array();
    for (const auto& version : state.versions) {
      versions.push_back({{"key_version", version.version},
                          {"kid", version.kid},
                          {"installed", version.installed()},
                          {"activate_at", version.activate_at},
                          {"not_before", version.not_before},
                          {"not_after", version.not_after}});
    }
    return Reply{200, Envelope(c, {{"trust_domain", state.trust_domain},
                                   {"mode", state.mode},
                                   {"refresh_hint", state.refresh_hint},
                                   {"key_versions", versions}})};
  }
  return ErrorReply(404, {"no handler for route \"" + c.path + "\""});
}

}  // namespace kw::api
