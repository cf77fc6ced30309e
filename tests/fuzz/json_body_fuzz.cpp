// Fuzzes the decoding of request bodies: ParseBody, then the typed field reads of one endpoint
// family. The checks that the family's handler runs on decoded values before it touches
// storage follow (policy parsing, SPIFFE ID patterns, CIDRs, SQL templates, role validation).
// Where decoded values are stored, the stored record must decode to the same values.
//
// NOTE: the handlers' own decoders (ReadRoleUpdate, ApplyFields, ApplyConfigFields, ...) are
// file-local to api/*_handlers.cpp and reach storage right after decoding, so they are not
// called here. Each family below reads the same fields with the same json_fields functions;
// keep the field lists in step with the handlers.
//
// Input: one byte choosing the family (modulo the number of families), then the body.
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/json_fields.hpp"
#include "base/bytes.hpp"
#include "base/cidr.hpp"
#include "base/secret_buffer.hpp"
#include "tests/fuzz/fuzz_check.hpp"
#include "vault/auth/cert_auth.hpp"
#include "vault/auth/spiffe_id.hpp"
#include "vault/database/database_config.hpp"
#include "vault/database/database_roles.hpp"
#include "vault/database/statements.hpp"
#include "vault/lease/lease_records.hpp"
#include "vault/pki/pki_roles.hpp"
#include "vault/policy/policy.hpp"

namespace {

namespace api = kw::api;
using nlohmann::json;

// Reads every field in `fields` as a string list, the way handlers read policies and CIDRs.
std::vector<std::string> StringLists(const json& body, std::initializer_list<const char*> fields) {
  std::vector<std::string> all;
  for (const char* field : fields) {
    auto list = api::OptionalStringList(body, field);
    if (!list || !*list) continue;
    all.insert(all.end(), (*list)->begin(), (*list)->end());
  }
  return all;
}

// Parses each entry as a CIDR, as token, AppRole and cert settings do, and checks that a parsed
// network prints as text that parses back to the same network.
void CheckCidrs(const std::vector<std::string>& entries) {
  for (const std::string& entry : entries) {
    auto cidr = kw::ParseCidr(entry);
    if (!cidr) continue;
    auto again = kw::ParseCidr(cidr->str());
    KW_FUZZ_CHECK(again.has_value());
    KW_FUZZ_CHECK(again->v6 == cidr->v6);
    KW_FUZZ_CHECK(again->address == cidr->address);
    KW_FUZZ_CHECK(again->prefix_length == cidr->prefix_length);
  }
}

void CheckDurations(const json& body, std::initializer_list<const char*> fields) {
  for (const char* field : fields) {
    auto duration = api::OptionalDuration(body, field);
    if (duration && *duration) {
      KW_FUZZ_CHECK((*duration)->count() >= 0);
      KW_FUZZ_CHECK(**duration <= api::kMaxDuration);
    }
  }
}

// secret/data/<path> writes and secret/metadata/<path> settings.
void DecodeKv(const json& body) {
  if (body.contains("options") && body["options"].is_object()) {
    (void)api::OptionalInt(body["options"], "cas");
  }
  if (body.contains("data") && body["data"].is_object()) {
    // The KV handler stores the data as strict JSON text; ParseBody has already rejected
    // invalid UTF-8, so dumping cannot throw.
    const std::string text = body["data"].dump(-1, ' ', false, json::error_handler_t::strict);
    KW_FUZZ_CHECK(json::parse(text) == body["data"]);
  }
  (void)api::OptionalInt(body, "max_versions");
  (void)api::OptionalBool(body, "cas_required");
  CheckDurations(body, {"delete_version_after"});
  (void)api::OptionalStringMap(body, "custom_metadata");
  (void)api::IntList(body, "versions");
}

// auth/token/create and token roles.
void DecodeToken(const json& body) {
  for (const std::string& name : StringLists(body, {"policies", "allowed_policies",
                                                    "disallowed_policies"})) {
    (void)kw::vault::policy::NormalizeName(name);
  }
  (void)api::OptionalStringMap(body, "meta");
  (void)api::OptionalString(body, "display_name");
  CheckDurations(body, {"ttl", "lease", "explicit_max_ttl", "period", "token_period",
                        "token_explicit_max_ttl"});
  (void)api::OptionalBool(body, "renewable");
  (void)api::OptionalBool(body, "no_default_policy");
  (void)api::OptionalBool(body, "orphan");
  (void)api::OptionalInt(body, "num_uses");
  (void)api::OptionalString(body, "type");
  (void)api::OptionalString(body, "id");
  (void)StringLists(body, {"bound_paths"});
  CheckCidrs(StringLists(body, {"bound_cidrs", "token_bound_cidrs"}));
}

// auth/approle/role/<name>, its secret-id requests and login.
void DecodeAppRole(const json& body) {
  (void)StringLists(body, {"token_policies", "policies"});
  CheckDurations(body, {"token_ttl", "token_max_ttl", "token_period", "period", "secret_id_ttl",
                        "ttl"});
  (void)api::OptionalInt(body, "token_num_uses");
  (void)api::OptionalInt(body, "secret_id_num_uses");
  (void)api::OptionalInt(body, "num_uses");
  (void)api::OptionalBool(body, "token_no_default_policy");
  (void)api::OptionalBool(body, "bind_secret_id");
  (void)api::OptionalString(body, "token_type");
  (void)api::OptionalString(body, "role_id");
  (void)api::OptionalString(body, "secret_id");
  CheckCidrs(StringLists(body, {"token_bound_cidrs", "secret_id_bound_cidrs", "cidr_list"}));
  // Secret-id metadata may come as a string holding a JSON object, as in Vault.
  if (body.contains("metadata") && body["metadata"].is_string()) {
    (void)api::ParseBody(body["metadata"].get_ref<const std::string&>());
  }
}

// auth/cert/certs/<name>: the role is validated, PEM bundle included, before it is stored.
void DecodeCert(const json& body) {
  kw::vault::auth::CertRole role;
  role.name = "fuzz";
  if (auto certificate = api::OptionalString(body, "certificate"); certificate && *certificate) {
    role.certificate = **certificate;
  }
  role.allowed_spiffe_ids = StringLists(body, {"allowed_spiffe_ids", "allowed_uri_sans"});
  role.allowed_common_names = StringLists(body, {"allowed_common_names"});
  role.token_policies = StringLists(body, {"token_policies", "policies"});
  role.token_bound_cidrs = StringLists(body, {"token_bound_cidrs"});
  for (const char* field : {"token_ttl", "ttl"}) {
    if (auto ttl = api::OptionalDuration(body, field); ttl && *ttl) role.token_ttl = (*ttl)->count();
  }
  for (const char* field : {"token_max_ttl", "max_ttl"}) {
    if (auto ttl = api::OptionalDuration(body, field); ttl && *ttl) {
      role.token_max_ttl = (*ttl)->count();
    }
  }
  if (auto uses = api::OptionalInt(body, "token_num_uses"); uses && *uses) {
    role.token_num_uses = **uses;
  }
  (void)kw::vault::auth::ValidateCertRole(role);
  for (const std::string& pattern : role.allowed_spiffe_ids) {
    (void)kw::vault::auth::ValidateSpiffeIdPattern(pattern);
  }
}

// Statements as the database handler takes them: one string or a list of strings.
std::vector<std::string> Statements(const json& body, const char* field) {
  std::vector<std::string> out;
  const auto found = body.find(field);
  if (found == body.end()) return out;
  if (found->is_string()) out.push_back(found->get<std::string>());
  if (found->is_array()) {
    for (const auto& item : *found) {
      if (item.is_string()) out.push_back(item.get<std::string>());
    }
  }
  return out;
}

void CheckStatements(const std::vector<std::string>& texts) {
  for (const std::string& statement : kw::vault::database::SplitStatements(texts)) {
    KW_FUZZ_CHECK(!statement.empty());
    (void)kw::vault::database::ValidateTemplate(statement);
  }
}

// database/config/<name>, database/roles/<name> and database/static-roles/<name>. Decoded
// settings are stored as records, so they must survive encoding and decoding unchanged.
void DecodeDatabase(const json& body) {
  namespace database = kw::vault::database;
  database::DatabaseConfig config;
  config.name = "fuzz";
  if (auto url = api::OptionalString(body, "connection_url"); url && *url) {
    config.connection_url = **url;
  }
  if (auto username = api::OptionalString(body, "username"); username && *username) {
    config.username = **username;
  }
  if (auto password = api::OptionalString(body, "password"); password && *password) {
    config.password = kw::SecretBuffer::CopyFrom(**password);
  }
  config.allowed_roles = StringLists(body, {"allowed_roles"});
  if (auto open = api::OptionalInt(body, "max_open_connections"); open && *open) {
    config.max_open_connections = **open;
  }
  config.root_rotation_statements = Statements(body, "root_rotation_statements");
  (void)config.ToPublicJson();
  auto decoded = database::DecodeConfig(config.name, database::EncodeConfig(config));
  KW_FUZZ_CHECK(decoded.has_value());
  KW_FUZZ_CHECK(decoded->connection_url == config.connection_url);
  KW_FUZZ_CHECK(decoded->username == config.username);
  KW_FUZZ_CHECK(decoded->allowed_roles == config.allowed_roles);
  KW_FUZZ_CHECK(decoded->root_rotation_statements == config.root_rotation_statements);

  database::DynamicRole role;
  role.name = "fuzz";
  if (auto db_name = api::OptionalString(body, "db_name"); db_name && *db_name) {
    role.db_name = **db_name;
  }
  role.creation_statements = Statements(body, "creation_statements");
  role.revocation_statements = Statements(body, "revocation_statements");
  role.renew_statements = Statements(body, "renew_statements");
  role.rollback_statements = Statements(body, "rollback_statements");
  CheckDurations(body, {"default_ttl", "max_ttl", "rotation_period"});
  auto role_again = database::DecodeRole(role.name, database::EncodeRole(role));
  KW_FUZZ_CHECK(role_again.has_value());
  KW_FUZZ_CHECK(role_again->creation_statements == role.creation_statements);
  KW_FUZZ_CHECK(role_again->revocation_statements == role.revocation_statements);

  CheckStatements(config.root_rotation_statements);
  CheckStatements(role.creation_statements);
  CheckStatements(role.revocation_statements);
  CheckStatements(Statements(body, "rotation_statements"));
  if (auto username = api::OptionalString(body, "username"); username && *username) {
    (void)database::ValidateObjectName("username", **username);
  }
}

// pki/roles/<name>: the role is validated, and its patterns expanded for a caller.
void DecodePki(const json& body) {
  kw::vault::pki::PkiRole role;
  role.name = "fuzz";
  role.allowed_spiffe_ids = StringLists(body, {"allowed_spiffe_ids"});
  auto duration = [&](const char* field, std::chrono::seconds& out) {
    if (auto value = api::OptionalDuration(body, field); value && *value) out = **value;
  };
  duration("ttl", role.ttl);
  duration("max_ttl", role.max_ttl);
  duration("not_before_skew", role.not_before_skew);
  duration("jwt_ttl", role.jwt_ttl);
  duration("jwt_max_ttl", role.jwt_max_ttl);
  if (auto key_type = api::OptionalString(body, "key_type"); key_type && *key_type) {
    role.key_type = **key_type;
  }
  if (auto bits = api::OptionalInt(body, "key_bits"); bits && *bits && **bits >= 0 &&
                                                      **bits <= 16384) {
    role.key_bits = static_cast<int>(**bits);
  }
  (void)kw::vault::pki::ValidateRole(role);

  kw::vault::pki::CallerIdentity caller;
  caller.from_login = true;
  caller.spiffe_id = "spiffe://fuzz.example/workload";
  caller.role_name = "fuzz-role";
  if (auto meta = api::OptionalStringMap(body, "meta"); meta && *meta) caller.meta = **meta;
  for (const std::string& pattern : kw::vault::pki::ExpandPatterns(role, caller)) {
    // Expansion drops what would not be a valid pattern.
    KW_FUZZ_CHECK(kw::vault::auth::ValidateSpiffeIdPattern(pattern).has_value());
  }
}

// sys/policies/acl/<name> and sys/capabilities: the document (maybe base64) is parsed.
void DecodePolicy(const json& body) {
  for (const char* field : {"policy", "rules"}) {
    auto document = api::OptionalString(body, field);
    if (!document || !*document) continue;
    std::string text = **document;
    if (auto decoded = kw::FromBase64(text); decoded && !decoded->empty()) {
      text = std::string(kw::AsText(*decoded));
    }
    (void)kw::vault::policy::ParsePolicy("fuzz", text);
  }
  (void)StringLists(body, {"paths"});
  (void)api::OptionalString(body, "path");
  (void)api::OptionalString(body, "token");
  (void)api::OptionalString(body, "accessor");
}

// sys/leases/*: lease ids and revoke prefixes.
void DecodeLease(const json& body) {
  auto lease_id = api::OptionalString(body, "lease_id");
  auto prefix = api::OptionalString(body, "prefix");
  CheckDurations(body, {"increment"});
  if (lease_id && *lease_id) {
    (void)kw::vault::lease::RoleCountKeyForId(**lease_id);
    if (prefix && *prefix) (void)kw::vault::lease::CoversLeaseId(**prefix, **lease_id);
  }
  (void)api::OptionalBool(body, "sync");
}

using Decoder = void (*)(const json&);
constexpr Decoder kFamilies[] = {DecodeKv,       DecodeToken, DecodeAppRole,
                                 DecodeCert,     DecodeDatabase, DecodePki,
                                 DecodePolicy,   DecodeLease};

}  // namespace

// Initialises libsodium once, as the server does at start: SecretBuffer allocates through it.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  kw::InitSodium();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const Decoder decode = kFamilies[data[0] % std::size(kFamilies)];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  auto body = api::ParseBody(text);
  if (!body) return 0;
  KW_FUZZ_CHECK(body->is_null() || body->is_object());
  if (body->is_object()) decode(*body);
  return 0;
}
