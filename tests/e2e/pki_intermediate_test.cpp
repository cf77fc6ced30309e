// The SPIFFE CA (pki/) as an intermediate under an external root made with the openssl command
// line, rotation in that mode, what the audit log keeps of issued SVIDs, and the public
// endpoints while the server is sealed. Each case runs a real dev server.
#include <doctest/doctest.h>
#include <openssl/evp.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kOpenssl = "/usr/bin/openssl";
constexpr std::string_view kRole = "web-workloads";
constexpr std::string_view kNoCaYet = "no CA certificate is installed yet";

bool Contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

// Returns the response body, or a note that no response arrived.
std::string BodyText(const httplib::Result& result) {
  return result ? result->body : std::string("(no response)");
}

ExitResult Openssl(const std::vector<std::string>& args) {
  return RunProgram(std::string(kOpenssl), args, {}, std::chrono::seconds(30));
}

// Decodes base64url (unpadded) or standard base64. Returns nullopt when it is not base64.
std::optional<std::string> DecodeBase64(std::string text) {
  for (char& c : text) {
    if (c == '-') c = '+';
    if (c == '_') c = '/';
  }
  while (text.size() % 4 != 0) text += '=';
  std::string out(text.size() / 4 * 3, '\0');
  const int length = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                     reinterpret_cast<const unsigned char*>(text.data()),
                                     static_cast<int>(text.size()));
  if (length < 0) return std::nullopt;
  std::size_t padding = 0;
  for (std::size_t i = text.size(); i > 0 && text[i - 1] == '='; --i) ++padding;
  out.resize(static_cast<std::size_t>(length) - padding);
  return out;
}

// Returns the DER of every PEM block in `pem`, in order.
std::vector<std::string> PemDers(const std::string& pem) {
  std::vector<std::string> ders;
  std::size_t at = pem.find("-----BEGIN ");
  while (at != std::string::npos) {
    const std::size_t body_begin = pem.find('\n', at);
    const std::size_t body_end = pem.find("-----END ", at);
    if (body_begin == std::string::npos || body_end == std::string::npos) break;
    std::string body;
    for (char c : pem.substr(body_begin + 1, body_end - body_begin - 1)) {
      if (c != '\n' && c != '\r') body += c;
    }
    ders.push_back(DecodeBase64(body).value_or("(not base64)"));
    at = pem.find("-----BEGIN ", body_end + 9);
  }
  return ders;
}

// Returns the DER of the first PEM block in `pem`, or an empty string when there is none.
std::string FirstDer(const std::string& pem) {
  const std::vector<std::string> ders = PemDers(pem);
  return ders.empty() ? std::string() : ders.front();
}

std::string ReadFile(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

// Extensions of an intermediate CA certificate as the external root signs it.
constexpr std::string_view kIntermediateExtensions =
    "basicConstraints=critical,CA:TRUE\n"
    "keyUsage=critical,keyCertSign,cRLSign\n"
    "subjectAltName=URI:spiffe://example.org\n"
    "subjectKeyIdentifier=hash\n"
    "authorityKeyIdentifier=keyid:always\n";

// The same without basicConstraints, so the certificate is no CA.
constexpr std::string_view kNoCaExtensions =
    "keyUsage=critical,keyCertSign,cRLSign\n"
    "subjectAltName=URI:spiffe://example.org\n"
    "subjectKeyIdentifier=hash\n"
    "authorityKeyIdentifier=keyid:always\n";

// A dev server, a scratch directory and the openssl steps of an external CA.
struct Fixture {
  Fixture() {
    REQUIRE(server.Start());
    client = server.Client();
    anonymous = server.AnonymousClient();
  }

  fs::path Write(const std::string& name, const std::string& text) {
    const fs::path path = scratch.path() / name;
    WriteTextFile(path, text);
    return path;
  }

  fs::path Path(const std::string& name) const { return scratch.path() / name; }

  // Creates a self-signed P-256 root <name>.pem with key <name>-key.pem. Each entry of `extra`
  // is one more -addext value.
  fs::path MakeExternalRoot(const std::string& name, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", "/CN=" + name, "-days", "30",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", Path(name + "-key.pem").string(), "-out", Path(name + ".pem").string()};
    for (const std::string& extension : extra) {
      args.push_back("-addext");
      args.push_back(extension);
    }
    const ExitResult run = Openssl(args);
    REQUIRE_MESSAGE(run.exit_code == 0, run.err);
    return Path(name + ".pem");
  }

  // Signs the CSR PEM `csr` with root <root>.pem, writes <out>.pem and returns its text.
  std::string SignCsr(const std::string& csr, const std::string& root, const std::string& out,
                      std::string_view extensions = kIntermediateExtensions) {
    const fs::path csr_file = Write(out + ".csr", csr);
    const fs::path extfile = Write(out + ".cnf", "[ext]\n" + std::string(extensions));
    const ExitResult run = Openssl(
        {"x509", "-req", "-in", csr_file.string(), "-CA", Path(root + ".pem").string(), "-CAkey",
         Path(root + "-key.pem").string(), "-set_serial", "0x" + RandomHex(12), "-days", "7",
         "-sha256", "-extfile", extfile.string(), "-extensions", "ext", "-out",
         Path(out + ".pem").string()});
    REQUIRE_MESSAGE(run.exit_code == 0, run.err);
    return ReadFile(Path(out + ".pem"));
  }

  httplib::Result SetSigned(const std::string& pem_chain) {
    return PostJson(*client, "/v1/pki/intermediate/set-signed", {{"certificate", pem_chain}});
  }

  void WriteRole() {
    auto written = PostJson(*client, "/v1/pki/roles/" + std::string(kRole),
                            {{"allowed_spiffe_ids", {"spiffe://example.org/ns/*"}}});
    REQUIRE_MESSAGE((StatusOf(written) == 200 || StatusOf(written) == 204), BodyText(written));
  }

  httplib::Result TryIssue(const std::string& spiffe_id) {
    return PostJson(*client, "/v1/pki/issue/" + std::string(kRole), {{"spiffe_id", spiffe_id}});
  }

  // Issues an X.509-SVID; REQUIREs 200 and returns `data`.
  json Issue(const std::string& spiffe_id) {
    auto issued = TryIssue(spiffe_id);
    REQUIRE_MESSAGE(StatusOf(issued) == 200, BodyText(issued));
    return BodyOf(issued)["data"];
  }

  json IssueJwt(const std::string& spiffe_id, const std::string& audience) {
    auto issued = PostJson(*client, "/v1/pki/jwt/issue/" + std::string(kRole),
                           {{"spiffe_id", spiffe_id}, {"audience", audience}});
    REQUIRE_MESSAGE(StatusOf(issued) == 200, BodyText(issued));
    return BodyOf(issued)["data"];
  }

  // GETs a no-token endpoint; REQUIREs 200 and returns the raw body.
  std::string GetRaw(const std::string& path) {
    auto response = anonymous->Get(path);
    REQUIRE_MESSAGE(StatusOf(response) == 200, path << " -> " << StatusOf(response) << " "
                                                    << BodyText(response));
    return response->body;
  }

  // Generates the intermediate's key in the HSM and returns the CSR PEM.
  std::string GenerateIntermediate() {
    auto generated = PostJson(*client, "/v1/pki/intermediate/generate/internal",
                              {{"trust_domain", "example.org"}});
    REQUIRE_MESSAGE(StatusOf(generated) == 200, BodyText(generated));
    const std::string csr = BodyOf(generated)["data"].value("csr", "");
    REQUIRE(Contains(csr, "-----BEGIN CERTIFICATE REQUEST-----"));
    return csr;
  }

  DevServer server;
  TempDir scratch;
  std::unique_ptr<httplib::Client> client;
  std::unique_ptr<httplib::Client> anonymous;
};

// Runs `openssl verify -x509_strict` of `leaf` against `root`, with `intermediate` as the
// untrusted chain. Returns whether openssl accepted it; `output` gets what it printed.
bool VerifiesThrough(const fs::path& root, const fs::path& intermediate, const fs::path& leaf,
                     std::string* output) {
  const ExitResult run = Openssl({"verify", "-x509_strict", "-CAfile", root.string(),
                                  "-untrusted", intermediate.string(), leaf.string()});
  *output = run.out + run.err;
  return run.exited && run.exit_code == 0 && Contains(run.out, ": OK");
}

// Returns the raw x‖y of the P-256 public key in a CSR or certificate PEM, as a JWK contains it.
std::string EcPointOf(const std::string& command, const fs::path& file) {
  const ExitResult run = Openssl({command, "-noout", "-pubkey", "-in", file.string()});
  REQUIRE_MESSAGE(run.exit_code == 0, run.err);
  const std::string spki = FirstDer(run.out);
  // A P-256 SubjectPublicKeyInfo ends with the uncompressed point 0x04 ‖ x ‖ y.
  REQUIRE(spki.size() > 65);
  return spki.substr(spki.size() - 64);
}

// Returns the bundle's keys with `use`.
std::vector<json> BundleKeys(const json& bundle, const std::string& use) {
  std::vector<json> keys;
  for (const json& key : bundle.value("keys", json::array())) {
    if (key.value("use", "") == use) keys.push_back(key);
  }
  return keys;
}

bool IsHmac(const json& value) {
  return value.is_string() && value.get<std::string>().starts_with("hmac-sha256:");
}

// Returns the newest audit record for `path` (below /v1/); null when there is none.
json LatestAuditRecord(const DevServer& server, const std::string& path) {
  Database db(server.db_path());
  json found = nullptr;
  for (const json& record : AuditRecords(db)) {
    if (record.is_object() && record.value("path", "") == path) found = record;
  }
  return found;
}

}  // namespace

TEST_SUITE("e2e/pki-intermediate") {
  TEST_CASE("pki intermediate under an external root") {
    Fixture t;
    const fs::path root = t.MakeExternalRoot("ext-root");
    const std::string root_pem = ReadFile(root);
    const std::string csr = t.GenerateIntermediate();
    t.WriteRole();
    const fs::path csr_file = t.Write("server.csr", csr);

    // Until set-signed succeeds there is no CA certificate to issue with.
    auto early = t.TryIssue("spiffe://example.org/ns/early");
    CHECK(StatusOf(early) == 400);
    CHECK_MESSAGE(Contains(BodyText(early), std::string(kNoCaYet)), BodyText(early));

    // Rejected chains, each followed by a check that nothing was installed.
    const std::string signed_pem = t.SignCsr(csr, "ext-root", "intermediate");
    // Each rejected chain with a phrase that its error message must contain.
    struct Rejected {
      std::string name;
      std::string chain;
      std::string reason;
    };
    std::vector<Rejected> rejected;
    rejected.push_back({"intermediate without its root", signed_pem, "self-signed root"});

    const fs::path other_key = t.Path("other-key.pem");
    const ExitResult other_csr = Openssl(
        {"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj",
         "/CN=other", "-keyout", other_key.string(), "-out", t.Path("other.csr").string()});
    REQUIRE_MESSAGE(other_csr.exit_code == 0, other_csr.err);
    rejected.push_back(
        {"intermediate for another key",
         t.SignCsr(ReadFile(t.Path("other.csr")), "ext-root", "other-int") + root_pem,
         "matches no CSR"});

    rejected.push_back({"intermediate without basicConstraints",
                        t.SignCsr(csr, "ext-root", "no-ca-int", kNoCaExtensions) + root_pem,
                        "not a CA"});

    const fs::path constrained_root =
        t.MakeExternalRoot("constrained-root",
                           {"nameConstraints=critical,permitted;URI:.other.org"});
    rejected.push_back(
        {"root permitting only URI .other.org",
         t.SignCsr(csr, "constrained-root", "constrained-int") + ReadFile(constrained_root),
         "permitted subtree violation"});

    for (const Rejected& attempt : rejected) {
      CAPTURE(attempt.name);
      auto reply = t.SetSigned(attempt.chain);
      CHECK_MESSAGE(StatusOf(reply) == 400, BodyText(reply));
      CHECK_MESSAGE(Contains(BodyText(reply), attempt.reason), BodyText(reply));
      auto issue = t.TryIssue("spiffe://example.org/ns/early");
      CHECK(StatusOf(issue) == 400);
      CHECK_MESSAGE(Contains(BodyText(issue), std::string(kNoCaYet)), BodyText(issue));
      CHECK(StatusOf(t.anonymous->Get("/v1/pki/ca/pem")) != 200);
    }

    // The correct chain: intermediate, then the external root.
    auto accepted = t.SetSigned(signed_pem + root_pem);
    REQUIRE_MESSAGE(StatusOf(accepted) == 200, BodyText(accepted));
    CHECK(BodyOf(accepted)["data"]["trust_domain"] == "example.org");
    const fs::path intermediate = t.Path("intermediate.pem");

    const json issued = t.Issue("spiffe://example.org/ns/web");
    const fs::path leaf = t.Write("leaf.pem", issued.value("certificate", ""));
    std::string output;
    CHECK_MESSAGE(VerifiesThrough(root, intermediate, leaf, &output), output);
    REQUIRE(issued["ca_chain"].is_array());
    REQUIRE(issued["ca_chain"].size() >= 1);
    CHECK(FirstDer(issued["ca_chain"][0].get<std::string>()) == FirstDer(signed_pem));

    // The bundle's only X.509 authority is the external root, and its JWT key is the HSM key
    // that the CSR carries.
    const json bundle = json::parse(t.GetRaw("/v1/pki/bundle"), nullptr, false);
    CAPTURE(bundle);
    const std::vector<json> x509_keys = BundleKeys(bundle, "x509-svid");
    REQUIRE(x509_keys.size() == 1);
    REQUIRE(x509_keys[0]["x5c"].size() == 1);
    CHECK(DecodeBase64(x509_keys[0]["x5c"][0].get<std::string>()) == FirstDer(root_pem));
    const std::vector<json> jwt_keys = BundleKeys(bundle, "jwt-svid");
    REQUIRE(jwt_keys.size() == 1);
    const std::string point = EcPointOf("req", csr_file);
    CHECK(DecodeBase64(jwt_keys[0].value("x", "")) == point.substr(0, 32));
    CHECK(DecodeBase64(jwt_keys[0].value("y", "")) == point.substr(32));

    const std::vector<std::string> chain = PemDers(t.GetRaw("/v1/pki/ca_chain"));
    REQUIRE(chain.size() == 2);
    CHECK(chain[0] == FirstDer(signed_pem));
    CHECK(chain[1] == FirstDer(root_pem));
    CHECK(FirstDer(t.GetRaw("/v1/pki/ca/pem")) == FirstDer(signed_pem));
  }

  TEST_CASE("pki intermediate rotation keeps the external root") {
    Fixture t;
    const fs::path root = t.MakeExternalRoot("ext-root");
    const std::string root_pem = ReadFile(root);
    const std::string first_pem = t.SignCsr(t.GenerateIntermediate(), "ext-root", "first-int");
    auto first_set = t.SetSigned(first_pem + root_pem);
    REQUIRE_MESSAGE(StatusOf(first_set) == 200, BodyText(first_set));
    t.WriteRole();
    const fs::path old_leaf =
      t.Write("old.pem", t.Issue("spiffe://example.org/ns/old").value("certificate", ""));

    auto rotated = PostJson(*t.client, "/v1/pki/rotate", {{"activation_delay", 0}});
    REQUIRE_MESSAGE(StatusOf(rotated) == 200, BodyText(rotated));
    const json rotation = BodyOf(rotated)["data"];
    CHECK(rotation["key_version"] == 2);
    const std::string csr = rotation.value("csr", "");
    REQUIRE(Contains(csr, "-----BEGIN CERTIFICATE REQUEST-----"));

    // Until set-signed, the first intermediate keeps issuing.
    const fs::path between =
        t.Write("between.pem", t.Issue("spiffe://example.org/ns/between").value("certificate", ""));
    std::string output;
    CHECK_MESSAGE(VerifiesThrough(root, t.Path("first-int.pem"), between, &output), output);

    const std::string second_pem = t.SignCsr(csr, "ext-root", "second-int");
    auto second_set = t.SetSigned(second_pem + root_pem);
    REQUIRE_MESSAGE(StatusOf(second_set) == 200, BodyText(second_set));
    CHECK(BodyOf(second_set)["data"]["key_version"] == 2);

    const json issued = t.Issue("spiffe://example.org/ns/new");
    const fs::path new_leaf = t.Write("new.pem", issued.value("certificate", ""));
    CHECK(FirstDer(issued["ca_chain"][0].get<std::string>()) == FirstDer(second_pem));
    CHECK_MESSAGE(VerifiesThrough(root, t.Path("second-int.pem"), new_leaf, &output), output);
    CHECK_FALSE(VerifiesThrough(root, t.Path("first-int.pem"), new_leaf, &output));
    CHECK_MESSAGE(VerifiesThrough(root, t.Path("first-int.pem"), old_leaf, &output), output);
    CHECK(FirstDer(t.GetRaw("/v1/pki/ca/pem")) == FirstDer(second_pem));

    // Both key versions sign under the same external root, so it stays the only X.509
    // authority while both JWT keys are published.
    const json bundle = json::parse(t.GetRaw("/v1/pki/bundle"), nullptr, false);
    CAPTURE(bundle);
    const std::vector<json> x509_keys = BundleKeys(bundle, "x509-svid");
    REQUIRE(x509_keys.size() == 1);
    CHECK(DecodeBase64(x509_keys[0]["x5c"][0].get<std::string>()) == FirstDer(root_pem));
    CHECK(BundleKeys(bundle, "jwt-svid").size() == 2);
  }

  TEST_CASE("pki audit records hide keys and tokens") {
    Fixture t;
    auto generated =
        PostJson(*t.client, "/v1/pki/root/generate/internal", {{"trust_domain", "example.org"}});
    REQUIRE_MESSAGE(StatusOf(generated) == 200, BodyText(generated));
    t.WriteRole();
    const json issued = t.Issue("spiffe://example.org/ns/audited");
    const json jwt = t.IssueJwt("spiffe://example.org/ns/audited", "reports");
    const std::string private_key = issued.value("private_key", "");
    const std::string token = jwt.value("token", "");
    REQUIRE(Contains(private_key, "PRIVATE KEY"));
    REQUIRE_FALSE(token.empty());

    const json issue_record = LatestAuditRecord(t.server, "pki/issue/" + std::string(kRole));
    REQUIRE(issue_record.is_object());
    CAPTURE(issue_record);
    CHECK(issue_record["request"]["spiffe_id"] == "spiffe://example.org/ns/audited");
    const json issue_response = issue_record["response"]["data"];
    CHECK(issue_response["spiffe_id"] == issued["spiffe_id"]);
    CHECK(issue_response["serial_number"] == issued["serial_number"]);
    CHECK(IsHmac(issue_response["private_key"]));
    CHECK(IsHmac(issue_response["certificate"]));
    CHECK(IsHmac(issue_response["issuing_ca"]));

    const json jwt_record = LatestAuditRecord(t.server, "pki/jwt/issue/" + std::string(kRole));
    REQUIRE(jwt_record.is_object());
    CAPTURE(jwt_record);
    const json jwt_response = jwt_record["response"]["data"];
    CHECK(jwt_response["spiffe_id"] == "spiffe://example.org/ns/audited");
    CHECK(IsHmac(jwt_response["token"]));

    // Neither secret is anywhere in the database files, in whole or in part.
    const std::size_t key_begin = private_key.find('\n') + 1;
    const std::string key_line = private_key.substr(key_begin, 64);
    const std::string token_signature = token.substr(token.rfind('.') + 1);
    REQUIRE(key_line.size() == 64);
    REQUIRE(token_signature.size() >= 80);
    for (const fs::path& file :
         {t.server.db_path(), fs::path(t.server.db_path().string() + "-wal")}) {
      CAPTURE(file);
      CHECK_FALSE(FileContains(file, private_key));
      CHECK_FALSE(FileContains(file, key_line));
      CHECK_FALSE(FileContains(file, token));
      CHECK_FALSE(FileContains(file, token_signature));
    }
  }

  TEST_CASE("pki public endpoints while sealed") {
    Fixture t;
    auto generated =
        PostJson(*t.client, "/v1/pki/root/generate/internal", {{"trust_domain", "example.org"}});
    REQUIRE_MESSAGE(StatusOf(generated) == 200, BodyText(generated));
    t.WriteRole();
    const std::vector<std::string> kPublic = {"/v1/pki/bundle", "/v1/pki/ca/pem",
                                              "/.well-known/jwks.json"};
    const std::string bundle_before = t.GetRaw("/v1/pki/bundle");

    REQUIRE(StatusOf(t.client->Put("/v1/sys/seal", "", "application/json")) == 204);
    for (const std::string& path : kPublic) {
      CAPTURE(path);
      auto sealed = t.anonymous->Get(path);
      CHECK_MESSAGE(StatusOf(sealed) == 503, BodyText(sealed));
    }

    std::string pin = ReadFile(t.server.data_dir() / "hsm-pin");
    while (!pin.empty() && (pin.back() == '\n' || pin.back() == '\r')) pin.pop_back();
    REQUIRE_FALSE(pin.empty());
    auto unsealed =
        t.anonymous->Put("/v1/sys/unseal", json({{"key", pin}}).dump(), "application/json");
    REQUIRE(StatusOf(unsealed) == 200);
    REQUIRE(BodyOf(unsealed)["sealed"] == false);

    for (const std::string& path : kPublic) t.GetRaw(path);
    CHECK(json::parse(t.GetRaw("/v1/pki/bundle"), nullptr, false)["keys"] ==
          json::parse(bundle_before, nullptr, false)["keys"]);

    // The CA key signs again after the unseal.
    const json issued = t.Issue("spiffe://example.org/ns/after-unseal");
    const fs::path root = t.Write("root.pem", BodyOf(generated)["data"].value("certificate", ""));
    const fs::path leaf = t.Write("leaf.pem", issued.value("certificate", ""));
    const ExitResult verified =
        Openssl({"verify", "-x509_strict", "-CAfile", root.string(), leaf.string()});
    CHECK_MESSAGE(verified.exit_code == 0, (verified.out + verified.err));
    const json jwt = t.IssueJwt("spiffe://example.org/ns/after-unseal", "reports");
    auto jwt_verified = PostJson(*t.client, "/v1/pki/jwt/verify",
                                 {{"token", jwt["token"]}, {"audience", "reports"}});
    CHECK_MESSAGE(StatusOf(jwt_verified) == 200, BodyText(jwt_verified));
  }
}

}  // namespace kw::e2e
