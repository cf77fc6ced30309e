#include "api/access_check.hpp"

#include <array>

#include "vault/policy/acl.hpp"
#include "vault/policy/policy_store.hpp"

namespace kw::api {
namespace {

using vault::policy::Capability;

// Paths that need `sudo` on top of the operation's capability, as in Vault. A prefix entry
// ends in '/'.
constexpr std::array<std::string_view, 16> kSudoPaths = {
    "auth/token/create-orphan",
    "sys/rotate",      "sys/seal",          "sys/audit/verify",
    "sys/audit-hash/", "sys/key-status",    "auth/token/revoke-orphan",
    "auth/token/accessors", "sys/leases/revoke-prefix/", "sys/leases/revoke-force/",
    "sys/revoke-prefix/",   "sys/revoke-force/",         "sys/leases/lookup/",
    "sys/audit/records",    "sys/audit/checkpoints",     "sys/audit/prune",
};

// Paths every token may use on itself whatever its bound paths: without them a bound token
// could not renew or revoke itself.
constexpr std::array<std::string_view, 4> kSelfPaths = {
    "auth/token/lookup-self", "auth/token/renew-self", "auth/token/revoke-self",
    "sys/capabilities-self"};

bool NeedsSudo(std::string_view path) {
  for (std::string_view entry : kSudoPaths) {
    if (entry.ends_with('/') ? path.starts_with(entry) : path == entry) return true;
  }
  return false;
}

// For a write to KV data or metadata, whether the secret exists yet: Vault's existence
// check, which makes the write a create or an update.
Result<bool> WriteCreates(RequestContext& c) {
  constexpr std::string_view kData = "secret/data/";
  constexpr std::string_view kMetadata = "secret/metadata/";
  std::string_view secret;
  if (c.path.starts_with(kData)) {
    secret = std::string_view(c.path).substr(kData.size());
  } else if (c.path.starts_with(kMetadata)) {
    secret = std::string_view(c.path).substr(kMetadata.size());
  } else {
    return false;
  }
  if (secret.empty()) return false;
  KW_ASSIGN_OR_RETURN(bool exists, c.vault->secret->Exists(secret));
  return !exists;
}

Result<std::uint32_t> RequiredCapabilities(RequestContext& c) {
  std::uint32_t required = 0;
  if (c.operation == "read") {
    required = Capability::kRead;
  } else if (c.operation == "list") {
    required = Capability::kList;
  } else if (c.operation == "patch") {
    required = Capability::kPatch;
  } else if (c.operation == "delete") {
    required = Capability::kDelete;
  } else if (c.operation == "update") {
    KW_ASSIGN_OR_RETURN(bool creates, WriteCreates(c));
    required = creates ? Capability::kCreate : Capability::kUpdate;
  } else {
    return PermissionDenied("permission denied");
  }
  if (NeedsSudo(c.path)) required |= Capability::kSudo;
  return required;
}

bool IsSelfPath(std::string_view path) {
  for (std::string_view entry : kSelfPaths) {
    if (path == entry) return true;
  }
  return false;
}

}  // namespace

bool IsLoginPath(std::string_view path) {
  return path == "auth/approle/login" || path == "auth/cert/login";
}

Status CheckAccess(RequestContext& c) {
  const bool list = c.operation == "list";
  const auto& entry = c.identity.entry;
  if (entry == nullptr) return PermissionDenied("permission denied");
  if (!IsSelfPath(c.path)) {
    for (const auto& globs : entry->bound_paths) {
      bool matched = false;
      for (const auto& glob : globs) {
        if (vault::policy::MatchesPattern(glob, c.path, list)) {
          matched = true;
          break;
        }
      }
      if (!matched) return PermissionDenied("permission denied");
    }
  }
  if (c.identity.root) return OkStatus();

  KW_ASSIGN_OR_RETURN(std::uint32_t required, RequiredCapabilities(c));
  KW_ASSIGN_OR_RETURN(auto acl, c.vault->policies->AclFor(c.identity.policies));
  const std::uint32_t granted = acl->Capabilities(c.path, list);
  if ((granted & Capability::kDeny) != 0 || (granted & required) != required) {
    return PermissionDenied("permission denied");
  }
  return OkStatus();
}

}  // namespace kw::api
