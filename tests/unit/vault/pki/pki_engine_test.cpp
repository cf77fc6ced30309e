// The PKI engine with its CA keys on a real SoftHSM token, SQLite storage and a manual clock.
// External roots, CSRs and federated keys are software keys made here with OpenSSL.
#include "vault/pki/pki_engine.hpp"

#include <doctest/doctest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/wait.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "tests/unit/vault/pki/software_signer.hpp"
#include "vault/auth/spiffe_id.hpp"
#include "vault/pki/jwk.hpp"
#include "vault/pki/x509_builder.hpp"
#include "vault/pki/x509_parse.hpp"
#include "vault/vault_test_env.hpp"

namespace kw::vault::pki {
namespace {

using std::chrono::hours;
using std::chrono::seconds;
using X509Owner = std::unique_ptr<X509, decltype(&X509_free)>;
using KeyOwner = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using CrlOwner = std::unique_ptr<X509_CRL, decltype(&X509_CRL_free)>;
using ReqOwner = std::unique_ptr<X509_REQ, decltype(&X509_REQ_free)>;

constexpr std::string_view kTrustDomain = "example.org";

const std::filesystem::path kBundleDir =
    std::filesystem::path(KEYWARD_FIXTURES_DIR) / "spiffe" / "bundle";

// ---- OpenSSL helpers: an external software CA, CSRs and CRL parsing ----

KeyOwner NewP256Key() {
  KeyOwner key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), EVP_PKEY_free);
  REQUIRE(key != nullptr);
  return key;
}

Bytes DerOf(X509* certificate) {
  unsigned char* der = nullptr;
  const int length = i2d_X509(certificate, &der);
  REQUIRE(length > 0);
  Bytes out(der, der + length);
  OPENSSL_free(der);
  return out;
}

Bytes SpkiOf(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  const int length = i2d_PUBKEY(key, &der);
  REQUIRE(length > 0);
  Bytes out(der, der + length);
  OPENSSL_free(der);
  return out;
}

void AddExtension(X509* certificate, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, issuer, certificate, nullptr, nullptr, 0);
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &context, nid, value.c_str());
  REQUIRE(extension != nullptr);
  REQUIRE(X509_add_ext(certificate, extension, -1) == 1);
  X509_EXTENSION_free(extension);
}

struct CertSpec {
  std::string common_name;
  bool ca = true;
  std::string uri;  // URI SAN, left out when empty
  std::int64_t not_before = 0;
  std::int64_t not_after = 0;
};

// Builds a certificate for `subject_key`, signed by `issuer_key`. `issuer` nullptr makes it
// self-signed. CAs get critical basicConstraints and keyUsage, SKI and AKI, as -x509_strict wants.
X509Owner MakeCertificate(const CertSpec& spec, EVP_PKEY* subject_key, X509* issuer,
                          EVP_PKEY* issuer_key) {
  X509Owner certificate(X509_new(), X509_free);
  REQUIRE(certificate != nullptr);
  X509* cert = certificate.get();
  REQUIRE(X509_set_version(cert, 2) == 1);
  const Bytes serial = RandomBytes(8);
  std::uint64_t serial_value = 1;
  for (std::uint8_t b : serial) serial_value = (serial_value << 8) | b;
  REQUIRE(ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert), serial_value >> 1) == 1);
  X509_NAME* name = X509_get_subject_name(cert);
  REQUIRE(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                     reinterpret_cast<const unsigned char*>("test"), -1, -1,
                                     0) == 1);
  REQUIRE(X509_NAME_add_entry_by_txt(
              name, "CN", MBSTRING_ASC,
              reinterpret_cast<const unsigned char*>(spec.common_name.c_str()), -1, -1, 0) == 1);
  REQUIRE(X509_set_issuer_name(cert, issuer != nullptr ? X509_get_subject_name(issuer) : name) ==
          1);
  REQUIRE(ASN1_TIME_set(X509_getm_notBefore(cert), static_cast<time_t>(spec.not_before)) !=
          nullptr);
  REQUIRE(ASN1_TIME_set(X509_getm_notAfter(cert), static_cast<time_t>(spec.not_after)) !=
          nullptr);
  REQUIRE(X509_set_pubkey(cert, subject_key) == 1);
  X509* extension_issuer = issuer != nullptr ? issuer : cert;
  AddExtension(cert, extension_issuer, NID_basic_constraints,
               spec.ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  AddExtension(cert, extension_issuer, NID_key_usage,
               spec.ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
  AddExtension(cert, extension_issuer, NID_subject_key_identifier, "hash");
  AddExtension(cert, extension_issuer, NID_authority_key_identifier, "keyid:always");
  if (!spec.uri.empty()) {
    AddExtension(cert, extension_issuer, NID_subject_alt_name, "URI:" + spec.uri);
  }
  REQUIRE(X509_sign(cert, issuer_key, EVP_sha256()) > 0);
  return certificate;
}

// The public key of a DER CSR.
KeyOwner CsrPublicKey(const Bytes& csr_der) {
  const unsigned char* cursor = csr_der.data();
  ReqOwner request(d2i_X509_REQ(nullptr, &cursor, static_cast<long>(csr_der.size())),
                   X509_REQ_free);
  REQUIRE(request != nullptr);
  KeyOwner key(X509_REQ_get_pubkey(request.get()), EVP_PKEY_free);
  REQUIRE(key != nullptr);
  return key;
}

// A PEM CSR for `key` whose subject names something keyward must ignore.
std::string MakeCsrPem(EVP_PKEY* key) {
  ReqOwner request(X509_REQ_new(), X509_REQ_free);
  REQUIRE(request != nullptr);
  X509_NAME* name = X509_REQ_get_subject_name(request.get());
  REQUIRE(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                     reinterpret_cast<const unsigned char*>("admin.evil"), -1, -1,
                                     0) == 1);
  REQUIRE(X509_REQ_set_pubkey(request.get(), key) == 1);
  REQUIRE(X509_REQ_sign(request.get(), key, EVP_sha256()) > 0);
  BIO* bio = BIO_new(BIO_s_mem());
  REQUIRE(bio != nullptr);
  REQUIRE(PEM_write_bio_X509_REQ(bio, request.get()) == 1);
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<std::size_t>(length));
  BIO_free(bio);
  return pem;
}

std::int64_t AsnTimeToUnix(const ASN1_TIME* time) {
  std::tm parts{};
  REQUIRE(ASN1_TIME_to_tm(time, &parts) == 1);
  return static_cast<std::int64_t>(timegm(&parts));
}

struct ParsedCrl {
  std::uint64_t number = 0;  // the cRLNumber extension
  std::vector<std::string> serials;
  std::vector<std::int64_t> revoked_at;
};

// Parses a DER CRL with OpenSSL and checks its signature against `issuer_der`'s key.
ParsedCrl ParseCrl(const Bytes& der, const Bytes& issuer_der) {
  const unsigned char* cursor = der.data();
  CrlOwner crl(d2i_X509_CRL(nullptr, &cursor, static_cast<long>(der.size())), X509_CRL_free);
  REQUIRE(crl != nullptr);
  const unsigned char* issuer_cursor = issuer_der.data();
  X509Owner issuer(d2i_X509(nullptr, &issuer_cursor, static_cast<long>(issuer_der.size())),
                   X509_free);
  REQUIRE(issuer != nullptr);
  CHECK(X509_CRL_verify(crl.get(), X509_get0_pubkey(issuer.get())) == 1);
  CHECK(X509_NAME_cmp(X509_CRL_get_issuer(crl.get()), X509_get_subject_name(issuer.get())) == 0);
  ParsedCrl out;
  auto* number = static_cast<ASN1_INTEGER*>(
      X509_CRL_get_ext_d2i(crl.get(), NID_crl_number, nullptr, nullptr));
  REQUIRE(number != nullptr);
  REQUIRE(ASN1_INTEGER_get_uint64(&out.number, number) == 1);
  ASN1_INTEGER_free(number);
  STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl.get());
  for (int i = 0; i < sk_X509_REVOKED_num(revoked); ++i) {
    const X509_REVOKED* entry = sk_X509_REVOKED_value(revoked, i);
    out.serials.push_back(detail::FormatSerial(X509_REVOKED_get0_serialNumber(entry)));
    out.revoked_at.push_back(AsnTimeToUnix(X509_REVOKED_get0_revocationDate(entry)));
  }
  return out;
}

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs the real openssl CLI and captures its output and exit code.
CommandResult Run(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  std::size_t read = 0;
  while ((read = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, read);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

void WriteFile(const std::filesystem::path& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  REQUIRE(out.good());
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A SPIFFE ID of exactly `size` bytes in kTrustDomain, made of path segments of at most 200
// characters.
std::string IdOfSize(std::size_t size) {
  std::string id = "spiffe://" + std::string(kTrustDomain);
  while (id.size() < size) {
    const std::size_t remaining = size - id.size();
    std::size_t segment = std::min<std::size_t>(remaining - 1, 200);
    if (remaining - 1 - segment == 1) --segment;  // never leave room for a bare "/"
    id += "/" + std::string(segment, 'a');
  }
  REQUIRE(id.size() == size);
  REQUIRE(auth::ParseSpiffeId(id).has_value());
  return id;
}

// ---- The engine on a real token ----

struct Fixture {
  testing::VaultTestEnv env;
  PkiEngine engine{*env.store, *env.barrier, *env.token, env.clock};

  void Commit(storage::WriteBatch batch) {
    REQUIRE(env.store->Commit(std::move(batch)).has_value());
  }

  std::int64_t Now() const {
    return std::chrono::duration_cast<seconds>(env.clock.Now().time_since_epoch()).count();
  }

  void Advance(std::int64_t by_seconds) { env.clock.Advance(seconds(by_seconds)); }

  CaResult GenerateRoot(seconds ttl = hours(8760)) {
    storage::WriteBatch batch;
    auto result = engine.GenerateRoot(kTrustDomain, "", ttl, batch);
    REQUIRE(result.has_value());
    Commit(std::move(batch));
    return std::move(*result);
  }

  CaResult Rotate(std::optional<seconds> delay) {
    storage::WriteBatch batch;
    auto result = engine.Rotate(std::nullopt, delay, batch);
    REQUIRE(result.has_value());
    Commit(std::move(batch));
    return std::move(*result);
  }

  void PutRole(const PkiRole& role) {
    storage::WriteBatch batch;
    REQUIRE(engine.StageRole(role, batch).has_value());
    Commit(std::move(batch));
  }

  // A role for every workload of the trust domain, with the given TTLs.
  void PutOpenRole(std::string name = "web", seconds ttl = hours(1), seconds max_ttl = hours(24)) {
    PkiRole role;
    role.name = std::move(name);
    role.allowed_spiffe_ids = {"spiffe://example.org/*"};
    role.ttl = ttl;
    role.max_ttl = max_ttl;
    PutRole(role);
  }

  // Issues and commits on success.
  Result<IssuedSvid> TryIssue(std::string_view role, std::string_view id,
                              std::optional<seconds> ttl = std::nullopt,
                              const CallerIdentity& caller = {}) {
    storage::WriteBatch batch;
    auto issued = engine.Issue(role, id, ttl, caller, batch);
    if (issued) Commit(std::move(batch));
    return issued;
  }

  IssuedSvid Issue(std::string_view role, std::string_view id,
                   std::optional<seconds> ttl = std::nullopt, const CallerIdentity& caller = {}) {
    auto issued = TryIssue(role, id, ttl, caller);
    REQUIRE_MESSAGE(issued.has_value(), issued.error().message());
    return std::move(*issued);
  }

  Result<IssuedJwt> TryIssueJwt(std::string_view role, std::string_view id,
                                std::optional<seconds> ttl = std::nullopt,
                                const CallerIdentity& caller = {}) {
    storage::WriteBatch batch;
    auto issued = engine.IssueJwt(role, id, {"reports"}, ttl, caller, batch);
    if (issued) Commit(std::move(batch));
    return issued;
  }

  IssuedJwt IssueJwt(std::string_view role, std::string_view id,
                     std::optional<seconds> ttl = std::nullopt) {
    auto issued = TryIssueJwt(role, id, ttl);
    REQUIRE_MESSAGE(issued.has_value(), issued.error().message());
    return std::move(*issued);
  }

  TrustBundle Bundle() {
    auto text = engine.BundleJson();
    REQUIRE(text.has_value());
    auto bundle = ParseTrustBundle(*text, kTrustDomain);
    REQUIRE_MESSAGE(bundle.has_value(), bundle.error().message());
    REQUIRE(bundle->sequence.has_value());
    return std::move(*bundle);
  }

  const CaVersion& Version(const CaState& state, int number) {
    const CaVersion* version = state.Find(number);
    REQUIRE(version != nullptr);
    return *version;
  }
};

CertificateInfo Parse(const Bytes& der) {
  auto info = ParseCertificateDer(der);
  REQUIRE_MESSAGE(info.has_value(), info.error().message());
  return std::move(*info);
}

void CheckInvalid(const Status& status, std::string_view fragment) {
  REQUIRE_FALSE(status.has_value());
  CHECK(status.error().code() == Code::kInvalidArgument);
  CHECK_MESSAGE(status.error().message().find(fragment) != std::string::npos,
                status.error().message());
}

template <typename T>
void CheckInvalid(const Result<T>& result, std::string_view fragment) {
  REQUIRE_FALSE(result.has_value());
  CHECK(result.error().code() == Code::kInvalidArgument);
  CHECK_MESSAGE(result.error().message().find(fragment) != std::string::npos,
                result.error().message());
}

}  // namespace

TEST_SUITE("vault/pki/engine") {
  TEST_CASE("generate root keeps the CA key in the HSM") {
    Fixture f;
    const CaResult result = f.GenerateRoot();
    CHECK(result.key_version == 1);
    CHECK(result.trust_domain == kTrustDomain);

    auto state = f.engine.State();
    REQUIRE(state.has_value());
    CHECK(state->mode == "root");
    REQUIRE(state->versions.size() == 1);
    const CaVersion& version = state->versions.front();

    auto key = f.env.token->FindPrivateKey(version.key_label);
    REQUIRE(key.has_value());
    auto attributes = f.env.token->GetKeyAttributes(*key);
    REQUIRE(attributes.has_value());
    CHECK(attributes->token);
    CHECK(attributes->is_private);
    CHECK(attributes->sensitive);
    CHECK_FALSE(attributes->extractable);
    CHECK(attributes->always_sensitive);
    CHECK(attributes->never_extractable);
    CHECK(attributes->local);

    auto public_key = f.env.token->GetEcPublicKeySpki(version.key_label);
    REQUIRE(public_key.has_value());
    const CertificateInfo info = Parse(result.certificate);
    CHECK(info.spki == *public_key);
    CHECK(info.is_ca);
    CHECK(info.key_cert_sign);
    CHECK(info.self_signed);
    CHECK(info.uri_sans == std::vector<std::string>{"spiffe://example.org"});
    CHECK(info.not_after == f.Now() + 8760 * 3600);
    CHECK(version.certificate == result.certificate);
  }

  TEST_CASE("generate root twice is rejected") {
    Fixture f;
    f.GenerateRoot();
    storage::WriteBatch batch;
    CheckInvalid(f.engine.GenerateRoot("example.org", "", hours(1), batch), "pki/rotate");
    CheckInvalid(f.engine.GenerateRoot("other.org", "", hours(1), batch), "pki/rotate");
    CheckInvalid(f.engine.GenerateIntermediate("example.org", "", seconds(0), batch),
                 "pki/rotate");
  }

  TEST_CASE("generate root rejects invalid trust domains") {
    Fixture f;
    const std::string too_long(256, 'a');
    for (const std::string& bad :
         {std::string(), std::string("Example.org"), std::string("example.org/x"),
          std::string("example.org:8443"), std::string("user@example.org"),
          std::string("spiffe://example.org"), std::string("ex$mple.org"),
          std::string("%65xample.org"), too_long}) {
      CAPTURE(bad);
      storage::WriteBatch batch;
      auto result = f.engine.GenerateRoot(bad, "", hours(1), batch);
      REQUIRE_FALSE(result.has_value());
      CHECK(result.error().code() == Code::kInvalidArgument);
      CHECK(result.error().message().find("trust_domain") != std::string::npos);
    }
    CHECK(f.engine.State().error().code() == Code::kFailedPrecondition);
  }

  TEST_CASE("issue follows role patterns") {
    Fixture f;
    f.GenerateRoot();
    PkiRole role;
    role.name = "web";
    role.allowed_spiffe_ids = {"spiffe://example.org/ns/*", "spiffe://example.org/db"};
    f.PutRole(role);

    CHECK(f.TryIssue("web", "spiffe://example.org/ns/a").has_value());
    CHECK(f.TryIssue("web", "spiffe://example.org/ns/a/b").has_value());
    CHECK(f.TryIssue("web", "spiffe://example.org/db").has_value());
    CheckInvalid(f.TryIssue("web", "spiffe://example.org/ns"), "not allowed by role \"web\"");
    CheckInvalid(f.TryIssue("web", "spiffe://example.org/nsx"), "spiffe://example.org/nsx");
    CheckInvalid(f.TryIssue("web", "spiffe://example.org/db/x"), "not allowed by role");
    CheckInvalid(f.TryIssue("web", "spiffe://example.org/DB"), "not allowed by role");
    CheckInvalid(f.TryIssue("web", "spiffe://example.org"), "needs a path");
    CheckInvalid(f.TryIssue("web", "spiffe://example.org/ns/a/"), "spiffe_id");
    CheckInvalid(f.TryIssue("web", "spiffe://example.org/ns/a:b"), "spiffe_id");
    CheckInvalid(f.TryIssue("web", ""), "missing field \"spiffe_id\"");
    CheckInvalid(f.TryIssue("nobody", "spiffe://example.org/ns/a"), "unknown role");

    CHECK(f.TryIssueJwt("web", "spiffe://example.org/ns/a").has_value());
    CheckInvalid(f.TryIssueJwt("web", "spiffe://example.org/ns"), "not allowed by role");
  }

  TEST_CASE("issue rejects IDs outside the trust domain") {
    Fixture f;
    f.GenerateRoot();
    PkiRole role;
    role.name = "other";
    role.allowed_spiffe_ids = {"spiffe://other.org/*", "spiffe://example.org/*"};
    f.PutRole(role);
    CheckInvalid(f.TryIssue("other", "spiffe://other.org/x"), "not in this CA's trust domain");
    CheckInvalid(f.TryIssueJwt("other", "spiffe://other.org/x"),
                 "not in this CA's trust domain");
    CheckInvalid(f.TryIssue("other", "spiffe://example.org.evil/x"), "not in this CA");
  }

  TEST_CASE("issue returns a verifiable SVID") {
    Fixture f;
    const CaResult root = f.GenerateRoot();
    f.PutOpenRole();
    const IssuedSvid issued = f.Issue("web", "spiffe://example.org/ns/a");
    CHECK(issued.key_version == 1);
    CHECK(issued.private_key_type == "ec");
    REQUIRE(issued.private_key_pem.has_value());
    CHECK(issued.private_key_pem->RevealText().starts_with("-----BEGIN PRIVATE KEY-----"));
    REQUIRE(issued.ca_chain.size() == 1);
    CHECK(issued.ca_chain.front() == root.certificate);

    const CertificateInfo info = Parse(issued.certificate);
    CHECK(info.uri_sans == std::vector<std::string>{"spiffe://example.org/ns/a"});
    CHECK_FALSE(info.is_ca);
    CHECK(info.digital_signature);
    CHECK_FALSE(info.key_cert_sign);
    CHECK_FALSE(info.crl_sign);
    CHECK(info.serial == issued.serial);
    CHECK(info.not_after == issued.expiration);
    CHECK(VerifySignedBy(issued.certificate, root.certificate).has_value());

    auto record = f.engine.LoadCert(issued.serial);
    REQUIRE(record.has_value());
    REQUIRE(record->has_value());
    CHECK((*record)->spiffe_id == "spiffe://example.org/ns/a");
    CHECK((*record)->der == issued.certificate);
    CHECK((*record)->revoked_at == 0);

    const std::filesystem::path dir = f.env.dir;
    WriteFile(dir / "root.pem", DerToPem(root.certificate, "CERTIFICATE"));
    WriteFile(dir / "leaf.pem", DerToPem(issued.certificate, "CERTIFICATE"));
    const CommandResult verify =
        Run("openssl verify -x509_strict -attime " + std::to_string(f.Now()) + " -CAfile " +
            (dir / "root.pem").string() + " " + (dir / "leaf.pem").string());
    CHECK_MESSAGE(verify.exit_code == 0, verify.output);
    CHECK(verify.output.find(": OK") != std::string::npos);
  }

  TEST_CASE("sign ignores the CSR's names") {
    Fixture f;
    const CaResult root = f.GenerateRoot();
    f.PutOpenRole();
    KeyOwner key = NewP256Key();
    const std::string csr = MakeCsrPem(key.get());
    storage::WriteBatch batch;
    auto issued = f.engine.Sign("web", csr, "spiffe://example.org/ns/b", std::nullopt, {}, batch);
    REQUIRE_MESSAGE(issued.has_value(), issued.error().message());
    f.Commit(std::move(batch));
    CHECK_FALSE(issued->private_key_pem.has_value());
    const CertificateInfo info = Parse(issued->certificate);
    CHECK(info.spki == SpkiOf(key.get()));
    CHECK(info.uri_sans == std::vector<std::string>{"spiffe://example.org/ns/b"});
    CHECK(info.subject.find("admin.evil") == std::string::npos);
    CHECK(VerifySignedBy(issued->certificate, root.certificate).has_value());

    storage::WriteBatch rejected;
    CheckInvalid(f.engine.Sign("web", "not a csr", "spiffe://example.org/ns/b", std::nullopt, {},
                               rejected),
                 "csr");
    PkiRole rsa_role;
    rsa_role.name = "rsa";
    rsa_role.allowed_spiffe_ids = {"spiffe://example.org/*"};
    rsa_role.key_type = "rsa";
    f.PutRole(rsa_role);
    CheckInvalid(f.engine.Sign("rsa", csr, "spiffe://example.org/ns/b", std::nullopt, {},
                               rejected),
                 "role \"rsa\" issues rsa");
  }

  TEST_CASE("templates expand only for login callers") {
    Fixture f;
    f.GenerateRoot();
    PkiRole role;
    role.name = "tmpl";
    role.allowed_spiffe_ids = {"spiffe://example.org/approle/{{identity.role_name}}",
                               "{{identity.spiffe_id}}/*",
                               "spiffe://example.org/team/{{identity.meta.team}}/*"};
    f.PutRole(role);

    CallerIdentity login;
    login.from_login = true;
    login.spiffe_id = "spiffe://example.org/ns/prod/sa/web";
    login.role_name = "web";
    login.meta = {{"team", "payments"}};
    CallerIdentity not_login = login;
    not_login.from_login = false;

    for (const std::string id :
         {"spiffe://example.org/approle/web", "spiffe://example.org/ns/prod/sa/web/child",
          "spiffe://example.org/team/payments/job"}) {
      CAPTURE(id);
      CHECK(f.TryIssue("tmpl", id, std::nullopt, login).has_value());
      storage::WriteBatch batch;
      CHECK(f.engine.IssueJwt("tmpl", id, {"reports"}, std::nullopt, login, batch).has_value());
      CheckInvalid(f.TryIssue("tmpl", id, std::nullopt, not_login), "not allowed by role");
      storage::WriteBatch rejected;
      CheckInvalid(f.engine.IssueJwt("tmpl", id, {"reports"}, std::nullopt, not_login, rejected),
                   "not allowed by role");
    }
    CheckInvalid(f.TryIssue("tmpl", "spiffe://example.org/approle/other", std::nullopt, login),
                 "not allowed by role");
    CheckInvalid(f.TryIssue("tmpl", "spiffe://example.org/ns/prod/sa/web", std::nullopt, login),
                 "not allowed by role");
    CHECK(ExpandPatterns(role, not_login).empty());
    CHECK(ExpandPatterns(role, login).size() == 3);

    // Metadata named like a template's source does not stand in for it: an AppRole secret
    // ID's creator chooses that metadata.
    CallerIdentity metadata_only;
    metadata_only.from_login = true;
    metadata_only.meta = {{"spiffe_id", "spiffe://example.org/admin"}, {"role_name", "admin"}};
    CHECK(ExpandPatterns(role, metadata_only).empty());
    CheckInvalid(f.TryIssue("tmpl", "spiffe://example.org/admin/x", std::nullopt, metadata_only),
                 "not allowed by role");
    CheckInvalid(f.TryIssue("tmpl", "spiffe://example.org/approle/admin", std::nullopt,
                            metadata_only),
                 "not allowed by role");
  }

  TEST_CASE("templates drop values that are not one segment") {
    Fixture f;
    f.GenerateRoot();
    PkiRole role;
    role.name = "tmpl";
    role.allowed_spiffe_ids = {"spiffe://example.org/approle/{{identity.role_name}}",
                               "spiffe://example.org/team/{{identity.meta.team}}/*"};
    f.PutRole(role);

    for (const std::string value : {"a/b", "..", ".", "../admin", "", "a b", "a%2fb"}) {
      CAPTURE(value);
      CallerIdentity caller;
      caller.from_login = true;
      caller.role_name = value;
      caller.meta = {{"team", value}};
      CHECK(ExpandPatterns(role, caller).empty());
      CheckInvalid(f.TryIssue("tmpl", "spiffe://example.org/approle/a/b", std::nullopt, caller),
                   "not allowed by role");
      CheckInvalid(f.TryIssue("tmpl", "spiffe://example.org/admin", std::nullopt, caller),
                   "not allowed by role");
      CheckInvalid(f.TryIssue("tmpl", "spiffe://example.org/approle", std::nullopt, caller),
                   "not allowed by role");
      CheckInvalid(f.TryIssue("tmpl", "spiffe://example.org/team/x", std::nullopt, caller),
                   "not allowed by role");
    }
    CallerIdentity no_meta;
    no_meta.from_login = true;
    CHECK(ExpandPatterns(role, no_meta).empty());
  }

  TEST_CASE("ttl is capped at max_ttl") {
    Fixture f;
    f.GenerateRoot();
    PkiRole role;
    role.name = "short";
    role.allowed_spiffe_ids = {"spiffe://example.org/*"};
    role.ttl = seconds(600);
    role.max_ttl = hours(2);
    role.jwt_ttl = seconds(60);
    role.jwt_max_ttl = seconds(300);
    f.PutRole(role);
    const std::int64_t now = f.Now();
    CHECK(f.Issue("short", "spiffe://example.org/a").expiration == now + 600);
    CHECK(f.Issue("short", "spiffe://example.org/a", seconds(1800)).expiration == now + 1800);
    CHECK(f.Issue("short", "spiffe://example.org/a", hours(10)).expiration == now + 7200);
    CHECK(f.IssueJwt("short", "spiffe://example.org/a").expires_at == now + 60);
    CHECK(f.IssueJwt("short", "spiffe://example.org/a", hours(1)).expires_at == now + 300);
    CheckInvalid(f.TryIssue("short", "spiffe://example.org/a", seconds(0)), "ttl");
    CheckInvalid(f.TryIssue("short", "spiffe://example.org/a", seconds(-5)), "ttl");
  }

  TEST_CASE("ttl is capped at the CA's notAfter") {
    Fixture f;
    const CaResult root = f.GenerateRoot(hours(2));
    const std::int64_t ca_not_after = Parse(root.certificate).not_after;
    f.PutOpenRole("web", hours(1), hours(24));
    CHECK(f.Issue("web", "spiffe://example.org/a", hours(10)).expiration == ca_not_after);

    f.Advance(7200 - 100);
    const IssuedSvid late = f.Issue("web", "spiffe://example.org/a");
    CHECK(late.expiration == ca_not_after);
    CHECK(Parse(late.certificate).not_after == ca_not_after);
    CHECK(f.IssueJwt("web", "spiffe://example.org/a").expires_at == ca_not_after);

    f.Advance(100);
    auto expired = f.TryIssue("web", "spiffe://example.org/a");
    REQUIRE_FALSE(expired.has_value());
    CHECK(expired.error().code() == Code::kFailedPrecondition);
    auto expired_jwt = f.TryIssueJwt("web", "spiffe://example.org/a");
    REQUIRE_FALSE(expired_jwt.has_value());
    CHECK(expired_jwt.error().code() == Code::kFailedPrecondition);
  }

  TEST_CASE("not before is skewed but not before the CA") {
    Fixture f;
    const CaResult root = f.GenerateRoot();
    const std::int64_t ca_not_before = Parse(root.certificate).not_before;
    PkiRole role;
    role.name = "skew";
    role.allowed_spiffe_ids = {"spiffe://example.org/*"};
    role.not_before_skew = seconds(30);
    f.PutRole(role);
    PkiRole wide = role;
    wide.name = "wide";
    wide.not_before_skew = hours(1);
    f.PutRole(wide);

    const std::int64_t now = f.Now();
    CHECK(Parse(f.Issue("skew", "spiffe://example.org/a").certificate).not_before == now - 30);
    REQUIRE(ca_not_before > now - 3600);
    CHECK(Parse(f.Issue("wide", "spiffe://example.org/a").certificate).not_before ==
          ca_not_before);

    f.Advance(7200);
    CHECK(Parse(f.Issue("wide", "spiffe://example.org/a").certificate).not_before ==
          f.Now() - 3600);
  }

  TEST_CASE("issuer rejects IDs over 2048 bytes") {
    Fixture f;
    f.GenerateRoot();
    f.PutOpenRole();
    const std::string longest = IdOfSize(auth::kMaxSpiffeIdBytes);
    const std::string too_long = IdOfSize(auth::kMaxSpiffeIdBytes + 1);

    const IssuedSvid issued = f.Issue("web", longest);
    CHECK(issued.spiffe_id == longest);
    CHECK(Parse(issued.certificate).uri_sans == std::vector<std::string>{longest});
    const IssuedJwt jwt = f.IssueJwt("web", longest);
    auto verified = f.engine.VerifyJwt(jwt.token, "reports");
    REQUIRE_MESSAGE(verified.has_value(), verified.error().message());
    CHECK(verified->spiffe_id == longest);

    CheckInvalid(f.TryIssue("web", too_long), "2049 bytes");
    CheckInvalid(f.TryIssueJwt("web", too_long), "2049 bytes");
    storage::WriteBatch batch;
    KeyOwner key = NewP256Key();
    CheckInvalid(f.engine.Sign("web", MakeCsrPem(key.get()), too_long, std::nullopt, {}, batch),
                 "2049 bytes");
  }

  TEST_CASE("jwt issue and verify with own keys") {
    Fixture f;
    f.GenerateRoot();
    f.PutOpenRole();
    auto state = f.engine.State();
    REQUIRE(state.has_value());
    const IssuedJwt jwt = f.IssueJwt("web", "spiffe://example.org/ns/a");
    CHECK(jwt.kid == state->versions.front().kid);
    CHECK(jwt.audience == std::vector<std::string>{"reports"});

    auto verified = f.engine.VerifyJwt(jwt.token, "reports");
    REQUIRE_MESSAGE(verified.has_value(), verified.error().message());
    CHECK(verified->spiffe_id == "spiffe://example.org/ns/a");
    CHECK(verified->expires_at == jwt.expires_at);
    CheckInvalid(f.engine.VerifyJwt(jwt.token, "other"), "aud");

    storage::WriteBatch batch;
    CheckInvalid(f.engine.IssueJwt("web", "spiffe://example.org/ns/a", {}, std::nullopt, {},
                                   batch),
                 "audience");

    f.Advance(300 + kJwtLeewaySeconds + 1);
    auto expired = f.engine.VerifyJwt(jwt.token, "reports");
    REQUIRE_FALSE(expired.has_value());
    CHECK(expired.error().code() == Code::kInvalidArgument);
    CHECK(expired.error().message().find(jwt.token) == std::string::npos);
  }

  TEST_CASE("rotation overlaps and retires the old key") {
    Fixture f;
    const CaResult first = f.GenerateRoot();
    f.PutOpenRole("web", hours(1), hours(24));
    const std::int64_t start = f.Now();

    const TrustBundle initial = f.Bundle();
    CHECK(initial.x509_authorities == std::vector<Bytes>{first.certificate});
    REQUIRE(initial.jwt_authorities.size() == 1);
    const std::uint64_t sequence_before = *initial.sequence;

    const IssuedSvid old_svid = f.Issue("web", "spiffe://example.org/a");
    const IssuedJwt old_jwt = f.IssueJwt("web", "spiffe://example.org/a");
    CHECK(old_svid.key_version == 1);

    const CaResult second = f.Rotate(seconds(60));
    CHECK(second.key_version == 2);
    CHECK(second.activate_at == start + 60);
    auto state = f.engine.State();
    REQUIRE(state.has_value());
    const std::string v1_kid = f.Version(*state, 1).kid;
    const std::string v2_kid = f.Version(*state, 2).kid;
    CHECK(v1_kid != v2_kid);
    CHECK(f.Version(*state, 1).key_label != f.Version(*state, 2).key_label);

    // Published at once, before it signs anything.
    const TrustBundle overlap = f.Bundle();
    CHECK(overlap.x509_authorities == std::vector<Bytes>{first.certificate, second.certificate});
    REQUIRE(overlap.jwt_authorities.size() == 2);
    CHECK(FindJwtAuthority(overlap, v1_kid) != nullptr);
    CHECK(FindJwtAuthority(overlap, v2_kid) != nullptr);
    CHECK(*overlap.sequence > sequence_before);

    // Version 2 signs from kSigningLeadSeconds before its activation time.
    f.Advance(60 - kSigningLeadSeconds - 1);
    const IssuedSvid still_old = f.Issue("web", "spiffe://example.org/a");
    CHECK(still_old.key_version == 1);
    CHECK(still_old.ca_chain == std::vector<Bytes>{first.certificate});
    CHECK(VerifySignedBy(still_old.certificate, first.certificate).has_value());
    CHECK(f.IssueJwt("web", "spiffe://example.org/a").kid == v1_kid);
    auto active = f.engine.ActiveChain();
    REQUIRE(active.has_value());
    CHECK(active->front() == first.certificate);

    f.Advance(1);
    const IssuedSvid new_svid = f.Issue("web", "spiffe://example.org/a");
    CHECK(new_svid.key_version == 2);
    CHECK(new_svid.ca_chain == std::vector<Bytes>{second.certificate});
    CHECK(VerifySignedBy(new_svid.certificate, second.certificate).has_value());
    const IssuedJwt new_jwt = f.IssueJwt("web", "spiffe://example.org/a");
    CHECK(new_jwt.kid == v2_kid);
    active = f.engine.ActiveChain();
    REQUIRE(active.has_value());
    CHECK(active->front() == second.certificate);

    // A token of the old key still verifies while the old key is in the bundle.
    auto old_verified = f.engine.VerifyJwt(old_jwt.token, "reports");
    CHECK_MESSAGE(old_verified.has_value(), old_verified.error().message());
    CHECK(f.engine.VerifyJwt(new_jwt.token, "reports").has_value());
    CHECK(f.Bundle().x509_authorities.size() == 2);
    CHECK(*f.Bundle().sequence == *overlap.sequence);

    // The last thing version 1 signed expires one hour after start + 59.
    const std::int64_t last_v1_expiry = still_old.expiration;
    REQUIRE(last_v1_expiry == start + 60 - kSigningLeadSeconds - 1 + 3600);
    std::uint64_t previous = *overlap.sequence;
    bool dropped = false;
    for (std::int64_t at = f.Now() + 120; at <= last_v1_expiry + 180; at += 120) {
      f.Advance(at - f.Now());
      const TrustBundle bundle = f.Bundle();
      CAPTURE(at);
      CHECK(*bundle.sequence >= previous);
      previous = *bundle.sequence;
      const bool has_v1 = FindJwtAuthority(bundle, v1_kid) != nullptr;
      if (at < last_v1_expiry) {
        CHECK(has_v1);
        CHECK(bundle.x509_authorities.size() == 2);
      }
      if (!has_v1) dropped = true;
      if (dropped) CHECK_FALSE(has_v1);  // it never comes back
    }
    CHECK(dropped);
    const TrustBundle retired = f.Bundle();
    CHECK(retired.x509_authorities == std::vector<Bytes>{second.certificate});
    REQUIRE(retired.jwt_authorities.size() == 1);
    CHECK(retired.jwt_authorities.front().kid == v2_kid);
    CHECK(*retired.sequence > *overlap.sequence);

    auto jwks = f.engine.Jwks();
    REQUIRE(jwks.has_value());
    REQUIRE((*jwks)["keys"].size() == 1);
    CHECK((*jwks)["keys"][0]["kid"] == v2_kid);

    // Tidy keeps the sequence: it removes only superseded marks.
    storage::WriteBatch tidy;
    REQUIRE(f.engine.Tidy(seconds(0), tidy).has_value());
    f.Commit(std::move(tidy));
    CHECK(*f.Bundle().sequence == *retired.sequence);
  }

  TEST_CASE("rotation without issuance retires at activation") {
    Fixture f;
    const CaResult first = f.GenerateRoot();
    const std::uint64_t initial = *f.Bundle().sequence;
    const CaResult second = f.Rotate(seconds(0));
    CHECK(second.activate_at == f.Now());
    // Version 1 signed nothing, so nothing keeps it in the bundle.
    const TrustBundle bundle = f.Bundle();
    CHECK(bundle.x509_authorities == std::vector<Bytes>{second.certificate});
    CHECK(*bundle.sequence > initial);
    (void)first;
  }

  TEST_CASE("sequence never decreases over rotations") {
    Fixture f;
    f.GenerateRoot();
    f.PutOpenRole("web", seconds(600), hours(1));
    std::uint64_t previous = *f.Bundle().sequence;
    std::vector<std::uint64_t> seen{previous};
    for (int round = 0; round < 4; ++round) {
      f.Issue("web", "spiffe://example.org/a");
      f.IssueJwt("web", "spiffe://example.org/a");
      f.Rotate(seconds(120));
      for (int step = 0; step < 12; ++step) {
        const std::uint64_t sequence = *f.Bundle().sequence;
        CAPTURE(round);
        CAPTURE(step);
        CHECK(sequence >= previous);
        if (sequence != previous) seen.push_back(sequence);
        previous = sequence;
        f.Advance(97);
      }
    }
    // Each rotation adds a version and each retirement drops one: 8 changes.
    CHECK(seen.size() >= 8);
    auto state = f.engine.State();
    REQUIRE(state.has_value());
    CHECK(state->versions.size() == 5);
  }

  TEST_CASE("intermediate signed by an external root") {
    Fixture f;
    const std::int64_t now = f.Now();
    KeyOwner root_key = NewP256Key();
    X509Owner root = MakeCertificate({"external root", true, "", now - 3600, now + 86400 * 30},
                                     root_key.get(), nullptr, root_key.get());
    const Bytes root_der = DerOf(root.get());

    storage::WriteBatch batch;
    auto generated = f.engine.GenerateIntermediate(kTrustDomain, "", seconds(0), batch);
    REQUIRE_MESSAGE(generated.has_value(), generated.error().message());
    f.Commit(std::move(batch));
    CHECK(generated->key_version == 1);
    REQUIRE_FALSE(generated->csr.empty());
    CHECK(generated->certificate.empty());

    auto state = f.engine.State();
    REQUIRE(state.has_value());
    CHECK(state->mode == "intermediate");
    auto key = f.env.token->FindPrivateKey(state->versions.front().key_label);
    REQUIRE(key.has_value());
    auto attributes = f.env.token->GetKeyAttributes(*key);
    REQUIRE(attributes.has_value());
    CHECK_FALSE(attributes->extractable);
    CHECK(attributes->never_extractable);

    // Nothing is issued before the certificate is installed.
    f.PutOpenRole("web", hours(1), hours(24 * 30));
    auto early = f.TryIssue("web", "spiffe://example.org/a");
    REQUIRE_FALSE(early.has_value());
    CHECK(early.error().code() == Code::kFailedPrecondition);

    KeyOwner csr_key = CsrPublicKey(generated->csr);
    CHECK(SpkiOf(csr_key.get()) == state->versions.front().spki);
    const std::int64_t intermediate_not_after = now + 86400 * 7;
    X509Owner intermediate =
        MakeCertificate({"keyward intermediate", true, "spiffe://example.org", now - 600,
                         intermediate_not_after},
                        csr_key.get(), root.get(), root_key.get());
    const Bytes intermediate_der = DerOf(intermediate.get());
    const std::string root_pem = DerToPem(root_der, "CERTIFICATE");
    const std::string intermediate_pem = DerToPem(intermediate_der, "CERTIFICATE");

    SUBCASE("set-signed rejects a wrong key") {
      KeyOwner other_key = NewP256Key();
      X509Owner wrong = MakeCertificate({"wrong key", true, "spiffe://example.org", now - 600,
                                         intermediate_not_after},
                                        other_key.get(), root.get(), root_key.get());
      storage::WriteBatch rejected;
      CheckInvalid(f.engine.SetSigned(DerToPem(DerOf(wrong.get()), "CERTIFICATE") + root_pem,
                                      rejected),
                   "matches no CSR");
    }
    SUBCASE("set-signed rejects a certificate that is not a CA") {
      X509Owner leaf = MakeCertificate({"not a ca", false, "spiffe://example.org", now - 600,
                                        intermediate_not_after},
                                       csr_key.get(), root.get(), root_key.get());
      storage::WriteBatch rejected;
      CheckInvalid(f.engine.SetSigned(DerToPem(DerOf(leaf.get()), "CERTIFICATE") + root_pem,
                                      rejected),
                   "not a CA");
    }
    SUBCASE("set-signed rejects a broken chain") {
      KeyOwner stranger_key = NewP256Key();
      X509Owner stranger =
          MakeCertificate({"external root", true, "", now - 3600, now + 86400 * 30},
                          stranger_key.get(), nullptr, stranger_key.get());
      storage::WriteBatch rejected;
      CheckInvalid(f.engine.SetSigned(intermediate_pem +
                                          DerToPem(DerOf(stranger.get()), "CERTIFICATE"),
                                      rejected),
                   "is not signed by certificate 1");
    }
    SUBCASE("set-signed rejects a chain without its root") {
      storage::WriteBatch rejected;
      CheckInvalid(f.engine.SetSigned(intermediate_pem, rejected), "self-signed root");
      // An issuing CA between the intermediate and the root, with the root left out.
      KeyOwner middle_key = NewP256Key();
      X509Owner middle = MakeCertificate({"middle", true, "", now - 3600, now + 86400 * 20},
                                         middle_key.get(), root.get(), root_key.get());
      X509Owner below_middle =
          MakeCertificate({"keyward intermediate", true, "spiffe://example.org", now - 600,
                           intermediate_not_after},
                          csr_key.get(), middle.get(), middle_key.get());
      CheckInvalid(f.engine.SetSigned(DerToPem(DerOf(below_middle.get()), "CERTIFICATE") +
                                          DerToPem(DerOf(middle.get()), "CERTIFICATE"),
                                      rejected),
                   "self-signed root");
      CheckInvalid(f.engine.SetSigned("", rejected), "certificate");
    }
    SUBCASE("set-signed rejects a foreign SPIFFE ID") {
      X509Owner foreign = MakeCertificate({"foreign", true, "spiffe://other.org", now - 600,
                                           intermediate_not_after},
                                          csr_key.get(), root.get(), root_key.get());
      storage::WriteBatch rejected;
      CheckInvalid(f.engine.SetSigned(DerToPem(DerOf(foreign.get()), "CERTIFICATE") + root_pem,
                                      rejected),
                   "spiffe://other.org");
    }
    SUBCASE("issued SVIDs chain to the external root") {
      storage::WriteBatch install;
      auto installed = f.engine.SetSigned(intermediate_pem + root_pem, install);
      REQUIRE_MESSAGE(installed.has_value(), installed.error().message());
      f.Commit(std::move(install));
      CHECK(installed->key_version == 1);
      CHECK(installed->certificate == intermediate_der);

      const IssuedSvid issued = f.Issue("web", "spiffe://example.org/ns/a", hours(24 * 30));
      CHECK(issued.ca_chain == std::vector<Bytes>{intermediate_der, root_der});
      CHECK(issued.expiration == intermediate_not_after);  // capped by the intermediate
      CHECK(VerifySignedBy(issued.certificate, intermediate_der).has_value());

      const TrustBundle bundle = f.Bundle();
      CHECK(bundle.x509_authorities == std::vector<Bytes>{root_der});
      REQUIRE(bundle.jwt_authorities.size() == 1);
      auto chain = f.engine.ActiveChain();
      REQUIRE(chain.has_value());
      CHECK(*chain == std::vector<Bytes>{intermediate_der, root_der});

      const std::filesystem::path dir = f.env.dir;
      WriteFile(dir / "root.pem", root_pem);
      WriteFile(dir / "intermediate.pem", intermediate_pem);
      WriteFile(dir / "leaf.pem", DerToPem(issued.certificate, "CERTIFICATE"));
      const std::string common = "openssl verify -x509_strict -attime " +
                                 std::to_string(f.Now()) + " -CAfile " +
                                 (dir / "root.pem").string();
      const CommandResult verify = Run(common + " -untrusted " +
                                       (dir / "intermediate.pem").string() + " " +
                                       (dir / "leaf.pem").string());
      CHECK_MESSAGE(verify.exit_code == 0, verify.output);
      CHECK(verify.output.find("leaf.pem: OK") != std::string::npos);
      // Without the intermediate the leaf does not verify, so the check above can fail.
      const CommandResult alone = Run(common + " " + (dir / "leaf.pem").string());
      CHECK(alone.exit_code != 0);

      // The JWT key is the intermediate's HSM key.
      const IssuedJwt jwt = f.IssueJwt("web", "spiffe://example.org/ns/a");
      CHECK(f.engine.VerifyJwt(jwt.token, "reports").has_value());

      // A second set-signed has no CSR to finish.
      storage::WriteBatch again;
      CheckInvalid(f.engine.SetSigned(intermediate_pem + root_pem, again), "matches no CSR");

      // Rotation in intermediate mode returns a new CSR, and version 1 signs until it is installed.
      storage::WriteBatch rotate;
      auto rotated = f.engine.Rotate(std::nullopt, seconds(0), rotate);
      REQUIRE_MESSAGE(rotated.has_value(), rotated.error().message());
      f.Commit(std::move(rotate));
      CHECK(rotated->key_version == 2);
      CHECK_FALSE(rotated->csr.empty());
      CHECK(f.Issue("web", "spiffe://example.org/ns/a").key_version == 1);
      KeyOwner second_key = CsrPublicKey(rotated->csr);
      X509Owner second = MakeCertificate({"keyward intermediate 2", true, "spiffe://example.org",
                                          now - 600, intermediate_not_after},
                                         second_key.get(), root.get(), root_key.get());
      storage::WriteBatch install_second;
      REQUIRE(f.engine.SetSigned(DerToPem(DerOf(second.get()), "CERTIFICATE") + root_pem,
                                 install_second)
                  .has_value());
      f.Commit(std::move(install_second));
      CHECK(f.Issue("web", "spiffe://example.org/ns/a").key_version == 2);
      // Both versions share the root, which the bundle lists once.
      CHECK(f.Bundle().x509_authorities == std::vector<Bytes>{root_der});
    }
  }

  TEST_CASE("revoked serials appear in the CRL") {
    Fixture f;
    const CaResult root = f.GenerateRoot();
    f.PutOpenRole();
    const IssuedSvid not_revoked = f.Issue("web", "spiffe://example.org/kept");
    const IssuedSvid revoked = f.Issue("web", "spiffe://example.org/revoked");

    auto crls = f.engine.Crls();
    REQUIRE(crls.has_value());
    REQUIRE(crls->size() == 1);
    CHECK(ParseCrl(crls->front(), root.certificate).serials.empty());

    f.Advance(10);
    const std::int64_t revoked_at = f.Now();
    storage::WriteBatch batch;
    auto first = f.engine.Revoke(revoked.serial, batch);
    REQUIRE(first.has_value());
    CHECK(*first == revoked_at);
    f.Commit(std::move(batch));

    crls = f.engine.Crls();
    REQUIRE(crls.has_value());
    REQUIRE(crls->size() == 1);
    const ParsedCrl parsed = ParseCrl(crls->front(), root.certificate);
    CHECK(parsed.serials == std::vector<std::string>{revoked.serial});
    REQUIRE(parsed.revoked_at.size() == 1);
    CHECK(parsed.revoked_at.front() == revoked_at);

    // Revoking again keeps the first time. Upper case without colons names the same serial.
    f.Advance(100);
    std::string upper;
    for (char c : revoked.serial) {
      if (c != ':') upper.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    }
    storage::WriteBatch again;
    auto second = f.engine.Revoke(upper, again);
    REQUIRE(second.has_value());
    CHECK(*second == revoked_at);
    f.Commit(std::move(again));
    auto record = f.engine.LoadCert(revoked.serial);
    REQUIRE(record.has_value());
    REQUIRE(record->has_value());
    CHECK((*record)->revoked_at == revoked_at);
    auto not_revoked_record = f.engine.LoadCert(not_revoked.serial);
    REQUIRE(not_revoked_record.has_value());
    REQUIRE(not_revoked_record->has_value());
    CHECK((*not_revoked_record)->revoked_at == 0);

    // A second revocation within the same second gets a CRL with a higher number.
    storage::WriteBatch other;
    REQUIRE(f.engine.Revoke(not_revoked.serial, other).has_value());
    f.Commit(std::move(other));
    auto rebuilt = f.engine.Crls();
    REQUIRE(rebuilt.has_value());
    const ParsedCrl both = ParseCrl(rebuilt->front(), root.certificate);
    CHECK(both.serials.size() == 2);
    CHECK(both.number > parsed.number);
    storage::WriteBatch third;
    REQUIRE(f.engine.Revoke(f.Issue("web", "spiffe://example.org/third").serial, third)
                .has_value());
    f.Commit(std::move(third));
    auto latest = f.engine.Crls();
    REQUIRE(latest.has_value());
    CHECK(ParseCrl(latest->front(), root.certificate).number > both.number);

    storage::WriteBatch unknown;
    CheckInvalid(f.engine.Revoke("01:02:03:04", unknown), "01:02:03:04");
    CheckInvalid(f.engine.Revoke("not-hex", unknown), "serial_number");
    CheckInvalid(f.engine.Revoke("", unknown), "serial_number");
  }

  TEST_CASE("tidy removes only expired records") {
    Fixture f;
    const CaResult root = f.GenerateRoot();
    f.PutOpenRole("web", hours(1), hours(24));
    const IssuedSvid short_lived = f.Issue("web", "spiffe://example.org/short", hours(1));
    const IssuedSvid long_lived = f.Issue("web", "spiffe://example.org/long", hours(10));
    for (const IssuedSvid* svid : {&short_lived, &long_lived}) {
      storage::WriteBatch batch;
      REQUIRE(f.engine.Revoke(svid->serial, batch).has_value());
      f.Commit(std::move(batch));
    }

    f.Advance(2 * 3600);
    // The expired certificate leaves the CRL before tidy runs.
    auto crls = f.engine.Crls();
    REQUIRE(crls.has_value());
    CHECK(ParseCrl(crls->front(), root.certificate).serials ==
          std::vector<std::string>{long_lived.serial});

    storage::WriteBatch buffered;
    auto none = f.engine.Tidy(hours(72), buffered);
    REQUIRE(none.has_value());
    CHECK(none->certificates_removed == 0);
    f.Commit(std::move(buffered));

    storage::WriteBatch batch;
    auto tidied = f.engine.Tidy(seconds(0), batch);
    REQUIRE(tidied.has_value());
    CHECK(tidied->certificates_removed == 1);
    CHECK_FALSE(tidied->more);
    f.Commit(std::move(batch));

    auto removed_record = f.engine.LoadCert(short_lived.serial);
    REQUIRE(removed_record.has_value());
    CHECK_FALSE(removed_record->has_value());
    auto live = f.engine.LoadCert(long_lived.serial);
    REQUIRE(live.has_value());
    CHECK(live->has_value());
    auto listed = f.engine.ListCerts();
    REQUIRE(listed.has_value());
    REQUIRE(listed->size() == 1);
    CHECK(listed->front().serial == long_lived.serial);
    crls = f.engine.Crls();
    REQUIRE(crls.has_value());
    CHECK(ParseCrl(crls->front(), root.certificate).serials ==
          std::vector<std::string>{long_lived.serial});

    storage::WriteBatch repeat;
    auto nothing = f.engine.Tidy(seconds(0), repeat);
    REQUIRE(nothing.has_value());
    CHECK(nothing->certificates_removed == 0);
  }

  TEST_CASE("federated bundles verify their domain's tokens") {
    Fixture f;
    f.GenerateRoot();
    f.PutOpenRole();

    // A go-spiffe fixture: stored and read back, never merged with this CA's bundle.
    const std::string fixture = ReadFile(kBundleDir / "spiffebundle" / "spiffebundle_valid_1.json");
    storage::WriteBatch batch;
    REQUIRE(f.engine.StageFederatedBundle("fixture.test", fixture, batch).has_value());
    f.Commit(std::move(batch));
    auto loaded = f.engine.LoadFederatedBundle("fixture.test");
    REQUIRE(loaded.has_value());
    REQUIRE(loaded->has_value());
    CHECK((*loaded)->trust_domain == "fixture.test");
    CHECK((*loaded)->x509_authorities.size() == 1);
    REQUIRE((*loaded)->jwt_authorities.size() == 1);
    const std::string fixture_kid = (*loaded)->jwt_authorities.front().kid;
    CHECK(fixture_kid == "C6vs25welZOx6WksNYfbMfiw9l96pMnD");
    CHECK(f.Bundle().jwt_authorities.size() == 1);

    // A token whose kid is the fixture's but whose signature is ours fails there.
    testing::SoftwareSigner impostor;
    auto forged = IssueJwtSvid({"spiffe://fixture.test/w", {"reports"}, f.Now(), f.Now() + 300},
                               fixture_kid, impostor);
    REQUIRE(forged.has_value());
    CheckInvalid(f.engine.VerifyJwt(*forged, "reports"), "signature");

    // A federated domain whose key the test holds.
    testing::SoftwareSigner partner;
    auto jwk = PublicJwkFromSpki(partner.PublicKeySpki());
    REQUIRE(jwk.has_value());
    auto kid = JwkThumbprint(*jwk);
    REQUIRE(kid.has_value());
    TrustBundle partner_bundle;
    partner_bundle.trust_domain = "partner.test";
    partner_bundle.jwt_authorities.push_back({*kid, partner.PublicKeySpki()});
    partner_bundle.sequence = 1;
    auto partner_json = SerializeTrustBundle(partner_bundle);
    REQUIRE(partner_json.has_value());

    auto token = IssueJwtSvid({"spiffe://partner.test/billing", {"reports"}, f.Now(),
                               f.Now() + 300},
                              *kid, partner);
    REQUIRE(token.has_value());
    // Not trusted before the bundle is stored.
    CheckInvalid(f.engine.VerifyJwt(*token, "reports"), "partner.test");

    storage::WriteBatch federate;
    REQUIRE(f.engine.StageFederatedBundle("partner.test", *partner_json, federate).has_value());
    f.Commit(std::move(federate));
    auto verified = f.engine.VerifyJwt(*token, "reports");
    REQUIRE_MESSAGE(verified.has_value(), verified.error().message());
    CHECK(verified->spiffe_id == "spiffe://partner.test/billing");
    CHECK(verified->kid == *kid);

    // The partner's key does not vouch for another trust domain.
    auto cross = IssueJwtSvid({"spiffe://fixture.test/w", {"reports"}, f.Now(), f.Now() + 300},
                              *kid, partner);
    REQUIRE(cross.has_value());
    CheckInvalid(f.engine.VerifyJwt(*cross, "reports"), "kid");

    // Nor for this CA's own trust domain.
    auto own = IssueJwtSvid({"spiffe://example.org/w", {"reports"}, f.Now(), f.Now() + 300},
                            *kid, partner);
    REQUIRE(own.has_value());
    CHECK_FALSE(f.engine.VerifyJwt(*own, "reports").has_value());

    auto names = f.engine.ListFederatedBundles();
    REQUIRE(names.has_value());
    CHECK(*names == std::vector<std::string>{"fixture.test", "partner.test"});

    storage::WriteBatch remove;
    REQUIRE(f.engine.StageFederatedBundleDelete("partner.test", remove).has_value());
    f.Commit(std::move(remove));
    CHECK_FALSE(f.engine.VerifyJwt(*token, "reports").has_value());
  }

  TEST_CASE("federated bundles are validated") {
    Fixture f;
    f.GenerateRoot();
    storage::WriteBatch batch;
    for (const char* name : {"spiffebundle_missing_kid.json", "spiffebundle_multiple_x509.json"}) {
      CAPTURE(name);
      CheckInvalid(f.engine.StageFederatedBundle(
                       "fixture.test", ReadFile(kBundleDir / "spiffebundle" / name), batch),
                   "bundle");
    }
    CheckInvalid(f.engine.StageFederatedBundle("fixture.test", "{", batch), "bundle");
    CheckInvalid(f.engine.StageFederatedBundle("fixture.test", "{}", batch), "bundle");
    const std::string valid = ReadFile(kBundleDir / "spiffebundle" / "spiffebundle_valid_2.json");
    CheckInvalid(f.engine.StageFederatedBundle("Bad.Domain", valid, batch), "trust_domain");
    CheckInvalid(f.engine.StageFederatedBundle("example.org", valid, batch), "own trust domain");
    CHECK(batch.ops().empty());
  }

  TEST_CASE("pending intermediate CSR is returned again") {
    Fixture f;
    storage::WriteBatch batch;
    auto first = f.engine.GenerateIntermediate(kTrustDomain, "", seconds(0), batch);
    REQUIRE(first.has_value());
    f.Commit(std::move(batch));

    // A second request while the CSR waits returns the same key's CSR and changes nothing.
    storage::WriteBatch again;
    auto second = f.engine.GenerateIntermediate("", "", seconds(0), again);
    REQUIRE(second.has_value());
    CHECK(again.ops().empty());
    CHECK(second->key_version == first->key_version);
    auto first_csr = ParseCsrPem(DerToPem(first->csr, "CERTIFICATE REQUEST"));
    auto second_csr = ParseCsrPem(DerToPem(second->csr, "CERTIFICATE REQUEST"));
    REQUIRE(first_csr.has_value());
    REQUIRE(second_csr.has_value());
    CHECK(first_csr->spki == second_csr->spki);
  }

  TEST_CASE("tampered records do not decrypt") {
    Fixture f;
    f.GenerateRoot();
    f.PutOpenRole();
    const IssuedSvid first = f.Issue("web", "spiffe://example.org/first");
    const IssuedSvid second = f.Issue("web", "spiffe://example.org/second");
    storage::WriteBatch revoke;
    REQUIRE(f.engine.Revoke(first.serial, revoke).has_value());
    f.Commit(std::move(revoke));

    // Copying the revoked record over the other one's key does not revoke the other one.
    auto key_of = [](const std::string& serial) {
      std::string hex;
      for (char c : serial) {
        if (c != ':') hex.push_back(c);
      }
      return "pki/certs/" + hex;
    };
    auto revoked_record = f.env.store->Get(key_of(first.serial));
    REQUIRE(revoked_record.has_value());
    REQUIRE(revoked_record->has_value());
    storage::WriteBatch copy;
    copy.Put(key_of(second.serial), **revoked_record);
    f.Commit(std::move(copy));
    auto loaded = f.engine.LoadCert(second.serial);
    REQUIRE_FALSE(loaded.has_value());
    CHECK(loaded.error().code() == Code::kDataLoss);

    // A record written in clear is rejected too.
    storage::WriteBatch forged;
    const std::string clear = R"({"serial":"01","spiffe_id":"spiffe://example.org/x"})";
    forged.Put(key_of(first.serial), Bytes(clear.begin(), clear.end()));
    f.Commit(std::move(forged));
    auto forged_load = f.engine.LoadCert(first.serial);
    REQUIRE_FALSE(forged_load.has_value());
    CHECK(forged_load.error().code() == Code::kDataLoss);
  }
}

}  // namespace kw::vault::pki
