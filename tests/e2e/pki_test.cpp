// The SPIFFE CA (pki/) through the real binary. The openssl command line checks X.509-SVIDs
// and runs an mTLS handshake between two SVIDs (s_server, s_client). The jose npm library
// (tests/e2e/jose) checks JWT-SVIDs. Further cases cover trust bundles, rotation, federation,
// the CRL, and the CA key's PKCS#11 attributes in the dev server's SoftHSM token.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"
#include "tests/unit/vault/auth/test_certificates.hpp"

extern char** environ;

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kOpenssl = "/usr/bin/openssl";
constexpr std::string_view kPkcs11Tool = "/usr/bin/pkcs11-tool";
constexpr std::string_view kSoftHsmModule = "/usr/lib/softhsm/libsofthsm2.so";
// The dev server's token label and PIN file (api/server_main.cpp, PrepareDev).
constexpr std::string_view kDevTokenLabel = "keyward-dev";
constexpr std::string_view kRole = "web-workloads";
constexpr std::string_view kAllowedPattern = "spiffe://example.org/ns/*";

std::time_t NowSeconds() { return std::time(nullptr); }

std::string ReadFile(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

bool Contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

std::size_t CountOf(const std::string& text, const std::string& needle) {
  std::size_t count = 0;
  for (std::size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + needle.size())) {
    ++count;
  }
  return count;
}

// Returns the response body, or a note that no response arrived.
std::string BodyText(const httplib::Result& result) {
  return result ? result->body : std::string("(no response)");
}

// Returns the `errors` of a Vault error reply joined with "; ".
std::string ErrorsOf(const httplib::Result& result) {
  const json body = BodyOf(result);
  if (!body.is_object() || !body.contains("errors") || !body["errors"].is_array()) return "";
  std::string joined;
  for (const json& error : body["errors"]) {
    if (!joined.empty()) joined += "; ";
    joined += error.is_string() ? error.get<std::string>() : error.dump();
  }
  return joined;
}

// Returns the absolute path of `name` found on $PATH, or nullopt.
std::optional<fs::path> FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return std::nullopt;
  std::stringstream entries(path);
  std::string directory;
  while (std::getline(entries, directory, ':')) {
    if (directory.empty()) continue;
    const fs::path candidate = fs::path(directory) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return fs::absolute(candidate);
  }
  return std::nullopt;
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

// Encodes `bytes` as unpadded base64url, the JWS segment form.
std::string EncodeBase64Url(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int length = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                     reinterpret_cast<const unsigned char*>(bytes.data()),
                                     static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(length));
  while (out.ends_with('=')) out.pop_back();
  for (char& c : out) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return out;
}

// Wraps the standard-base64 DER of an `x5c` entry as a PEM certificate.
std::string PemFromX5c(const std::string& base64_der) {
  std::string pem = "-----BEGIN CERTIFICATE-----\n";
  for (std::size_t at = 0; at < base64_der.size(); at += 64) {
    pem += base64_der.substr(at, 64) + "\n";
  }
  return pem + "-----END CERTIFICATE-----\n";
}

// Returns the base64 body of the first PEM block in `pem`, without line breaks.
std::string PemBody(const std::string& pem) {
  const std::size_t begin = pem.find('\n', pem.find("-----BEGIN "));
  const std::size_t end = pem.find("-----END ");
  if (begin == std::string::npos || end == std::string::npos || end < begin) return "";
  std::string body;
  for (char c : pem.substr(begin + 1, end - begin - 1)) {
    if (c != '\n' && c != '\r') body += c;
  }
  return body;
}

struct X509Deleter {
  void operator()(X509* certificate) const { X509_free(certificate); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

X509Ptr ParseCertificate(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

std::time_t ToUnix(const ASN1_TIME* time) {
  std::tm parts{};
  if (ASN1_TIME_to_tm(time, &parts) != 1) return -1;
  return ::timegm(&parts);
}

// Converts Vault's serial form "3a:0f:..." into the upper-case hex that `openssl crl -text`
// prints, without leading zero bytes.
std::string OpensslSerial(const std::string& serial) {
  std::string hex;
  for (char c : serial) {
    if (c != ':') hex += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  while (hex.size() > 2 && hex.starts_with("00")) hex.erase(0, 2);
  return hex;
}

// A child process that runs until it is killed (openssl s_server here). Its output goes to
// files in `log_dir`. The destructor kills it.
class BackgroundProcess {
 public:
  BackgroundProcess(const std::string& program, const std::vector<std::string>& args,
                    const fs::path& log_dir, const std::string& name)
      : stdout_path_(log_dir / (name + ".stdout")), stderr_path_(log_dir / (name + ".stderr")) {
    std::vector<std::string> argv_text = {program};
    argv_text.insert(argv_text.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& arg : argv_text) argv.push_back(arg.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, stdout_path_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&actions, 2, stderr_path_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (posix_spawn(&pid_, program.c_str(), &actions, nullptr, argv.data(), environ) != 0) {
      pid_ = -1;
    }
    posix_spawn_file_actions_destroy(&actions);
  }
  ~BackgroundProcess() { Kill(); }
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  // Waits up to `timeout` for `text` on stdout. Returns false when the child exits first.
  bool WaitForOutput(const std::string& text, std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (Contains(ReadFile(stdout_path_), text)) return true;
      if (pid_ < 0 || ::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  std::string Output() const { return ReadFile(stdout_path_) + ReadFile(stderr_path_); }

 private:
  fs::path stdout_path_;
  fs::path stderr_path_;
  pid_t pid_ = -1;
};

// Returns a TCP port on 127.0.0.1 that was free a moment ago.
std::uint16_t FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  std::uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  ::close(fd);
  return port;
}

// The jose verifier in tests/e2e/jose: node from $PATH and the npm project with its
// node_modules (installed by scripts/setup.sh).
struct Jose {
  fs::path node;
  fs::path project;

  // Runs verify.mjs and returns its JSON line; `exit_code` gets its exit code.
  json Verify(const std::string& jwks, const std::string& token, const std::string& audience,
              int* exit_code) const {
    const ExitResult run =
        RunProgram(node.string(), {(project / "verify.mjs").string(), jwks, token, audience}, {},
                   std::chrono::seconds(30));
    *exit_code = run.exited ? run.exit_code : -1;
    const json line = json::parse(run.out, nullptr, /*allow_exceptions=*/false);
    if (line.is_discarded()) return json{{"ok", false}, {"error", run.out + run.err}};
    return line;
  }
};

// Returns the jose verifier, or nullopt after failing the test (CI=true) or printing why the
// jose checks are skipped.
std::optional<Jose> FindJose() {
  std::string missing;
  const std::optional<fs::path> node = FindOnPath("node");
  const fs::path project = fs::path(KEYWARD_SOURCE_DIR) / "tests" / "e2e" / "jose";
  if (!node) {
    missing = "node is not on PATH";
  } else if (!fs::is_regular_file(project / "node_modules" / "jose" / "package.json")) {
    missing = (project / "node_modules").string() + " has no jose; run scripts/setup.sh";
  }
  if (missing.empty()) return Jose{*node, project};
  const char* ci = std::getenv("CI");
  if (ci != nullptr && std::string(ci) == "true") {
    FAIL_CHECK("the jose verifier is missing: " << missing);
  } else {
    MESSAGE("skipping the jose checks: " << missing);
  }
  return std::nullopt;
}

// A dev server with a root CA for example.org and a role allowing spiffe://example.org/ns/*,
// plus a scratch directory for keys and certificates.
struct Pki {
  explicit Pki(bool with_role = true) {
    REQUIRE(server.Start());
    client = server.Client();
    anonymous = server.AnonymousClient();
    auto generated =
        PostJson(*client, "/v1/pki/root/generate/internal", {{"trust_domain", "example.org"}});
    REQUIRE_MESSAGE(StatusOf(generated) == 200, BodyText(generated));
    root = BodyOf(generated)["data"];
    if (with_role) WriteRole(std::string(kRole), {{"allowed_spiffe_ids", {kAllowedPattern}}});
  }

  void WriteRole(const std::string& name, const json& body) {
    auto written = PostJson(*client, "/v1/pki/roles/" + name, body);
    REQUIRE_MESSAGE((StatusOf(written) == 200 || StatusOf(written) == 204), BodyText(written));
  }

  // Issues an X.509-SVID; REQUIREs 200 and returns `data`.
  json Issue(const std::string& spiffe_id, const json& extra = json::object(),
             const std::string& role = std::string(kRole)) {
    json body = extra;
    body["spiffe_id"] = spiffe_id;
    auto issued = PostJson(*client, "/v1/pki/issue/" + role, body);
    REQUIRE_MESSAGE(StatusOf(issued) == 200, BodyText(issued));
    return BodyOf(issued)["data"];
  }

  json IssueJwt(const std::string& spiffe_id, const json& audience, const json& extra = {}) {
    json body = extra.is_object() ? extra : json::object();
    body["spiffe_id"] = spiffe_id;
    body["audience"] = audience;
    auto issued = PostJson(*client, "/v1/pki/jwt/issue/" + std::string(kRole), body);
    REQUIRE_MESSAGE(StatusOf(issued) == 200, BodyText(issued));
    return BodyOf(issued)["data"];
  }

  // GETs a no-token endpoint; REQUIREs 200 and returns the raw body.
  std::string GetRaw(const std::string& path) {
    auto response = anonymous->Get(path);
    REQUIRE_MESSAGE(StatusOf(response) == 200,
                    path << " -> " << StatusOf(response) << " " << (BodyText(response)));
    return response->body;
  }

  json Bundle() {
    const json bundle = json::parse(GetRaw("/v1/pki/bundle"), nullptr, false);
    REQUIRE(bundle.is_object());
    return bundle;
  }

  // Writes every x509-svid authority of GET pki/bundle into one PEM file.
  fs::path WriteBundleRoots(const std::string& name) {
    const json bundle = Bundle();
    std::string pem;
    for (const json& key : bundle["keys"]) {
      if (key.value("use", "") == "x509-svid") pem += PemFromX5c(key["x5c"][0].get<std::string>());
    }
    return Write(name, pem);
  }

  fs::path Write(const std::string& name, const std::string& text) {
    const fs::path path = scratch.path() / name;
    WriteTextFile(path, text);
    return path;
  }

  // Writes an issue reply's certificate, chain and key as <prefix>.pem, <prefix>-chain.pem
  // and <prefix>-key.pem; returns the certificate's path.
  fs::path WriteSvid(const std::string& prefix, const json& issued) {
    std::string chain;
    for (const json& pem : issued.value("ca_chain", json::array())) chain += pem.get<std::string>();
    Write(prefix + "-chain.pem", chain);
    if (issued.contains("private_key")) {
      Write(prefix + "-key.pem", issued["private_key"].get<std::string>());
    }
    return Write(prefix + ".pem", issued["certificate"].get<std::string>());
  }

  DevServer server;
  TempDir scratch;
  std::unique_ptr<httplib::Client> client;
  std::unique_ptr<httplib::Client> anonymous;
  json root;
};

// Runs `openssl verify -x509_strict` of `cert` against `ca_file`; returns the output, and
// whether openssl accepted it.
bool OpensslVerifies(const fs::path& ca_file, const fs::path& cert, std::string* output,
                     const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args = {"verify", "-x509_strict", "-CAfile", ca_file.string()};
  args.insert(args.end(), extra.begin(), extra.end());
  args.push_back(cert.string());
  const ExitResult run = Openssl(args);
  *output = run.out + run.err;
  return run.exited && run.exit_code == 0;
}

std::string CertificateText(const fs::path& cert) {
  const ExitResult run = Openssl({"x509", "-noout", "-text", "-in", cert.string()});
  REQUIRE_MESSAGE(run.exit_code == 0, run.err);
  return run.out;
}

// Returns the DER SubjectPublicKeyInfo, as PEM, of a certificate, key or CSR file.
std::string PublicKeyOf(const std::string& command, const fs::path& file) {
  std::vector<std::string> args;
  if (command == "x509") args = {"x509", "-noout", "-pubkey", "-in", file.string()};
  if (command == "pkey") args = {"pkey", "-pubout", "-in", file.string()};
  if (command == "req") args = {"req", "-noout", "-pubkey", "-in", file.string()};
  const ExitResult run = Openssl(args);
  REQUIRE_MESSAGE(run.exit_code == 0, run.err);
  return run.out;
}

// Returns the JSON of a JWT segment (header or payload).
json DecodeSegment(const std::string& segment) {
  const std::optional<std::string> text = DecodeBase64(segment);
  if (!text) return nullptr;
  return json::parse(*text, nullptr, /*allow_exceptions=*/false);
}

std::vector<std::string> SplitToken(const std::string& token) {
  std::vector<std::string> parts;
  std::stringstream stream(token);
  std::string part;
  while (std::getline(stream, part, '.')) parts.push_back(part);
  return parts;
}

}  // namespace

TEST_SUITE("e2e/pki") {
  TEST_CASE("pki root generate returns the CA and refuses a second") {
    Pki t(/*with_role=*/false);
    json fields = t.root;
    fields.erase("certificate");
    fields.erase("issuing_ca");
    CAPTURE(fields);
    CHECK(t.root["trust_domain"] == "example.org");
    CHECK(t.root["key_version"] == 1);
    CHECK(t.root["expiration"].is_number_integer());
    const std::string serial = t.root.value("serial_number", "");
    CHECK_MESSAGE(std::regex_match(serial, std::regex("[0-9a-f]{2}(:[0-9a-f]{2})*")), serial);

    const fs::path root_file = t.Write("root.pem", t.root["certificate"].get<std::string>());
    const std::string text = CertificateText(root_file);
    CHECK(Contains(text, "CA:TRUE"));
    CHECK(Contains(text, "Certificate Sign"));
    CHECK(Contains(text, "ecdsa-with-SHA256"));
    CHECK(Contains(text, "prime256v1"));
    // A signing certificate may carry a SPIFFE ID, and then only the trust domain's, no path.
    if (Contains(text, "URI:")) {
      CHECK(CountOf(text, "URI:") == 1);
      CHECK(Contains(text, "URI:spiffe://example.org\n"));
    }
    CHECK(PemBody(t.GetRaw("/v1/pki/ca/pem")) == PemBody(t.root["certificate"].get<std::string>()));

    auto again =
        PostJson(*t.client, "/v1/pki/root/generate/internal", {{"trust_domain", "example.org"}});
    CHECK(StatusOf(again) == 400);
  }

  TEST_CASE("pki issue SVID verifies with openssl and has SVID extensions") {
    Pki t;
    const std::string spiffe_id = "spiffe://example.org/ns/web";
    const std::time_t before = NowSeconds();
    const json issued = t.Issue(spiffe_id, {{"ttl", "10s"}});
    const std::time_t after = NowSeconds();
    CHECK(issued["spiffe_id"] == spiffe_id);
    CHECK(issued["private_key_type"] == "ec");
    CHECK(Contains(issued.value("private_key", ""), "-----BEGIN PRIVATE KEY-----"));
    CHECK(PemBody(issued.value("issuing_ca", "")) == PemBody(t.root["certificate"]));
    CHECK(issued["ca_chain"].is_array());
    const std::string serial = issued.value("serial_number", "");
    CHECK_MESSAGE(std::regex_match(serial, std::regex("[0-9a-f]{2}(:[0-9a-f]{2})*")), serial);

    const fs::path cert = t.WriteSvid("svid", issued);
    const fs::path roots = t.WriteBundleRoots("bundle-roots.pem");
    std::string output;
    CHECK_MESSAGE(OpensslVerifies(roots, cert, &output), output);
    CHECK_MESSAGE(OpensslVerifies(roots, cert, &output,
                                  {"-untrusted", (t.scratch.path() / "svid-chain.pem").string(),
                                   "-purpose", "sslserver"}),
                  output);
    CHECK_MESSAGE(OpensslVerifies(roots, cert, &output, {"-purpose", "sslclient"}), output);

    const std::string text = CertificateText(cert);
    CAPTURE(text);
    CHECK(CountOf(text, "URI:") == 1);
    CHECK(Contains(text, "URI:" + spiffe_id + "\n"));
    CHECK_FALSE(Contains(text, "DNS:"));
    CHECK(Contains(text, "CA:FALSE"));
    CHECK(Contains(text, "X509v3 Key Usage: critical"));
    CHECK(Contains(text, "Digital Signature"));
    CHECK_FALSE(Contains(text, "Certificate Sign"));
    CHECK_FALSE(Contains(text, "CRL Sign"));
    CHECK(Contains(text, "TLS Web Server Authentication, TLS Web Client Authentication"));
    CHECK(Contains(text, "Signature Algorithm: ecdsa-with-SHA256"));
    CHECK(Contains(text, "NIST CURVE: P-256"));

    // The returned key belongs to the certificate.
    CHECK(PublicKeyOf("x509", cert) == PublicKeyOf("pkey", t.scratch.path() / "svid-key.pem"));

    // NotBefore is the issue time less the role's default 30 s skew, NotAfter the issue time
    // plus the 10 s TTL.
    const X509Ptr parsed = ParseCertificate(issued["certificate"].get<std::string>());
    REQUIRE(parsed);
    const std::time_t not_before = ToUnix(X509_get0_notBefore(parsed.get()));
    const std::time_t not_after = ToUnix(X509_get0_notAfter(parsed.get()));
    CHECK(not_before >= before - 30 - 5);
    CHECK(not_before <= after - 30 + 5);
    CHECK(not_after - not_before == 10 + 30);
    CHECK(issued["expiration"] == not_after);
  }

  TEST_CASE("pki issue with an rsa role adds keyEncipherment") {
    Pki t;
    t.WriteRole("rsa", {{"allowed_spiffe_ids", {kAllowedPattern}}, {"key_type", "rsa"}});
    const json issued = t.Issue("spiffe://example.org/ns/legacy", json::object(), "rsa");
    CHECK(issued["private_key_type"] == "rsa");
    const fs::path cert = t.WriteSvid("rsa", issued);
    const std::string text = CertificateText(cert);
    CAPTURE(text);
    CHECK(Contains(text, "Public-Key: (2048 bit)"));
    CHECK(Contains(text, "Digital Signature, Key Encipherment"));
    CHECK_FALSE(Contains(text, "Certificate Sign"));
    CHECK(Contains(text, "Signature Algorithm: ecdsa-with-SHA256"));
    CHECK(PublicKeyOf("x509", cert) == PublicKeyOf("pkey", t.scratch.path() / "rsa-key.pem"));
    std::string output;
    CHECK_MESSAGE(OpensslVerifies(t.WriteBundleRoots("roots.pem"), cert, &output), output);
  }

  TEST_CASE("pki sign ignores the names in the CSR") {
    Pki t;
    const fs::path csr = t.scratch.path() / "evil.csr";
    const fs::path key = t.scratch.path() / "evil-key.pem";
    const ExitResult generated =
        Openssl({"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", key.string(), "-out", csr.string(), "-subj", "/CN=evil", "-addext",
                 "subjectAltName=URI:spiffe://evil.org/x,DNS:evil.com"});
    REQUIRE_MESSAGE(generated.exit_code == 0, generated.err);

    const std::string spiffe_id = "spiffe://example.org/ns/signed";
    auto signed_reply = PostJson(*t.client, "/v1/pki/sign/" + std::string(kRole),
                                 {{"csr", ReadFile(csr)}, {"spiffe_id", spiffe_id}});
    REQUIRE_MESSAGE(StatusOf(signed_reply) == 200, BodyText(signed_reply));
    const json issued = BodyOf(signed_reply)["data"];
    CHECK_FALSE(issued.contains("private_key"));
    CHECK(issued["spiffe_id"] == spiffe_id);

    const fs::path cert = t.WriteSvid("signed", issued);
    const std::string text = CertificateText(cert);
    CAPTURE(text);
    CHECK(CountOf(text, "URI:") == 1);
    CHECK(Contains(text, "URI:" + spiffe_id + "\n"));
    CHECK_FALSE(Contains(text, "evil"));
    CHECK_FALSE(Contains(text, "DNS:"));
    CHECK(PublicKeyOf("x509", cert) == PublicKeyOf("req", csr));
    std::string output;
    CHECK_MESSAGE(OpensslVerifies(t.WriteBundleRoots("roots.pem"), cert, &output), output);
  }

  TEST_CASE("pki SVIDs complete an mTLS handshake") {
    Pki t;
    t.WriteSvid("server", t.Issue("spiffe://example.org/ns/server"));
    t.WriteSvid("client", t.Issue("spiffe://example.org/ns/client"));
    const fs::path roots = t.WriteBundleRoots("roots.pem");
    const fs::path dir = t.scratch.path();

    // A client SVID for the same SPIFFE ID from a CA the server does not trust.
    const std::time_t now = NowSeconds();
    const testing::TestCert other_ca = testing::IssueCa("other CA", now - 3600, now + 3600);
    const testing::TestCert stranger = testing::IssueCert(
        testing::LeafSpec("spiffe://example.org/ns/client", "", now - 60, now + 3600), &other_ca);
    t.Write("stranger.pem", stranger.Pem());
    t.Write("stranger-key.pem", stranger.KeyPem());

    const std::uint16_t port = FreeLoopbackPort();
    REQUIRE(port != 0);
    BackgroundProcess server(
        std::string(kOpenssl),
        {"s_server", "-accept", "127.0.0.1:" + std::to_string(port), "-cert",
         (dir / "server.pem").string(), "-key", (dir / "server-key.pem").string(), "-CAfile",
         roots.string(), "-Verify", "1", "-verify_return_error", "-www"},
        dir, "s_server");
    REQUIRE_MESSAGE(server.WaitForOutput("ACCEPT", std::chrono::seconds(20)), server.Output());

    const auto connect = [&](const std::string& name, const std::vector<std::string>& extra) {
      std::vector<std::string> args = {"s_client",
                                       "-connect",
                                       "127.0.0.1:" + std::to_string(port),
                                       "-cert",
                                       (dir / (name + ".pem")).string(),
                                       "-key",
                                       (dir / (name + "-key.pem")).string(),
                                       "-CAfile",
                                       roots.string(),
                                       "-verify_return_error"};
      args.insert(args.end(), extra.begin(), extra.end());
      return RunProgram(std::string(kOpenssl), args, {}, std::chrono::seconds(20));
    };

    const ExitResult tls13 = connect("client", {});
    CAPTURE(tls13.out);
    CAPTURE(tls13.err);
    CHECK(tls13.exited);
    CHECK(tls13.exit_code == 0);
    CHECK(Contains(tls13.out, "Verify return code: 0 (ok)"));

    // Under TLS 1.2 the server verifies the client certificate before the handshake ends,
    // so the client's exit code shows the server's verdict too.
    const ExitResult tls12 = connect("client", {"-tls1_2"});
    CAPTURE(tls12.out);
    CAPTURE(tls12.err);
    CHECK(tls12.exit_code == 0);
    CHECK(Contains(tls12.out, "Verify return code: 0 (ok)"));

    const ExitResult rejected = connect("stranger", {"-tls1_2"});
    CAPTURE(rejected.out);
    CAPTURE(rejected.err);
    CHECK(rejected.exited);
    CHECK(rejected.exit_code != 0);
    CHECK(Contains(rejected.err, "alert unknown ca"));
    server.Kill();
    CHECK(Contains(server.Output(), "verify error"));
  }

  TEST_CASE("pki JWT-SVID verified by jose and by jwt/verify") {
    Pki t;
    const std::string spiffe_id = "spiffe://example.org/ns/reporter";
    const json issued = t.IssueJwt(spiffe_id, "reports");
    const std::string token = issued.value("token", "");
    CHECK(issued["spiffe_id"] == spiffe_id);
    CHECK(issued["expires_at"].is_number_integer());

    const std::vector<std::string> parts = SplitToken(token);
    REQUIRE(parts.size() == 3);
    const json header = DecodeSegment(parts[0]);
    const json payload = DecodeSegment(parts[1]);
    CAPTURE(header);
    CAPTURE(payload);
    const std::optional<std::string> signature = DecodeBase64(parts[2]);
    REQUIRE(signature);
    CHECK(signature->size() == 64);  // raw r || s, not DER
    CHECK(header["alg"] == "ES256");
    CHECK(header["typ"] == "JWT");
    CHECK(header["kid"].is_string());
    CHECK(header["kid"] == issued["kid"]);
    for (const auto& item : header.items()) {
      const std::string name = item.key();
      CHECK_MESSAGE((name == "alg" || name == "kid" || name == "typ"),
                    "unexpected header " << name);
    }
    CHECK(payload["sub"] == spiffe_id);
    CHECK((payload["aud"] == "reports" || payload["aud"] == json({"reports"})));
    CHECK(payload["exp"] == issued["expires_at"]);
    // The default JWT TTL is 5 minutes.
    CHECK(payload["exp"].get<std::int64_t>() - NowSeconds() <= 300 + 5);

    const std::string jwks_text = t.GetRaw("/.well-known/jwks.json");
    const json jwks = json::parse(jwks_text, nullptr, false);
    REQUIRE(jwks.is_object());
    REQUIRE(jwks["keys"].is_array());
    bool kid_published = false;
    for (const json& key : jwks["keys"]) kid_published |= key.value("kid", "") == header["kid"];
    CHECK(kid_published);
    CHECK(json::parse(t.GetRaw("/v1/pki/jwks"), nullptr, false) == jwks);

    // The server's own verifier.
    auto verified =
        PostJson(*t.client, "/v1/pki/jwt/verify", {{"token", token}, {"audience", "reports"}});
    CHECK_MESSAGE(StatusOf(verified) == 200, BodyText(verified));
    CHECK(BodyOf(verified)["data"]["spiffe_id"] == spiffe_id);
    CHECK(BodyOf(verified)["data"]["expires_at"] == issued["expires_at"]);

    auto other =
        PostJson(*t.client, "/v1/pki/jwt/verify", {{"token", token}, {"audience", "other"}});
    CHECK(StatusOf(other) == 400);
    CHECK_FALSE(Contains(ErrorsOf(other), parts[2]));

    std::string tampered_signature = parts[2];
    tampered_signature[10] = tampered_signature[10] == 'A' ? 'B' : 'A';
    const std::string tampered = parts[0] + "." + parts[1] + "." + tampered_signature;
    auto bad_signature =
        PostJson(*t.client, "/v1/pki/jwt/verify", {{"token", tampered}, {"audience", "reports"}});
    CHECK(StatusOf(bad_signature) == 400);
    CHECK_FALSE(Contains(ErrorsOf(bad_signature), tampered_signature));

    json forged_payload = payload;
    forged_payload["sub"] = "spiffe://example.org/ns/admin";
    const std::string forged =
        parts[0] + "." + EncodeBase64Url(forged_payload.dump()) + "." + parts[2];
    auto bad_claims =
        PostJson(*t.client, "/v1/pki/jwt/verify", {{"token", forged}, {"audience", "reports"}});
    CHECK(StatusOf(bad_claims) == 400);

    // jose, an independent implementation, with the published JWKS.
    const std::optional<Jose> jose = FindJose();
    if (!jose) return;
    const fs::path jwks_file = t.Write("jwks.json", jwks_text);
    int exit_code = -1;
    const json accepted = jose->Verify(jwks_file.string(), token, "reports", &exit_code);
    CHECK_MESSAGE(exit_code == 0, accepted.dump());
    CHECK(accepted["ok"] == true);
    CHECK(accepted["sub"] == spiffe_id);
    CHECK(accepted["exp"] == issued["expires_at"]);

    const json by_url =
        jose->Verify(t.server.url() + "/.well-known/jwks.json", token, "reports", &exit_code);
    CHECK_MESSAGE(exit_code == 0, by_url.dump());

    const json wrong_audience = jose->Verify(jwks_file.string(), token, "other", &exit_code);
    CHECK(exit_code == 1);
    CHECK(wrong_audience["ok"] == false);
    CHECK_MESSAGE(Contains(wrong_audience.value("error", ""), "aud"), wrong_audience.dump());

    const json rejected_tampered =
        jose->Verify(jwks_file.string(), tampered, "reports", &exit_code);
    CHECK(exit_code == 1);
    CHECK(rejected_tampered["ok"] == false);
  }

  TEST_CASE("pki JWT-SVID with a short TTL expires") {
    Pki t;
    const json issued =
        t.IssueJwt("spiffe://example.org/ns/brief", json::array({"reports"}), {{"ttl", 2}});
    const std::string token = issued.value("token", "");
    const std::int64_t expires_at = issued.value("expires_at", std::int64_t{0});
    CHECK(expires_at - NowSeconds() <= 2 + 1);

    const std::optional<Jose> jose = FindJose();
    if (!jose) return;
    const fs::path jwks_file = t.Write("jwks.json", t.GetRaw("/.well-known/jwks.json"));
    int exit_code = -1;
    const json fresh = jose->Verify(jwks_file.string(), token, "reports", &exit_code);
    CHECK_MESSAGE(exit_code == 0, fresh.dump());

    // jose applies no clock tolerance by default: the token is invalid from second `exp` on.
    // Waits at most 5 s.
    for (int i = 0; i < 50 && NowSeconds() <= expires_at; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    REQUIRE(NowSeconds() > expires_at);
    const json expired = jose->Verify(jwks_file.string(), token, "reports", &exit_code);
    CHECK(exit_code == 1);
    CHECK_MESSAGE(Contains(expired.value("error", ""), "exp"), expired.dump());
  }

  TEST_CASE("pki invalid SPIFFE IDs rejected naming the ID") {
    Pki t;
    // The invalid SPIFFE ID test vectors of go-spiffe's spiffeid package, with the rule each
    // breaks.
    const std::vector<std::pair<std::string, std::string>> kInvalid = {
        {"", "empty"},
        {"Spiffe://example.org/x", "scheme"},
        {"SPIFFE://example.org/x", "scheme"},
        {"https://example.org/x", "scheme"},
        {"spiffe:/example.org/x", "scheme"},
        {"spiffe:example.org/x", "scheme"},
        {"spiffe://", "missing trust domain"},
        {"spiffe:///", "missing trust domain"},
        {"spiffe:///x", "missing trust domain"},
        {"spiffe://Example.org/x", "trust-domain character"},
        {"spiffe://example.org:8443/x", "port"},
        {"spiffe://user@example.org/x", "userinfo"},
        {"spiffe://[::1]/x", "IPv6"},
        {"spiffe://%65xample.org/x", "trust-domain character"},
        {"spiffe://ex$mple.org/x", "trust-domain character"},
        {"spiffe://example.org/", "trailing slash"},
        {"spiffe://example.org/x/", "trailing slash"},
        {"spiffe://example.org//x", "empty segment"},
        {"spiffe://example.org/./x", "dot segment"},
        {"spiffe://example.org/x/..", "dot segment"},
        {"spiffe://example.org/..", "dot segment"},
        {"spiffe://example.org/x?y=1", "query"},
        {"spiffe://example.org/x#frag", "fragment"},
        {"spiffe://example.org/%41", "percent-encoding"},
        {"spiffe://example.org/a b", "path character"},
        {"spiffe://example.org/a~b", "path character"},
        {"spiffe://example.org/a:b", "path character"},
        {"spiffe://example.org/a@b", "path character"},
        {"spiffe://example.org/a;b", "path character"},
        {"spiffe://example.org/a=b", "path character"},
        {"spiffe://example.org/a^b", "path character"},
        {"spiffe://example.org/a\\b", "path character"},
        {"spiffe://example.org/caf\xc3\xa9", "non-ASCII"},
    };
    const std::string issue_path = "/v1/pki/issue/" + std::string(kRole);
    const std::string jwt_path = "/v1/pki/jwt/issue/" + std::string(kRole);
    for (const auto& entry : kInvalid) {
      // Plain references, not a structured binding, because clang 14 cannot capture a binding
      // in the lambda that CAPTURE expands to.
      const auto& spiffe_id = entry.first;
      const auto& rule = entry.second;
      CAPTURE(spiffe_id);
      CAPTURE(rule);
      for (const std::string& path : {issue_path, jwt_path}) {
        CAPTURE(path);
        auto reply = PostJson(*t.client, path, {{"spiffe_id", spiffe_id}, {"audience", "reports"}});
        const std::string errors = ErrorsOf(reply);
        CHECK(StatusOf(reply) == 400);
        if (spiffe_id.empty()) {
          // An empty ID cannot be quoted usefully: the message names the field instead.
          CHECK_MESSAGE(Contains(errors, "spiffe_id"), errors);
        } else {
          CHECK_MESSAGE(Contains(errors, spiffe_id), errors);
        }
      }
    }

    // Valid IDs that the role does not allow, and the trust domain's root ID, which is no
    // workload identity.
    const std::vector<std::string> kNotAllowed = {
        "spiffe://example.org/other/x",
        "spiffe://other.org/ns/x",
        "spiffe://example.org",
    };
    for (const std::string& spiffe_id : kNotAllowed) {
      CAPTURE(spiffe_id);
      for (const std::string& path : {issue_path, jwt_path}) {
        CAPTURE(path);
        auto reply = PostJson(*t.client, path, {{"spiffe_id", spiffe_id}, {"audience", "reports"}});
        const std::string errors = ErrorsOf(reply);
        CHECK(StatusOf(reply) == 400);
        CHECK_MESSAGE(Contains(errors, spiffe_id), errors);
        if (spiffe_id == "spiffe://example.org/other/x") {
          CHECK_MESSAGE(Contains(errors, std::string(kRole)), errors);
        }
      }
    }

    // Nothing was issued.
    auto listed = Send(*t.client, "LIST", "/v1/pki/certs");
    CHECK(StatusOf(listed) == 404);
  }

  TEST_CASE("pki bundle is served without a token") {
    Pki t;
    const json bundle = t.Bundle();
    CAPTURE(bundle);
    REQUIRE(bundle["keys"].is_array());
    CHECK(bundle["spiffe_sequence"].is_number_integer());
    CHECK(bundle["spiffe_refresh_hint"].is_number_integer());
    CHECK(bundle["spiffe_refresh_hint"].get<std::int64_t>() > 0);

    int x509_keys = 0;
    int jwt_keys = 0;
    for (const json& key : bundle["keys"]) {
      CAPTURE(key);
      CHECK(key["kty"] == "EC");
      CHECK(key["crv"] == "P-256");
      const std::optional<std::string> x = DecodeBase64(key.value("x", ""));
      const std::optional<std::string> y = DecodeBase64(key.value("y", ""));
      REQUIRE(x);
      REQUIRE(y);
      CHECK(x->size() == 32);
      CHECK(y->size() == 32);
      CHECK_FALSE(key.contains("d"));
      if (key["use"] == "x509-svid") {
        ++x509_keys;
        CHECK_FALSE(key.contains("kid"));
        REQUIRE(key["x5c"].is_array());
        CHECK(key["x5c"].size() == 1);
        CHECK(key["x5c"][0] == PemBody(t.root["certificate"].get<std::string>()));
      } else if (key["use"] == "jwt-svid") {
        ++jwt_keys;
        CHECK(key["kid"].is_string());
        CHECK_FALSE(key.value("kid", "").empty());
        CHECK_FALSE(key.contains("x5c"));
      } else {
        FAIL_CHECK("unexpected use " << key["use"]);
      }
    }
    CHECK(x509_keys == 1);
    CHECK(jwt_keys == 1);

    // The CA certificate and chain, the JWKS and the CRL need no token either.
    CHECK(Contains(t.GetRaw("/v1/pki/ca/pem"), "-----BEGIN CERTIFICATE-----"));
    CHECK(Contains(t.GetRaw("/v1/pki/ca_chain"), "-----BEGIN CERTIFICATE-----"));
    CHECK(json::parse(t.GetRaw("/v1/pki/jwks"), nullptr, false).is_object());
    CHECK(json::parse(t.GetRaw("/.well-known/jwks.json"), nullptr, false).is_object());
    CHECK(Contains(t.GetRaw("/v1/pki/crl/pem"), "-----BEGIN X509 CRL-----"));
    CHECK_FALSE(t.GetRaw("/v1/pki/crl").empty());
    // Everything else in pki/ does.
    CHECK(StatusOf(t.anonymous->Get("/v1/pki/roles/" + std::string(kRole))) == 403);
    CHECK(StatusOf(PostJson(*t.anonymous, "/v1/pki/issue/" + std::string(kRole),
                            {{"spiffe_id", "spiffe://example.org/ns/x"}})) == 403);
  }

  TEST_CASE("pki rotate publishes both keys and keeps old SVIDs valid") {
    Pki t;
    const std::int64_t sequence_before = t.Bundle()["spiffe_sequence"].get<std::int64_t>();
    const fs::path old_root = t.Write("old-root.pem", t.root["certificate"].get<std::string>());
    const fs::path old_svid = t.WriteSvid("old", t.Issue("spiffe://example.org/ns/old"));
    const json old_jwt = t.IssueJwt("spiffe://example.org/ns/old", "reports");

    auto rotated = PostJson(*t.client, "/v1/pki/rotate", {{"activation_delay", 0}});
    REQUIRE_MESSAGE(StatusOf(rotated) == 200, BodyText(rotated));
    const json rotation = BodyOf(rotated)["data"];
    CHECK(rotation["key_version"] == 2);
    const fs::path new_root = t.Write("new-root.pem", rotation.value("certificate", ""));

    const json bundle = t.Bundle();
    CAPTURE(bundle);
    int x509_keys = 0;
    int jwt_keys = 0;
    for (const json& key : bundle["keys"]) {
      x509_keys += key["use"] == "x509-svid" ? 1 : 0;
      jwt_keys += key["use"] == "jwt-svid" ? 1 : 0;
    }
    CHECK(x509_keys == 2);
    CHECK(jwt_keys == 2);
    CHECK(bundle["spiffe_sequence"].get<std::int64_t>() > sequence_before);
    CHECK(PemBody(t.GetRaw("/v1/pki/ca/pem")) == PemBody(rotation.value("certificate", "")));

    const fs::path new_svid = t.WriteSvid("new", t.Issue("spiffe://example.org/ns/new"));
    const fs::path roots = t.WriteBundleRoots("roots.pem");
    std::string output;
    CHECK_MESSAGE(OpensslVerifies(new_root, new_svid, &output), output);
    CHECK_FALSE(OpensslVerifies(old_root, new_svid, &output));
    CHECK_MESSAGE(OpensslVerifies(roots, new_svid, &output), output);
    CHECK_MESSAGE(OpensslVerifies(roots, old_svid, &output), output);

    const json new_jwt = t.IssueJwt("spiffe://example.org/ns/new", "reports");
    CHECK(new_jwt["kid"] != old_jwt["kid"]);
    for (const json& issued : {old_jwt, new_jwt}) {
      auto verified = PostJson(*t.client, "/v1/pki/jwt/verify",
                               {{"token", issued["token"]}, {"audience", "reports"}});
      CHECK_MESSAGE(StatusOf(verified) == 200, BodyText(verified));
    }

    const std::optional<Jose> jose = FindJose();
    if (!jose) return;
    const fs::path jwks_file = t.Write("jwks.json", t.GetRaw("/.well-known/jwks.json"));
    for (const json& issued : {old_jwt, new_jwt}) {
      int exit_code = -1;
      const json result = jose->Verify(jwks_file.string(), issued["token"].get<std::string>(),
                                       "reports", &exit_code);
      CHECK_MESSAGE(exit_code == 0, result.dump());
    }
  }

  TEST_CASE("pki federated bundles from the go-spiffe fixtures") {
    Pki t(/*with_role=*/false);
    // The fixtures README names the accepted files `*_valid_*`. spiffebundle_missing_kid has a
    // jwt-svid key without kid and spiffebundle_multiple_x509 an x509-svid entry with two
    // certificates; go-spiffe rejects both.
    const fs::path dir = fs::path(KEYWARD_FIXTURES_DIR) / "spiffe" / "bundle" / "spiffebundle";
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir)) files.push_back(entry.path());
    std::sort(files.begin(), files.end());
    REQUIRE(files.size() >= 3);

    std::set<std::string> accepted;
    int index = 0;
    for (const fs::path& file : files) {
      const std::string name = file.filename().string();
      const bool valid = Contains(name, "_valid_");
      const std::string trust_domain = "federated" + std::to_string(++index) + ".example";
      CAPTURE(name);
      auto written =
          PostJson(*t.client, "/v1/pki/bundles/" + trust_domain, {{"bundle", ReadFile(file)}});
      const int status = StatusOf(written);
      if (valid) {
        CHECK_MESSAGE((status == 200 || status == 204), BodyText(written));
        accepted.insert(trust_domain);
        auto read = t.client->Get("/v1/pki/bundles/" + trust_domain);
        CHECK(StatusOf(read) == 200);
      } else {
        CHECK_MESSAGE(status == 400, BodyText(written));
        CHECK_FALSE(ErrorsOf(written).empty());
        CHECK(StatusOf(t.client->Get("/v1/pki/bundles/" + trust_domain)) == 404);
      }
    }

    // A bundle given as a JSON object rather than a string.
    const json object = json::parse(ReadFile(dir / "spiffebundle_valid_1.json"));
    auto as_object = PostJson(*t.client, "/v1/pki/bundles/object.example", {{"bundle", object}});
    CHECK_MESSAGE((StatusOf(as_object) == 200 || StatusOf(as_object) == 204), BodyText(as_object));
    accepted.insert("object.example");

    // Structurally broken bundles.
    for (const json& broken :
         {json("not json"), json({{"spiffe_sequence", 1}}), json({{"keys", "x"}})}) {
      CAPTURE(broken);
      CHECK(StatusOf(PostJson(*t.client, "/v1/pki/bundles/broken.example", {{"bundle", broken}})) ==
            400);
    }

    auto listed = Send(*t.client, "LIST", "/v1/pki/bundles");
    REQUIRE(StatusOf(listed) == 200);
    const json listed_data = BodyOf(listed)["data"];
    CAPTURE(listed_data);
    std::set<std::string> keys;
    for (const json& key : listed_data["keys"]) keys.insert(key.get<std::string>());
    CHECK(keys == accepted);

    auto deleted = Send(*t.client, "DELETE", "/v1/pki/bundles/object.example");
    CHECK((StatusOf(deleted) == 200 || StatusOf(deleted) == 204));
    CHECK(StatusOf(t.client->Get("/v1/pki/bundles/object.example")) == 404);
  }

  TEST_CASE("pki CA private key stays in the HSM") {
    Pki t;
    const json issued = t.Issue("spiffe://example.org/ns/keyholder");
    auto rotated = PostJson(*t.client, "/v1/pki/rotate", {{"activation_delay", 0}});
    REQUIRE_MESSAGE(StatusOf(rotated) == 200, BodyText(rotated));

    // The dev server keeps its SoftHSM configuration and PIN in its data directory.
    const fs::path data = t.server.data_dir();
    std::string pin = ReadFile(data / "hsm-pin");
    while (!pin.empty() && (pin.back() == '\n' || pin.back() == '\r')) pin.pop_back();
    REQUIRE_FALSE(pin.empty());
    const ExitResult listed = RunProgram(
        std::string(kPkcs11Tool),
        {"--module", std::string(kSoftHsmModule), "--token-label", std::string(kDevTokenLabel),
         "--login", "--pin", pin, "--list-objects", "--type", "privkey"},
        {"SOFTHSM2_CONF=" + (data / "softhsm2.conf").string()});
    CAPTURE(listed.out);
    CAPTURE(listed.err);
    REQUIRE(listed.exit_code == 0);
    // One CA key per key version: the first root and the rotated one. The audit checkpoint
    // key is the one Ed25519 key.
    CHECK(CountOf(listed.out, "Private Key Object; EC\n") == 2);
    CHECK(CountOf(listed.out, "Private Key Object; EC_EDWARDS") == 1);
    CHECK(
        CountOf(listed.out, "Access:     sensitive, always sensitive, never extractable, local") ==
        CountOf(listed.out, "Private Key Object"));

    // The database holds no private key in the clear: neither a PEM block nor the workload
    // key that pki/issue returned.
    const std::string private_key = issued.value("private_key", "");
    REQUIRE_FALSE(private_key.empty());
    const std::string key_line = PemBody(private_key).substr(0, 64);
    REQUIRE(key_line.size() == 64);
    for (const fs::path& file :
         {t.server.db_path(), fs::path(t.server.db_path().string() + "-wal")}) {
      CAPTURE(file);
      CHECK_FALSE(FileContains(file, "PRIVATE KEY"));
      CHECK_FALSE(FileContains(file, private_key));
      CHECK_FALSE(FileContains(file, key_line));
    }
  }

  TEST_CASE("pki revoked serial is listed in the CRL") {
    Pki t;
    const json revoked = t.Issue("spiffe://example.org/ns/revoked");
    const json valid = t.Issue("spiffe://example.org/ns/valid");
    const std::string serial = revoked.value("serial_number", "");
    const fs::path revoked_cert = t.WriteSvid("revoked", revoked);
    const fs::path valid_cert = t.WriteSvid("valid", valid);
    const fs::path roots = t.WriteBundleRoots("roots.pem");

    auto revoke = PostJson(*t.client, "/v1/pki/revoke", {{"serial_number", serial}});
    REQUIRE_MESSAGE(StatusOf(revoke) == 200, BodyText(revoke));
    const std::int64_t revocation_time =
        BodyOf(revoke)["data"].value("revocation_time", std::int64_t{0});
    CHECK(revocation_time >= NowSeconds() - 60);

    auto record = t.client->Get("/v1/pki/cert/" + serial);
    REQUIRE(StatusOf(record) == 200);
    CHECK(BodyOf(record)["data"]["revocation_time"] == revocation_time);
    CHECK(BodyOf(record)["data"]["spiffe_id"] == "spiffe://example.org/ns/revoked");

    const std::string crl_pem = t.GetRaw("/v1/pki/crl/pem");
    const fs::path crl = t.Write("crl.pem", crl_pem);
    const ExitResult text = Openssl({"crl", "-noout", "-text", "-in", crl.string()});
    CAPTURE(text.out);
    REQUIRE_MESSAGE(text.exit_code == 0, text.err);
    CHECK(Contains(text.out, "Serial Number: " + OpensslSerial(serial) + "\n"));
    CHECK_FALSE(Contains(
        text.out, "Serial Number: " + OpensslSerial(valid.value("serial_number", "")) + "\n"));
    CHECK(Contains(text.out, "Signature Algorithm: ecdsa-with-SHA256"));

    // The DER form is the same CRL.
    const std::string crl_der = t.GetRaw("/v1/pki/crl");
    const std::optional<std::string> pem_der = DecodeBase64(PemBody(crl_pem));
    REQUIRE(pem_der);
    CHECK(crl_der == *pem_der);

    std::string output;
    CHECK_FALSE(
        OpensslVerifies(roots, revoked_cert, &output, {"-crl_check", "-CRLfile", crl.string()}));
    CHECK_MESSAGE(Contains(output, "certificate revoked"), output);
    // The CRL is signed by the CA, so a certificate not on it passes the same check.
    CHECK_MESSAGE(
        OpensslVerifies(roots, valid_cert, &output, {"-crl_check", "-CRLfile", crl.string()}),
        output);
  }

  TEST_CASE("pki LIST certs shows serials with SPIFFE IDs") {
    Pki t;
    const json first = t.Issue("spiffe://example.org/ns/first");
    const json second = t.Issue("spiffe://example.org/ns/second", {{"ttl", "2m"}});
    auto listed = Send(*t.client, "LIST", "/v1/pki/certs");
    REQUIRE_MESSAGE(StatusOf(listed) == 200, BodyText(listed));
    const json data = BodyOf(listed)["data"];
    CAPTURE(data);
    std::set<std::string> keys;
    for (const json& key : data["keys"]) keys.insert(key.get<std::string>());
    CHECK(keys == std::set<std::string>{first["serial_number"], second["serial_number"]});
    for (const json& issued : {first, second}) {
      const json info = data["key_info"][issued["serial_number"].get<std::string>()];
      CHECK(info["spiffe_id"] == issued["spiffe_id"]);
      CHECK(info["expiration"] == issued["expiration"]);
      CHECK(info["revoked"] == false);
    }

    auto record = t.client->Get("/v1/pki/cert/" + second["serial_number"].get<std::string>());
    REQUIRE(StatusOf(record) == 200);
    CHECK(BodyOf(record)["data"]["spiffe_id"] == "spiffe://example.org/ns/second");
    CHECK(BodyOf(record)["data"]["revocation_time"] == 0);
    CHECK(PemBody(BodyOf(record)["data"].value("certificate", "")) ==
          PemBody(second["certificate"].get<std::string>()));
  }
}

}  // namespace kw::e2e
