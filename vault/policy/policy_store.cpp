#include "vault/policy/policy_store.hpp"

#include <algorithm>
#include <chrono>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "base/bytes.hpp"

namespace kw::vault::policy {
namespace {

// Each cache is emptied when it reaches this many entries, which bounds the memory that
// lookups of many names can take.
constexpr std::size_t kMaxCacheEntries = 4096;

std::string RecordKey(std::string_view name) { return std::string(kPolicyPrefix) + std::string(name); }

std::string RecordAad(std::string_view name) { return "keyward:policy:acl:" + std::string(name); }

std::shared_ptr<const Policy> BuiltInDefault() {
  static const std::shared_ptr<const Policy> policy = [] {
    auto parsed = ParsePolicy(kDefaultPolicyName, DefaultPolicyDocument());
    KW_CHECK(parsed.has_value(), "the built-in default policy must parse");
    return std::make_shared<const Policy>(std::move(*parsed));
  }();
  return policy;
}

std::shared_ptr<const Acl> RootAcl() {
  static const std::shared_ptr<const Acl> acl =
      std::make_shared<const Acl>(Acl::FromPolicies({}, /*root=*/true));
  return acl;
}

}  // namespace

Result<std::shared_ptr<const Policy>> PolicyStore::Load(const std::string& name) const {
  if (name == kRootPolicyName) {
    return std::make_shared<const Policy>(Policy{std::string(kRootPolicyName), "", {}});
  }
  KW_ASSIGN_OR_RETURN(std::optional<Bytes> stored, storage_.Get(RecordKey(name)));
  if (!stored) {
    if (name == kDefaultPolicyName) return BuiltInDefault();
    return NotFound("no policy named \"" + name + "\"");
  }
  auto plain = barrier_.Decrypt(*stored, RecordAad(name));
  if (!plain) return tl::unexpected(plain.error().WithContext("policy \"" + name + "\""));

  std::string document;
  try {
    const auto record = nlohmann::json::parse(plain->RevealText());
    document = record.at("policy").get<std::string>();
  } catch (const nlohmann::json::exception&) {
    return DataLoss("policy \"" + name + "\": stored record is not valid");
  }
  auto parsed = ParsePolicy(name, document);
  if (!parsed) {
    return DataLoss("policy \"" + name + "\": stored document no longer parses: " +
                    parsed.error().message());
  }
  return std::make_shared<const Policy>(std::move(*parsed));
}

Result<std::shared_ptr<const Policy>> PolicyStore::Get(std::string_view raw_name) const {
  KW_ASSIGN_OR_RETURN(std::string name, NormalizeName(raw_name));
  std::uint64_t generation = 0;
  {
    std::lock_guard lock(mutex_);
    if (auto it = policies_.find(name); it != policies_.end()) {
      if (!it->second) return NotFound("no policy named \"" + name + "\"");
      return it->second;
    }
    generation = generation_;
  }

  auto loaded = Load(name);
  if (!loaded && loaded.error().code() != Code::kNotFound) return loaded;

  std::lock_guard lock(mutex_);
  // A commit and its Invalidate since `generation` was read may have made `loaded` stale.
  if (generation_ == generation) {
    if (policies_.size() >= kMaxCacheEntries) policies_.clear();
    policies_[name] = loaded ? *loaded : nullptr;
  }
  return loaded;
}

Result<std::vector<std::string>> PolicyStore::List() const {
  KW_ASSIGN_OR_RETURN(std::vector<std::string> stored, storage_.List(kPolicyPrefix));
  std::set<std::string> names(stored.begin(), stored.end());
  names.emplace(kDefaultPolicyName);
  names.emplace(kRootPolicyName);
  return std::vector<std::string>(names.begin(), names.end());
}

Status PolicyStore::StagePut(const Policy& policy, storage::WriteBatch& batch) const {
  KW_ASSIGN_OR_RETURN(std::string name, NormalizeName(policy.name));
  if (name == kRootPolicyName) return InvalidArgument("cannot update the \"root\" policy");
  // Parse again, so that only a document that loads back can be stored.
  KW_ASSIGN_OR_RETURN(Policy parsed, ParsePolicy(name, policy.document));

  const auto updated = std::chrono::duration_cast<std::chrono::seconds>(
                           clock_.Now().time_since_epoch())
                           .count();
  const nlohmann::json record = {
      {"name", parsed.name}, {"policy", parsed.document}, {"update_time", updated}};
  KW_ASSIGN_OR_RETURN(Bytes sealed, barrier_.Encrypt(AsBytes(record.dump()), RecordAad(name)));
  batch.Put(RecordKey(name), std::move(sealed));
  return OkStatus();
}

Status PolicyStore::StageDelete(std::string_view raw_name, storage::WriteBatch& batch) const {
  KW_ASSIGN_OR_RETURN(std::string name, NormalizeName(raw_name));
  if (name == kRootPolicyName) return InvalidArgument("cannot delete the \"root\" policy");
  if (name == kDefaultPolicyName) return InvalidArgument("cannot delete the \"default\" policy");
  batch.Delete(RecordKey(name));
  return OkStatus();
}

void PolicyStore::Invalidate(std::string_view raw_name) {
  std::lock_guard lock(mutex_);
  ++generation_;
  if (auto name = NormalizeName(raw_name)) {
    policies_.erase(*name);
  } else {
    policies_.clear();
  }
  acls_.clear();
}

Result<std::shared_ptr<const Acl>> PolicyStore::AclFor(const std::vector<std::string>& names) const {
  std::set<std::string> normalized;
  for (const auto& raw : names) {
    auto name = NormalizeName(raw);
    if (!name) continue;  // no policy can have an invalid name, so it grants nothing
    if (*name == kRootPolicyName) return RootAcl();
    normalized.insert(std::move(*name));
  }
  std::string key;
  for (const auto& name : normalized) key += name + "\n";

  std::uint64_t generation = 0;
  {
    std::lock_guard lock(mutex_);
    if (auto it = acls_.find(key); it != acls_.end()) return it->second;
    generation = generation_;
  }

  std::vector<std::shared_ptr<const Policy>> policies;
  for (const auto& name : normalized) {
    auto policy = Get(name);
    if (!policy && policy.error().code() == Code::kNotFound) continue;
    if (!policy) return tl::unexpected(policy.error());
    policies.push_back(std::move(*policy));
  }
  auto acl = std::make_shared<const Acl>(Acl::FromPolicies(policies, /*root=*/false));

  std::lock_guard lock(mutex_);
  if (generation_ == generation) {
    if (acls_.size() >= kMaxCacheEntries) acls_.clear();
    acls_[key] = acl;
  }
  return acl;
}

}  // namespace kw::vault::policy
