#include "vault/pki/x509_builder.hpp"

#include <doctest/doctest.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "fakes/temp_dir.hpp"
#include "software_signer.hpp"

namespace kw::vault::pki {
namespace {

using kw::testing::SoftwareSigner;
using kw::testing::TempDir;

constexpr std::int64_t kHour = 3600;

std::int64_t Now() { return static_cast<std::int64_t>(std::time(nullptr)); }

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs a shell command (the real openssl CLI) and captures its output and exit code.
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

void WriteFile(const std::string& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

using X509Owner = std::unique_ptr<X509, decltype(&X509_free)>;
using ReqOwner = std::unique_ptr<X509_REQ, decltype(&X509_REQ_free)>;
using CrlOwner = std::unique_ptr<X509_CRL, decltype(&X509_CRL_free)>;
using KeyOwner = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

X509Owner ParseX509(const Bytes& der) {
  const unsigned char* cursor = der.data();
  return X509Owner(d2i_X509(nullptr, &cursor, static_cast<long>(der.size())), X509_free);
}

// Criticality of extension `nid`: 1 critical, 0 not critical, -1 absent.
int Criticality(X509* certificate, int nid) {
  const int index = X509_get_ext_by_NID(certificate, nid, -1);
  if (index < 0) return -1;
  return X509_EXTENSION_get_critical(X509_get_ext(certificate, index));
}

// SHA-1 of the last 65 bytes of a P-256 SPKI (the uncompressed point), computed without the
// code under test: RFC 5280 key identifier method 1.
Bytes P256KeyId(const Bytes& spki) {
  REQUIRE(spki.size() == 91);
  Bytes digest(20);
  unsigned int length = 0;
  REQUIRE(EVP_Digest(spki.data() + 26, 65, digest.data(), &length, EVP_sha1(), nullptr) == 1);
  return digest;
}

CaCertSpec RootSpec(std::int64_t now) {
  return CaCertSpec{"example.org", "keyward CA example.org", now - kHour, now + 24 * kHour};
}

Bytes BuildRoot(const SoftwareSigner& signer, std::int64_t now) {
  auto root = BuildSelfSignedCa(RootSpec(now), signer);
  REQUIRE(root.has_value());
  return *root;
}

LeafSpec WebLeafSpec(const Bytes& spki, std::int64_t now) {
  LeafSpec spec;
  spec.spiffe_id = "spiffe://example.org/ns/prod/web";
  spec.subject_spki = spki;
  spec.not_before = now - 30;
  spec.not_after = now + kHour;
  return spec;
}

// A CSR signed with `key` by OpenSSL directly; `md` is null for Ed25519.
std::string CsrPemFor(EVP_PKEY* key, const EVP_MD* md) {
  ReqOwner request(X509_REQ_new(), X509_REQ_free);
  X509_NAME* name = X509_REQ_get_subject_name(request.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("workload"), -1, -1, 0);
  REQUIRE(X509_REQ_set_pubkey(request.get(), key) == 1);
  REQUIRE(X509_REQ_sign(request.get(), key, md) > 0);
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  REQUIRE(PEM_write_bio_X509_REQ(bio.get(), request.get()) == 1);
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(length));
}

KeyOwner GenerateKey(const char* type, const char* curve) {
  KeyOwner key(EVP_PKEY_Q_keygen(nullptr, nullptr, type, curve), EVP_PKEY_free);
  REQUIRE(key != nullptr);
  return key;
}

KeyOwner GenerateDsaKey() {
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> param_context(
      EVP_PKEY_CTX_new_from_name(nullptr, "DSA", nullptr), EVP_PKEY_CTX_free);
  REQUIRE(param_context != nullptr);
  REQUIRE(EVP_PKEY_paramgen_init(param_context.get()) == 1);
  REQUIRE(EVP_PKEY_CTX_set_dsa_paramgen_bits(param_context.get(), 2048) == 1);
  EVP_PKEY* params = nullptr;
  REQUIRE(EVP_PKEY_paramgen(param_context.get(), &params) == 1);
  KeyOwner params_owner(params, EVP_PKEY_free);
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> key_context(
      EVP_PKEY_CTX_new_from_pkey(nullptr, params, nullptr), EVP_PKEY_CTX_free);
  REQUIRE(EVP_PKEY_keygen_init(key_context.get()) == 1);
  EVP_PKEY* key = nullptr;
  REQUIRE(EVP_PKEY_keygen(key_context.get(), &key) == 1);
  return KeyOwner(key, EVP_PKEY_free);
}

Bytes Spki(EVP_PKEY* key) {
  unsigned char* data = nullptr;
  const int length = i2d_PUBKEY(key, &data);
  REQUIRE(length > 0);
  Bytes spki(data, data + length);
  OPENSSL_free(data);
  return spki;
}

// A Signer whose signature does not match its public key.
class WrongSignatureSigner : public Signer {
 public:
  explicit WrongSignatureSigner(const SoftwareSigner& real) : real_(real) {}
  Result<Bytes> SignDigest(ByteSpan digest) const override {
    auto raw = real_.SignDigest(digest);
    if (raw) (*raw)[63] ^= 0x01;
    return raw;
  }
  const Bytes& PublicKeySpki() const override { return real_.PublicKeySpki(); }

 private:
  const SoftwareSigner& real_;
};

// A Signer whose SignDigest returns a DER signature instead of raw r ‖ s.
class DerSigner : public Signer {
 public:
  explicit DerSigner(const SoftwareSigner& real) : real_(real) {}
  Result<Bytes> SignDigest(ByteSpan digest) const override {
    KW_ASSIGN_OR_RETURN(Bytes raw, real_.SignDigest(digest));
    return EcdsaRawToDer(raw);
  }
  const Bytes& PublicKeySpki() const override { return real_.PublicKeySpki(); }

 private:
  const SoftwareSigner& real_;
};

bool IsColonHex(const std::string& serial, std::size_t octets) {
  if (serial.size() != octets * 3 - 1) return false;
  for (std::size_t i = 0; i < serial.size(); ++i) {
    const char c = serial[i];
    const bool ok = (i % 3 == 2) ? c == ':' : ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    if (!ok) return false;
  }
  return true;
}

// Checks that both signature AlgorithmIdentifiers are ecdsa-with-SHA256 with absent parameters.
void CheckEcdsaSha256Algorithms(X509* certificate) {
  const X509_ALGOR* outer = nullptr;
  X509_get0_signature(nullptr, &outer, certificate);
  const X509_ALGOR* inner = X509_get0_tbs_sigalg(certificate);
  for (const X509_ALGOR* algorithm : {outer, inner}) {
    const ASN1_OBJECT* oid = nullptr;
    int parameter_type = 0;
    X509_ALGOR_get0(&oid, &parameter_type, nullptr, algorithm);
    CHECK(OBJ_obj2nid(oid) == NID_ecdsa_with_SHA256);
    CHECK(parameter_type == V_ASN1_UNDEF);
  }
}

}  // namespace

TEST_SUITE("vault/pki/x509") {

TEST_CASE("x509 ecdsa raw to der round trip") {
  for (int i = 0; i < 200; ++i) {
    Bytes raw = RandomBytes(64);
    raw[0] |= 0x01;
    raw[32] |= 0x01;
    auto der = EcdsaRawToDer(raw);
    REQUIRE(der.has_value());
    auto back = EcdsaDerToRaw(*der, 32);
    REQUIRE(back.has_value());
    CHECK(*back == raw);
  }
}

TEST_CASE("x509 ecdsa der minimal integers") {
  // r = 1 (31 leading zero bytes), s has its high bit set.
  Bytes raw(64, 0);
  raw[31] = 0x01;
  raw[32] = 0x80;
  raw[63] = 0x07;
  auto der = EcdsaRawToDer(raw);
  REQUIRE(der.has_value());
  Bytes expected = {0x30, 0x26, 0x02, 0x01, 0x01, 0x02, 0x21, 0x00, 0x80};
  expected.resize(expected.size() + 30, 0);
  expected.push_back(0x07);
  CHECK(*der == expected);
  auto back = EcdsaDerToRaw(*der, 32);
  REQUIRE(back.has_value());
  CHECK(*back == raw);

  SUBCASE("r with high bit and leading zero s") {
    Bytes high(64, 0);
    high[0] = 0xff;
    high[33] = 0x01;
    auto encoded = EcdsaRawToDer(high);
    REQUIRE(encoded.has_value());
    CHECK((*encoded)[3] == 0x21);  // r needs a leading 0x00
    CHECK((*encoded)[4] == 0x00);
    auto decoded = EcdsaDerToRaw(*encoded, 32);
    REQUIRE(decoded.has_value());
    CHECK(*decoded == high);
  }
}

TEST_CASE("x509 ecdsa der verifies with openssl") {
  SoftwareSigner signer;
  const Bytes digest = Sha256(AsBytes("message"));
  auto raw = signer.SignDigest(digest);
  REQUIRE(raw.has_value());
  auto der = EcdsaRawToDer(*raw);
  REQUIRE(der.has_value());
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> context(
      EVP_PKEY_CTX_new(signer.key(), nullptr), EVP_PKEY_CTX_free);
  REQUIRE(EVP_PKEY_verify_init(context.get()) == 1);
  CHECK(EVP_PKEY_verify(context.get(), der->data(), der->size(), digest.data(), digest.size()) ==
        1);
}

TEST_CASE("x509 ecdsa conversion rejects bad input") {
  CHECK(EcdsaRawToDer(Bytes{}).error().code() == Code::kInvalidArgument);
  CHECK(EcdsaRawToDer(Bytes(63, 1)).error().code() == Code::kInvalidArgument);
  CHECK(EcdsaRawToDer(Bytes(134, 1)).error().code() == Code::kInvalidArgument);
  Bytes zero_r(64, 0);
  zero_r[63] = 1;
  CHECK(EcdsaRawToDer(zero_r).error().code() == Code::kInvalidArgument);

  Bytes raw(64, 0x11);
  auto der = EcdsaRawToDer(raw);
  REQUIRE(der.has_value());
  Bytes trailing = *der;
  trailing.push_back(0x00);
  CHECK(EcdsaDerToRaw(trailing, 32).error().code() == Code::kInvalidArgument);
  CHECK(EcdsaDerToRaw(*der, 31).error().code() == Code::kInvalidArgument);
  CHECK(EcdsaDerToRaw(AsBytes("garbage"), 32).error().code() == Code::kInvalidArgument);
  // INTEGER 1 written with a superfluous leading zero octet is not DER.
  const Bytes padded = {0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01};
  CHECK(EcdsaDerToRaw(padded, 32).error().code() == Code::kInvalidArgument);
}

TEST_CASE("x509 pem round trip and labels") {
  const Bytes first = RandomBytes(100);
  const Bytes second = RandomBytes(3);
  const std::string first_pem = DerToPem(first, "CERTIFICATE");
  CHECK(first_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
  CHECK(first_pem.ends_with("-----END CERTIFICATE-----\n"));
  CHECK(first_pem.find('\n', 28) - 28 == 64);  // first base64 line is 64 columns

  const std::string text = "leading text\n" + first_pem + DerToPem(RandomBytes(5), "X509 CRL") +
                           DerToPem(second, "CERTIFICATE");
  auto blocks = PemToDerList(text, "CERTIFICATE");
  REQUIRE(blocks.has_value());
  REQUIRE(blocks->size() == 2);
  CHECK((*blocks)[0] == first);
  CHECK((*blocks)[1] == second);

  auto crls = PemToDerList(text, "X509 CRL");
  REQUIRE(crls.has_value());
  CHECK(crls->size() == 1);

  CHECK(PemToDerList(text, "CERTIFICATE REQUEST").error().code() == Code::kInvalidArgument);
  CHECK(PemToDerList("", "CERTIFICATE").error().code() == Code::kInvalidArgument);
  CHECK(PemToDerList("-----BEGIN CERTIFICATE-----\n@@@@\n-----END CERTIFICATE-----\n",
                     "CERTIFICATE")
            .error()
            .code() == Code::kInvalidArgument);
  CHECK(PemToDerList(first_pem.substr(0, first_pem.size() - 10), "CERTIFICATE").error().code() ==
        Code::kInvalidArgument);
}

TEST_CASE("x509 key type parsing") {
  CHECK(ParseKeyType("ec", 0).value() == KeyType::kEcP256);
  CHECK(ParseKeyType("ec", 256).value() == KeyType::kEcP256);
  CHECK(ParseKeyType("ec", 384).value() == KeyType::kEcP384);
  CHECK(ParseKeyType("rsa", 0).value() == KeyType::kRsa2048);
  CHECK(ParseKeyType("rsa", 3072).value() == KeyType::kRsa3072);
  CHECK(ParseKeyType("rsa", 4096).value() == KeyType::kRsa4096);
  auto bad_bits = ParseKeyType("ec", 521);
  REQUIRE_FALSE(bad_bits.has_value());
  CHECK(bad_bits.error().code() == Code::kInvalidArgument);
  CHECK(bad_bits.error().message().find("key_bits") != std::string::npos);
  CHECK(bad_bits.error().message().find("384") != std::string::npos);
  auto bad_type = ParseKeyType("dsa", 0);
  REQUIRE_FALSE(bad_type.has_value());
  CHECK(bad_type.error().message().find("key_type") != std::string::npos);
  CHECK(ParseKeyType("rsa", 1024).error().code() == Code::kInvalidArgument);
  CHECK(ParseKeyType("EC", 256).error().code() == Code::kInvalidArgument);
  CHECK(KeyTypeName(KeyType::kEcP384) == "ec");
  CHECK(KeyTypeName(KeyType::kRsa4096) == "rsa");
  CHECK(IsRsa(KeyType::kRsa2048));
  CHECK_FALSE(IsRsa(KeyType::kEcP256));
  CHECK(KeyBits(KeyType::kRsa3072) == 3072);
}

TEST_CASE("x509 self-signed ca fields") {
  SoftwareSigner signer;
  const std::int64_t now = Now();
  const Bytes root = BuildRoot(signer, now);

  auto info = ParseCertificateDer(root);
  REQUIRE(info.has_value());
  CHECK(info->subject == "O=keyward, CN=keyward CA example.org");
  CHECK(info->issuer == info->subject);
  CHECK(info->self_signed);
  CHECK(info->is_ca);
  CHECK(info->key_cert_sign);
  CHECK(info->crl_sign);
  CHECK_FALSE(info->digital_signature);
  CHECK_FALSE(info->key_encipherment);
  CHECK(info->uri_sans == std::vector<std::string>{"spiffe://example.org"});
  CHECK(info->spki == signer.PublicKeySpki());
  CHECK(info->subject_key_id == P256KeyId(signer.PublicKeySpki()));
  CHECK(info->authority_key_id == info->subject_key_id);
  CHECK(info->not_before == now - kHour);
  CHECK(info->not_after == now + 24 * kHour);
  CHECK(IsColonHex(info->serial, 16));
  CHECK(info->serial[0] >= '4');  // top bit clear (positive), next bit set
  CHECK(info->serial[0] <= '7');

  X509Owner certificate = ParseX509(root);
  REQUIRE(certificate != nullptr);
  CHECK(X509_get_version(certificate.get()) == X509_VERSION_3);
  CHECK(Criticality(certificate.get(), NID_basic_constraints) == 1);
  CHECK(Criticality(certificate.get(), NID_key_usage) == 1);
  CHECK(Criticality(certificate.get(), NID_subject_alt_name) == 0);
  CHECK(Criticality(certificate.get(), NID_subject_key_identifier) == 0);
  CHECK(Criticality(certificate.get(), NID_authority_key_identifier) == 0);
  CHECK(Criticality(certificate.get(), NID_ext_key_usage) == -1);
  CHECK(X509_get_ext_count(certificate.get()) == 5);
  CHECK(X509_get_pathlen(certificate.get()) == -1);
  CheckEcdsaSha256Algorithms(certificate.get());
  CHECK(X509_verify(certificate.get(), signer.key()) == 1);
}

TEST_CASE("x509 serials are random") {
  SoftwareSigner signer;
  const std::int64_t now = Now();
  std::set<std::string> serials;
  for (int i = 0; i < 8; ++i) {
    auto info = ParseCertificateDer(BuildRoot(signer, now));
    REQUIRE(info.has_value());
    serials.insert(info->serial);
  }
  CHECK(serials.size() == 8);
}

TEST_CASE("x509 self-signed ca rejects bad spec") {
  SoftwareSigner signer;
  const std::int64_t now = Now();
  CaCertSpec spec = RootSpec(now);
  SUBCASE("upper-case trust domain") { spec.trust_domain = "Example.org"; }
  SUBCASE("trust domain with a path") { spec.trust_domain = "example.org/x"; }
  SUBCASE("empty trust domain") { spec.trust_domain = ""; }
  SUBCASE("empty common name") { spec.common_name = ""; }
  SUBCASE("long common name") { spec.common_name = std::string(65, 'a'); }
  SUBCASE("not after before not before") { spec.not_after = spec.not_before; }
  auto root = BuildSelfSignedCa(spec, signer);
  REQUIRE_FALSE(root.has_value());
  CHECK(root.error().code() == Code::kInvalidArgument);
}

TEST_CASE("x509 builders never return unverified signatures") {
  SoftwareSigner real;
  const std::int64_t now = Now();
  WrongSignatureSigner wrong(real);
  auto root = BuildSelfSignedCa(RootSpec(now), wrong);
  REQUIRE_FALSE(root.has_value());
  CHECK(root.error().code() == Code::kInternal);

  DerSigner der_signer(real);
  auto der_root = BuildSelfSignedCa(RootSpec(now), der_signer);
  REQUIRE_FALSE(der_root.has_value());
  CHECK(der_root.error().code() == Code::kInternal);

  auto csr = BuildCaCsr(RootSpec(now), wrong);
  REQUIRE_FALSE(csr.has_value());
  CHECK(csr.error().code() == Code::kInternal);

  const Bytes good_root = BuildRoot(real, now);
  auto workload = GenerateWorkloadKey(KeyType::kEcP256);
  REQUIRE(workload.has_value());
  auto leaf = BuildLeaf(WebLeafSpec(workload->spki, now), good_root, wrong);
  REQUIRE_FALSE(leaf.has_value());
  CHECK(leaf.error().code() == Code::kInternal);

  auto crl = BuildCrl(good_root, {}, now, now + kHour, 1, wrong);
  REQUIRE_FALSE(crl.has_value());
  CHECK(crl.error().code() == Code::kInternal);
}

TEST_CASE("x509 ca csr fields and openssl req verify") {
  SoftwareSigner signer;
  auto csr = BuildCaCsr(RootSpec(Now()), signer);
  REQUIRE(csr.has_value());
  const std::string pem = DerToPem(*csr, "CERTIFICATE REQUEST");

  auto parsed = ParseCsrPem(pem);
  REQUIRE(parsed.has_value());
  CHECK(parsed->spki == signer.PublicKeySpki());
  CHECK(parsed->key_type == KeyType::kEcP256);

  const unsigned char* cursor = csr->data();
  ReqOwner request(d2i_X509_REQ(nullptr, &cursor, static_cast<long>(csr->size())), X509_REQ_free);
  REQUIRE(request != nullptr);
  CHECK(X509_REQ_get_signature_nid(request.get()) == NID_ecdsa_with_SHA256);
  char subject[256];
  X509_NAME_oneline(X509_REQ_get_subject_name(request.get()), subject, sizeof(subject));
  CHECK(std::string(subject) == "/O=keyward/CN=keyward CA example.org");

  STACK_OF(X509_EXTENSION)* extensions = X509_REQ_get_extensions(request.get());
  REQUIRE(extensions != nullptr);
  CHECK(sk_X509_EXTENSION_num(extensions) == 3);
  X509Owner holder(X509_new(), X509_free);  // reads the extensions through a certificate
  for (int i = 0; i < sk_X509_EXTENSION_num(extensions); ++i) {
    X509_add_ext(holder.get(), sk_X509_EXTENSION_value(extensions, i), -1);
  }
  sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free);
  CHECK(Criticality(holder.get(), NID_basic_constraints) == 1);
  CHECK(Criticality(holder.get(), NID_key_usage) == 1);
  CHECK((X509_get_extension_flags(holder.get()) & EXFLAG_CA) != 0);
  CHECK(X509_get_key_usage(holder.get()) == (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  std::unique_ptr<GENERAL_NAMES, decltype(&GENERAL_NAMES_free)> names(
      static_cast<GENERAL_NAMES*>(
          X509_get_ext_d2i(holder.get(), NID_subject_alt_name, nullptr, nullptr)),
      GENERAL_NAMES_free);
  REQUIRE(names != nullptr);
  REQUIRE(sk_GENERAL_NAME_num(names.get()) == 1);
  const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), 0);
  REQUIRE(name->type == GEN_URI);
  CHECK(std::string(reinterpret_cast<const char*>(
            ASN1_STRING_get0_data(name->d.uniformResourceIdentifier))) == "spiffe://example.org");

  TempDir dir("kw-x509");
  WriteFile(dir.File("ca.csr"), pem);
  const CommandResult verify = Run("openssl req -verify -noout -in " + dir.File("ca.csr"));
  INFO(verify.output);
  CHECK(verify.exit_code == 0);
}

TEST_CASE("x509 leaf fields") {
  SoftwareSigner signer;
  const std::int64_t now = Now();
  const Bytes root = BuildRoot(signer, now);
  auto root_info = ParseCertificateDer(root);
  REQUIRE(root_info.has_value());
  auto workload = GenerateWorkloadKey(KeyType::kEcP256);
  REQUIRE(workload.has_value());

  auto issued = BuildLeaf(WebLeafSpec(workload->spki, now), root, signer);
  REQUIRE(issued.has_value());
  auto info = ParseCertificateDer(issued->der);
  REQUIRE(info.has_value());
  CHECK(info->serial == issued->serial);
  CHECK(IsColonHex(issued->serial, 16));
  CHECK(info->serial != root_info->serial);
  CHECK(info->subject == "O=keyward");
  CHECK(info->issuer == root_info->subject);
  CHECK_FALSE(info->self_signed);
  CHECK_FALSE(info->is_ca);
  CHECK(info->digital_signature);
  CHECK_FALSE(info->key_encipherment);
  CHECK_FALSE(info->key_cert_sign);
  CHECK_FALSE(info->crl_sign);
  CHECK(info->uri_sans == std::vector<std::string>{"spiffe://example.org/ns/prod/web"});
  CHECK(info->spki == workload->spki);
  CHECK(info->subject_key_id == P256KeyId(workload->spki));
  CHECK(info->authority_key_id == root_info->subject_key_id);
  CHECK(info->not_before == now - 30);
  CHECK(info->not_after == now + kHour);
  CHECK(VerifySignedBy(issued->der, root).has_value());

  X509Owner certificate = ParseX509(issued->der);
  REQUIRE(certificate != nullptr);
  CHECK(X509_get_version(certificate.get()) == X509_VERSION_3);
  CHECK(Criticality(certificate.get(), NID_basic_constraints) == 1);
  CHECK(Criticality(certificate.get(), NID_key_usage) == 1);
  CHECK(Criticality(certificate.get(), NID_subject_alt_name) == 0);
  CHECK(Criticality(certificate.get(), NID_ext_key_usage) == 0);
  CHECK(Criticality(certificate.get(), NID_subject_key_identifier) == 0);
  CHECK(Criticality(certificate.get(), NID_authority_key_identifier) == 0);
  CHECK(X509_get_ext_count(certificate.get()) == 6);
  CHECK(X509_get_key_usage(certificate.get()) == KU_DIGITAL_SIGNATURE);
  CHECK(X509_get_extended_key_usage(certificate.get()) == (XKU_SSL_SERVER | XKU_SSL_CLIENT));
  CheckEcdsaSha256Algorithms(certificate.get());
}

TEST_CASE("x509 rsa leaf has key encipherment") {
  SoftwareSigner signer;
  const std::int64_t now = Now();
  const Bytes root = BuildRoot(signer, now);
  auto workload = GenerateWorkloadKey(KeyType::kRsa2048);
  REQUIRE(workload.has_value());
  LeafSpec spec = WebLeafSpec(workload->spki, now);
  spec.key_encipherment = true;
  auto issued = BuildLeaf(spec, root, signer);
  REQUIRE(issued.has_value());
  auto info = ParseCertificateDer(issued->der);
  REQUIRE(info.has_value());
  CHECK(info->digital_signature);
  CHECK(info->key_encipherment);
  CHECK(info->spki == workload->spki);
  X509Owner certificate = ParseX509(issued->der);
  CHECK(X509_get_key_usage(certificate.get()) == (KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT));
}

TEST_CASE("x509 openssl verify accepts leaf only under its root") {
  SoftwareSigner signer;
  SoftwareSigner other_signer;
  const std::int64_t now = Now();
  const Bytes root = BuildRoot(signer, now);
  const Bytes other_root = BuildRoot(other_signer, now);  // same names, other key
  auto workload = GenerateWorkloadKey(KeyType::kEcP384);
  REQUIRE(workload.has_value());
  auto issued = BuildLeaf(WebLeafSpec(workload->spki, now), root, signer);
  REQUIRE(issued.has_value());

  TempDir dir("kw-x509");
  WriteFile(dir.File("root.pem"), DerToPem(root, "CERTIFICATE"));
  WriteFile(dir.File("other.pem"), DerToPem(other_root, "CERTIFICATE"));
  WriteFile(dir.File("leaf.pem"), DerToPem(issued->der, "CERTIFICATE"));

  const CommandResult accepted = Run("openssl verify -x509_strict -CAfile " +
                                     dir.File("root.pem") + " " + dir.File("leaf.pem"));
  INFO(accepted.output);
  CHECK(accepted.exit_code == 0);
  CHECK(accepted.output.find(": OK") != std::string::npos);

  const CommandResult root_alone = Run("openssl verify -x509_strict -CAfile " +
                                       dir.File("root.pem") + " " + dir.File("root.pem"));
  INFO(root_alone.output);
  CHECK(root_alone.exit_code == 0);

  const CommandResult rejected = Run("openssl verify -x509_strict -CAfile " +
                                     dir.File("other.pem") + " " + dir.File("leaf.pem"));
  INFO(rejected.output);
  CHECK(rejected.exit_code != 0);
  CHECK_FALSE(VerifySignedBy(issued->der, other_root).has_value());
}

TEST_CASE("x509 leaf rejects issuer of another key") {
  SoftwareSigner signer;
  SoftwareSigner other_signer;
  const std::int64_t now = Now();
  const Bytes root = BuildRoot(signer, now);
  auto workload = GenerateWorkloadKey(KeyType::kEcP256);
  REQUIRE(workload.has_value());
  auto issued = BuildLeaf(WebLeafSpec(workload->spki, now), root, other_signer);
  REQUIRE_FALSE(issued.has_value());
  CHECK(issued.error().code() == Code::kFailedPrecondition);

  auto crl = BuildCrl(root, {}, now, now + kHour, 1, other_signer);
  REQUIRE_FALSE(crl.has_value());
  CHECK(crl.error().code() == Code::kFailedPrecondition);
}

TEST_CASE("x509 leaf rejects non-ca issuer") {
  SoftwareSigner signer;
  const std::int64_t now = Now();
  const Bytes root = BuildRoot(signer, now);
  // A leaf carrying the CA signer's own key, so only the missing cA flag is wrong.
  auto not_ca = BuildLeaf(WebLeafSpec(signer.PublicKeySpki(), now), root, signer);
  REQUIRE(not_ca.has_value());
  auto workload = GenerateWorkloadKey(KeyType::kEcP256);
  REQUIRE(workload.has_value());
  auto issued = BuildLeaf(WebLeafSpec(workload->spki, now), not_ca->der, signer);
  REQUIRE_FALSE(issued.has_value());
  CHECK(issued.error().code() == Code::kFailedPrecondition);
}

TEST_CASE("x509 leaf rejects bad spec") {
  SoftwareSigner signer;
  const std::int64_t now = Now();
  const Bytes root = BuildRoot(signer, now);
  auto workload = GenerateWorkloadKey(KeyType::kEcP256);
  REQUIRE(workload.has_value());
  LeafSpec spec = WebLeafSpec(workload->spki, now);
  SUBCASE("root id") { spec.spiffe_id = "spiffe://example.org"; }
  SUBCASE("invalid id") { spec.spiffe_id = "spiffe://example.org/a,URI:spiffe://evil/x"; }
  SUBCASE("not a spiffe id") { spec.spiffe_id = "https://example.org/web"; }
  SUBCASE("outlives the ca") { spec.not_after = now + 25 * kHour; }
  SUBCASE("empty validity") { spec.not_after = spec.not_before; }
  SUBCASE("garbage key") { spec.subject_spki = Bytes{0x30, 0x03, 0x02, 0x01, 0x01}; }
  SUBCASE("p-521 key") {
    KeyOwner key = GenerateKey("EC", "P-521");
    spec.subject_spki = Spki(key.get());
  }
  auto issued = BuildLeaf(spec, root, signer);
  REQUIRE_FALSE(issued.has_value());
  CHECK(issued.error().code() == Code::kInvalidArgument);
}

TEST_CASE("x509 crl fields and openssl crl verify") {
  SoftwareSigner signer;
  const std::int64_t now = Now();
  const Bytes root = BuildRoot(signer, now);
  auto root_info = ParseCertificateDer(root);
  REQUIRE(root_info.has_value());
  auto workload = GenerateWorkloadKey(KeyType::kEcP256);
  REQUIRE(workload.has_value());
  auto issued = BuildLeaf(WebLeafSpec(workload->spki, now), root, signer);
  REQUIRE(issued.has_value());

  const std::vector<RevokedEntry> revoked = {{issued->serial, now - 60}, {"01:02", now - 120}};
  auto crl_der = BuildCrl(root, revoked, now, now + 2 * kHour, 42, signer);
  REQUIRE(crl_der.has_value());

  const unsigned char* cursor = crl_der->data();
  CrlOwner crl(d2i_X509_CRL(nullptr, &cursor, static_cast<long>(crl_der->size())),
               X509_CRL_free);
  REQUIRE(crl != nullptr);
  CHECK(X509_CRL_get_version(crl.get()) == X509_CRL_VERSION_2);
  CHECK(X509_CRL_get_signature_nid(crl.get()) == NID_ecdsa_with_SHA256);
  CHECK(X509_CRL_verify(crl.get(), signer.key()) == 1);
  int days = 0;
  int seconds = 0;
  std::unique_ptr<ASN1_TIME, decltype(&ASN1_TIME_free)> expected_last(
      ASN1_TIME_set(nullptr, static_cast<time_t>(now)), ASN1_TIME_free);
  REQUIRE(ASN1_TIME_diff(&days, &seconds, X509_CRL_get0_lastUpdate(crl.get()),
                         expected_last.get()) == 1);
  CHECK(days == 0);
  CHECK(seconds == 0);
  REQUIRE(ASN1_TIME_diff(&days, &seconds, X509_CRL_get0_lastUpdate(crl.get()),
                         X509_CRL_get0_nextUpdate(crl.get())) == 1);
  CHECK(seconds == 2 * kHour);

  std::unique_ptr<ASN1_INTEGER, decltype(&ASN1_INTEGER_free)> number(
      static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(crl.get(), NID_crl_number, nullptr, nullptr)),
      ASN1_INTEGER_free);
  REQUIRE(number != nullptr);
  CHECK(ASN1_INTEGER_get(number.get()) == 42);
  std::unique_ptr<AUTHORITY_KEYID, decltype(&AUTHORITY_KEYID_free)> authority(
      static_cast<AUTHORITY_KEYID*>(
          X509_CRL_get_ext_d2i(crl.get(), NID_authority_key_identifier, nullptr, nullptr)),
      AUTHORITY_KEYID_free);
  REQUIRE(authority != nullptr);
  REQUIRE(authority->keyid != nullptr);
  const unsigned char* key_id = ASN1_STRING_get0_data(authority->keyid);
  CHECK(Bytes(key_id, key_id + ASN1_STRING_length(authority->keyid)) ==
        root_info->subject_key_id);
  CHECK(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl.get())) == 2);

  TempDir dir("kw-x509");
  WriteFile(dir.File("root.pem"), DerToPem(root, "CERTIFICATE"));
  WriteFile(dir.File("crl.pem"), DerToPem(*crl_der, "X509 CRL"));
  const CommandResult verify = Run("openssl crl -verify -noout -text -CAfile " +
                                   dir.File("root.pem") + " -in " + dir.File("crl.pem"));
  INFO(verify.output);
  CHECK(verify.exit_code == 0);
  CHECK(verify.output.find("verify OK") != std::string::npos);
  std::string serial_upper;
  for (const char c : issued->serial) {
    if (c != ':') serial_upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  CHECK(verify.output.find("Serial Number: " + serial_upper) != std::string::npos);
  CHECK(verify.output.find("Serial Number: 0102") != std::string::npos);

  SoftwareSigner other_signer;
  WriteFile(dir.File("other.pem"), DerToPem(BuildRoot(other_signer, now), "CERTIFICATE"));
  const CommandResult rejected = Run("openssl crl -verify -noout -CAfile " +
                                     dir.File("other.pem") + " -in " + dir.File("crl.pem"));
  INFO(rejected.output);
  CHECK(rejected.output.find("verify OK") == std::string::npos);
}

TEST_CASE("x509 crl rejects bad input") {
  SoftwareSigner signer;
  const std::int64_t now = Now();
  const Bytes root = BuildRoot(signer, now);
  const std::vector<std::string> bad_serials = {"", "0g", "01:2", "01-02", "01:",
                                                std::string(62, '1')};
  for (const std::string& serial : bad_serials) {
    CAPTURE(serial);
    auto crl = BuildCrl(root, {{serial, now}}, now, now + kHour, 1, signer);
    REQUIRE_FALSE(crl.has_value());
    CHECK(crl.error().code() == Code::kInvalidArgument);
  }
  auto empty_window = BuildCrl(root, {}, now, now, 1, signer);
  REQUIRE_FALSE(empty_window.has_value());
  CHECK(empty_window.error().code() == Code::kInvalidArgument);
  CHECK(BuildCrl(root, {}, now, now + kHour, 1, signer).has_value());
}

TEST_CASE("x509 csr accepted key types") {
  SUBCASE("ec p-256") {
    KeyOwner key = GenerateKey("EC", "P-256");
    auto csr = ParseCsrPem(CsrPemFor(key.get(), EVP_sha256()));
    REQUIRE(csr.has_value());
    CHECK(csr->key_type == KeyType::kEcP256);
    CHECK(csr->spki == Spki(key.get()));
  }
  SUBCASE("ec p-384") {
    KeyOwner key = GenerateKey("EC", "P-384");
    auto csr = ParseCsrPem(CsrPemFor(key.get(), EVP_sha384()));
    REQUIRE(csr.has_value());
    CHECK(csr->key_type == KeyType::kEcP384);
  }
  SUBCASE("rsa 2048") {
    auto workload = GenerateWorkloadKey(KeyType::kRsa2048);
    REQUIRE(workload.has_value());
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(workload->private_key_pem.Reveal().data(),
                        static_cast<int>(workload->private_key_pem.size())),
        BIO_free);
    KeyOwner key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
    REQUIRE(key != nullptr);
    auto csr = ParseCsrPem(CsrPemFor(key.get(), EVP_sha256()));
    REQUIRE(csr.has_value());
    CHECK(csr->key_type == KeyType::kRsa2048);
    CHECK(csr->spki == workload->spki);
  }
}

TEST_CASE("x509 csr rejects unsupported keys") {
  std::string pem;
  std::string key_name;
  SUBCASE("p-521") {
    KeyOwner key = GenerateKey("EC", "P-521");
    pem = CsrPemFor(key.get(), EVP_sha256());
    key_name = "secp521r1";
  }
  SUBCASE("ed25519") {
    KeyOwner key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"), EVP_PKEY_free);
    REQUIRE(key != nullptr);
    pem = CsrPemFor(key.get(), nullptr);
    key_name = "ED25519";
  }
  SUBCASE("dsa") {
    KeyOwner key = GenerateDsaKey();
    pem = CsrPemFor(key.get(), EVP_sha256());
    key_name = "DSA";
  }
  SUBCASE("rsa 1024") {
    KeyOwner key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<std::size_t>(1024)),
                 EVP_PKEY_free);
    REQUIRE(key != nullptr);
    pem = CsrPemFor(key.get(), EVP_sha256());
    key_name = "RSA 1024";
  }
  auto csr = ParseCsrPem(pem);
  REQUIRE_FALSE(csr.has_value());
  CHECK(csr.error().code() == Code::kInvalidArgument);
  CHECK(csr.error().message().find(key_name) != std::string::npos);
  CHECK(csr.error().message().find("EC P-256") != std::string::npos);
}

TEST_CASE("x509 csr rejects bad signature and garbage") {
  KeyOwner key = GenerateKey("EC", "P-256");
  const std::string pem = CsrPemFor(key.get(), EVP_sha256());

  SUBCASE("bad signature") {
    auto der = PemToDerList(pem, "CERTIFICATE REQUEST");
    REQUIRE(der.has_value());
    Bytes tampered = (*der)[0];
    // The subject's CN value "workload" sits inside the signed part; change one letter.
    const std::string_view text = AsText(tampered);
    const std::size_t at = text.find("workload");
    REQUIRE(at != std::string_view::npos);
    tampered[at] = 'W';
    auto csr = ParseCsrPem(DerToPem(tampered, "CERTIFICATE REQUEST"));
    REQUIRE_FALSE(csr.has_value());
    CHECK(csr.error().code() == Code::kInvalidArgument);
    CHECK(csr.error().message() == "csr signature does not verify");
  }
  SUBCASE("garbage") {
    auto csr = ParseCsrPem("not a csr");
    REQUIRE_FALSE(csr.has_value());
    CHECK(csr.error().code() == Code::kInvalidArgument);
  }
  SUBCASE("certificate instead of csr") {
    SoftwareSigner signer;
    auto csr = ParseCsrPem(DerToPem(BuildRoot(signer, Now()), "CERTIFICATE"));
    REQUIRE_FALSE(csr.has_value());
    CHECK(csr.error().code() == Code::kInvalidArgument);
  }
  SUBCASE("oversize") {
    std::string padded = pem + std::string(kMaxCsrPemBytes + 1 - pem.size(), '\n');
    REQUIRE(padded.size() == kMaxCsrPemBytes + 1);
    auto csr = ParseCsrPem(padded);
    REQUIRE_FALSE(csr.has_value());
    CHECK(csr.error().code() == Code::kInvalidArgument);
    std::string at_limit = pem + std::string(kMaxCsrPemBytes - pem.size(), '\n');
    CHECK(ParseCsrPem(at_limit).has_value());
  }
}

TEST_CASE("x509 workload key generation") {
  for (const KeyType type : {KeyType::kEcP256, KeyType::kEcP384, KeyType::kRsa2048}) {
    CAPTURE(static_cast<int>(type));
    auto workload = GenerateWorkloadKey(type);
    REQUIRE(workload.has_value());
    CHECK(workload->private_key_pem.RevealText().starts_with("-----BEGIN PRIVATE KEY-----\n"));
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(workload->private_key_pem.Reveal().data(),
                        static_cast<int>(workload->private_key_pem.size())),
        BIO_free);
    KeyOwner key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
    REQUIRE(key != nullptr);
    CHECK(Spki(key.get()) == workload->spki);
    CHECK(EVP_PKEY_get_bits(key.get()) == KeyBits(type));
    CHECK((EVP_PKEY_get_base_id(key.get()) == EVP_PKEY_RSA) == IsRsa(type));
  }
}

TEST_CASE("x509 parse rejects garbage") {
  CHECK(ParseCertificateDer(AsBytes("garbage")).error().code() == Code::kInvalidArgument);
  SoftwareSigner signer;
  Bytes root = BuildRoot(signer, Now());
  root.push_back(0);
  CHECK(ParseCertificateDer(root).error().code() == Code::kInvalidArgument);
}

TEST_CASE("x509 fixtures wrong leaves report their flaw") {
  const std::string dir = std::string(KEYWARD_FIXTURES_DIR) + "/spiffe/svid/x509svid/";
  const auto load = [&](const std::string& name) {
    auto blocks = PemToDerList(ReadFile(dir + name), "CERTIFICATE");
    REQUIRE(blocks.has_value());
    std::vector<CertificateInfo> infos;
    for (const Bytes& der : *blocks) {
      auto info = ParseCertificateDer(der);
      REQUIRE(info.has_value());
      infos.push_back(*info);
    }
    return infos;
  };

  const auto good = load("good-leaf-only.pem");
  REQUIRE(good.size() == 1);
  CHECK_FALSE(good[0].is_ca);
  CHECK(good[0].digital_signature);
  CHECK(good[0].uri_sans == std::vector<std::string>{"spiffe://example.org/workload-1"});

  const auto ca_true = load("wrong-leaf-ca-true.pem");
  REQUIRE(ca_true.size() == 1);
  CHECK(ca_true[0].is_ca);

  const auto cert_sign = load("wrong-leaf-cert-sign.pem");
  REQUIRE(cert_sign.size() == 1);
  CHECK_FALSE(cert_sign[0].is_ca);
  CHECK(cert_sign[0].key_cert_sign);

  const auto crl_sign = load("wrong-leaf-crl-sign.pem");
  REQUIRE(crl_sign.size() == 1);
  CHECK(crl_sign[0].crl_sign);
  CHECK_FALSE(crl_sign[0].key_cert_sign);

  const auto empty_id = load("wrong-leaf-empty-id.pem");
  REQUIRE(empty_id.size() == 1);
  CHECK(empty_id[0].uri_sans.empty());

  const auto no_signature = load("wrong-leaf-no-digital-signature.pem");
  REQUIRE(no_signature.size() == 1);
  CHECK_FALSE(no_signature[0].digital_signature);

  const auto no_ca = load("wrong-intermediate-no-ca.pem");
  REQUIRE(no_ca.size() == 2);
  CHECK_FALSE(no_ca[1].is_ca);
  CHECK(no_ca[1].key_cert_sign);

  const auto no_key_cert_sign = load("wrong-intermediate-no-key-cert-sign.pem");
  REQUIRE(no_key_cert_sign.size() == 2);
  CHECK(no_key_cert_sign[1].is_ca);
  CHECK_FALSE(no_key_cert_sign[1].key_cert_sign);

  const auto chain = load("good-leaf-and-intermediate.pem");
  REQUIRE(chain.size() == 2);
  CHECK(VerifySignedBy(chain[0].der, chain[1].der).has_value());
  CHECK_FALSE(VerifySignedBy(chain[1].der, chain[0].der).has_value());

  CHECK(PemToDerList(ReadFile(dir + "not-pem"), "CERTIFICATE").error().code() ==
        Code::kInvalidArgument);
  auto corrupt = PemToDerList(ReadFile(dir + "corrupt-cert.pem"), "CERTIFICATE");
  REQUIRE(corrupt.has_value());  // valid base64 of the text "CORRUPT"
  REQUIRE(corrupt->size() == 1);
  CHECK(ParseCertificateDer((*corrupt)[0]).error().code() == Code::kInvalidArgument);
}

}  // TEST_SUITE

}  // namespace kw::vault::pki
