#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"
#include "storage/storage.hpp"
#include "vault/barrier/barrier.hpp"

namespace kw::vault::pki {

// A role of the PKI engine: which SPIFFE IDs its callers may obtain SVIDs for, and how long
// those live. Stored at pki/role/<name>, encrypted by the barrier.
struct PkiRole {
  std::string name;
  // Exact SPIFFE IDs or "<ID>/*" patterns, with optional templates filled from the caller's
  // login: {{identity.spiffe_id}}, {{identity.role_name}}, {{identity.meta.KEY}}.
  std::vector<std::string> allowed_spiffe_ids;
  std::chrono::seconds ttl{3600};
  std::chrono::seconds max_ttl{86400};
  std::string key_type = "ec";
  int key_bits = 0;  // 0: the type's default (P-256, RSA 2048)
  std::chrono::seconds not_before_skew{30};
  std::chrono::seconds jwt_ttl{300};
  std::chrono::seconds jwt_max_ttl{3600};
};

// The caller's identity that role templates read. It is taken from the calling token only
// when a login method made that token, because other tokens carry metadata their creator
// chose. For them every template expands to nothing.
struct CallerIdentity {
  bool from_login = false;
  // {{identity.spiffe_id}}: the SPIFFE ID of the client certificate of an auth/cert login.
  // Never read from metadata, which an AppRole secret id's creator may choose.
  std::string spiffe_id;
  // {{identity.role_name}}: the cert role or AppRole role the token logged in with.
  std::string role_name;
  // {{identity.meta.KEY}}: the login token's metadata.
  std::map<std::string, std::string> meta;
};

// Checks a role's fields: every pattern (templates replaced by a sample value) is a valid
// SPIFFE ID pattern, TTLs are positive with ttl <= max_ttl, the key type is known.
// invalid_argument names the field.
Status ValidateRole(const PkiRole& role);

// Returns the role's patterns with templates filled from `caller`. A pattern whose template
// has no value, or whose value is not a valid path segment (for role_name and meta) or a
// valid workload SPIFFE ID (for spiffe_id), is dropped, so it matches nothing.
std::vector<std::string> ExpandPatterns(const PkiRole& role, const CallerIdentity& caller);

Result<std::optional<PkiRole>> LoadRole(storage::Storage& storage, Barrier& barrier,
                                        std::string_view name);
Status StageRole(const PkiRole& role, Barrier& barrier, storage::WriteBatch& batch);
void StageRoleDelete(std::string_view name, storage::WriteBatch& batch);
Result<std::vector<std::string>> ListRoles(storage::Storage& storage);

// Checks a role name: 1 to 128 characters of a-z A-Z 0-9 . - _.
Status ValidateRoleName(std::string_view name);

}  // namespace kw::vault::pki
