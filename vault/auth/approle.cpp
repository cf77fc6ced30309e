#include "vault/auth/approle.hpp"

#include <sodium.h>

#include <algorithm>
#include <cctype>
#include <chrono>

#include <nlohmann/json.hpp>

#include "base/cidr.hpp"

namespace kw::vault::auth {
namespace {

constexpr std::string_view kRolePrefix = "auth/approle/role/";
constexpr std::string_view kRoleIdPrefix = "auth/approle/role-id/";
constexpr std::string_view kSecretIdPrefix = "auth/approle/secret-id/";
constexpr std::string_view kAccessorPrefix = "auth/approle/accessor/";
constexpr std::size_t kMaxRoleNameBytes = 4095;
constexpr std::size_t kMaxRoleIdBytes = 4096;
constexpr std::size_t kSecretIdBytes = 32;
constexpr std::size_t kHashHexLength = 64;
constexpr std::size_t kTidyPageSize = 256;
// The role name that login uses for an unknown role_id. It fails NormalizeRoleName, so no
// role can have it.
constexpr std::string_view kPlaceholderName = "-";
constexpr std::string_view kInvalidLogin = "invalid role ID or secret ID";

std::string RoleKey(std::string_view name) { return std::string(kRolePrefix) + std::string(name); }
std::string RoleAad(std::string_view name) { return "keyward:approle:role:" + std::string(name); }
std::string RoleIdKey(std::string_view role_id_hash) {
  return std::string(kRoleIdPrefix) + std::string(role_id_hash);
}
std::string SecretIdKey(std::string_view name, std::string_view hash) {
  return std::string(kSecretIdPrefix) + std::string(name) + "/" + std::string(hash);
}
std::string SecretIdAad(std::string_view name, std::string_view hash) {
  return "keyward:approle:secret-id:" + std::string(name) + "/" + std::string(hash);
}
std::string AccessorKey(std::string_view name, std::string_view accessor) {
  return std::string(kAccessorPrefix) + std::string(name) + "/" + std::string(accessor);
}

bool ConstantTimeEqual(std::string_view a, std::string_view b) {
  return a.size() == b.size() && sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool IsHashHex(std::string_view text) {
  return text.size() == kHashHexLength &&
         std::all_of(text.begin(), text.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Returns whether every address of `inner` lies in `outer`.
bool NetworkInside(const Cidr& outer, const Cidr& inner) {
  if (inner.v6 != outer.v6 || inner.prefix_length < outer.prefix_length) return false;
  const std::string text = inner.str();
  return CidrContains(outer, std::string_view(text).substr(0, text.find('/')));
}

// Returns whether `address` lies in one of `cidrs` (any address when the list is empty). A
// stored list that no longer parses allows no address.
bool AllowedFrom(const std::vector<std::string>& cidrs, std::string_view address) {
  auto networks = ParseCidrList(cidrs);
  return networks && AddressAllowed(*networks, address);
}

// invalid_argument naming `field` unless every entry is a CIDR block inside one of `bounds`
// (an empty `bounds` allows any block).
Status CheckCidrs(const std::vector<std::string>& cidrs, const std::vector<std::string>& bounds,
                  std::string_view field, std::string_view bounds_field) {
  auto outer = ParseCidrList(bounds);
  if (!outer) return DataLoss("stored " + std::string(bounds_field) + " no longer parse");
  for (const std::string& cidr : cidrs) {
    auto block = ParseCidr(cidr);
    if (!block) {
      return InvalidArgument("invalid value for field \"" + std::string(field) +
                             "\": " + block.error().message());
    }
    if (outer->empty()) continue;
    const bool inside = std::any_of(outer->begin(), outer->end(),
                                    [&](const Cidr& bound) { return NetworkInside(bound, *block); });
    if (!inside) {
      return InvalidArgument("CIDR block \"" + cidr + "\" in field \"" + std::string(field) +
                             "\" is not inside the role's " + std::string(bounds_field));
    }
  }
  return OkStatus();
}

nlohmann::json EncodeRole(const AppRoleRole& role) {
  return {{"name", role.name},
          {"role_id", role.role_id},
          {"token_policies", role.token_policies},
          {"token_ttl", role.token_ttl},
          {"token_max_ttl", role.token_max_ttl},
          {"token_num_uses", role.token_num_uses},
          {"token_period", role.token_period},
          {"token_bound_cidrs", role.token_bound_cidrs},
          {"token_no_default_policy", role.token_no_default_policy},
          {"secret_id_ttl", role.secret_id_ttl},
          {"secret_id_num_uses", role.secret_id_num_uses},
          {"bind_secret_id", role.bind_secret_id},
          {"secret_id_bound_cidrs", role.secret_id_bound_cidrs}};
}

Result<AppRoleRole> DecodeRole(std::string_view text) {
  try {
    const nlohmann::json record = nlohmann::json::parse(text);
    AppRoleRole role;
    record.at("name").get_to(role.name);
    record.at("role_id").get_to(role.role_id);
    record.at("token_policies").get_to(role.token_policies);
    record.at("token_ttl").get_to(role.token_ttl);
    record.at("token_max_ttl").get_to(role.token_max_ttl);
    record.at("token_num_uses").get_to(role.token_num_uses);
    record.at("token_period").get_to(role.token_period);
    record.at("token_bound_cidrs").get_to(role.token_bound_cidrs);
    record.at("token_no_default_policy").get_to(role.token_no_default_policy);
    record.at("secret_id_ttl").get_to(role.secret_id_ttl);
    record.at("secret_id_num_uses").get_to(role.secret_id_num_uses);
    record.at("bind_secret_id").get_to(role.bind_secret_id);
    record.at("secret_id_bound_cidrs").get_to(role.secret_id_bound_cidrs);
    return role;
  } catch (const std::exception&) {
    return DataLoss("approle role record is malformed");
  }
}

nlohmann::json EncodeSecretId(const SecretIdEntry& entry) {
  return {{"accessor", entry.accessor},
          {"hash", entry.hash},
          {"role_name", entry.role_name},
          {"creation_time", entry.creation_time},
          {"last_updated_time", entry.last_updated_time},
          {"expiration_time", entry.expiration_time},
          {"ttl", entry.ttl},
          {"num_uses", entry.num_uses},
          {"metadata", entry.metadata},
          {"cidr_list", entry.cidr_list},
          {"token_bound_cidrs", entry.token_bound_cidrs}};
}

Result<SecretIdEntry> DecodeSecretId(std::string_view text) {
  try {
    const nlohmann::json record = nlohmann::json::parse(text);
    SecretIdEntry entry;
    record.at("accessor").get_to(entry.accessor);
    record.at("hash").get_to(entry.hash);
    record.at("role_name").get_to(entry.role_name);
    record.at("creation_time").get_to(entry.creation_time);
    record.at("last_updated_time").get_to(entry.last_updated_time);
    record.at("expiration_time").get_to(entry.expiration_time);
    record.at("ttl").get_to(entry.ttl);
    record.at("num_uses").get_to(entry.num_uses);
    record.at("metadata").get_to(entry.metadata);
    record.at("cidr_list").get_to(entry.cidr_list);
    record.at("token_bound_cidrs").get_to(entry.token_bound_cidrs);
    return entry;
  } catch (const std::exception&) {
    return DataLoss("approle secret ID record is malformed");
  }
}

bool Expired(const SecretIdEntry& entry, std::int64_t now) {
  return entry.expiration_time != 0 && now >= entry.expiration_time;
}

std::vector<std::string> NormalizePolicies(const std::vector<std::string>& policies) {
  std::vector<std::string> out;
  for (const std::string& policy : policies) {
    std::string name = NormalizePolicyName(policy);
    if (!name.empty()) out.push_back(std::move(name));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Status RequireNonNegative(const std::optional<std::int64_t>& value, std::string_view field) {
  if (value && *value < 0) {
    return InvalidArgument("invalid value for field \"" + std::string(field) +
                           "\": expected a value >= 0");
  }
  return OkStatus();
}

Status ValidateRole(const AppRoleRole& role) {
  KW_RETURN_IF_ERROR(CheckAttachablePolicies(role.token_policies, "token_policies"));
  if (role.token_max_ttl > 0 && role.token_ttl > role.token_max_ttl) {
    return InvalidArgument("token_ttl must not be greater than token_max_ttl");
  }
  if (!role.bind_secret_id && role.secret_id_bound_cidrs.empty()) {
    return InvalidArgument(
        "the role needs at least one login constraint: set bind_secret_id to true or give "
        "secret_id_bound_cidrs");
  }
  KW_RETURN_IF_ERROR(CheckCidrs(role.token_bound_cidrs, {}, "token_bound_cidrs", ""));
  return CheckCidrs(role.secret_id_bound_cidrs, {}, "secret_id_bound_cidrs", "");
}

}  // namespace

Result<std::string> AppRole::NormalizeRoleName(std::string_view name) {
  auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  const bool valid =
      !name.empty() && name.size() <= kMaxRoleNameBytes && word(name.front()) &&
      word(name.back()) &&
      std::all_of(name.begin(), name.end(), [&](char c) { return word(c) || c == '-' || c == '.'; });
  if (!valid) {
    return InvalidArgument(
        "invalid role name: use 1 to 4095 letters, digits, '_', '-' and '.', starting and "
        "ending with a letter, digit or '_'");
  }
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower;
}

std::int64_t AppRole::Now() const {
  return std::chrono::duration_cast<std::chrono::seconds>(clock_.Now().time_since_epoch())
      .count();
}

std::string AppRole::HashHex(ByteSpan bytes) const {
  hashes_computed_.fetch_add(1);
  return ToHex(Sha256(bytes));
}

Result<std::optional<AppRole::StoredRole>> AppRole::LoadRole(std::string_view name) const {
  KW_ASSIGN_OR_RETURN(auto raw, storage_.Get(RoleKey(name)));
  if (!raw) return std::optional<StoredRole>();
  KW_ASSIGN_OR_RETURN(SecretBuffer plain, barrier_.Decrypt(*raw, RoleAad(name)));
  KW_ASSIGN_OR_RETURN(AppRoleRole role, DecodeRole(plain.RevealText()));
  if (role.name != name) return DataLoss("approle role record names another role");
  return std::optional<StoredRole>(StoredRole{std::move(role), std::move(*raw)});
}

Result<AppRole::StoredRole> AppRole::RequireRole(std::string_view name) const {
  KW_ASSIGN_OR_RETURN(auto stored, LoadRole(name));
  if (!stored) return InvalidArgument("role \"" + std::string(name) + "\" does not exist");
  return std::move(*stored);
}

Result<std::optional<AppRole::StoredSecretId>> AppRole::LoadSecretId(std::string_view name,
                                                                     std::string_view hash) const {
  KW_ASSIGN_OR_RETURN(auto raw, storage_.Get(SecretIdKey(name, hash)));
  if (!raw) return std::optional<StoredSecretId>();
  KW_ASSIGN_OR_RETURN(SecretBuffer plain, barrier_.Decrypt(*raw, SecretIdAad(name, hash)));
  KW_ASSIGN_OR_RETURN(SecretIdEntry entry, DecodeSecretId(plain.RevealText()));
  if (!ConstantTimeEqual(entry.hash, hash) || entry.role_name != name) {
    return DataLoss("approle secret ID record does not match its key");
  }
  return std::optional<StoredSecretId>(StoredSecretId{std::move(entry), std::move(*raw)});
}

Status AppRole::StageRole(const AppRoleRole& role, const std::optional<Bytes>& previous,
                          storage::WriteBatch& batch) const {
  const std::string encoded = EncodeRole(role).dump();
  KW_ASSIGN_OR_RETURN(Bytes sealed, barrier_.Encrypt(AsBytes(encoded), RoleAad(role.name)));
  batch.Expect(RoleKey(role.name), previous);
  batch.Put(RoleKey(role.name), std::move(sealed));
  return OkStatus();
}

// Points the role's role_id at it, unless the role_id belongs to another role. An index row
// whose role does not hold that role_id (left by a crash or written by hand) is replaced.
Status AppRole::StageRoleIdIndex(const AppRoleRole& role, storage::WriteBatch& batch) const {
  const std::string key = RoleIdKey(HashHex(AsBytes(role.role_id)));
  KW_ASSIGN_OR_RETURN(auto current, storage_.Get(key));
  if (current && AsText(*current) != role.name) {
    auto owner = NormalizeRoleName(AsText(*current));
    if (owner) {
      KW_ASSIGN_OR_RETURN(auto other, LoadRole(*owner));
      if (other && ConstantTimeEqual(other->role.role_id, role.role_id)) {
        return AlreadyExists("role_id is already in use by another role: choose another one");
      }
    }
  }
  batch.Expect(key, current);
  batch.Put(key, Bytes(role.name.begin(), role.name.end()));
  return OkStatus();
}

void AppRole::StageSecretIdRemoval(const SecretIdEntry& entry, const Bytes& raw,
                                   storage::WriteBatch& batch) const {
  const std::string key = SecretIdKey(entry.role_name, entry.hash);
  batch.Expect(key, raw);
  batch.Delete(key);
  batch.Delete(AccessorKey(entry.role_name, entry.accessor));
}

Result<Bytes> AppRole::PlaceholderRole() const {
  std::lock_guard<std::mutex> lock(placeholder_mutex_);
  if (placeholder_role_) return *placeholder_role_;
  AppRoleRole role;
  role.name = std::string(kPlaceholderName);
  role.role_id = RandomUuid();
  const std::string encoded = EncodeRole(role).dump();
  KW_ASSIGN_OR_RETURN(Bytes sealed, barrier_.Encrypt(AsBytes(encoded), RoleAad(role.name)));
  placeholder_role_ = sealed;
  return sealed;
}

Result<std::vector<std::string>> AppRole::ListRoles() const {
  return storage_.List(kRolePrefix);
}

Result<AppRoleRole> AppRole::ReadRole(std::string_view name) const {
  KW_ASSIGN_OR_RETURN(auto stored, LoadRole(name));
  if (!stored) return NotFound("role \"" + std::string(name) + "\" does not exist");
  return std::move(stored->role);
}

Result<AppRoleRole> AppRole::WriteRole(std::string_view name, const AppRoleUpdate& update,
                                       storage::WriteBatch& batch) const {
  KW_RETURN_IF_ERROR(RequireNonNegative(update.token_ttl, "token_ttl"));
  KW_RETURN_IF_ERROR(RequireNonNegative(update.token_max_ttl, "token_max_ttl"));
  KW_RETURN_IF_ERROR(RequireNonNegative(update.token_num_uses, "token_num_uses"));
  KW_RETURN_IF_ERROR(RequireNonNegative(update.token_period, "token_period"));
  KW_RETURN_IF_ERROR(RequireNonNegative(update.secret_id_ttl, "secret_id_ttl"));
  KW_RETURN_IF_ERROR(RequireNonNegative(update.secret_id_num_uses, "secret_id_num_uses"));
  KW_ASSIGN_OR_RETURN(auto stored, LoadRole(name));

  AppRoleRole role;
  if (stored) {
    role = stored->role;
  } else {
    role.name = std::string(name);
    role.role_id = RandomUuid();
  }
  if (update.token_policies) role.token_policies = NormalizePolicies(*update.token_policies);
  if (update.token_ttl) role.token_ttl = *update.token_ttl;
  if (update.token_max_ttl) role.token_max_ttl = *update.token_max_ttl;
  if (update.token_num_uses) role.token_num_uses = *update.token_num_uses;
  if (update.token_period) role.token_period = *update.token_period;
  if (update.token_bound_cidrs) role.token_bound_cidrs = *update.token_bound_cidrs;
  if (update.token_no_default_policy) role.token_no_default_policy = *update.token_no_default_policy;
  if (update.secret_id_ttl) role.secret_id_ttl = *update.secret_id_ttl;
  if (update.secret_id_num_uses) role.secret_id_num_uses = *update.secret_id_num_uses;
  if (update.bind_secret_id) role.bind_secret_id = *update.bind_secret_id;
  if (update.secret_id_bound_cidrs) role.secret_id_bound_cidrs = *update.secret_id_bound_cidrs;
  KW_RETURN_IF_ERROR(ValidateRole(role));

  if (!stored) KW_RETURN_IF_ERROR(StageRoleIdIndex(role, batch));
  KW_RETURN_IF_ERROR(StageRole(role, stored ? std::optional<Bytes>(stored->raw) : std::nullopt,
                               batch));
  return role;
}

Status AppRole::DeleteRole(std::string_view name, storage::WriteBatch& batch) const {
  KW_ASSIGN_OR_RETURN(auto stored, LoadRole(name));
  if (!stored) return NotFound("role \"" + std::string(name) + "\" does not exist");
  const std::string index_key = RoleIdKey(HashHex(AsBytes(stored->role.role_id)));
  KW_ASSIGN_OR_RETURN(auto index, storage_.Get(index_key));
  KW_ASSIGN_OR_RETURN(auto hashes, storage_.List(SecretIdKey(name, "")));
  KW_ASSIGN_OR_RETURN(auto accessors, storage_.List(AccessorKey(name, "")));

  batch.Expect(RoleKey(name), stored->raw);
  batch.Delete(RoleKey(name));
  if (index && AsText(*index) == name) batch.Delete(index_key);
  for (const std::string& hash : hashes) batch.Delete(SecretIdKey(name, hash));
  for (const std::string& accessor : accessors) batch.Delete(AccessorKey(name, accessor));
  return OkStatus();
}

Status AppRole::SetRoleId(std::string_view name, std::string_view role_id,
                          storage::WriteBatch& batch) const {
  const bool printable = std::all_of(role_id.begin(), role_id.end(), [](char c) {
    return static_cast<unsigned char>(c) >= 0x20 && c != 0x7f;
  });
  if (role_id.empty() || role_id.size() > kMaxRoleIdBytes || !printable) {
    return InvalidArgument(
        "invalid value for field \"role_id\": expected 1 to 4096 bytes without control "
        "characters");
  }
  KW_ASSIGN_OR_RETURN(StoredRole stored, RequireRole(name));
  if (ConstantTimeEqual(stored.role.role_id, role_id)) return OkStatus();

  const std::string old_key = RoleIdKey(HashHex(AsBytes(stored.role.role_id)));
  KW_ASSIGN_OR_RETURN(auto old_index, storage_.Get(old_key));
  AppRoleRole role = stored.role;
  role.role_id = std::string(role_id);
  KW_RETURN_IF_ERROR(StageRoleIdIndex(role, batch));
  if (old_index && AsText(*old_index) == name) {
    batch.Expect(old_key, old_index);
    batch.Delete(old_key);
  }
  return StageRole(role, stored.raw, batch);
}

Result<GeneratedSecretId> AppRole::GenerateSecretId(std::string_view name,
                                                    const SecretIdRequest& request,
                                                    storage::WriteBatch& batch) const {
  KW_ASSIGN_OR_RETURN(StoredRole stored, RequireRole(name));
  const AppRoleRole& role = stored.role;
  if (!role.bind_secret_id) {
    return InvalidArgument("role \"" + role.name +
                           "\" does not use secret IDs (bind_secret_id is false)");
  }
  const std::int64_t ttl = request.ttl.value_or(role.secret_id_ttl);
  const std::int64_t num_uses = request.num_uses.value_or(role.secret_id_num_uses);
  KW_RETURN_IF_ERROR(RequireNonNegative(ttl, "ttl"));
  KW_RETURN_IF_ERROR(RequireNonNegative(num_uses, "num_uses"));
  if (role.secret_id_ttl > 0 && (ttl == 0 || ttl > role.secret_id_ttl)) {
    return InvalidArgument("ttl must be between 1 and the role's secret_id_ttl (" +
                           std::to_string(role.secret_id_ttl) + " seconds)");
  }
  if (role.secret_id_num_uses > 0 && (num_uses == 0 || num_uses > role.secret_id_num_uses)) {
    return InvalidArgument("num_uses must be between 1 and the role's secret_id_num_uses (" +
                           std::to_string(role.secret_id_num_uses) + ")");
  }
  KW_RETURN_IF_ERROR(
      CheckCidrs(request.cidr_list, role.secret_id_bound_cidrs, "cidr_list", "secret_id_bound_cidrs"));
  KW_RETURN_IF_ERROR(CheckCidrs(request.token_bound_cidrs, role.token_bound_cidrs,
                                "token_bound_cidrs", "token_bound_cidrs"));

  GeneratedSecretId generated;
  Bytes random = RandomBytes(kSecretIdBytes);
  std::string text = ToHex(random);
  sodium_memzero(random.data(), random.size());
  generated.secret_id = SecretBuffer::CopyFrom(text);
  WipeString(text);

  SecretIdEntry& entry = generated.entry;
  const std::int64_t now = Now();
  entry.accessor = RandomUuid();
  entry.hash = HashHex(generated.secret_id.Reveal());
  entry.role_name = role.name;
  entry.creation_time = now;
  entry.last_updated_time = now;
  entry.ttl = ttl;
  entry.expiration_time = ttl > 0 ? now + ttl : 0;
  entry.num_uses = num_uses;
  entry.metadata = request.metadata;
  entry.cidr_list = request.cidr_list;
  entry.token_bound_cidrs = request.token_bound_cidrs;

  const std::string encoded = EncodeSecretId(entry).dump();
  KW_ASSIGN_OR_RETURN(Bytes sealed,
                      barrier_.Encrypt(AsBytes(encoded), SecretIdAad(role.name, entry.hash)));
  // The role record must be unchanged at commit, so a concurrent delete aborts this.
  batch.Expect(RoleKey(role.name), stored.raw);
  batch.Expect(SecretIdKey(role.name, entry.hash), std::nullopt);
  batch.Put(SecretIdKey(role.name, entry.hash), std::move(sealed));
  batch.Put(AccessorKey(role.name, entry.accessor), Bytes(entry.hash.begin(), entry.hash.end()));
  return generated;
}

Result<std::vector<std::string>> AppRole::ListSecretIdAccessors(std::string_view name) const {
  KW_RETURN_IF_ERROR(RequireRole(name));
  return storage_.List(AccessorKey(name, ""));
}

Result<SecretIdEntry> AppRole::LookupSecretId(std::string_view name,
                                              const SecretBuffer& secret_id) const {
  KW_RETURN_IF_ERROR(RequireRole(name));
  KW_ASSIGN_OR_RETURN(auto stored, LoadSecretId(name, HashHex(secret_id.Reveal())));
  if (!stored || Expired(stored->entry, Now())) return NotFound("secret ID not found");
  return std::move(stored->entry);
}

Result<SecretIdEntry> AppRole::LookupSecretIdAccessor(std::string_view name,
                                                      std::string_view accessor) const {
  KW_RETURN_IF_ERROR(RequireRole(name));
  const auto not_found = NotFound("no secret ID with accessor \"" + std::string(accessor) + "\"");
  if (accessor.empty() || accessor.find('/') != std::string_view::npos) return not_found;
  KW_ASSIGN_OR_RETURN(auto hash, storage_.Get(AccessorKey(name, accessor)));
  if (!hash || !IsHashHex(AsText(*hash))) return not_found;
  KW_ASSIGN_OR_RETURN(auto stored, LoadSecretId(name, AsText(*hash)));
  // The plain index row is trusted only when the encrypted record names the same accessor.
  if (!stored || stored->entry.accessor != accessor) return not_found;
  if (Expired(stored->entry, Now())) return not_found;
  return std::move(stored->entry);
}

Status AppRole::DestroySecretId(std::string_view name, const SecretBuffer& secret_id,
                                storage::WriteBatch& batch) const {
  KW_RETURN_IF_ERROR(RequireRole(name));
  KW_ASSIGN_OR_RETURN(auto stored, LoadSecretId(name, HashHex(secret_id.Reveal())));
  if (stored) StageSecretIdRemoval(stored->entry, stored->raw, batch);
  return OkStatus();
}

Status AppRole::DestroySecretIdAccessor(std::string_view name, std::string_view accessor,
                                        storage::WriteBatch& batch) const {
  KW_RETURN_IF_ERROR(RequireRole(name));
  if (accessor.empty() || accessor.find('/') != std::string_view::npos) return OkStatus();
  KW_ASSIGN_OR_RETURN(auto hash, storage_.Get(AccessorKey(name, accessor)));
  if (!hash || !IsHashHex(AsText(*hash))) return OkStatus();
  KW_ASSIGN_OR_RETURN(auto stored, LoadSecretId(name, AsText(*hash)));
  if (stored && stored->entry.accessor == accessor) {
    StageSecretIdRemoval(stored->entry, stored->raw, batch);
  }
  return OkStatus();
}

Result<TokenRequest> AppRole::Login(std::string_view role_id, const SecretBuffer& secret_id,
                                    std::string_view remote_address,
                                    storage::WriteBatch& batch) const {
  // An unknown role_id takes the same steps as a known one, against a placeholder role that
  // no login can match, so that failures look and cost the same: three storage reads, one
  // role decryption and three SHA-256 computations.
  const std::string role_id_hash = HashHex(AsBytes(role_id));
  KW_ASSIGN_OR_RETURN(auto index, storage_.Get(RoleIdKey(role_id_hash)));
  std::string name(kPlaceholderName);
  if (index) {
    auto normalized = NormalizeRoleName(AsText(*index));
    if (normalized && *normalized == AsText(*index)) name = std::move(*normalized);
  }
  KW_ASSIGN_OR_RETURN(auto role_raw, storage_.Get(RoleKey(name)));
  if (!role_raw) name = std::string(kPlaceholderName);
  Bytes sealed_role;
  if (role_raw) {
    sealed_role = std::move(*role_raw);
  } else {
    KW_ASSIGN_OR_RETURN(sealed_role, PlaceholderRole());
  }
  KW_ASSIGN_OR_RETURN(SecretBuffer role_plain, barrier_.Decrypt(sealed_role, RoleAad(name)));
  KW_ASSIGN_OR_RETURN(AppRoleRole role, DecodeRole(role_plain.RevealText()));
  // The index row is plain text: the role_id inside the encrypted record decides.
  const bool role_matches = ConstantTimeEqual(HashHex(AsBytes(role.role_id)), role_id_hash) &&
                            role.name == name && name != kPlaceholderName;

  const std::string secret_hash = HashHex(secret_id.Reveal());
  const std::string secret_owner = role_matches ? name : std::string(kPlaceholderName);
  KW_ASSIGN_OR_RETURN(auto secret, LoadSecretId(secret_owner, secret_hash));

  const std::int64_t now = Now();
  if (!role_matches) return InvalidArgument(std::string(kInvalidLogin));
  if (role.bind_secret_id && (secret_id.empty() || !secret || Expired(secret->entry, now))) {
    return InvalidArgument(std::string(kInvalidLogin));
  }
  const std::string address(remote_address);
  if (!AllowedFrom(role.secret_id_bound_cidrs, remote_address)) {
    return InvalidArgument("source address \"" + address +
                           "\" is outside the CIDR blocks bound to the role");
  }

  TokenRequest request;
  std::vector<std::string> token_cidrs = role.token_bound_cidrs;
  if (role.bind_secret_id) {
    SecretIdEntry entry = secret->entry;
    if (!AllowedFrom(entry.cidr_list, remote_address)) {
      return InvalidArgument("source address \"" + address +
                             "\" is outside the CIDR blocks bound to the secret ID");
    }
    if (entry.num_uses == 1) {
      StageSecretIdRemoval(entry, secret->raw, batch);
    } else if (entry.num_uses > 1) {
      entry.num_uses -= 1;
      entry.last_updated_time = now;
      const std::string encoded = EncodeSecretId(entry).dump();
      KW_ASSIGN_OR_RETURN(Bytes sealed,
                          barrier_.Encrypt(AsBytes(encoded), SecretIdAad(name, entry.hash)));
      batch.Expect(SecretIdKey(name, entry.hash), secret->raw);
      batch.Put(SecretIdKey(name, entry.hash), std::move(sealed));
    }
    request.meta = entry.metadata;
    if (!entry.token_bound_cidrs.empty()) token_cidrs = entry.token_bound_cidrs;
  }

  request.meta["role_name"] = role.name;
  request.policies = role.token_policies;
  request.no_default_policy = role.token_no_default_policy;
  request.display_name = "approle";
  request.path = "auth/approle/login";
  if (role.token_ttl > 0) request.ttl = role.token_ttl;
  if (role.token_max_ttl > 0) request.explicit_max_ttl = role.token_max_ttl;
  if (role.token_period > 0) request.period = role.token_period;
  request.renewable = true;
  request.num_uses = role.token_num_uses;
  request.orphan = true;
  request.bound_cidrs = std::move(token_cidrs);
  request.entity_id = "approle:" + role.name;
  return request;
}

Result<std::size_t> AppRole::TidySecretIds(storage::WriteBatch& batch) const {
  // TODO: one tidy call loads every secret ID record; page it over several requests for
  // mounts with very many secret IDs.
  const std::int64_t now = Now();
  std::size_t removed = 0;
  std::string after;
  for (;;) {
    KW_ASSIGN_OR_RETURN(auto page, storage_.Scan(kSecretIdPrefix, after, kTidyPageSize));
    for (const storage::Entry& row : page) {
      const std::string_view rest = std::string_view(row.key).substr(kSecretIdPrefix.size());
      const std::size_t slash = rest.find('/');
      if (slash == std::string_view::npos) continue;
      const std::string_view name = rest.substr(0, slash);
      const std::string_view hash = rest.substr(slash + 1);
      auto plain = barrier_.Decrypt(row.value, SecretIdAad(name, hash));
      if (!plain) continue;  // a damaged record stays for the operator to inspect
      auto entry = DecodeSecretId(plain->RevealText());
      if (!entry || !Expired(*entry, now) || entry->role_name != name) continue;
      StageSecretIdRemoval(*entry, row.value, batch);
      ++removed;
    }
    if (page.size() < kTidyPageSize) break;
    after = page.back().key;
  }
  return removed;
}

}  // namespace kw::vault::auth
