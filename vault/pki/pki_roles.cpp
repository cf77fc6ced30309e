#include "vault/pki/pki_roles.hpp"

#include <nlohmann/json.hpp>

#include "vault/auth/spiffe_id.hpp"
#include "vault/pki/jwk.hpp"

namespace kw::vault::pki {
namespace {

using nlohmann::json;

constexpr std::string_view kRolePrefix = "pki/role/";
constexpr std::size_t kMaxRolePatterns = 1000;
constexpr std::string_view kSpiffeIdTemplate = "identity.spiffe_id";
constexpr std::string_view kRoleNameTemplate = "identity.role_name";
constexpr std::string_view kMetaTemplatePrefix = "identity.meta.";

std::string RoleAad(std::string_view name) { return "keyward:pki:role:" + std::string(name); }

bool IsSegmentCharacter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '-' || c == '_';
}

// A value that may stand for one path segment of a SPIFFE ID.
bool IsValidSegment(std::string_view value) {
  if (value.empty() || value == "." || value == ".." || value.size() > 255) return false;
  for (char c : value) {
    if (!IsSegmentCharacter(c)) return false;
  }
  return true;
}

// Replaces every {{name}} in `pattern` with lookup(name). nullopt when a template is
// unterminated or lookup returns nullopt.
template <typename Lookup>
std::optional<std::string> Substitute(std::string_view pattern, Lookup&& lookup) {
  std::string out;
  std::size_t position = 0;
  while (true) {
    const std::size_t open = pattern.find("{{", position);
    if (open == std::string_view::npos) {
      out.append(pattern.substr(position));
      return out;
    }
    const std::size_t close = pattern.find("}}", open + 2);
    if (close == std::string_view::npos) return std::nullopt;
    out.append(pattern.substr(position, open - position));
    std::optional<std::string> value = lookup(pattern.substr(open + 2, close - open - 2), open);
    if (!value) return std::nullopt;
    out.append(*value);
    position = close + 2;
  }
}

json RoleToJson(const PkiRole& role) {
  return {{"name", role.name},
          {"allowed_spiffe_ids", role.allowed_spiffe_ids},
          {"ttl", role.ttl.count()},
          {"max_ttl", role.max_ttl.count()},
          {"key_type", role.key_type},
          {"key_bits", role.key_bits},
          {"not_before_skew", role.not_before_skew.count()},
          {"jwt_ttl", role.jwt_ttl.count()},
          {"jwt_max_ttl", role.jwt_max_ttl.count()}};
}

Result<PkiRole> RoleFromJson(std::string_view text) {
  try {
    json j = json::parse(text);
    PkiRole role;
    j.at("name").get_to(role.name);
    j.at("allowed_spiffe_ids").get_to(role.allowed_spiffe_ids);
    role.ttl = std::chrono::seconds(j.at("ttl").get<std::int64_t>());
    role.max_ttl = std::chrono::seconds(j.at("max_ttl").get<std::int64_t>());
    j.at("key_type").get_to(role.key_type);
    j.at("key_bits").get_to(role.key_bits);
    role.not_before_skew = std::chrono::seconds(j.at("not_before_skew").get<std::int64_t>());
    role.jwt_ttl = std::chrono::seconds(j.at("jwt_ttl").get<std::int64_t>());
    role.jwt_max_ttl = std::chrono::seconds(j.at("jwt_max_ttl").get<std::int64_t>());
    return role;
  } catch (const json::exception& e) {
    return DataLoss("stored PKI role is malformed: " + detail::DescribeJsonError(e));
  }
}

}  // namespace

Status ValidateRoleName(std::string_view name) {
  if (name.empty() || name.size() > 128) {
    return InvalidArgument("the role name must be 1 to 128 characters");
  }
  for (char c : name) {
    if (!IsSegmentCharacter(c)) {
      return InvalidArgument("the role name may only use a-z A-Z 0-9 . - _");
    }
  }
  return OkStatus();
}

Status ValidateRole(const PkiRole& role) {
  KW_RETURN_IF_ERROR(ValidateRoleName(role.name));
  if (role.allowed_spiffe_ids.empty()) {
    return InvalidArgument(
        "missing field \"allowed_spiffe_ids\": list the SPIFFE IDs (or \"<ID>/*\" patterns) "
        "this role may issue");
  }
  if (role.allowed_spiffe_ids.size() > kMaxRolePatterns) {
    return InvalidArgument("invalid field \"allowed_spiffe_ids\": at most " +
                           std::to_string(kMaxRolePatterns) + " patterns per role");
  }

  for (const std::string& pattern : role.allowed_spiffe_ids) {
    std::string unknown;
    // A sample value for each template shows whether the pattern can ever be valid.
    auto sample = Substitute(pattern, [&](std::string_view name,
                                          std::size_t at) -> std::optional<std::string> {
      if (name == kSpiffeIdTemplate) {
        if (at != 0) {
          unknown = "{{identity.spiffe_id}} may only start a pattern";
          return std::nullopt;
        }
        return std::string("spiffe://example.org/sample");
      }
      if (name == kRoleNameTemplate ||
          (name.starts_with(kMetaTemplatePrefix) && name.size() > kMetaTemplatePrefix.size())) {
        return std::string("sample");
      }
      unknown = "unknown template {{" + std::string(name) +
                "}}; use {{identity.spiffe_id}}, {{identity.role_name}} or "
                "{{identity.meta.KEY}}";
      return std::nullopt;
    });
    if (!sample) {
      return InvalidArgument("invalid field \"allowed_spiffe_ids\": \"" + pattern + "\": " +
                             (unknown.empty() ? "unterminated template" : unknown));
    }
    if (Status valid = auth::ValidateSpiffeIdPattern(*sample); !valid) {
      return InvalidArgument("invalid field \"allowed_spiffe_ids\": \"" + pattern +
                             "\": " + valid.error().message());
    }
  }

  auto positive = [](std::chrono::seconds value, std::string_view field) -> Status {
    if (value.count() <= 0) {
      return InvalidArgument("invalid field \"" + std::string(field) +
                             "\": must be a positive duration");
    }
    return OkStatus();
  };
  KW_RETURN_IF_ERROR(positive(role.ttl, "ttl"));
  KW_RETURN_IF_ERROR(positive(role.max_ttl, "max_ttl"));
  KW_RETURN_IF_ERROR(positive(role.jwt_ttl, "jwt_ttl"));
  KW_RETURN_IF_ERROR(positive(role.jwt_max_ttl, "jwt_max_ttl"));

  if (role.ttl > role.max_ttl) {
    return InvalidArgument("invalid field \"ttl\": it exceeds max_ttl");
  }
  if (role.jwt_ttl > role.jwt_max_ttl) {
    return InvalidArgument("invalid field \"jwt_ttl\": it exceeds jwt_max_ttl");
  }
  if (role.not_before_skew.count() < 0 || role.not_before_skew > std::chrono::hours(1)) {
    return InvalidArgument("invalid field \"not_before_skew\": use 0s to 1h");
  }

  if (role.key_type == "ec") {
    if (role.key_bits != 0 && role.key_bits != 256 && role.key_bits != 384) {
      return InvalidArgument("invalid field \"key_bits\": an ec key is 256 or 384 bits");
    }
  } else if (role.key_type == "rsa") {
    if (role.key_bits != 0 && role.key_bits != 2048 && role.key_bits != 3072 &&
        role.key_bits != 4096) {
      return InvalidArgument("invalid field \"key_bits\": an rsa key is 2048, 3072 or 4096 bits");
    }
  } else {
    return InvalidArgument("invalid field \"key_type\": use \"ec\" or \"rsa\"");
  }
  return OkStatus();
}

std::vector<std::string> ExpandPatterns(const PkiRole& role, const CallerIdentity& caller) {
  std::vector<std::string> out;
  for (const std::string& pattern : role.allowed_spiffe_ids) {
    auto expanded = Substitute(pattern, [&](std::string_view name,
                                            std::size_t at) -> std::optional<std::string> {
      if (!caller.from_login) return std::nullopt;
      auto meta = [&](const std::string& key) -> std::optional<std::string> {
        auto found = caller.meta.find(key);
        if (found == caller.meta.end()) return std::nullopt;
        return found->second;
      };
      if (name == kSpiffeIdTemplate) {
        if (at != 0 || caller.spiffe_id.empty() || !auth::ParseSpiffeId(caller.spiffe_id)) {
          return std::nullopt;
        }
        return caller.spiffe_id;
      }
      std::optional<std::string> value;
      if (name == kRoleNameTemplate) {
        if (!caller.role_name.empty()) value = caller.role_name;
      } else if (name.starts_with(kMetaTemplatePrefix)) {
        value = meta(std::string(name.substr(kMetaTemplatePrefix.size())));
      }
      if (!value || !IsValidSegment(*value)) return std::nullopt;
      return value;
    });
    if (expanded && auth::ValidateSpiffeIdPattern(*expanded)) out.push_back(std::move(*expanded));
  }
  return out;
}

Result<std::optional<PkiRole>> LoadRole(storage::Storage& storage, Barrier& barrier,
                                        std::string_view name) {
  KW_RETURN_IF_ERROR(ValidateRoleName(name));
  const std::string key = std::string(kRolePrefix) + std::string(name);
  KW_ASSIGN_OR_RETURN(std::optional<Bytes> raw, storage.Get(key));
  if (!raw) return std::optional<PkiRole>();
  KW_ASSIGN_OR_RETURN(SecretBuffer plain, barrier.Decrypt(*raw, RoleAad(name)));
  KW_ASSIGN_OR_RETURN(PkiRole role, RoleFromJson(plain.RevealText()));
  return std::optional<PkiRole>(std::move(role));
}

Status StageRole(const PkiRole& role, Barrier& barrier, storage::WriteBatch& batch) {
  KW_RETURN_IF_ERROR(ValidateRole(role));
  KW_ASSIGN_OR_RETURN(Bytes sealed,
                      barrier.Encrypt(AsBytes(RoleToJson(role).dump()), RoleAad(role.name)));
  batch.Put(std::string(kRolePrefix) + role.name, std::move(sealed));
  return OkStatus();
}

void StageRoleDelete(std::string_view name, storage::WriteBatch& batch) {
  batch.Delete(std::string(kRolePrefix) + std::string(name));
}

Result<std::vector<std::string>> ListRoles(storage::Storage& storage) {
  return storage.List(kRolePrefix);
}

}  // namespace kw::vault::pki
