#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/bytes.hpp"
#include "base/result.hpp"
#include "storage/storage.hpp"
#include "vault/barrier/barrier.hpp"

namespace kw::vault::pki {

// Storage key of the CA state, encrypted by the barrier (AAD kCaStateAad): it names the trust
// anchors, so a row written into the database must not be able to swap them.
inline constexpr std::string_view kCaStateKey = "pki/ca/state";
inline constexpr std::string_view kCaStateAad = "keyward:pki:ca";

// How long before its activation time a new CA version starts signing.
inline constexpr std::int64_t kSigningLeadSeconds = 5;

// One CA key version: an ECDSA P-256 key pair on the HSM and the certificate that names it.
struct CaVersion {
  int version = 0;
  std::string key_label;   // the HSM label of the key pair
  Bytes spki;              // its public key (DER SubjectPublicKeyInfo)
  std::string kid;         // RFC 7638 thumbprint of the public key: the JWT-SVID `kid`
  std::string common_name;  // the subject CN of its certificate or CSR
  Bytes certificate;       // DER; empty while an intermediate CSR waits for set-signed
  std::vector<Bytes> chain;  // DER certificates above `certificate`, up to and including the
                             // self-signed root; empty in root mode
  std::int64_t created_at = 0;
  std::int64_t activate_at = 0;  // signing starts here; the bundle publishes it before
  // For a version that waits for set-signed: how long after installation it starts signing.
  std::int64_t activation_delay = 0;
  std::int64_t not_before = 0;   // of the certificate
  std::int64_t not_after = 0;    // of the certificate, capped by every certificate above it

  bool installed() const { return !certificate.empty(); }
  // The trust anchor that the bundle publishes for this version: the self-signed root.
  const Bytes& trust_anchor() const { return chain.empty() ? certificate : chain.back(); }
};

struct CaState {
  std::string trust_domain;
  std::string mode;  // "root": keyward's self-signed root; "intermediate": an external root
  // Grows by one for each change of the published key set that is not time-driven (a new
  // version, an installed certificate). The bundle's spiffe_sequence adds the number of
  // versions that expired out of the bundle by then.
  std::uint64_t sequence_base = 1;
  std::int64_t refresh_hint = 300;  // seconds, spiffe_refresh_hint
  std::vector<CaVersion> versions;  // ascending by version

  // The version that is active at `now`: the newest installed version whose activation time
  // has come. nullptr when none.
  const CaVersion* Active(std::int64_t now) const;
  // The version that signs at `now`: Active(now + kSigningLeadSeconds). Signing moves to a new
  // version shortly before it becomes active, so that a request in flight at the switch
  // cannot sign with the old version after the bundle dropped it.
  const CaVersion* Signing(std::int64_t now) const;
  const CaVersion* Find(int version) const;
  CaVersion* Find(int version);
  int NextVersion() const { return versions.empty() ? 1 : versions.back().version + 1; }
};

// The CA state with the stored bytes it was read from, for check-and-set writes.
struct StoredCaState {
  CaState state;
  Bytes raw;
};

std::string SerializeCaState(const CaState& state);
Result<CaState> ParseCaState(std::string_view json_text);

// Reads the CA state; nullopt when no CA was generated yet.
Result<std::optional<StoredCaState>> LoadCaState(storage::Storage& storage, Barrier& barrier);

// Stages `state` in `batch`, expecting the stored bytes `previous` (nullopt: none stored).
Status StageCaState(const CaState& state, const std::optional<Bytes>& previous, Barrier& barrier,
                    storage::WriteBatch& batch);

}  // namespace kw::vault::pki
