#include "vault/pki/pki_engine.hpp"

#include <algorithm>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "base/log.hpp"
#include "vault/auth/spiffe_id.hpp"
#include "vault/pki/jwk.hpp"
#include "vault/pki/x509_builder.hpp"
#include "vault/pki/x509_parse.hpp"

namespace kw::vault::pki {
namespace {

using nlohmann::json;

constexpr std::string_view kCertPrefix = "pki/certs/";
constexpr std::string_view kExpiryPrefix = "pki/expiry/";
constexpr std::string_view kRevokedPrefix = "pki/revoked/";
constexpr std::string_view kSignedPrefix = "pki/ca/signed/";
constexpr std::string_view kBundlePrefix = "pki/bundle/";
// Counts changes of the revocation lists (revocations, tidied revocations), so a CRL request
// finds out with one read whether its cached CRL is current.
constexpr std::string_view kCrlGenerationKey = "pki/crl/generation";
constexpr std::size_t kTidyLimit = 10000;
constexpr std::size_t kScanPage = 1000;
constexpr std::size_t kMaxAudiences = 16;
constexpr std::size_t kMaxAudienceBytes = 1024;
// A CRL is rebuilt when its revocations change, and at least this often.
constexpr std::int64_t kCrlRefreshSeconds = 3600;
constexpr std::int64_t kCrlLifetimeSeconds = 24 * 3600;

std::string Padded(std::int64_t value, int width) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%0*lld", width, static_cast<long long>(value));
  return buffer;
}

// Storage form of a serial: hex without colons.
std::string SerialKey(std::string_view serial) {
  std::string out;
  for (char c : serial) {
    if (c != ':') out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  return out;
}

// Normalises a serial given by a caller ("3A:0F", "3a-0f" or "3a0f") to "3a:0f".
Result<std::string> NormalizeSerial(std::string_view serial) {
  std::string hex;
  for (char c : serial) {
    if (c == ':' || c == '-') continue;
    if (!std::isxdigit(static_cast<unsigned char>(c)) || hex.size() >= 64) {
      return InvalidArgument(
          "invalid field \"serial_number\": expected hex octets such as \"3a:0f:...\"");
    }
    hex.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  if (hex.empty() || hex.size() % 2 != 0) {
    return InvalidArgument(
        "invalid field \"serial_number\": expected hex octets such as \"3a:0f:...\"");
  }
  std::string out;
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    if (!out.empty()) out.push_back(':');
    out.append(hex, i, 2);
  }
  return out;
}

json CertToJson(const CertRecord& record) {
  return {{"serial", record.serial},          {"spiffe_id", record.spiffe_id},
          {"role", record.role},              {"key_version", record.key_version},
          {"issued_at", record.issued_at},    {"not_after", record.not_after},
          {"revoked_at", record.revoked_at},  {"certificate", ToBase64(record.der)}};
}

Result<CertRecord> CertFromJson(ByteSpan bytes) {
  try {
    json j = json::parse(AsText(bytes));
    CertRecord record;
    j.at("serial").get_to(record.serial);
    j.at("spiffe_id").get_to(record.spiffe_id);
    j.at("role").get_to(record.role);
    j.at("key_version").get_to(record.key_version);
    j.at("issued_at").get_to(record.issued_at);
    j.at("not_after").get_to(record.not_after);
    j.at("revoked_at").get_to(record.revoked_at);
    auto der = FromBase64(j.at("certificate").get<std::string>());
    if (!der) return DataLoss("a stored certificate record is not base64");
    record.der = std::move(*der);
    return record;
  } catch (const json::exception& e) {
    return DataLoss("a stored certificate record is malformed: " + detail::DescribeJsonError(e));
  }
}

// Certificate records are public data, but their revocation state decides what the CRL lists,
// so they are stored through the barrier, bound to their storage key: a row written or
// copied into the database does not decrypt.
Result<Bytes> SealRecord(Barrier& barrier, const CertRecord& record, std::string_view key) {
  return barrier.Encrypt(AsBytes(CertToJson(record).dump()), "keyward:" + std::string(key));
}

Result<CertRecord> OpenRecord(Barrier& barrier, ByteSpan sealed, std::string_view key) {
  KW_ASSIGN_OR_RETURN(SecretBuffer plain, barrier.Decrypt(sealed, "keyward:" + std::string(key)));
  return CertFromJson(plain.Reveal());
}

std::string FederatedAad(std::string_view trust_domain) {
  return "keyward:pki:bundle:" + std::string(trust_domain);
}

// Checks a trust domain name with the SPIFFE ID rules.
Status ValidateTrustDomain(std::string_view trust_domain, std::string_view field) {
  if (trust_domain.empty()) {
    return InvalidArgument("missing field \"" + std::string(field) +
                           "\": name the trust domain, for example \"example.org\"");
  }
  if (trust_domain.find("://") != std::string_view::npos) {
    return InvalidArgument("invalid field \"" + std::string(field) +
                           "\": give the trust domain name alone, without \"spiffe://\"");
  }
  auto id = auth::ParseSpiffeId("spiffe://" + std::string(trust_domain));
  if (!id || !id->root()) {
    return InvalidArgument("invalid field \"" + std::string(field) + "\": \"" +
                           std::string(trust_domain) + "\" is not a SPIFFE trust domain" +
                           (id ? "" : ": " + id.error().message()));
  }
  return OkStatus();
}

// Quotes a caller's value for an error message: as is when it is short printable ASCII, else
// JSON-escaped (invalid UTF-8 replaced) and cut.
std::string Quoted(std::string_view value) {
  constexpr std::size_t kMaxShown = 256;
  const bool plain = value.size() <= kMaxShown &&
                     std::all_of(value.begin(), value.end(), [](char c) {
                       return c >= 0x20 && c <= 0x7e && c != '"' && c != '\\';
                     });
  if (plain) return "\"" + std::string(value) + "\"";
  std::string escaped =
      json(std::string(value.substr(0, kMaxShown))).dump(-1, ' ', true, json::error_handler_t::replace);
  return value.size() > kMaxShown ? escaped + "..." : escaped;
}

// Checks a CA common name: printable ASCII, so that it shows the same in every tool.
Status ValidateCommonName(std::string_view common_name) {
  const bool printable = std::all_of(common_name.begin(), common_name.end(),
                                     [](char c) { return c >= 0x20 && c <= 0x7e; });
  if (!printable || common_name.size() > 64) {
    return InvalidArgument("invalid field \"common_name\": use 1 to 64 printable ASCII characters");
  }
  return OkStatus();
}

// Parses and checks a requested workload SPIFFE ID. The error names the ID and the rule.
Result<auth::SpiffeId> ParseWorkloadId(std::string_view spiffe_id) {
  if (spiffe_id.empty()) {
    return InvalidArgument("missing field \"spiffe_id\": name the workload's SPIFFE ID");
  }
  auto id = auth::ParseSpiffeId(spiffe_id);
  if (!id) {
    // The parser's message names the ID and the rule it breaks.
    return InvalidArgument("invalid field \"spiffe_id\": " + id.error().message());
  }
  if (id->root()) {
    return InvalidArgument("invalid spiffe_id " + Quoted(spiffe_id) +
                           ": a workload ID needs a path below the trust domain");
  }
  if (spiffe_id.size() > auth::kMaxSpiffeIdBytes) {
    return InvalidArgument("invalid spiffe_id: it is " + std::to_string(spiffe_id.size()) +
                           " bytes; SPIFFE IDs are at most 2048");
  }
  return std::move(*id);
}

// Parses the decimal digits of a stored key or value; data_loss names `what` otherwise, so
// a garbled row fails its request instead of the server.
Result<std::int64_t> StoredNumber(std::string_view digits, std::string_view what) {
  std::int64_t value = 0;
  if (digits.size() > 1 && digits.size() <= 20) {
    digits.remove_prefix(std::min(digits.find_first_not_of('0'), digits.size() - 1));
  }
  if (digits.empty() || digits.size() > 18) {
    return DataLoss("a stored " + std::string(what) + " is not a number");
  }
  for (char c : digits) {
    if (c < '0' || c > '9') return DataLoss("a stored " + std::string(what) + " is not a number");
    value = value * 10 + (c - '0');
  }
  return value;
}

// Stages the next CRL generation, expecting the stored one.
Status StageCrlGeneration(storage::Storage& storage, storage::WriteBatch& batch) {
  KW_ASSIGN_OR_RETURN(std::optional<Bytes> raw, storage.Get(kCrlGenerationKey));
  std::int64_t generation = 0;
  if (raw) {
    KW_ASSIGN_OR_RETURN(generation, StoredNumber(AsText(*raw), "CRL generation"));
  }
  const std::string next = std::to_string(generation + 1);
  batch.Expect(std::string(kCrlGenerationKey), raw);
  batch.Put(std::string(kCrlGenerationKey), Bytes(next.begin(), next.end()));
  return OkStatus();
}

// Returns a new CA version record for the key pair `signer` holds, without a certificate.
Result<CaVersion> NewVersion(int number, const HsmSigner& signer, std::string common_name,
                             std::int64_t now) {
  KW_ASSIGN_OR_RETURN(json jwk, PublicJwkFromSpki(signer.PublicKeySpki()));
  KW_ASSIGN_OR_RETURN(std::string kid, JwkThumbprint(jwk));
  CaVersion version;
  version.version = number;
  version.key_label = signer.label();
  version.spki = signer.PublicKeySpki();
  version.kid = std::move(kid);
  version.common_name = std::move(common_name);
  version.created_at = now;
  return version;
}

}  // namespace

PkiEngine::PkiEngine(storage::Storage& storage, Barrier& barrier, hsm::Token& token,
                     const Clock& clock)
    : storage_(storage), barrier_(barrier), token_(token), clock_(clock) {}

std::int64_t PkiEngine::NowSeconds() const {
  return std::chrono::duration_cast<std::chrono::seconds>(clock_.Now().time_since_epoch())
      .count();
}

Result<std::optional<StoredCaState>> PkiEngine::LoadState() {
  KW_ASSIGN_OR_RETURN(std::optional<Bytes> raw, storage_.Get(kCaStateKey));
  if (!raw) return std::optional<StoredCaState>();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cached_state_ && cached_state_raw_ == *raw) {
      return std::optional<StoredCaState>(StoredCaState{*cached_state_, std::move(*raw)});
    }
  }
  KW_ASSIGN_OR_RETURN(SecretBuffer plain, barrier_.Decrypt(*raw, kCaStateAad));
  KW_ASSIGN_OR_RETURN(CaState state, ParseCaState(plain.RevealText()));
  std::lock_guard<std::mutex> lock(mutex_);
  cached_state_raw_ = *raw;
  cached_state_ = std::make_shared<const CaState>(state);
  return std::optional<StoredCaState>(StoredCaState{std::move(state), std::move(*raw)});
}

Result<CaState> PkiEngine::State() {
  KW_ASSIGN_OR_RETURN(std::optional<StoredCaState> stored, LoadState());
  if (!stored) {
    return FailedPrecondition(
        "the PKI engine has no CA yet: create one with pki/root/generate/internal or "
        "pki/intermediate/generate/internal");
  }
  return std::move(stored->state);
}

Result<std::shared_ptr<const Signer>> PkiEngine::SignerFor(const CaVersion& version) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = signers_.find(version.key_label);
  if (found != signers_.end()) return std::shared_ptr<const Signer>(found->second);
  KW_ASSIGN_OR_RETURN(std::unique_ptr<HsmSigner> loaded, HsmSigner::Load(token_, version.key_label));
  if (loaded->PublicKeySpki() != version.spki) {
    return DataLoss("the HSM key \"" + version.key_label +
                    "\" does not match the public key recorded for CA version " +
                    std::to_string(version.version));
  }
  std::shared_ptr<HsmSigner> signer(std::move(loaded));
  signers_[version.key_label] = signer;
  return std::shared_ptr<const Signer>(signer);
}

Result<std::shared_ptr<HsmSigner>> PkiEngine::NewKey(int version) {
  // A random suffix keeps labels unique when a request that generated a key is retried or
  // its commit fails: the unused key stays on the token, unreferenced.
  const std::string label =
      "keyward-pki-ca-" + std::to_string(version) + "-" + ToHex(RandomBytes(6));
  KW_ASSIGN_OR_RETURN(std::unique_ptr<HsmSigner> generated, HsmSigner::Generate(token_, label));
  std::shared_ptr<HsmSigner> signer(std::move(generated));
  std::lock_guard<std::mutex> lock(mutex_);
  signers_[label] = signer;
  return signer;
}

Result<CaResult> PkiEngine::GenerateRoot(std::string_view trust_domain, std::string common_name,
                                         std::chrono::seconds ttl, storage::WriteBatch& batch) {
  KW_RETURN_IF_ERROR(ValidateTrustDomain(trust_domain, "trust_domain"));
  if (ttl.count() <= 0) return InvalidArgument("invalid field \"ttl\": must be positive");
  KW_ASSIGN_OR_RETURN(std::optional<StoredCaState> stored, LoadState());
  if (stored) {
    return InvalidArgument("the PKI engine already has a CA for trust domain \"" +
                           stored->state.trust_domain +
                           "\": rotate its key with pki/rotate instead");
  }
  if (common_name.empty()) common_name = "keyward CA " + std::string(trust_domain);
  KW_RETURN_IF_ERROR(ValidateCommonName(common_name));
  const std::int64_t now = NowSeconds();
  KW_ASSIGN_OR_RETURN(std::shared_ptr<HsmSigner> signer, NewKey(1));
  CaCertSpec spec{std::string(trust_domain), common_name, now - 60, now + ttl.count()};
  KW_ASSIGN_OR_RETURN(Bytes certificate, BuildSelfSignedCa(spec, *signer));

  CaState state;
  state.trust_domain = std::string(trust_domain);
  state.mode = "root";
  KW_ASSIGN_OR_RETURN(CaVersion version, NewVersion(1, *signer, spec.common_name, now));
  version.certificate = certificate;
  version.activate_at = now;
  version.not_before = spec.not_before;
  version.not_after = spec.not_after;
  state.versions.push_back(version);
  KW_RETURN_IF_ERROR(StageCaState(state, std::nullopt, barrier_, batch));
  // A federated bundle stored for this trust domain before the CA existed must not outlive it.
  batch.Delete(std::string(kBundlePrefix) + state.trust_domain);
  return CaResult{1, state.trust_domain, std::move(certificate), {}, now};
}

Result<CaResult> PkiEngine::GenerateIntermediate(std::string_view trust_domain,
                                                 std::string common_name,
                                                 std::chrono::seconds activation_delay,
                                                 storage::WriteBatch& batch) {
  KW_ASSIGN_OR_RETURN(std::optional<StoredCaState> stored, LoadState());
  CaState state;
  std::optional<Bytes> previous;
  if (stored) {
    state = stored->state;
    previous = stored->raw;
    if (state.mode != "intermediate") {
      return InvalidArgument("the PKI engine has a self-signed root CA: rotate it with "
                             "pki/rotate");
    }
    if (!trust_domain.empty() && trust_domain != state.trust_domain) {
      return InvalidArgument("invalid field \"trust_domain\": this CA serves \"" +
                             state.trust_domain + "\"");
    }
    for (const CaVersion& version : state.versions) {
      if (!version.installed()) {
        // The pending version's CSR again, so a lost response does not block the CA: its
        // key stays in the HSM until set-signed installs a certificate for it.
        KW_ASSIGN_OR_RETURN(std::shared_ptr<const Signer> signer, SignerFor(version));
        CaCertSpec spec{state.trust_domain, version.common_name, 0, 0};
        KW_ASSIGN_OR_RETURN(Bytes csr, BuildCaCsr(spec, *signer));
        return CaResult{version.version, state.trust_domain, {}, std::move(csr), 0};
      }
    }
  } else {
    KW_RETURN_IF_ERROR(ValidateTrustDomain(trust_domain, "trust_domain"));
    state.trust_domain = std::string(trust_domain);
    state.mode = "intermediate";
    batch.Delete(std::string(kBundlePrefix) + state.trust_domain);
  }
  const int number = state.NextVersion();
  if (common_name.empty()) {
    common_name = "keyward intermediate CA " + state.trust_domain + " v" + std::to_string(number);
  }
  KW_RETURN_IF_ERROR(ValidateCommonName(common_name));
  KW_ASSIGN_OR_RETURN(std::shared_ptr<HsmSigner> signer, NewKey(number));
  CaCertSpec spec{state.trust_domain, common_name, 0, 0};
  KW_ASSIGN_OR_RETURN(Bytes csr, BuildCaCsr(spec, *signer));
  KW_ASSIGN_OR_RETURN(CaVersion version,
                      NewVersion(number, *signer, common_name, NowSeconds()));
  version.activation_delay = number == 1 ? 0 : activation_delay.count();
  state.versions.push_back(version);
  KW_RETURN_IF_ERROR(StageCaState(state, previous, barrier_, batch));
  return CaResult{number, state.trust_domain, {}, std::move(csr), 0};
}

Result<CaResult> PkiEngine::SetSigned(std::string_view pem_chain, storage::WriteBatch& batch) {
  KW_ASSIGN_OR_RETURN(std::optional<StoredCaState> stored, LoadState());
  if (!stored || stored->state.mode != "intermediate") {
    return InvalidArgument("no intermediate CSR waits for a certificate: create one with "
                           "pki/intermediate/generate/internal");
  }
  auto certificates = PemToDerList(pem_chain, "CERTIFICATE");
  if (!certificates) {
    return InvalidArgument("invalid field \"certificate\": " + certificates.error().message());
  }
  std::size_t blocks = 0;
  for (std::size_t at = pem_chain.find("-----BEGIN "); at != std::string_view::npos;
       at = pem_chain.find("-----BEGIN ", at + 1)) {
    ++blocks;
  }
  if (blocks != certificates->size()) {
    return InvalidArgument("invalid field \"certificate\": send only CERTIFICATE blocks (never "
                           "a private key)");
  }
  if (certificates->size() < 2 || certificates->size() > 8) {
    return InvalidArgument(
        "invalid field \"certificate\": give the signed intermediate followed by its chain up "
        "to and including the self-signed root (2 to 8 certificates)");
  }
  CaState state = stored->state;

  std::vector<CertificateInfo> infos;
  for (const Bytes& der : *certificates) {
    auto info = ParseCertificateDer(der);
    if (!info) {
      return InvalidArgument("invalid field \"certificate\": " + info.error().message());
    }
    infos.push_back(std::move(*info));
  }
  CaVersion* version = nullptr;
  for (CaVersion& candidate : state.versions) {
    if (!candidate.installed() && candidate.spki == infos.front().spki) version = &candidate;
  }
  if (version == nullptr) {
    return InvalidArgument("invalid field \"certificate\": its public key matches no CSR that "
                           "waits for a certificate");
  }

  const std::int64_t now = NowSeconds();
  std::int64_t not_after = infos.front().not_after;
  for (std::size_t i = 0; i < infos.size(); ++i) {
    const CertificateInfo& info = infos[i];
    if (!info.is_ca || !info.key_cert_sign) {
      return InvalidArgument("invalid field \"certificate\": certificate " + std::to_string(i) +
                             " (" + info.subject + ") is not a CA with keyCertSign");
    }
    if (info.not_after <= now) {
      return InvalidArgument("invalid field \"certificate\": certificate " + std::to_string(i) +
                             " (" + info.subject + ") has expired");
    }
    if (info.not_before > now) {
      return InvalidArgument("invalid field \"certificate\": certificate " + std::to_string(i) +
                             " (" + info.subject + ") is not valid yet");
    }
    not_after = std::min(not_after, info.not_after);
    if (i + 1 < infos.size()) {
      if (Status signed_by = VerifySignedBy(info.der, infos[i + 1].der); !signed_by) {
        return InvalidArgument("invalid field \"certificate\": certificate " +
                               std::to_string(i) + " is not signed by certificate " +
                               std::to_string(i + 1) + ": " + signed_by.error().message());
      }
    }
  }

  if (!infos.back().self_signed) {
    return InvalidArgument("invalid field \"certificate\": the last certificate must be the "
                           "self-signed root");
  }
  for (const std::string& uri : infos.front().uri_sans) {
    if (uri != "spiffe://" + state.trust_domain) {
      return InvalidArgument("invalid field \"certificate\": its URI SAN \"" + uri +
                             "\" is not spiffe://" + state.trust_domain);
    }
  }
  // A throwaway SVID must pass path validation through the new chain, so constraints that
  // the chain places on its leaves (name constraints, path length) are found now rather than
  // by every workload.
  {
    KW_ASSIGN_OR_RETURN(std::shared_ptr<const Signer> signer, SignerFor(*version));
    KW_ASSIGN_OR_RETURN(WorkloadKey probe_key, GenerateWorkloadKey(KeyType::kEcP256));
    LeafSpec probe{"spiffe://" + state.trust_domain + "/keyward/chain-check", probe_key.spki,
                   false, now, std::min(now + 60, not_after)};
    KW_ASSIGN_OR_RETURN(IssuedCertificate leaf, BuildLeaf(probe, infos.front().der, *signer));
    std::vector<Bytes> intermediates(certificates->begin(), certificates->end() - 1);
    if (Status valid = detail::VerifyChain(leaf.der, intermediates, certificates->back(), now);
        !valid) {
      return InvalidArgument("invalid field \"certificate\": an SVID issued under this chain "
                             "would not validate: " + valid.error().message());
    }
  }

  version->certificate = infos.front().der;
  version->chain.assign(certificates->begin() + 1, certificates->end());
  version->not_before = infos.front().not_before;
  version->not_after = not_after;
  version->activate_at = now + version->activation_delay;
  ++state.sequence_base;
  KW_RETURN_IF_ERROR(StageCaState(state, stored->raw, barrier_, batch));
  return CaResult{version->version, state.trust_domain, version->certificate, {},
                  version->activate_at};
}

Result<CaResult> PkiEngine::Rotate(std::optional<std::chrono::seconds> ttl,
                                   std::optional<std::chrono::seconds> activation_delay,
                                   storage::WriteBatch& batch) {
  KW_ASSIGN_OR_RETURN(std::optional<StoredCaState> stored, LoadState());
  if (!stored) return tl::unexpected(State().error());
  const std::int64_t delay =
      activation_delay ? activation_delay->count() : stored->state.refresh_hint;
  if (delay < 0) return InvalidArgument("invalid field \"activation_delay\": must be >= 0");
  if (stored->state.mode == "intermediate") {
    return GenerateIntermediate({}, {}, std::chrono::seconds(delay), batch);
  }
  CaState state = stored->state;
  const CaVersion& newest = state.versions.back();
  const std::int64_t lifetime = ttl ? ttl->count() : newest.not_after - newest.not_before;
  if (lifetime <= 0) return InvalidArgument("invalid field \"ttl\": must be positive");
  const std::int64_t now = NowSeconds();
  const int number = state.NextVersion();
  KW_ASSIGN_OR_RETURN(std::shared_ptr<HsmSigner> signer, NewKey(number));
  CaCertSpec spec{state.trust_domain, "keyward CA " + state.trust_domain + " v" +
                                          std::to_string(number),
                  now - 60, now + lifetime};
  KW_ASSIGN_OR_RETURN(Bytes certificate, BuildSelfSignedCa(spec, *signer));
  KW_ASSIGN_OR_RETURN(CaVersion version, NewVersion(number, *signer, spec.common_name, now));
  version.certificate = certificate;
  version.activate_at = now + delay;
  version.not_before = spec.not_before;
  version.not_after = spec.not_after;
  state.versions.push_back(version);
  ++state.sequence_base;
  KW_RETURN_IF_ERROR(StageCaState(state, stored->raw, barrier_, batch));
  log::Info("PKI CA key rotated", {{"key_version", std::to_string(number)}});
  return CaResult{number, state.trust_domain, std::move(certificate), {}, version.activate_at};
}

Result<std::int64_t> PkiEngine::SignedUntil(int version) {
  KW_ASSIGN_OR_RETURN(std::optional<storage::Entry> last,
                      storage_.Last(std::string(kSignedPrefix) + Padded(version, 10) + "/"));
  if (!last) return std::int64_t{0};
  const std::string_view key = last->key;
  return StoredNumber(key.substr(key.rfind('/') + 1), "signing time mark");
}

void PkiEngine::StageSignedUntil(int version, std::int64_t until, storage::WriteBatch& batch) {
  // Rounded up to the minute, so one key covers every issuance of that minute. Each key is
  // written, never updated, so concurrent issuances need no check-and-set.
  const std::int64_t minute = (until + 59) / 60 * 60;
  batch.Put(std::string(kSignedPrefix) + Padded(version, 10) + "/" + Padded(minute, 20), Bytes());
}

Result<PkiEngine::LiveVersions> PkiEngine::Live(const CaState& state, std::int64_t now) {
  LiveVersions out;
  const CaVersion* active = state.Active(now);
  for (const CaVersion& version : state.versions) {
    if (!version.installed()) continue;
    bool dropped = version.not_after <= now;
    if (!dropped && active != nullptr && version.version < active->version) {
      // A superseded version stays until everything it signed has expired.
      KW_ASSIGN_OR_RETURN(std::int64_t until, SignedUntil(version.version));
      dropped = until <= now;
    }
    if (dropped) {
      ++out.dropped;
    } else {
      out.live.push_back(&version);
    }
  }
  return out;
}

Result<TrustBundle> PkiEngine::OwnBundle(const CaState& state, std::int64_t now) {
  KW_ASSIGN_OR_RETURN(LiveVersions live, Live(state, now));
  TrustBundle bundle;
  bundle.trust_domain = state.trust_domain;
  for (const CaVersion* version : live.live) {
    const Bytes& anchor = version->trust_anchor();
    if (std::find(bundle.x509_authorities.begin(), bundle.x509_authorities.end(), anchor) ==
        bundle.x509_authorities.end()) {
      bundle.x509_authorities.push_back(anchor);
    }
    bundle.jwt_authorities.push_back(JwtAuthority{version->kid, version->spki});
  }
  bundle.sequence = state.sequence_base + live.dropped;
  bundle.refresh_hint = state.refresh_hint;
  return bundle;
}

Result<std::string> PkiEngine::BundleJson() {
  KW_ASSIGN_OR_RETURN(CaState state, State());
  KW_ASSIGN_OR_RETURN(TrustBundle bundle, OwnBundle(state, NowSeconds()));
  return SerializeTrustBundle(bundle);
}

Result<json> PkiEngine::Jwks() {
  KW_ASSIGN_OR_RETURN(CaState state, State());
  KW_ASSIGN_OR_RETURN(TrustBundle bundle, OwnBundle(state, NowSeconds()));
  return JwksOf(bundle.jwt_authorities);
}

Result<std::vector<Bytes>> PkiEngine::ActiveChain() {
  KW_ASSIGN_OR_RETURN(CaState state, State());
  const CaVersion* active = state.Signing(NowSeconds());
  if (active == nullptr) {
    return FailedPrecondition("no CA certificate is installed yet: finish the intermediate "
                              "with pki/intermediate/set-signed");
  }
  std::vector<Bytes> chain{active->certificate};
  chain.insert(chain.end(), active->chain.begin(), active->chain.end());
  return chain;
}

Result<std::vector<Bytes>> PkiEngine::Crls() {
  KW_ASSIGN_OR_RETURN(CaState state, State());
  const std::int64_t now = NowSeconds();
  KW_ASSIGN_OR_RETURN(LiveVersions live, Live(state, now));
  const CaVersion* active = state.Active(now);

  std::vector<const CaVersion*> order;
  if (active != nullptr) order.push_back(active);
  for (const CaVersion* version : live.live) {
    if (version != active && version->activate_at <= now) order.push_back(version);
  }
  KW_ASSIGN_OR_RETURN(std::optional<Bytes> generation_raw, storage_.Get(kCrlGenerationKey));
  const std::string generation = generation_raw ? std::string(AsText(*generation_raw)) : "0";
  std::vector<Bytes> out;
  for (const CaVersion* version : order) {
    {
      // A current cached CRL is served without reading the revocations.
      std::lock_guard<std::mutex> lock(mutex_);
      auto cached = crls_.find(version->version);
      if (cached != crls_.end() && cached->second.revoked_fingerprint == generation &&
          now - cached->second.built_at < kCrlRefreshSeconds) {
        out.push_back(cached->second.der);
        continue;
      }
    }

    const std::string prefix = std::string(kRevokedPrefix) + Padded(version->version, 10) + "/";
    std::vector<RevokedEntry> revoked;
    std::string after;
    while (true) {
      KW_ASSIGN_OR_RETURN(std::vector<storage::Entry> page,
                          storage_.Scan(prefix, after, kScanPage));
      for (const storage::Entry& entry : page) {
        KW_ASSIGN_OR_RETURN(CertRecord record, OpenRecord(barrier_, entry.value, entry.key));
        if (record.not_after <= now) continue;  // expired certificates leave the CRL
        revoked.push_back(RevokedEntry{record.serial, record.revoked_at});
      }
      if (page.size() < kScanPage) break;
      after = page.back().key;
    }

    KW_ASSIGN_OR_RETURN(std::shared_ptr<const Signer> signer, SignerFor(*version));
    // The CRL number is the build time, or one more than the last number when several CRLs
    // are built within a second, so it grows with every rebuild (RFC 5280 section 5.2.3).
    std::uint64_t number = static_cast<std::uint64_t>(now);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto cached = crls_.find(version->version);
      if (cached != crls_.end()) number = std::max(number, cached->second.number + 1);
    }
    KW_ASSIGN_OR_RETURN(Bytes crl, BuildCrl(version->certificate, revoked, now,
                                            now + kCrlLifetimeSeconds, number, *signer));
    std::lock_guard<std::mutex> lock(mutex_);
    crls_[version->version] = CachedCrl{generation, now, number, crl};
    out.push_back(std::move(crl));
  }
  return out;
}

Result<std::optional<PkiRole>> PkiEngine::LoadRole(std::string_view name) {
  return pki::LoadRole(storage_, barrier_, name);
}

Status PkiEngine::StageRole(const PkiRole& role, storage::WriteBatch& batch) {
  return pki::StageRole(role, barrier_, batch);
}

Status PkiEngine::StageRoleDelete(std::string_view name, storage::WriteBatch& batch) {
  KW_RETURN_IF_ERROR(ValidateRoleName(name));
  pki::StageRoleDelete(name, batch);
  return OkStatus();
}

Result<std::vector<std::string>> PkiEngine::ListRoles() { return pki::ListRoles(storage_); }

Result<PkiRole> PkiEngine::RequireRole(std::string_view name) {
  KW_ASSIGN_OR_RETURN(std::optional<PkiRole> role, LoadRole(name));
  if (!role) return InvalidArgument("unknown role \"" + std::string(name) + "\"");
  return std::move(*role);
}

Result<PkiEngine::SigningContext> PkiEngine::PrepareSigning(const PkiRole& role,
                                                            const auth::SpiffeId& id,
                                                            std::string_view spiffe_id,
                                                            const CallerIdentity& caller,
                                                            storage::WriteBatch& batch) {
  KW_ASSIGN_OR_RETURN(std::optional<StoredCaState> stored, LoadState());
  if (!stored) return tl::unexpected(State().error());
  const CaState& state = stored->state;
  // An issuance signed by a version that a concurrent rotation retired must not commit: the
  // version would come back into the bundle and its sequence number go down.
  batch.Expect(std::string(kCaStateKey), stored->raw);
  const std::int64_t now = NowSeconds();
  const CaVersion* active = state.Signing(now);
  if (active == nullptr) {
    return FailedPrecondition("no CA certificate is installed yet: finish the intermediate "
                              "with pki/intermediate/set-signed");
  }
  if (id.trust_domain != state.trust_domain) {
    return InvalidArgument("spiffe_id \"" + std::string(spiffe_id) +
                           "\" is not in this CA's trust domain \"" + state.trust_domain + "\"");
  }
  std::vector<std::string> patterns = ExpandPatterns(role, caller);
  const bool allowed = std::any_of(patterns.begin(), patterns.end(), [&](const std::string& p) {
    return auth::SpiffeIdMatches(p, id);
  });
  if (!allowed) {
    return InvalidArgument("spiffe_id \"" + std::string(spiffe_id) + "\" is not allowed by role \"" +
                           role.name + "\"");
  }
  return SigningContext{*active, now};
}

Result<IssuedSvid> PkiEngine::IssueFor(const PkiRole& role, std::string_view spiffe_id,
                                       std::optional<std::chrono::seconds> ttl,
                                       const CallerIdentity& caller, const Bytes& spki, bool rsa,
                                       storage::WriteBatch& batch) {
  KW_ASSIGN_OR_RETURN(auth::SpiffeId id, ParseWorkloadId(spiffe_id));
  std::chrono::seconds lifetime = ttl.value_or(role.ttl);
  if (lifetime.count() <= 0) return InvalidArgument("invalid field \"ttl\": must be positive");
  lifetime = std::min(lifetime, role.max_ttl);

  KW_ASSIGN_OR_RETURN(SigningContext signing, PrepareSigning(role, id, spiffe_id, caller, batch));
  const std::int64_t now = signing.now;
  const CaVersion* active = &signing.version;
  LeafSpec spec;
  spec.spiffe_id = id.str();
  spec.subject_spki = spki;
  spec.key_encipherment = rsa;
  spec.not_before = std::max(now - role.not_before_skew.count(), active->not_before);
  spec.not_after = std::min(now + lifetime.count(), active->not_after);
  if (spec.not_after <= now) {
    return FailedPrecondition("the CA certificate of key version " +
                              std::to_string(active->version) + " has expired: rotate the CA");
  }
  KW_ASSIGN_OR_RETURN(std::shared_ptr<const Signer> signer, SignerFor(*active));
  KW_ASSIGN_OR_RETURN(IssuedCertificate issued, BuildLeaf(spec, active->certificate, *signer));

  CertRecord record{issued.serial, spec.spiffe_id, role.name, active->version, now,
                    spec.not_after, 0, issued.der};
  const std::string serial_key = SerialKey(issued.serial);
  const std::string record_key = std::string(kCertPrefix) + serial_key;
  KW_ASSIGN_OR_RETURN(Bytes sealed, SealRecord(barrier_, record, record_key));
  batch.Put(record_key, std::move(sealed));
  batch.Put(std::string(kExpiryPrefix) + Padded(spec.not_after, 20) + "/" + serial_key, Bytes());
  StageSignedUntil(active->version, spec.not_after, batch);

  IssuedSvid out;
  out.spiffe_id = spec.spiffe_id;
  out.certificate = std::move(issued.der);
  out.ca_chain.push_back(active->certificate);
  out.ca_chain.insert(out.ca_chain.end(), active->chain.begin(), active->chain.end());
  out.private_key_type = rsa ? "rsa" : "ec";
  out.serial = issued.serial;
  out.expiration = spec.not_after;
  out.key_version = active->version;
  return out;
}

Result<IssuedSvid> PkiEngine::Issue(std::string_view role_name, std::string_view spiffe_id,
                                    std::optional<std::chrono::seconds> ttl,
                                    const CallerIdentity& caller, storage::WriteBatch& batch) {
  KW_ASSIGN_OR_RETURN(PkiRole role, RequireRole(role_name));
  KW_ASSIGN_OR_RETURN(auth::SpiffeId checked, ParseWorkloadId(spiffe_id));
  (void)checked;  // checked before a workload key is generated for nothing
  KW_ASSIGN_OR_RETURN(KeyType type, ParseKeyType(role.key_type, role.key_bits));
  KW_ASSIGN_OR_RETURN(WorkloadKey key, GenerateWorkloadKey(type));
  KW_ASSIGN_OR_RETURN(IssuedSvid issued,
                      IssueFor(role, spiffe_id, ttl, caller, key.spki, IsRsa(type), batch));
  issued.private_key_pem = std::move(key.private_key_pem);
  return issued;
}

Result<IssuedSvid> PkiEngine::Sign(std::string_view role_name, std::string_view csr_pem,
                                   std::string_view spiffe_id,
                                   std::optional<std::chrono::seconds> ttl,
                                   const CallerIdentity& caller, storage::WriteBatch& batch) {
  KW_ASSIGN_OR_RETURN(PkiRole role, RequireRole(role_name));
  if (csr_pem.empty()) return InvalidArgument("missing field \"csr\": send the PEM CSR");
  auto csr = ParseCsrPem(csr_pem);
  if (!csr) return InvalidArgument("invalid field \"csr\": " + csr.error().message());
  const bool rsa = IsRsa(csr->key_type);
  KW_ASSIGN_OR_RETURN(KeyType wanted, ParseKeyType(role.key_type, role.key_bits));
  // An EC key must be the role's curve; an RSA key at least the role's size.
  const bool fits = IsRsa(wanted) ? rsa && KeyBits(csr->key_type) >= KeyBits(wanted)
                                  : csr->key_type == wanted;
  if (!fits) {
    return InvalidArgument("invalid field \"csr\": role \"" + role.name + "\" issues " +
                           role.key_type + " " + std::to_string(KeyBits(wanted)) +
                           "-bit keys, and the CSR's key is " +
                           std::string(KeyTypeName(csr->key_type)) + " " +
                           std::to_string(KeyBits(csr->key_type)) + "-bit");
  }
  return IssueFor(role, spiffe_id, ttl, caller, csr->spki, rsa, batch);
}

Result<IssuedJwt> PkiEngine::IssueJwt(std::string_view role_name, std::string_view spiffe_id,
                                      const std::vector<std::string>& audience,
                                      std::optional<std::chrono::seconds> ttl,
                                      const CallerIdentity& caller, storage::WriteBatch& batch) {
  KW_ASSIGN_OR_RETURN(PkiRole role, RequireRole(role_name));
  KW_ASSIGN_OR_RETURN(auth::SpiffeId id, ParseWorkloadId(spiffe_id));
  if (audience.empty()) {
    return InvalidArgument("missing field \"audience\": name who the token is for");
  }
  if (audience.size() > kMaxAudiences) {
    return InvalidArgument("invalid field \"audience\": at most 16 audiences");
  }
  for (const std::string& value : audience) {
    if (value.empty() || value.size() > kMaxAudienceBytes) {
      return InvalidArgument("invalid field \"audience\": each audience is 1 to 1024 bytes");
    }
  }
  std::chrono::seconds lifetime = ttl.value_or(role.jwt_ttl);
  if (lifetime.count() <= 0) return InvalidArgument("invalid field \"ttl\": must be positive");
  lifetime = std::min(lifetime, role.jwt_max_ttl);

  KW_ASSIGN_OR_RETURN(SigningContext signing, PrepareSigning(role, id, spiffe_id, caller, batch));
  const std::int64_t now = signing.now;
  const CaVersion* active = &signing.version;
  const std::int64_t expires_at = std::min(now + lifetime.count(), active->not_after);
  if (expires_at <= now) {
    return FailedPrecondition("the CA certificate of key version " +
                              std::to_string(active->version) + " has expired: rotate the CA");
  }
  KW_ASSIGN_OR_RETURN(std::shared_ptr<const Signer> signer, SignerFor(*active));
  JwtSvidClaims claims{id.str(), audience, now, expires_at};
  KW_ASSIGN_OR_RETURN(std::string token, IssueJwtSvid(claims, active->kid, *signer));
  StageSignedUntil(active->version, expires_at, batch);
  return IssuedJwt{std::move(token), id.str(), audience, expires_at, active->kid};
}

Result<VerifiedJwtSvid> PkiEngine::VerifyJwt(std::string_view token, std::string_view audience) {
  if (token.empty()) return InvalidArgument("missing field \"token\"");
  if (audience.empty()) return InvalidArgument("missing field \"audience\"");
  KW_ASSIGN_OR_RETURN(std::optional<StoredCaState> stored, LoadState());
  const std::int64_t now = NowSeconds();
  std::optional<TrustBundle> own;
  if (stored) {
    KW_ASSIGN_OR_RETURN(TrustBundle bundle, OwnBundle(stored->state, now));
    own = std::move(bundle);
  }
  std::map<std::string, TrustBundle, std::less<>> federated;
  Status lookup_error = OkStatus();
  auto bundle_for = [&](std::string_view trust_domain) -> const TrustBundle* {
    if (own && own->trust_domain == trust_domain) return &*own;
    if (auto found = federated.find(trust_domain); found != federated.end()) {
      return &found->second;
    }
    auto loaded = LoadFederatedBundle(trust_domain);
    if (!loaded) {
      lookup_error = tl::unexpected(loaded.error());
      return nullptr;
    }
    if (!*loaded) return nullptr;
    return &federated.emplace(std::string(trust_domain), std::move(**loaded)).first->second;
  };
  auto verified = VerifyJwtSvid(token, audience, now, kJwtLeewaySeconds, bundle_for);
  KW_RETURN_IF_ERROR(lookup_error);
  return verified;
}

Result<std::vector<CertRecord>> PkiEngine::ListCerts() {
  std::vector<CertRecord> out;
  std::string after;
  while (true) {
    KW_ASSIGN_OR_RETURN(std::vector<storage::Entry> page,
                        storage_.Scan(kCertPrefix, after, kScanPage));
    for (const storage::Entry& entry : page) {
      KW_ASSIGN_OR_RETURN(CertRecord record, OpenRecord(barrier_, entry.value, entry.key));
      out.push_back(std::move(record));
    }
    if (page.size() < kScanPage) break;
    after = page.back().key;
  }
  return out;
}

Result<std::optional<CertRecord>> PkiEngine::LoadCert(std::string_view serial) {
  KW_ASSIGN_OR_RETURN(std::string normalized, NormalizeSerial(serial));
  const std::string key = std::string(kCertPrefix) + SerialKey(normalized);
  KW_ASSIGN_OR_RETURN(std::optional<Bytes> raw, storage_.Get(key));
  if (!raw) return std::optional<CertRecord>();
  KW_ASSIGN_OR_RETURN(CertRecord record, OpenRecord(barrier_, *raw, key));
  return std::optional<CertRecord>(std::move(record));
}

Result<std::int64_t> PkiEngine::Revoke(std::string_view serial, storage::WriteBatch& batch) {
  KW_ASSIGN_OR_RETURN(std::string normalized, NormalizeSerial(serial));
  const std::string key = std::string(kCertPrefix) + SerialKey(normalized);
  KW_ASSIGN_OR_RETURN(std::optional<Bytes> raw, storage_.Get(key));
  if (!raw) {
    return InvalidArgument("no certificate issued by this CA has serial number " + normalized);
  }
  KW_ASSIGN_OR_RETURN(CertRecord record, OpenRecord(barrier_, *raw, key));
  if (record.revoked_at != 0) return record.revoked_at;
  record.revoked_at = NowSeconds();
  // NOTE: deleting the revocation row from the database takes the certificate off the CRL;
  // the barrier cannot prevent that, but the audit log still records the revocation.
  const std::string revoked_key = std::string(kRevokedPrefix) +
                                  Padded(record.key_version, 10) + "/" + SerialKey(normalized);
  KW_ASSIGN_OR_RETURN(Bytes sealed, SealRecord(barrier_, record, key));
  KW_ASSIGN_OR_RETURN(Bytes sealed_revoked, SealRecord(barrier_, record, revoked_key));
  batch.Expect(key, *raw);
  batch.Put(key, std::move(sealed));
  batch.Put(revoked_key, std::move(sealed_revoked));
  KW_RETURN_IF_ERROR(StageCrlGeneration(storage_, batch));
  return record.revoked_at;
}

Result<TidyResult> PkiEngine::Tidy(std::chrono::seconds safety_buffer,
                                   storage::WriteBatch& batch) {
  if (safety_buffer.count() < 0) {
    return InvalidArgument("invalid field \"safety_buffer\": must be >= 0");
  }
  const std::int64_t cutoff = NowSeconds() - safety_buffer.count();
  TidyResult result;
  bool revocations_removed = false;
  std::string after;
  while (result.certificates_removed < kTidyLimit) {
    KW_ASSIGN_OR_RETURN(std::vector<storage::Entry> page,
                        storage_.Scan(kExpiryPrefix, after, kScanPage));
    bool past_cutoff = false;
    for (const storage::Entry& entry : page) {
      const std::string_view rest = std::string_view(entry.key).substr(kExpiryPrefix.size());
      if (rest.size() < 22) return DataLoss("a stored certificate expiry key is malformed");
      KW_ASSIGN_OR_RETURN(std::int64_t not_after, StoredNumber(rest.substr(0, 20),
                                                               "certificate expiry"));
      if (not_after > cutoff) {
        past_cutoff = true;
        break;
      }
      if (result.certificates_removed >= kTidyLimit) {
        result.more = true;
        break;
      }
      const std::string serial_key(rest.substr(21));
      const std::string cert_key = std::string(kCertPrefix) + serial_key;
      KW_ASSIGN_OR_RETURN(std::optional<Bytes> raw, storage_.Get(cert_key));
      if (raw) {
        // A revocation committed in between must not be half removed.
        batch.Expect(cert_key, *raw);
        KW_ASSIGN_OR_RETURN(CertRecord record, OpenRecord(barrier_, *raw, cert_key));
        if (record.revoked_at != 0) {
          revocations_removed = true;
          batch.Delete(std::string(kRevokedPrefix) + Padded(record.key_version, 10) + "/" +
                       serial_key);
        }
        batch.Delete(cert_key);
      }
      batch.Delete(entry.key);
      ++result.certificates_removed;
    }
    if (past_cutoff || result.more || page.size() < kScanPage) break;
    after = page.back().key;
  }
  if (revocations_removed) KW_RETURN_IF_ERROR(StageCrlGeneration(storage_, batch));
  // Of each version's signed-until marks only the latest matters.
  KW_ASSIGN_OR_RETURN(std::optional<StoredCaState> stored, LoadState());
  if (stored) {
    for (const CaVersion& version : stored->state.versions) {
      const std::string prefix = std::string(kSignedPrefix) + Padded(version.version, 10) + "/";
      KW_ASSIGN_OR_RETURN(std::vector<storage::Entry> marks, storage_.Scan(prefix, "", kScanPage));
      for (std::size_t i = 0; i + 1 < marks.size(); ++i) batch.Delete(marks[i].key);
    }
  }
  return result;
}

Status PkiEngine::StageFederatedBundle(std::string_view trust_domain,
                                       std::string_view bundle_json, storage::WriteBatch& batch) {
  KW_RETURN_IF_ERROR(ValidateTrustDomain(trust_domain, "trust_domain"));
  auto parsed = ParseTrustBundle(bundle_json, trust_domain);
  if (!parsed) return InvalidArgument("invalid field \"bundle\": " + parsed.error().message());
  KW_ASSIGN_OR_RETURN(std::optional<StoredCaState> stored, LoadState());
  if (stored && stored->state.trust_domain == trust_domain) {
    return InvalidArgument("\"" + std::string(trust_domain) +
                           "\" is this CA's own trust domain; federate other trust domains");
  }
  KW_ASSIGN_OR_RETURN(Bytes sealed, barrier_.Encrypt(AsBytes(bundle_json),
                                                     FederatedAad(trust_domain)));
  batch.Put(std::string(kBundlePrefix) + std::string(trust_domain), std::move(sealed));
  return OkStatus();
}

Result<std::optional<std::string>> PkiEngine::LoadFederatedBundleJson(
    std::string_view trust_domain) {
  KW_RETURN_IF_ERROR(ValidateTrustDomain(trust_domain, "trust_domain"));
  KW_ASSIGN_OR_RETURN(std::optional<Bytes> raw,
                      storage_.Get(std::string(kBundlePrefix) + std::string(trust_domain)));
  if (!raw) return std::optional<std::string>();
  KW_ASSIGN_OR_RETURN(SecretBuffer plain, barrier_.Decrypt(*raw, FederatedAad(trust_domain)));
  return std::optional<std::string>(std::string(plain.RevealText()));
}

Result<std::optional<TrustBundle>> PkiEngine::LoadFederatedBundle(std::string_view trust_domain) {
  if (!ValidateTrustDomain(trust_domain, "trust_domain")) return std::optional<TrustBundle>();
  KW_ASSIGN_OR_RETURN(std::optional<std::string> text, LoadFederatedBundleJson(trust_domain));
  if (!text) return std::optional<TrustBundle>();
  KW_ASSIGN_OR_RETURN(TrustBundle bundle, ParseTrustBundle(*text, trust_domain));
  return std::optional<TrustBundle>(std::move(bundle));
}

Status PkiEngine::StageFederatedBundleDelete(std::string_view trust_domain,
                                             storage::WriteBatch& batch) {
  KW_RETURN_IF_ERROR(ValidateTrustDomain(trust_domain, "trust_domain"));
  batch.Delete(std::string(kBundlePrefix) + std::string(trust_domain));
  return OkStatus();
}

Result<std::vector<std::string>> PkiEngine::ListFederatedBundles() {
  return storage_.List(kBundlePrefix);
}

}  // namespace kw::vault::pki
