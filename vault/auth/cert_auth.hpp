#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/clock.hpp"
#include "base/result.hpp"
#include "storage/storage.hpp"
#include "vault/auth/token_store.hpp"
#include "vault/barrier/barrier.hpp"

namespace kw::vault::auth {

// A role of the certificate auth method (Vault's auth/cert/certs/<name>): the CA bundle that
// must verify a client certificate, the names it must carry, and the token a login gets.
struct CertRole {
  std::string name;
  std::string certificate;  // PEM bundle of trusted CA (or pinned) certificates
  // SPIFFE ID patterns: an exact ID or "<id>/*". Empty: any SPIFFE ID (or none).
  std::vector<std::string> allowed_spiffe_ids;
  // Subject common names, compared exactly. Empty: any common name (or none).
  std::vector<std::string> allowed_common_names;
  std::vector<std::string> token_policies;
  std::int64_t token_ttl = 0;       // seconds; 0: the system default
  std::int64_t token_max_ttl = 0;   // seconds; 0: the system maximum
  std::int64_t token_num_uses = 0;  // 0: unlimited
  std::string display_name;         // empty: the role name
  std::vector<std::string> token_bound_cidrs;
};

// Returns the role as Vault's GET auth/cert/certs/<name> shows it.
nlohmann::json CertRoleToJson(const CertRole& role);

// Checks a role before it is stored: the name, a PEM bundle that parses, valid SPIFFE ID
// patterns, CIDRs, and non-negative token limits with token_ttl <= token_max_ttl.
// invalid_argument names the field.
Status ValidateCertRole(const CertRole& role);

// The certificate auth method. Roles are stored at `auth/cert/role/<name>`, encrypted by the
// barrier with the role name in the additional data, so that a row written or moved in the
// database does not decrypt. Login verifies a presented chain against each role's bundle with
// OpenSSL at the injected clock's time. Thread-safe; storage, barrier and clock must outlive it.
class CertAuth {
 public:
  CertAuth(storage::Storage& storage, Barrier& barrier, const Clock& clock)
      : storage_(storage), barrier_(barrier), clock_(clock) {}

  // Validates `role` and stages it in `batch`, replacing a role of the same name.
  Status WriteRole(const CertRole& role, storage::WriteBatch& batch) const;

  // not_found when no role has that name.
  Result<CertRole> ReadRole(std::string_view name) const;

  // Returns every role name, sorted.
  Result<std::vector<std::string>> ListRoles() const;

  // Stages the removal of role `name` (nothing happens when there is none).
  Status DeleteRole(std::string_view name, storage::WriteBatch& batch) const;

  // Logs in with the chain the client presented in the TLS handshake (DER, leaf first).
  // `role_name` selects one role; without it every role is tried in name order and the first
  // that accepts the chain wins. A role accepts when the chain verifies against its bundle
  // (X509_verify_cert, purpose sslclient), the leaf passes the X.509-SVID rules when it has a
  // URI SAN, and its SPIFFE ID or common name is allowed. permission_denied with a reason
  // that names no role content: no certificate, no trusted CA, a broken X.509-SVID rule, no
  // matching role.
  Result<TokenRequest> Login(std::span<const std::string> chain_der,
                             std::optional<std::string_view> role_name) const;

 private:
  Result<std::optional<CertRole>> LoadRole(std::string_view name) const;

  storage::Storage& storage_;
  Barrier& barrier_;
  const Clock& clock_;
};

}  // namespace kw::vault::auth
