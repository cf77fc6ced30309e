// Secrets at rest. The test plants random markers through every endpoint that takes a secret
// and collects the secrets the server hands out. Then it searches every byte the server wrote
// (data directory, SoftHSM token directory, audit file sink, stdout and stderr) for each of
// them in plain, hex and base64 form. One SIGKILL in the middle leaves the WAL as a crash
// leaves it.
#include <doctest/doctest.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cctype>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/postgres_harness.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kSoftHsmModule = "/usr/lib/softhsm/libsofthsm2.so";

// A secret the test planted or received, under a name for the failure message.
struct Secret {
  std::string name;
  std::string value;
};

// Returns a fresh 24-character marker, so that any hit is this test's secret.
std::string Marker() { return RandomHex(12); }

std::string HexOf(const std::string& bytes, bool upper) {
  static constexpr char kLower[] = "0123456789abcdef";
  static constexpr char kUpper[] = "0123456789ABCDEF";
  const char* digits = upper ? kUpper : kLower;
  std::string hex;
  for (const unsigned char byte : bytes) {
    hex += digits[byte >> 4];
    hex += digits[byte & 0x0F];
  }
  return hex;
}

std::string Base64Of(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int length = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                     reinterpret_cast<const unsigned char*>(bytes.data()),
                                     static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(length));
  return out;
}

// A form of a secret to search for, and its name for the failure message.
struct Form {
  std::string name;
  std::string bytes;
};

// Returns the forms that `value` can take in a file: as is, hex in both cases, and base64
// (standard and URL-safe) at each of the three byte alignments it can start at inside a
// longer encoded text. An alignment keeps only the base64 characters that encode bytes of
// `value` alone.
std::vector<Form> FormsOf(const std::string& value) {
  std::vector<Form> forms = {{"plain", value}, {"hex", HexOf(value, false)},
                             {"HEX", HexOf(value, true)}};
  for (std::size_t shift = 0; shift < 3; ++shift) {
    const std::string encoded = Base64Of(std::string(shift, '\0') + value);
    const std::size_t first_group = (shift + 2) / 3;
    const std::size_t end_group = (shift + value.size()) / 3;
    if (end_group <= first_group + 3) continue;  // too short to be distinctive
    std::string middle = encoded.substr(first_group * 4, (end_group - first_group) * 4);
    forms.push_back({"base64+" + std::to_string(shift), middle});
    for (char& c : middle) {
      if (c == '+') c = '-';
      if (c == '/') c = '_';
    }
    forms.push_back({"base64url+" + std::to_string(shift), middle});
  }
  return forms;
}

std::string ReadBytes(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

// Returns one line per hit of any form of any secret in any regular file under `roots`
// (files or directories), naming the secret, the form, the file and the byte offset.
std::vector<std::string> FindSecrets(const std::vector<fs::path>& roots,
                                     const std::vector<Secret>& secrets) {
  std::vector<fs::path> files;
  for (const fs::path& root : roots) {
    if (fs::is_regular_file(root)) files.push_back(root);
    if (!fs::is_directory(root)) continue;
    for (const auto& entry : fs::recursive_directory_iterator(root)) {
      if (entry.is_regular_file()) files.push_back(entry.path());
    }
  }
  std::vector<std::string> hits;
  for (const fs::path& file : files) {
    const std::string bytes = ReadBytes(file);
    for (const Secret& secret : secrets) {
      for (const Form& form : FormsOf(secret.value)) {
        const std::size_t offset = bytes.find(form.bytes);
        if (offset == std::string::npos) continue;
        hits.push_back(secret.name + " (" + form.name + ") in " + file.string() + " at offset " +
                       std::to_string(offset));
      }
    }
  }
  return hits;
}

// Returns the private scalar of a PEM private key (EC "priv", RSA "d", or the raw Ed25519
// key): the bytes that must not reach a file, unlike the public parts that the stored
// certificate repeats.
std::string PrivateScalar(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  REQUIRE_MESSAGE(key != nullptr, "the issued private_key is not a PEM private key");
  std::string scalar;
  std::size_t raw_length = 0;
  if (EVP_PKEY_get_raw_private_key(key, nullptr, &raw_length) == 1) {
    scalar.resize(raw_length);
    EVP_PKEY_get_raw_private_key(key, reinterpret_cast<unsigned char*>(scalar.data()),
                                 &raw_length);
  } else {
    BIGNUM* number = nullptr;
    if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &number) != 1) {
      EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_D, &number);
    }
    if (number != nullptr) {
      scalar.resize(static_cast<std::size_t>(BN_num_bytes(number)));
      BN_bn2bin(number, reinterpret_cast<unsigned char*>(scalar.data()));
      BN_clear_free(number);
    }
  }
  EVP_PKEY_free(key);
  REQUIRE_MESSAGE(scalar.size() >= 24, "could not read the private scalar of the issued key");
  return scalar;
}

// A -config server whose HSM PIN is a marker, with a file audit sink, as an operator runs it.
// Its logs go to logs/, its data to data/, the SoftHSM token to tokens/, the sink to audit/.
class LeakServer {
 public:
  LeakServer() {
    for (const char* sub : {"tokens", "data", "audit", "logs"}) {
      fs::create_directories(root() / sub);
      fs::permissions(root() / sub, fs::perms::owner_all, fs::perm_options::replace);
    }
    WriteTextFile(root() / "softhsm2.conf",
                  "directories.tokendir = " + (root() / "tokens").string() +
                      "\nobjectstore.backend = file\nlog.level = ERROR\n");
    WriteTextFile(pin_file(), pin_);
    const ExitResult token_init =
        RunProgram("/usr/bin/softhsm2-util",
                   {"--init-token", "--free", "--label", "e2e-leak", "--pin", pin_, "--so-pin",
                    Marker()},
                   {SoftHsmEnv()});
    REQUIRE_MESSAGE(token_init.exit_code == 0, (token_init.out + token_init.err));
    const json config = {
        {"listener", {{"address", "127.0.0.1:0"}}},
        {"storage", {{"path", (root() / "data" / "keyward.db").string()}}},
        {"hsm",
         {{"module", std::string(kSoftHsmModule)},
          {"token_label", "e2e-leak"},
          {"pin_file", pin_file().string()}}},
        {"audit",
         {{"sinks", json::array({{{"name", "file"},
                                  {"type", "file"},
                                  {"path", (root() / "audit" / "audit.log").string()}}})}}}};
    WriteTextFile(root() / "keyward.json", config.dump(2));
    process_ = std::make_unique<ServerProcess>(
        std::vector<std::string>{"server", "-config", (root() / "keyward.json").string()},
        std::vector<std::string>{SoftHsmEnv()}, root() / "logs");
  }

  // Starts the server; the first start initialises the vault and keeps the root token. A
  // later start unseals from the PIN file.
  void Start() {
    REQUIRE(process_->Start());
    if (!root_token_.empty()) return;
    auto init = MakeClient(process_->port(), "")->Put("/v1/sys/init", "{}", "application/json");
    REQUIRE(StatusOf(init) == 200);
    root_token_ = BodyOf(init)["root_token"].get<std::string>();
  }

  std::unique_ptr<httplib::Client> Client() const {
    return MakeClient(process_->port(), root_token_);
  }
  ServerProcess& process() { return *process_; }
  const std::string& root_token() const { return root_token_; }
  const std::string& pin() const { return pin_; }
  const fs::path& root() const { return dir_.path(); }
  fs::path pin_file() const { return root() / "pin"; }

  // Everything the server or SoftHSM wrote.
  std::vector<fs::path> Written() const {
    return {root() / "data", root() / "tokens", root() / "audit", root() / "logs"};
  }

 private:
  std::string SoftHsmEnv() const { return "SOFTHSM2_CONF=" + (root() / "softhsm2.conf").string(); }

  TempDir dir_;
  std::string pin_ = Marker();
  std::unique_ptr<ServerProcess> process_;
  std::string root_token_;
};

json DataOf(const httplib::Result& result, const std::string& what) {
  REQUIRE_MESSAGE(StatusOf(result) / 100 == 2, what << ": " << (result ? result->body : ""));
  return BodyOf(result);
}

// KV versions, written and patched.
void PlantKv(httplib::Client& client, const std::string& path, std::vector<Secret>& secrets) {
  const std::string password = Marker();
  const std::string nested = Marker();
  DataOf(WriteSecret(client, path, {{"password", password}, {"nested", {{"deep", nested}}}}),
         "kv put");
  secrets.push_back({"kv put value", password});
  secrets.push_back({"kv put nested value", nested});

  const std::string patched = Marker();
  DataOf(Send(client, "PATCH", "/v1/secret/data/" + path,
              json({{"data", {{"api_key", patched}}}}).dump(), {}, "application/merge-patch+json"),
         "kv patch");
  secrets.push_back({"kv patch value", patched});
  // custom_metadata is not secret: it is listed in clear by design, like key names.
}

// A token with an id the caller picked, and one the server generated.
void PlantTokens(httplib::Client& client, std::vector<Secret>& secrets) {
  const std::string chosen = "kw." + Marker();
  DataOf(PostJson(client, "/v1/auth/token/create", {{"id", chosen}, {"policies", {"default"}}}),
         "token create with id");
  secrets.push_back({"token id chosen by the caller", chosen});
  const json created =
      DataOf(PostJson(client, "/v1/auth/token/create", {{"policies", {"default"}}}),
             "token create");
  secrets.push_back({"generated token", created["auth"]["client_token"].get<std::string>()});
}

// A secret ID the server generated, and the token a login with it returned.
void PlantAppRole(httplib::Client& client, const std::string& role, std::vector<Secret>& secrets) {
  DataOf(PostJson(client, "/v1/auth/approle/role/" + role,
                  {{"token_policies", {"default"}}, {"bind_secret_id", true}}),
         "approle role");
  const json role_id = DataOf(client.Get(("/v1/auth/approle/role/" + role + "/role-id").c_str()),
                              "approle role-id");
  const json generated = DataOf(
      PostJson(client, "/v1/auth/approle/role/" + role + "/secret-id", json::object()),
      "approle secret-id");
  const std::string secret_id = generated["data"]["secret_id"].get<std::string>();
  secrets.push_back({"approle secret ID", secret_id});
  // Three uses, so the login below leaves it stored with a use count that changed.
  const json limited = DataOf(PostJson(client, "/v1/auth/approle/role/" + role + "/secret-id",
                                       {{"num_uses", 3}}),
                              "approle secret-id with num_uses");
  const std::string limited_id = limited["data"]["secret_id"].get<std::string>();
  secrets.push_back({"approle secret ID with uses", limited_id});
  const json login = DataOf(PostJson(client, "/v1/auth/approle/login",
                                     {{"role_id", role_id["data"]["role_id"]},
                                      {"secret_id", limited_id}}),
                            "approle login");
  secrets.push_back({"approle login token", login["auth"]["client_token"].get<std::string>()});
}

// A private key issued with an X.509-SVID.
void PlantPki(httplib::Client& client, std::vector<Secret>& secrets) {
  DataOf(PostJson(client, "/v1/pki/root/generate/internal", {{"trust_domain", "example.org"}}),
         "pki root");
  DataOf(PostJson(client, "/v1/pki/roles/leak",
                  {{"allowed_spiffe_ids", {"spiffe://example.org/leak/*"}}}),
         "pki role");
  const json issued = DataOf(
      PostJson(client, "/v1/pki/issue/leak", {{"spiffe_id", "spiffe://example.org/leak/app"}}),
      "pki issue");
  const std::string pem = issued["data"]["private_key"].get<std::string>();
  secrets.push_back({"issued private key", PrivateScalar(pem)});
}

// A PostgreSQL superuser whose password is a marker, as the engine's connection; generated
// and static credentials; then rotate-root. Returns the PostgreSQL roles to drop; none without
// PostgreSQL.
std::vector<std::string> PlantDatabase(httplib::Client& client, std::vector<Secret>& secrets) {
  auto pg = RequireSharedPostgres();
  if (!pg) return {};
  PgSession admin(pg->url);
  REQUIRE(admin.ok());
  const std::string user = "kwleak_" + RandomHex(4);
  const std::string password = Marker();
  REQUIRE(admin.Query("CREATE ROLE " + user + " SUPERUSER LOGIN PASSWORD '" + password + "'"));
  secrets.push_back({"database connection password", password});
  DataOf(PostJson(client, "/v1/database/config/leak",
                  {{"plugin_name", "postgresql-database-plugin"},
                   {"connection_url", pg->ConfigUrl()},
                   {"username", user},
                   {"password", password},
                   {"allowed_roles", "*"}}),
         "database config");
  DataOf(PostJson(client, "/v1/database/roles/dynamic",
                  {{"db_name", "leak"},
                   {"creation_statements",
                    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL "
                    "'{{expiration}}';"},
                   {"default_ttl", "1h"}}),
         "database role");
  const json creds = DataOf(client.Get("/v1/database/creds/dynamic"), "database creds");
  secrets.push_back({"generated database password", creds["data"]["password"].get<std::string>()});

  const std::string static_user = "kwleakstatic_" + RandomHex(4);
  REQUIRE(admin.Query("CREATE ROLE " + static_user + " LOGIN PASSWORD '" + Marker() + "'"));
  DataOf(PostJson(client, "/v1/database/static-roles/svc",
                  {{"db_name", "leak"}, {"username", static_user}, {"rotation_period", "1h"}}),
         "database static role");
  const json static_creds =
      DataOf(client.Get("/v1/database/static-creds/svc"), "database static creds");
  secrets.push_back(
      {"static role password", static_creds["data"]["password"].get<std::string>()});

  // Only the engine has the new root password, so the search cannot look for it. It does
  // check that the rotation writes the old one nowhere.
  DataOf(PostJson(client, "/v1/database/rotate-root/leak", json::object()), "rotate-root");
  DataOf(PostJson(client, "/v1/sys/leases/revoke", {{"lease_id", creds["lease_id"]}}),
         "lease revoke");
  return {user, static_user};
}

void CheckNoHits(const std::vector<std::string>& hits, const std::string& when) {
  for (const std::string& hit : hits) FAIL_CHECK(when << ": " << hit);
  CHECK(hits.empty());
}

}  // namespace

TEST_SUITE("e2e/secret_leak") {
  TEST_CASE("marker search finds every form") {
    TempDir dir;
    const std::string marker = Marker();
    WriteTextFile(dir.path() / "plain", "xx" + marker + "yy");
    WriteTextFile(dir.path() / "hex", "prefix:" + HexOf(marker, true));
    WriteTextFile(dir.path() / "b64", "{\"v\":\"" + Base64Of("ab" + marker + "c") + "\"}");
    WriteTextFile(dir.path() / "clean", "nothing here " + RandomHex(32));
    const std::vector<std::string> hits =
        FindSecrets({dir.path()}, {{"marker", marker}, {"unused", Marker()}});
    std::string all;
    for (const std::string& hit : hits) all += hit + "\n";
    CHECK_MESSAGE(all.find("(plain) in " + (dir.path() / "plain").string() + " at offset 2") !=
                      std::string::npos,
                  all);
    CHECK_MESSAGE(all.find("(HEX) in " + (dir.path() / "hex").string()) != std::string::npos, all);
    CHECK_MESSAGE(all.find("(base64+2) in " + (dir.path() / "b64").string()) != std::string::npos,
                  all);
    CHECK_MESSAGE(all.find((dir.path() / "clean").string()) == std::string::npos, all);
    CHECK_MESSAGE(all.find("unused") == std::string::npos, all);
  }

  TEST_CASE("planted secrets never reach a file") {
    LeakServer server;
    server.Start();
    std::vector<Secret> secrets = {{"HSM PIN", server.pin()},
                                   {"root token", server.root_token()}};
    // The only copy of the PIN the test put on disk; the search must see it there.
    CHECK_FALSE(FindSecrets({server.pin_file()}, {{"HSM PIN", server.pin()}}).empty());

    std::vector<std::string> database_users;
    {
      auto client = server.Client();
      PlantKv(*client, "leak/first", secrets);
      PlantTokens(*client, secrets);
      PlantAppRole(*client, "leaker", secrets);
      PlantPki(*client, secrets);
      database_users = PlantDatabase(*client, secrets);
    }

    // A crash leaves the WAL and shared-memory files as they were.
    server.process().Kill();
    CheckNoHits(FindSecrets(server.Written(), secrets), "after SIGKILL");

    server.Start();
    {
      auto client = server.Client();
      PlantKv(*client, "leak/second", secrets);
      PlantTokens(*client, secrets);
      // Reads put the plaintext through the response path and the audit record of a read.
      CHECK(ReadSecretData(*client, "leak/first")["password"] == secrets[2].value);
    }
    CHECK(server.process().Stop() == 0);
    MESSAGE("searched for " << secrets.size() << " secrets");
    CheckNoHits(FindSecrets(server.Written(), secrets), "after a clean stop");

    if (!database_users.empty()) {
      auto pg = RequireSharedPostgres();
      REQUIRE(pg);
      PgSession admin(pg->url);
      for (const std::string& user : database_users) {
        CHECK(admin.Query("DROP ROLE IF EXISTS " + user));
      }
    }
  }
}

}  // namespace kw::e2e
