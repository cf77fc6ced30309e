#include "vault/auth/token_store.hpp"

#include <sodium.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <deque>
#include <set>

#include <nlohmann/json.hpp>

#include "base/bytes.hpp"
#include "base/cidr.hpp"
#include "vault/policy/policy.hpp"
#include "vault/auth/token_counts.hpp"
#include "vault/auth/token_format.hpp"

namespace kw::vault::auth {
namespace {

constexpr std::string_view kRootPointerKey = "sys/token/root";
constexpr std::string_view kRootPointerAad = "keyward:token:root";
constexpr std::string_view kAccessorPrefix = "sys/token/accessor/";
constexpr std::string_view kHashPrefix = "sys/token/hash/";
constexpr std::string_view kChildrenPrefix = "sys/token/children/";
constexpr std::string_view kExpiryPrefix = "sys/token/expiry/";
// A counter per token, bumped by every child creation; revocations check it.
constexpr std::string_view kGenerationPrefix = "sys/token/generation/";
constexpr std::string_view kRootPolicy = "root";
constexpr std::string_view kDefaultPolicy = "default";

// Revocation of one tree stops here, so that a request cannot build an unbounded batch.
constexpr std::size_t kMaxTreeSize = 100'000;

std::int64_t UnixSeconds(TimePoint time) {
  return std::chrono::duration_cast<std::chrono::seconds>(time.time_since_epoch()).count();
}

std::string AccessorKey(std::string_view accessor) {
  return std::string(kAccessorPrefix) + std::string(accessor);
}
std::string HashKey(std::string_view hash) { return std::string(kHashPrefix) + std::string(hash); }
std::string ChildKey(std::string_view parent, std::string_view child) {
  return std::string(kChildrenPrefix) + std::string(parent) + "/" + std::string(child);
}
std::string ExpiryKey(std::int64_t expire_time, std::string_view accessor) {
  char digits[24];
  std::snprintf(digits, sizeof(digits), "%020lld", static_cast<long long>(expire_time));
  return std::string(kExpiryPrefix) + digits + "/" + std::string(accessor);
}
std::string GenerationKey(std::string_view accessor) {
  return std::string(kGenerationPrefix) + std::string(accessor);
}
std::string EntryAad(std::string_view accessor) {
  return "keyward:token:" + std::string(accessor);
}

// Accessors are 24 base62 characters; anything else is never looked up, so that a path
// segment cannot reach into other keys.
bool IsAccessor(std::string_view text) {
  if (text.empty() || text.size() > 64) return false;
  return std::all_of(text.begin(), text.end(),
                     [](unsigned char c) { return std::isalnum(c) != 0; });
}

nlohmann::json ToJson(const TokenEntry& e) {
  return {{"accessor", e.accessor},         {"hash", e.hash},
          {"policies", e.policies},         {"meta", e.meta},
          {"display_name", e.display_name}, {"path", e.path},
          {"creation_time", e.creation_time}, {"creation_ttl", e.creation_ttl},
          {"expire_time", e.expire_time},   {"explicit_max_ttl", e.explicit_max_ttl},
          {"max_expire_time", e.max_expire_time}, {"period", e.period},
          {"renewable", e.renewable},       {"num_uses", e.num_uses},
          {"parent", e.parent},             {"chain", e.chain},
          {"bound_paths", e.bound_paths},   {"bound_cidrs", e.bound_cidrs},
          {"role", e.role},                 {"entity_id", e.entity_id}};
}

Result<TokenEntry> FromJson(std::string_view text) {
  try {
    const auto j = nlohmann::json::parse(text);
    TokenEntry e;
    e.accessor = j.at("accessor").get<std::string>();
    e.hash = j.at("hash").get<std::string>();
    e.policies = j.at("policies").get<std::vector<std::string>>();
    e.meta = j.at("meta").get<std::map<std::string, std::string>>();
    e.display_name = j.at("display_name").get<std::string>();
    e.path = j.at("path").get<std::string>();
    e.creation_time = j.at("creation_time").get<std::int64_t>();
    e.creation_ttl = j.at("creation_ttl").get<std::int64_t>();
    e.expire_time = j.at("expire_time").get<std::int64_t>();
    e.explicit_max_ttl = j.at("explicit_max_ttl").get<std::int64_t>();
    e.max_expire_time = j.at("max_expire_time").get<std::int64_t>();
    e.period = j.at("period").get<std::int64_t>();
    e.renewable = j.at("renewable").get<bool>();
    e.num_uses = j.at("num_uses").get<std::int64_t>();
    e.parent = j.at("parent").get<std::string>();
    e.chain = j.at("chain").get<std::vector<std::string>>();
    e.bound_paths = j.at("bound_paths").get<std::vector<std::vector<std::string>>>();
    e.bound_cidrs = j.at("bound_cidrs").get<std::vector<std::string>>();
    e.role = j.at("role").get<std::string>();
    e.entity_id = j.at("entity_id").get<std::string>();
    return e;
  } catch (const std::exception&) {
    return DataLoss("token record is malformed");
  }
}

// Normalises, drops empties, sorts and removes duplicates. invalid_argument for "root" in any
// spelling: only root-token generation creates root tokens.
Result<std::vector<std::string>> NormalizePolicies(const std::vector<std::string>& raw) {
  std::set<std::string> names;
  for (const auto& entry : raw) {
    std::string name = NormalizePolicyName(entry);
    if (name.empty()) continue;
    if (name == kRootPolicy) {
      return PermissionDenied(
          "policies: \"root\" cannot be attached to a token; root tokens come only from "
          "initialisation");
    }
    names.insert(std::move(name));
  }
  return std::vector<std::string>(names.begin(), names.end());
}

// Returns OK when every network in `child` lies inside one of `parent` (CIDR texts).
Status CheckCidrsWithin(const std::vector<Cidr>& child, const std::vector<std::string>& parent) {
  auto parents = ParseCidrList(parent);
  if (!parents) return DataLoss("the parent token's bound_cidrs are invalid");
  for (const Cidr& network : child) {
    bool inside = false;
    for (const Cidr& outer : *parents) {
      if (outer.v6 == network.v6 && outer.prefix_length <= network.prefix_length &&
          CidrContains(outer, network.str().substr(0, network.str().find('/')))) {
        inside = true;
        break;
      }
    }
    if (!inside) {
      return PermissionDenied("bound_cidrs: " + network.str() +
                              " is wider than the parent token's bound_cidrs");
    }
  }
  return OkStatus();
}

}  // namespace

std::string NormalizePolicyName(std::string_view raw) {
  std::size_t begin = 0;
  std::size_t end = raw.size();
  while (begin < end && std::isspace(static_cast<unsigned char>(raw[begin])) != 0) ++begin;
  while (end > begin && std::isspace(static_cast<unsigned char>(raw[end - 1])) != 0) --end;
  std::string name(raw.substr(begin, end - begin));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

Status CheckAttachablePolicies(const std::vector<std::string>& policies, std::string_view field) {
  for (const auto& raw : policies) {
    if (NormalizePolicyName(raw) == kRootPolicy) {
      return InvalidArgument(std::string(field) +
                             ": \"root\" cannot be attached to a token; root tokens come only "
                             "from initialisation");
    }
  }
  return OkStatus();
}

bool TokenEntry::root() const {
  return std::find(policies.begin(), policies.end(), kRootPolicy) != policies.end();
}

std::int64_t TokenEntry::Ttl(std::int64_t now) const {
  if (expire_time == 0) return 0;
  return std::max<std::int64_t>(0, expire_time - now);
}

Result<std::shared_ptr<const TokenEntry>> TokenStore::ReadEntry(std::string_view accessor,
                                                                std::optional<Bytes>* raw) const {
  if (!IsAccessor(accessor)) return NotFound("no token with that accessor");
  KW_ASSIGN_OR_RETURN(auto stored, storage_.Get(AccessorKey(accessor)));
  if (!stored) return NotFound("no token with that accessor");
  // The same stored bytes decrypt to the same record: a cache hit saves the HSM call, and
  // any change to the record (renewal, a use, revocation) changes or removes the bytes.
  {
    std::lock_guard lock(cache_mutex_);
    auto cached = cache_.find(accessor);
    if (cached != cache_.end() && cached->second.first == *stored) {
      auto entry = cached->second.second;
      if (raw != nullptr) *raw = std::move(stored);
      return entry;
    }
  }
  KW_ASSIGN_OR_RETURN(SecretBuffer plain, barrier_.Decrypt(*stored, EntryAad(accessor)));
  KW_ASSIGN_OR_RETURN(TokenEntry decoded, FromJson(plain.RevealText()));
  if (decoded.accessor != accessor) return DataLoss("token record names another accessor");
  auto entry = std::make_shared<const TokenEntry>(std::move(decoded));
  {
    std::lock_guard lock(cache_mutex_);
    if (cache_.size() >= kCacheLimit) cache_.clear();
    cache_.insert_or_assign(std::string(accessor), std::make_pair(*stored, entry));
  }
  if (raw != nullptr) *raw = std::move(stored);
  return entry;
}

Status TokenStore::StageEntry(const TokenEntry& entry, const std::optional<Bytes>& previous,
                              storage::WriteBatch& batch) const {
  const std::string key = AccessorKey(entry.accessor);
  KW_ASSIGN_OR_RETURN(Bytes sealed,
                      barrier_.Encrypt(AsBytes(ToJson(entry).dump()), EntryAad(entry.accessor)));
  batch.Expect(key, previous);
  batch.Put(key, std::move(sealed));
  if (!previous) StageTokenCountChange(entry, 1, batch);  // metrics: live tokens per role
  return OkStatus();
}

Status TokenStore::StageRemoval(const TokenEntry& entry, storage::WriteBatch& batch) const {
  batch.Delete(AccessorKey(entry.accessor));
  batch.Delete(HashKey(entry.hash));
  if (!entry.parent.empty()) batch.Delete(ChildKey(entry.parent, entry.accessor));
  if (entry.expire_time != 0) batch.Delete(ExpiryKey(entry.expire_time, entry.accessor));
  batch.Delete(GenerationKey(entry.accessor));
  StageTokenCountChange(entry, -1, batch);  // metrics: live tokens per role
  return OkStatus();
}

void TokenStore::StageGenerationChange(std::string_view accessor,
                                       storage::WriteBatch& batch) const {
  Bytes marker(16);
  randombytes_buf(marker.data(), marker.size());
  batch.Put(GenerationKey(accessor), std::move(marker));
}

Status TokenStore::Load() {
  KW_ASSIGN_OR_RETURN(auto stored, storage_.Get(kRootPointerKey));
  if (!stored) return OkStatus();
  KW_ASSIGN_OR_RETURN(SecretBuffer plain, barrier_.Decrypt(*stored, kRootPointerAad));
  try {
    (void)nlohmann::json::parse(plain.RevealText()).at("accessor").get<std::string>();
  } catch (const std::exception&) {
    return DataLoss("root token pointer is malformed");
  }
  return OkStatus();
}

Result<std::string> TokenStore::StageRootToken(const SecretBuffer& token,
                                               storage::WriteBatch& batch) {
  // The root token a previous start-up made goes, with every token it created.
  KW_ASSIGN_OR_RETURN(auto pointer, storage_.Get(kRootPointerKey));
  if (pointer) {
    KW_ASSIGN_OR_RETURN(SecretBuffer plain, barrier_.Decrypt(*pointer, kRootPointerAad));
    std::string previous;
    try {
      previous = nlohmann::json::parse(plain.RevealText()).at("accessor").get<std::string>();
    } catch (const std::exception&) {
      return DataLoss("root token pointer is malformed");
    }
    auto old = ReadEntry(previous, nullptr);
    if (old) {
      std::vector<std::string> revoked;
      KW_RETURN_IF_ERROR(RevokeTree(**old, /*orphan_children=*/false, revoked, batch));
      KW_RETURN_IF_ERROR(RunRevocationHook(revoked, batch));
    } else if (old.error().code() != Code::kNotFound) {
      return tl::unexpected(old.error());
    }
  }

  TokenEntry entry;
  entry.accessor = GenerateAccessor();
  entry.hash = HashToken(token.RevealText());
  entry.policies = {std::string(kRootPolicy)};
  entry.display_name = "root";
  entry.path = "auth/token/root";
  entry.creation_time = UnixSeconds(clock_.Now());
  entry.chain = {entry.accessor};
  // The same token text again (dev mode restarts with a fixed id) replaces its old record.
  KW_ASSIGN_OR_RETURN(auto existing, storage_.Get(HashKey(entry.hash)));
  if (existing) {
    auto same = ReadEntry(AsText(*existing), nullptr);
    if (same) {
      std::vector<std::string> revoked;
      KW_RETURN_IF_ERROR(RevokeTree(**same, false, revoked, batch));
      KW_RETURN_IF_ERROR(RunRevocationHook(revoked, batch));
    }
  }
  KW_RETURN_IF_ERROR(StageEntry(entry, std::nullopt, batch));
  batch.Put(HashKey(entry.hash), Bytes(entry.accessor.begin(), entry.accessor.end()));
  const std::string pointer_text = nlohmann::json{{"accessor", entry.accessor}}.dump();
  KW_ASSIGN_OR_RETURN(Bytes sealed, barrier_.Encrypt(AsBytes(pointer_text), kRootPointerAad));
  batch.Put(std::string(kRootPointerKey), std::move(sealed));
  return entry.accessor;
}

Result<Identity> TokenStore::Authenticate(std::string_view token, std::string_view remote_address,
                                          storage::WriteBatch* batch) const {
  if (token.empty()) return Unauthenticated("missing client token");
  if (token.size() > 256) return Unauthenticated("invalid token");
  const std::string hash = HashToken(token);
  KW_ASSIGN_OR_RETURN(auto index, storage_.Get(HashKey(hash)));
  if (!index) return Unauthenticated("invalid token");
  std::optional<Bytes> raw;
  auto entry = ReadEntry(AsText(*index), &raw);
  if (!entry) {
    if (entry.error().code() == Code::kNotFound) return Unauthenticated("invalid token");
    return tl::unexpected(entry.error());
  }
  const TokenEntry& e = **entry;
  // The index is plain; the record is authenticated. Only the record's hash counts.
  if (e.hash.size() != hash.size() ||
      sodium_memcmp(e.hash.data(), hash.data(), hash.size()) != 0) {
    return Unauthenticated("invalid token");
  }
  const std::int64_t now = UnixSeconds(clock_.Now());
  if (e.expire_time != 0 && now >= e.expire_time) return Unauthenticated("token expired");
  if (!e.bound_cidrs.empty()) {
    auto networks = ParseCidrList(e.bound_cidrs);
    if (!networks || !AddressAllowed(*networks, remote_address)) {
      return Unauthenticated("token not allowed from this address");
    }
  }
  if (e.num_uses > 0 && batch != nullptr) {
    if (e.num_uses == 1) {
      std::vector<std::string> revoked;
      // The last use: the token and its descendants go once this request commits. The
      // Expect makes two concurrent last uses conflict.
      batch->Expect(AccessorKey(e.accessor), raw);
      KW_RETURN_IF_ERROR(RevokeTree(e, false, revoked, *batch));
      KW_RETURN_IF_ERROR(RunRevocationHook(revoked, *batch));
    } else {
      TokenEntry used = e;
      used.num_uses -= 1;
      KW_RETURN_IF_ERROR(StageEntry(used, raw, *batch));
    }
  }
  return Identity{e.accessor, e.policies, e.root(), *entry};
}

Result<CreatedToken> TokenStore::Create(const TokenEntry& parent, TokenRequest request,
                                        storage::WriteBatch& batch) const {
  const std::int64_t now = UnixSeconds(clock_.Now());
  const bool parent_root = parent.root();
  if (request.id && !parent_root) {
    return PermissionDenied("id: only root tokens can choose a token's id");
  }
  if (request.num_uses < 0) return InvalidArgument("num_uses: must not be negative");
  // A non-root creator passes its limits on to every token it creates, orphans included:
  // an orphan only leaves the revocation tree, never the creator's bounds.
  const bool inherit_limits = !parent_root;
  if (inherit_limits && parent.num_uses == 1) {
    // This request is the parent's last use: the parent is revoked with it, and a token
    // created now would outlive it.
    return PermissionDenied("the parent token is on its last use and cannot create tokens");
  }
  if ((request.ttl && *request.ttl < 0) || (request.explicit_max_ttl && *request.explicit_max_ttl < 0) ||
      (request.period && *request.period < 0)) {
    return InvalidArgument("ttl, explicit_max_ttl and period must not be negative");
  }

  KW_ASSIGN_OR_RETURN(std::vector<std::string> policies, NormalizePolicies(request.policies));
  if (request.policies.empty()) {
    // Vault's rule: no policies asked for means the parent's. Root never passes on.
    for (const auto& name : parent.policies) {
      if (name != kRootPolicy) policies.push_back(name);
    }
  }
  if (!parent_root) {
    for (const auto& name : policies) {
      if (name == kDefaultPolicy) continue;
      if (std::find(parent.policies.begin(), parent.policies.end(), name) ==
          parent.policies.end()) {
        return PermissionDenied("policies: the parent token does not have policy \"" + name +
                                "\"; a child can only receive a subset of its parent's policies");
      }
    }
  }
  if (!request.no_default_policy) policies.push_back(std::string(kDefaultPolicy));
  std::sort(policies.begin(), policies.end());
  policies.erase(std::unique(policies.begin(), policies.end()), policies.end());

  TokenEntry entry;
  entry.policies = std::move(policies);
  entry.meta = std::move(request.meta);
  entry.display_name = request.display_name;
  entry.path = request.path;
  entry.creation_time = now;
  entry.period = request.period.value_or(0);
  entry.explicit_max_ttl = request.explicit_max_ttl.value_or(0);
  entry.renewable = request.renewable.value_or(true);
  entry.role = request.role;
  entry.entity_id = request.entity_id;
  entry.bound_cidrs = request.bound_cidrs;
  auto networks = ParseCidrList(entry.bound_cidrs);
  if (!networks) return InvalidArgument("bound_cidrs: " + networks.error().message());
  if (inherit_limits && !parent.bound_cidrs.empty()) {
    if (entry.bound_cidrs.empty()) entry.bound_cidrs = parent.bound_cidrs;
    KW_RETURN_IF_ERROR(CheckCidrsWithin(*networks, parent.bound_cidrs));
  }
  for (auto& glob : request.bound_paths) {
    while (glob.size() > 1 && glob.back() == '/') glob.pop_back();
    if (auto valid = policy::ValidatePattern(glob); !valid) {
      return InvalidArgument("bound_paths: " + valid.error().message());
    }
  }

  // Lifetime: the period for periodic tokens, else the requested TTL or the default. It never
  // passes the explicit max, the system max (non-periodic tokens) or the parent's expiry.
  std::int64_t ttl = entry.period > 0 ? entry.period : request.ttl.value_or(0);
  if (ttl == 0) ttl = limits_.default_ttl;
  std::int64_t max_expire = 0;
  if (entry.explicit_max_ttl > 0) max_expire = now + entry.explicit_max_ttl;
  if (entry.period == 0) {
    const std::int64_t system_cap = now + limits_.max_ttl;
    max_expire = max_expire == 0 ? system_cap : std::min(max_expire, system_cap);
  }
  if (inherit_limits && parent.expire_time != 0) {
    max_expire = max_expire == 0 ? parent.expire_time : std::min(max_expire, parent.expire_time);
  }
  std::int64_t expire = now + ttl;
  if (max_expire != 0) expire = std::min(expire, max_expire);
  if (expire <= now) return InvalidArgument("ttl: the token would expire immediately");
  entry.creation_ttl = expire - now;
  entry.expire_time = expire;
  entry.max_expire_time = max_expire;

  // The create request itself takes one of the parent's uses, so the child gets at most
  // what is left after it.
  entry.num_uses = request.num_uses;
  if (inherit_limits && parent.num_uses > 0) {
    const std::int64_t left = parent.num_uses - 1;
    if (entry.num_uses == 0 || entry.num_uses > left) entry.num_uses = left;
  }

  entry.accessor = GenerateAccessor();
  if (!request.orphan) entry.parent = parent.accessor;
  if (inherit_limits) entry.bound_paths = parent.bound_paths;
  // The chain keeps the creator even for orphans, so every action traces back to the
  // identity that started it.
  entry.chain = parent.chain;
  entry.chain.push_back(entry.accessor);
  if (!request.bound_paths.empty()) entry.bound_paths.push_back(request.bound_paths);

  CreatedToken created;
  created.token = request.id ? SecretBuffer::CopyFrom(request.id->Reveal()) : GenerateToken();
  entry.hash = HashToken(created.token.RevealText());
  KW_ASSIGN_OR_RETURN(auto taken, storage_.Get(HashKey(entry.hash)));
  if (taken) return InvalidArgument("id: a token with this id already exists");

  KW_RETURN_IF_ERROR(StageEntry(entry, std::nullopt, batch));
  batch.Expect(HashKey(entry.hash), std::nullopt);
  batch.Put(HashKey(entry.hash), Bytes(entry.accessor.begin(), entry.accessor.end()));
  batch.Put(ExpiryKey(entry.expire_time, entry.accessor), Bytes());
  if (!entry.parent.empty()) {
    batch.Put(ChildKey(entry.parent, entry.accessor), Bytes());
    // The parent must still exist when this commits (the Expect on its record), and a
    // revocation of the parent's tree that listed its children before this commit must fail
    // (it expects the generation marker that this changes).
    KW_ASSIGN_OR_RETURN(auto parent_raw, storage_.Get(AccessorKey(parent.accessor)));
    if (!parent_raw) return PermissionDenied("the parent token was revoked");
    batch.Expect(AccessorKey(parent.accessor), parent_raw);
    StageGenerationChange(parent.accessor, batch);
  }
  created.entry = std::make_shared<const TokenEntry>(std::move(entry));
  return created;
}

Result<CreatedToken> TokenStore::CreateForLogin(TokenRequest request,
                                                storage::WriteBatch& batch) const {
  // A login token has no parent; `root` stays refused by NormalizePolicies.
  TokenEntry login_parent;
  login_parent.policies = {std::string(kRootPolicy)};
  request.orphan = true;
  request.id.reset();
  if (request.display_name.empty()) request.display_name = "login";
  const bool no_default = request.no_default_policy;
  KW_ASSIGN_OR_RETURN(auto policies, NormalizePolicies(request.policies));
  if (policies.empty() && no_default) {
    return InvalidArgument("token_policies: a login token needs at least one policy");
  }
  request.policies = policies;
  if (request.policies.empty()) request.policies = {std::string(kDefaultPolicy)};
  return Create(login_parent, std::move(request), batch);
}

Result<std::shared_ptr<const TokenEntry>> TokenStore::LookupToken(std::string_view token) const {
  if (token.empty() || token.size() > 256) return NotFound("bad token");
  const std::string hash = HashToken(token);
  KW_ASSIGN_OR_RETURN(auto index, storage_.Get(HashKey(hash)));
  if (!index) return NotFound("bad token");
  auto entry = ReadEntry(AsText(*index), nullptr);
  if (!entry) {
    if (entry.error().code() == Code::kNotFound) return NotFound("bad token");
    return entry;
  }
  if ((*entry)->hash.size() != hash.size() ||
      sodium_memcmp((*entry)->hash.data(), hash.data(), hash.size()) != 0) {
    return NotFound("bad token");
  }
  const std::int64_t now = UnixSeconds(clock_.Now());
  if ((*entry)->expire_time != 0 && now >= (*entry)->expire_time) return NotFound("bad token");
  return entry;
}

Result<std::shared_ptr<const TokenEntry>> TokenStore::LookupAccessor(
    std::string_view accessor) const {
  auto entry = ReadEntry(accessor, nullptr);
  if (!entry) return entry;
  const std::int64_t now = UnixSeconds(clock_.Now());
  if ((*entry)->expire_time != 0 && now >= (*entry)->expire_time) {
    return NotFound("no token with that accessor");
  }
  return entry;
}

Result<std::shared_ptr<const TokenEntry>> TokenStore::Renew(std::string_view accessor,
                                                            std::int64_t increment,
                                                            storage::WriteBatch& batch) const {
  if (increment < 0) return InvalidArgument("increment: must not be negative");
  std::optional<Bytes> raw;
  KW_ASSIGN_OR_RETURN(auto current, ReadEntry(accessor, &raw));
  const std::int64_t now = UnixSeconds(clock_.Now());
  if (current->expire_time != 0 && now >= current->expire_time) {
    return NotFound("no token with that accessor");
  }
  if (current->expire_time == 0 || !current->renewable) return InvalidArgument("lease is not renewable");
  TokenEntry renewed = *current;
  std::int64_t ttl = renewed.period > 0 ? renewed.period
                                        : (increment > 0 ? increment : renewed.creation_ttl);
  std::int64_t expire = now + ttl;
  if (renewed.max_expire_time != 0) expire = std::min(expire, renewed.max_expire_time);
  if (expire <= now) return InvalidArgument("the token reached its maximum TTL and cannot be renewed");
  if (expire != renewed.expire_time) {
    batch.Delete(ExpiryKey(renewed.expire_time, renewed.accessor));
    batch.Put(ExpiryKey(expire, renewed.accessor), Bytes());
  }
  renewed.expire_time = expire;
  KW_RETURN_IF_ERROR(StageEntry(renewed, raw, batch));
  return std::make_shared<const TokenEntry>(std::move(renewed));
}

Status TokenStore::RevokeTree(const TokenEntry& top, bool orphan_children,
                              std::vector<std::string>& revoked,
                              storage::WriteBatch& batch) const {
  // Tokens already in `revoked` (an earlier tree of the same batch) are skipped: the batch
  // is not committed yet, so storage still lists them as children.
  std::set<std::string, std::less<>> done(revoked.begin(), revoked.end());
  if (done.contains(top.accessor)) return OkStatus();
  std::deque<std::shared_ptr<const TokenEntry>> queue;
  queue.push_back(std::make_shared<const TokenEntry>(top));
  bool first = true;
  while (!queue.empty()) {
    auto entry = std::move(queue.front());
    queue.pop_front();
    if (!done.insert(entry->accessor).second) continue;
    // A child created under this token after the listing below changes the generation, so
    // the commit aborts instead of leaving that child alive.
    KW_ASSIGN_OR_RETURN(auto generation, storage_.Get(GenerationKey(entry->accessor)));
    batch.Expect(GenerationKey(entry->accessor), generation);
    KW_RETURN_IF_ERROR(StageRemoval(*entry, batch));
    revoked.push_back(entry->accessor);
    if (revoked.size() > kMaxTreeSize) {
      return ResourceExhausted("the token tree is too large to revoke in one request");
    }
    const std::string children_prefix =
        std::string(kChildrenPrefix) + entry->accessor + "/";
    KW_ASSIGN_OR_RETURN(auto children, storage_.List(children_prefix));
    for (const auto& child : children) {
      batch.Delete(children_prefix + child);
      std::optional<Bytes> raw;
      auto child_entry = ReadEntry(child, &raw);
      if (!child_entry) {
        if (child_entry.error().code() == Code::kNotFound) continue;  // a dangling index
        return tl::unexpected(child_entry.error());
      }
      if (first && orphan_children) {
        TokenEntry orphaned = **child_entry;
        orphaned.parent.clear();
        KW_RETURN_IF_ERROR(StageEntry(orphaned, raw, batch));
      } else {
        queue.push_back(std::move(*child_entry));
      }
    }
    first = false;
  }
  return OkStatus();
}

Status TokenStore::RunRevocationHook(const std::vector<std::string>& revoked,
                                     storage::WriteBatch& batch) const {
  if (!revocation_hook_ || revoked.empty()) return OkStatus();
  return revocation_hook_(revoked, batch);
}

Result<std::vector<std::string>> TokenStore::Revoke(std::string_view accessor,
                                                    bool orphan_children,
                                                    storage::WriteBatch& batch) const {
  std::optional<Bytes> raw;
  KW_ASSIGN_OR_RETURN(auto entry, ReadEntry(accessor, &raw));
  batch.Expect(AccessorKey(accessor), raw);
  std::vector<std::string> revoked;
  KW_RETURN_IF_ERROR(RevokeTree(*entry, orphan_children, revoked, batch));
  KW_RETURN_IF_ERROR(RunRevocationHook(revoked, batch));
  return revoked;
}

Result<std::vector<std::string>> TokenStore::SweepExpired(std::size_t limit,
                                                          storage::WriteBatch& batch) const {
  const std::int64_t now = UnixSeconds(clock_.Now());
  std::vector<std::string> revoked;
  KW_ASSIGN_OR_RETURN(auto due, storage_.Scan(kExpiryPrefix, "", limit));
  for (const auto& item : due) {
    const std::string_view rest = std::string_view(item.key).substr(kExpiryPrefix.size());
    const std::size_t slash = rest.find('/');
    if (slash == std::string_view::npos) {
      batch.Delete(item.key);
      continue;
    }
    const std::int64_t when = std::strtoll(std::string(rest.substr(0, slash)).c_str(), nullptr, 10);
    if (when > now) break;  // keys are in time order
    const std::string accessor(rest.substr(slash + 1));
    if (std::find(revoked.begin(), revoked.end(), accessor) != revoked.end()) continue;
    std::optional<Bytes> raw;
    auto entry = ReadEntry(accessor, &raw);
    if (!entry) {
      if (entry.error().code() != Code::kNotFound) return tl::unexpected(entry.error());
      batch.Delete(item.key);  // the token is gone already
      continue;
    }
    if ((*entry)->expire_time != when) {  // renewed: a stale index entry
      batch.Delete(item.key);
      continue;
    }
    batch.Expect(AccessorKey(accessor), raw);
    KW_RETURN_IF_ERROR(RevokeTree(**entry, false, revoked, batch));
  }
  KW_RETURN_IF_ERROR(RunRevocationHook(revoked, batch));
  return revoked;
}

Result<std::size_t> TokenStore::Tidy(storage::WriteBatch& batch) const {
  std::size_t removed = 0;
  // Hash index entries whose token record is gone or names another hash.
  std::string after;
  for (;;) {
    KW_ASSIGN_OR_RETURN(auto page, storage_.Scan(kHashPrefix, after, 1000));
    if (page.empty()) break;
    for (const auto& item : page) {
      after = item.key;
      const std::string hash = item.key.substr(kHashPrefix.size());
      auto entry = ReadEntry(AsText(item.value), nullptr);
      if (!entry && entry.error().code() != Code::kNotFound) return tl::unexpected(entry.error());
      if (!entry || (*entry)->hash != hash) {
        batch.Delete(item.key);
        ++removed;
      }
    }
  }
  // Child index entries whose child or parent is gone.
  after.clear();
  for (;;) {
    KW_ASSIGN_OR_RETURN(auto page, storage_.Scan(kChildrenPrefix, after, 1000));
    if (page.empty()) break;
    for (const auto& item : page) {
      after = item.key;
      const std::string rest = item.key.substr(kChildrenPrefix.size());
      const std::size_t slash = rest.find('/');
      const std::string parent = rest.substr(0, slash);
      const std::string child = slash == std::string::npos ? "" : rest.substr(slash + 1);
      KW_ASSIGN_OR_RETURN(auto parent_raw, storage_.Get(AccessorKey(parent)));
      KW_ASSIGN_OR_RETURN(auto child_raw, storage_.Get(AccessorKey(child)));
      if (!parent_raw || !child_raw) {
        batch.Delete(item.key);
        ++removed;
      }
    }
  }
  return removed;
}

}  // namespace kw::vault::auth
