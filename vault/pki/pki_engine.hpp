#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.hpp"
#include "base/result.hpp"
#include "base/secret_buffer.hpp"
#include "hsm/token.hpp"
#include "storage/storage.hpp"
#include "vault/barrier/barrier.hpp"
#include "vault/auth/spiffe_id.hpp"
#include "vault/pki/ca_store.hpp"
#include "vault/pki/hsm_signer.hpp"
#include "vault/pki/jwt_svid.hpp"
#include "vault/pki/pki_roles.hpp"
#include "vault/pki/trust_bundle.hpp"

namespace kw::vault::pki {

inline constexpr std::string_view kMount = "pki";
// Clock skew allowed when verifying a JWT-SVID's exp, nbf and iat.
inline constexpr std::int64_t kJwtLeewaySeconds = 30;

struct CaResult {
  int key_version = 0;
  std::string trust_domain;
  Bytes certificate;  // DER; empty when a CSR waits for set-signed
  Bytes csr;          // DER; empty in root mode
  std::int64_t activate_at = 0;
};

// An issued X.509-SVID. The private key exists only when keyward generated it (pki/issue).
struct IssuedSvid {
  std::string spiffe_id;
  Bytes certificate;             // DER
  std::vector<Bytes> ca_chain;   // DER, the issuing CA first, up to and including the root
  std::optional<SecretBuffer> private_key_pem;
  std::string private_key_type;  // "ec" or "rsa"
  std::string serial;
  std::int64_t expiration = 0;
  int key_version = 0;
};

struct IssuedJwt {
  std::string token;
  std::string spiffe_id;
  std::vector<std::string> audience;
  std::int64_t expires_at = 0;
  std::string kid;
};

// The record of a certificate that keyward issued: public data only.
struct CertRecord {
  std::string serial;  // colon-separated hex
  std::string spiffe_id;
  std::string role;
  int key_version = 0;
  std::int64_t issued_at = 0;
  std::int64_t not_after = 0;
  std::int64_t revoked_at = 0;  // 0: not revoked
  Bytes der;
};

struct TidyResult {
  std::size_t certificates_removed = 0;
  bool more = false;  // more expired records remain: run tidy again
};

// The PKI secrets engine mounted at pki/: an ECDSA P-256 CA whose key versions live in the
// HSM, roles, X.509-SVID and JWT-SVID issuance, the SPIFFE bundle, revocation and the CRL,
// and trust bundles of federated trust domains. State changes are staged in the caller's
// batch. The CA state record is written with check-and-set, so a concurrent change aborts and
// the router retries it. Thread-safe. Storage, barrier, token and clock must outlive it.
class PkiEngine {
 public:
  PkiEngine(storage::Storage& storage, Barrier& barrier, hsm::Token& token, const Clock& clock);

  // CA lifecycle.
  Result<CaResult> GenerateRoot(std::string_view trust_domain, std::string common_name,
                                std::chrono::seconds ttl, storage::WriteBatch& batch);
  Result<CaResult> GenerateIntermediate(std::string_view trust_domain, std::string common_name,
                                        std::chrono::seconds activation_delay,
                                        storage::WriteBatch& batch);
  Result<CaResult> SetSigned(std::string_view pem_chain, storage::WriteBatch& batch);
  Result<CaResult> Rotate(std::optional<std::chrono::seconds> ttl,
                          std::optional<std::chrono::seconds> activation_delay,
                          storage::WriteBatch& batch);

  // The CA state; failed_precondition when no CA exists.
  Result<CaState> State();
  // The active CA certificate and the chain above it (DER, issuing CA first).
  Result<std::vector<Bytes>> ActiveChain();
  // The SPIFFE bundle of keyward's trust domain, as JSON text.
  Result<std::string> BundleJson();
  // The JWK Set of the JWT-SVID keys.
  Result<nlohmann::json> Jwks();
  // The CRL (DER) of each key version still in the bundle, the active one first.
  Result<std::vector<Bytes>> Crls();

  // Roles.
  Result<std::optional<PkiRole>> LoadRole(std::string_view name);
  Status StageRole(const PkiRole& role, storage::WriteBatch& batch);
  Status StageRoleDelete(std::string_view name, storage::WriteBatch& batch);
  Result<std::vector<std::string>> ListRoles();

  // Issuance. `ttl` nullopt takes the role's default; a TTL above the role's maximum is
  // capped, and so is anything past the CA certificate's notAfter.
  Result<IssuedSvid> Issue(std::string_view role_name, std::string_view spiffe_id,
                           std::optional<std::chrono::seconds> ttl,
                           const CallerIdentity& caller, storage::WriteBatch& batch);
  Result<IssuedSvid> Sign(std::string_view role_name, std::string_view csr_pem,
                          std::string_view spiffe_id, std::optional<std::chrono::seconds> ttl,
                          const CallerIdentity& caller, storage::WriteBatch& batch);
  Result<IssuedJwt> IssueJwt(std::string_view role_name, std::string_view spiffe_id,
                             const std::vector<std::string>& audience,
                             std::optional<std::chrono::seconds> ttl,
                             const CallerIdentity& caller, storage::WriteBatch& batch);
  // Verifies a JWT-SVID with keyward's own keys, or a federated bundle for another trust
  // domain. invalid_argument with the reason when it does not verify.
  Result<VerifiedJwtSvid> VerifyJwt(std::string_view token, std::string_view audience);

  // Issued certificates.
  Result<std::vector<CertRecord>> ListCerts();
  Result<std::optional<CertRecord>> LoadCert(std::string_view serial);
  // Revokes a certificate; returns its revocation time (the earlier one when already revoked).
  Result<std::int64_t> Revoke(std::string_view serial, storage::WriteBatch& batch);
  // Removes records of certificates that expired more than `safety_buffer` ago, at most
  // 10,000 per call.
  Result<TidyResult> Tidy(std::chrono::seconds safety_buffer, storage::WriteBatch& batch);

  // Federated trust domains.
  Status StageFederatedBundle(std::string_view trust_domain, std::string_view bundle_json,
                              storage::WriteBatch& batch);
  Result<std::optional<TrustBundle>> LoadFederatedBundle(std::string_view trust_domain);
  Result<std::optional<std::string>> LoadFederatedBundleJson(std::string_view trust_domain);
  Status StageFederatedBundleDelete(std::string_view trust_domain, storage::WriteBatch& batch);
  Result<std::vector<std::string>> ListFederatedBundles();

 private:
  std::int64_t NowSeconds() const;
  Result<std::optional<StoredCaState>> LoadState();
  Result<std::shared_ptr<const Signer>> SignerFor(const CaVersion& version);
  Result<std::shared_ptr<HsmSigner>> NewKey(int version);
  // Versions still in the bundle at `now`, oldest first, and how many left it.
  struct LiveVersions {
    std::vector<const CaVersion*> live;
    std::uint64_t dropped = 0;
  };
  Result<LiveVersions> Live(const CaState& state, std::int64_t now);
  Result<std::int64_t> SignedUntil(int version);
  void StageSignedUntil(int version, std::int64_t until, storage::WriteBatch& batch);
  Result<TrustBundle> OwnBundle(const CaState& state, std::int64_t now);
  // The shared part of Issue and Sign once the subject key is known.
  Result<IssuedSvid> IssueFor(const PkiRole& role, std::string_view spiffe_id,
                              std::optional<std::chrono::seconds> ttl,
                              const CallerIdentity& caller, const Bytes& spki, bool rsa,
                              storage::WriteBatch& batch);
  Result<PkiRole> RequireRole(std::string_view name);
  // The CA version that signs now, once `id` is checked against the CA's trust domain and
  // the role's patterns. Adds to `batch` the expectation that the CA state is unchanged.
  struct SigningContext {
    CaVersion version;
    std::int64_t now = 0;
  };
  Result<SigningContext> PrepareSigning(const PkiRole& role, const auth::SpiffeId& id,
                                        std::string_view spiffe_id, const CallerIdentity& caller,
                                        storage::WriteBatch& batch);

  storage::Storage& storage_;
  Barrier& barrier_;
  hsm::Token& token_;
  const Clock& clock_;

  std::mutex mutex_;  // guards the caches below and serialises CA key generation
  Bytes cached_state_raw_;
  std::shared_ptr<const CaState> cached_state_;
  std::map<std::string, std::shared_ptr<HsmSigner>> signers_;  // by HSM key label
  struct CachedCrl {
    std::string revoked_fingerprint;  // the CRL generation it was built at
    std::int64_t built_at = 0;
    std::uint64_t number = 0;
    Bytes der;
  };
  std::map<int, CachedCrl> crls_;  // by key version
};

}  // namespace kw::vault::pki
