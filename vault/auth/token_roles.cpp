#include "vault/auth/token_roles.hpp"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "base/bytes.hpp"

namespace kw::vault::auth {
namespace {

constexpr std::string_view kRolePrefix = "sys/token/role/";

std::string RoleKey(std::string_view name) { return std::string(kRolePrefix) + std::string(name); }
std::string RoleAad(std::string_view name) { return "keyward:token-role:" + std::string(name); }

}  // namespace

bool TokenRoles::ValidName(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return (std::islower(c) != 0) || (std::isdigit(c) != 0) || c == '.' || c == '_' || c == '-';
  });
}

Result<TokenRole> TokenRoles::Get(std::string_view name) const {
  if (!ValidName(name)) return NotFound("unknown role");
  KW_ASSIGN_OR_RETURN(auto stored, storage_.Get(RoleKey(name)));
  if (!stored) return NotFound("unknown role");
  KW_ASSIGN_OR_RETURN(SecretBuffer plain, barrier_.Decrypt(*stored, RoleAad(name)));
  try {
    const auto j = nlohmann::json::parse(plain.RevealText());
    TokenRole role;
    role.name = std::string(name);
    role.allowed_policies = j.at("allowed_policies").get<std::vector<std::string>>();
    role.disallowed_policies = j.at("disallowed_policies").get<std::vector<std::string>>();
    role.orphan = j.at("orphan").get<bool>();
    role.renewable = j.at("renewable").get<bool>();
    role.token_period = j.at("token_period").get<std::int64_t>();
    role.token_explicit_max_ttl = j.at("token_explicit_max_ttl").get<std::int64_t>();
    role.token_ttl = j.at("token_ttl").get<std::int64_t>();
    role.token_num_uses = j.at("token_num_uses").get<std::int64_t>();
    role.token_no_default_policy = j.at("token_no_default_policy").get<bool>();
    role.token_bound_cidrs = j.at("token_bound_cidrs").get<std::vector<std::string>>();
    role.path_suffix = j.at("path_suffix").get<std::string>();
    return role;
  } catch (const std::exception&) {
    return DataLoss("token role record is malformed");
  }
}

Status TokenRoles::StagePut(const TokenRole& role, storage::WriteBatch& batch) const {
  if (!ValidName(role.name)) {
    return InvalidArgument("role name: use 1 to 128 characters of a-z, 0-9, '.', '_' and '-'");
  }
  const nlohmann::json record = {{"allowed_policies", role.allowed_policies},
                                 {"disallowed_policies", role.disallowed_policies},
                                 {"orphan", role.orphan},
                                 {"renewable", role.renewable},
                                 {"token_period", role.token_period},
                                 {"token_explicit_max_ttl", role.token_explicit_max_ttl},
                                 {"token_ttl", role.token_ttl},
                                 {"token_num_uses", role.token_num_uses},
                                 {"token_no_default_policy", role.token_no_default_policy},
                                 {"token_bound_cidrs", role.token_bound_cidrs},
                                 {"path_suffix", role.path_suffix}};
  KW_ASSIGN_OR_RETURN(Bytes sealed, barrier_.Encrypt(AsBytes(record.dump()), RoleAad(role.name)));
  batch.Put(RoleKey(role.name), std::move(sealed));
  return OkStatus();
}

Status TokenRoles::StageDelete(std::string_view name, storage::WriteBatch& batch) const {
  if (!ValidName(name)) return OkStatus();
  batch.Delete(RoleKey(name));
  return OkStatus();
}

Result<std::vector<std::string>> TokenRoles::List() const {
  KW_ASSIGN_OR_RETURN(auto names, storage_.List(kRolePrefix));
  if (names.empty()) return NotFound("no token roles");
  return names;
}

}  // namespace kw::vault::auth
