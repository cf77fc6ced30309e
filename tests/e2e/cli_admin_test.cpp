// The administration commands of the keyward CLI (token, policy, lease, database creds, pki,
// audit) through the real binary against a dev server: output, exit codes and what the
// server holds afterwards.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/postgres_harness.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kOpenssl = "/usr/bin/openssl";
constexpr auto kPollInterval = std::chrono::milliseconds(200);
constexpr int kMaxPolls = 150;  // 30 s at kPollInterval

const std::string kAppPolicy = R"(# Readers of the app's secrets.
path "secret/data/app/*" {
  capabilities = ["read", "list"]
}
)";

bool Contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

// Runs the CLI against one server with a HOME of its own, so that no token file of the real
// home is read or written, and with the VAULT_ variables cleared.
class Cli {
 public:
  Cli(std::string address, std::string token)
      : address_(std::move(address)), token_(std::move(token)) {}

  // Runs `args` with `token` (the root token when empty).
  ExitResult Run(const std::vector<std::string>& args, const std::string& token = "") const {
    return RunToExit(args, Environment(token.empty() ? token_ : token));
  }

  // Runs `args` with `input` on stdin, through /bin/sh because RunToExit reads /dev/null.
  ExitResult RunWithStdin(const std::vector<std::string>& args, const std::string& input,
                          const std::string& token = "") const {
    const fs::path input_file = home_.path() / "stdin.txt";
    WriteTextFile(input_file, input);
    std::vector<std::string> shell_args = {"-c", "exec \"$0\" \"$@\" < \"$CLI_STDIN\"",
                                           KeywardBinary().string()};
    shell_args.insert(shell_args.end(), args.begin(), args.end());
    std::vector<std::string> env = Environment(token.empty() ? token_ : token);
    env.push_back("CLI_STDIN=" + input_file.string());
    return RunProgram("/bin/sh", shell_args, env);
  }

  const fs::path& home() const { return home_.path(); }

 private:
  std::vector<std::string> Environment(const std::string& token) const {
    return {"HOME=" + home_.path().string(),
            "KEYWARD_ADDR=" + address_,
            "KEYWARD_TOKEN=" + token,
            "VAULT_ADDR=",
            "VAULT_TOKEN=",
            "KEYWARD_FORMAT=",
            "VAULT_FORMAT=",
            "KEYWARD_CACERT=",
            "VAULT_CACERT=",
            "KEYWARD_SKIP_VERIFY=",
            "VAULT_SKIP_VERIFY="};
  }

  std::string address_;
  std::string token_;
  TempDir home_;
};

// Parses the JSON that a command printed; REQUIREs that it exited 0.
json JsonOutput(const ExitResult& run) {
  REQUIRE_MESSAGE(run.exit_code == 0, run.err);
  const json parsed = json::parse(run.out, nullptr, /*allow_exceptions=*/false);
  REQUIRE_MESSAGE(!parsed.is_discarded(), run.out);
  return parsed;
}

void WritePolicy(httplib::Client& client, const std::string& name, const std::string& policy) {
  auto written =
      Send(client, "PUT", "/v1/sys/policies/acl/" + name, json{{"policy", policy}}.dump());
  REQUIRE_MESSAGE(StatusOf(written) == 204, BodyOf(written).dump());
}

ExitResult Openssl(const std::vector<std::string>& args) {
  return RunProgram(std::string(kOpenssl), args, {}, std::chrono::seconds(30));
}

// Returns the PEM public key of a certificate, key or CSR file.
std::string PublicKeyOf(const std::string& kind, const fs::path& file) {
  std::vector<std::string> args = {"pkey", "-pubout", "-in", file.string()};
  if (kind == "x509") args = {"x509", "-noout", "-pubkey", "-in", file.string()};
  if (kind == "req") args = {"req", "-noout", "-pubkey", "-in", file.string()};
  const ExitResult run = Openssl(args);
  REQUIRE_MESSAGE(run.exit_code == 0, run.err);
  return run.out;
}

std::string RoleCount(PgSession& admin, const std::string& user) {
  return admin.Query("SELECT count(*) FROM pg_roles WHERE rolname = '" + user + "'")
      .value_or("query failed");
}

// Polls `lease lookup` until it fails; returns whether it did within kMaxPolls.
bool WaitLeaseGone(const Cli& cli, const std::string& lease_id) {
  for (int i = 0; i < kMaxPolls; ++i) {
    if (cli.Run({"lease", "lookup", lease_id}).exit_code == 1) return true;
    std::this_thread::sleep_for(kPollInterval);
  }
  return false;
}

}  // namespace

TEST_SUITE("e2e/cli_admin") {
  TEST_CASE("cli admin: token lifecycle") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    WritePolicy(*root, "app-reader", kAppPolicy);
    const Cli cli(server.url(), server.token());

    // Create: policies, TTL, display name and metadata reach the token.
    const json created =
        JsonOutput(cli.Run({"token", "create", "-policy=app-reader", "-ttl=1h", "-display-name=ci",
                            "-metadata", "team=ops", "-format=json"}));
    const std::string child = created.value("client_token", "");
    const std::string accessor = created.value("accessor", "");
    REQUIRE(child.starts_with("kw."));
    REQUIRE_FALSE(accessor.empty());
    CHECK(created["policies"] == json({"app-reader", "default"}));
    CHECK(created["lease_duration"].get<int>() > 3500);
    CHECK(created["lease_duration"].get<int>() <= 3600);
    CHECK(created["metadata"]["team"] == "ops");

    // The table format prints Vault's row names.
    const ExitResult table = cli.Run({"token", "create", "-policy=app-reader", "-ttl=30m"});
    REQUIRE_MESSAGE(table.exit_code == 0, table.err);
    CHECK(Contains(table.out, "token_accessor"));
    CHECK(Contains(table.out, "token_duration"));
    CHECK(Contains(table.out, "30m"));

    // Lookup: by token, by the token from stdin, by accessor, and of the calling token.
    const json by_token = JsonOutput(cli.Run({"token", "lookup", child, "-format=json"}));
    CHECK(by_token["id"] == child);
    CHECK(by_token["display_name"] == "token-ci");
    CHECK(by_token["meta"]["team"] == "ops");
    const json from_stdin =
        JsonOutput(cli.RunWithStdin({"token", "lookup", "-format=json", "-"}, child + "\n"));
    CHECK(from_stdin["accessor"] == accessor);
    const json by_accessor =
        JsonOutput(cli.Run({"token", "lookup", "-accessor", accessor, "-format=json"}));
    CHECK(by_accessor["accessor"] == accessor);
    CHECK(by_accessor["id"] == "");
    const json self = JsonOutput(cli.Run({"token", "lookup", "-format=json"}, child));
    CHECK(self["accessor"] == accessor);
    CHECK(cli.Run({"token", "lookup", "-field=display_name"}, child).out.starts_with("token-ci"));

    // Renew: another token's TTL by argument, the calling token's without one.
    const json renewed =
        JsonOutput(cli.Run({"token", "renew", "-increment=2h", child, "-format=json"}));
    CHECK(renewed["lease_duration"].get<int>() > 7000);
    CHECK(renewed["lease_duration"].get<int>() <= 7200);
    const json renewed_self =
        JsonOutput(cli.Run({"token", "renew", "-increment=10m", "-format=json"}, child));
    CHECK(renewed_self["accessor"] == accessor);
    CHECK(renewed_self["lease_duration"].get<int>() <= 600);
    CHECK(renewed_self["lease_duration"].get<int>() > 500);

    // Capabilities: the calling token's, another token's, by accessor.
    const ExitResult own = cli.Run({"token", "capabilities", "secret/data/app/db"}, child);
    REQUIRE_MESSAGE(own.exit_code == 0, own.err);
    CHECK(own.out == "list, read\n");
    const ExitResult other = cli.Run({"token", "capabilities", child, "secret/data/other"});
    REQUIRE_MESSAGE(other.exit_code == 0, other.err);
    CHECK(other.out == "deny\n");
    const json by_accessor_caps = JsonOutput(cli.Run(
        {"token", "capabilities", "-accessor", accessor, "secret/data/app/x", "-format=json"}));
    CHECK(by_accessor_caps["capabilities"] == json({"list", "read"}));
    CHECK(cli.Run({"token", "capabilities", "secret/data/app/x"}).out == "root\n");

    // Revoke: the token goes, and a lookup of it fails with exit 1 without echoing it.
    const ExitResult revoked = cli.Run({"token", "revoke", child});
    REQUIRE_MESSAGE(revoked.exit_code == 0, revoked.err);
    CHECK(revoked.out == "Success! Revoked token (if it existed)\n");
    const ExitResult gone = cli.Run({"token", "lookup", child});
    CHECK(gone.exit_code == 1);
    CHECK(gone.err.starts_with("error: "));
    CHECK_FALSE(Contains(gone.err, child));
    CHECK(cli.Run({"token", "lookup"}, child).exit_code == 1);
    CHECK(cli.Run({"token", "revoke", "-format=json", child}).out.empty());
  }

  TEST_CASE("cli admin: token create flags and revoke modes") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    WritePolicy(*root, "app-reader", kAppPolicy);
    WritePolicy(*root, "other", R"(path "secret/data/other/*" { capabilities = ["read"] })");
    WritePolicy(*root, "creator", R"(path "auth/token/create" { capabilities = ["update"] })");
    auto role = PostJson(*root, "/v1/auth/token/roles/readers",
                         {{"allowed_policies", {"app-reader"}}, {"orphan", true}});
    REQUIRE(StatusOf(role) == 204);
    const Cli cli(server.url(), server.token());

    const json bounded = JsonOutput(
        cli.Run({"token", "create", "-policy=app-reader,other", "-num-uses=5",
                 "-explicit-max-ttl=2h", "-renewable=false", "-bound-path=secret/data/app/a",
                 "-bound-cidr=127.0.0.0/8", "-no-default-policy", "-format=json"}));
    CHECK(bounded["policies"] == json({"app-reader", "other"}));
    CHECK(bounded["renewable"] == false);
    const std::string bounded_token = bounded["client_token"];
    const json looked_up = JsonOutput(cli.Run({"token", "lookup", bounded_token, "-format=json"}));
    CHECK(looked_up["num_uses"] == 5);
    CHECK(looked_up["explicit_max_ttl"] == 7200);
    // bound_paths has one list per token in the chain that set bounds.
    CHECK(looked_up["bound_paths"] == json::array({json::array({"secret/data/app/a"})}));
    CHECK(looked_up["bound_cidrs"] == json({"127.0.0.0/8"}));
    CHECK(cli.Run({"token", "renew", bounded_token}).exit_code == 1);

    const json orphan = JsonOutput(cli.Run({"token", "create", "-orphan", "-format=json"}));
    CHECK(orphan["orphan"] == true);
    const json from_role = JsonOutput(
        cli.Run({"token", "create", "-role=readers", "-policy=app-reader", "-format=json"}));
    CHECK(from_role["orphan"] == true);
    CHECK(from_role["policies"] == json({"app-reader", "default"}));
    const ExitResult refused_by_role =
        cli.Run({"token", "create", "-role=readers", "-policy=other"});
    CHECK(refused_by_role.exit_code == 1);
    CHECK(Contains(refused_by_role.err, "other"));

    // -self revokes the calling token; -accessor names a token by its accessor.
    const std::string self_token = orphan["client_token"];
    const ExitResult revoked_self = cli.Run({"token", "revoke", "-self"}, self_token);
    REQUIRE_MESSAGE(revoked_self.exit_code == 0, revoked_self.err);
    CHECK(cli.Run({"token", "lookup"}, self_token).exit_code == 1);
    const ExitResult by_accessor =
        cli.Run({"token", "revoke", "-accessor", from_role["accessor"].get<std::string>()});
    REQUIRE_MESSAGE(by_accessor.exit_code == 0, by_accessor.err);
    CHECK(cli.Run({"token", "lookup", from_role["client_token"].get<std::string>()}).exit_code ==
          1);

    // -mode=orphan keeps the children of the revoked token.
    const json parent = JsonOutput(cli.Run({"token", "create", "-policy=creator", "-format=json"}));
    const std::string parent_token = parent["client_token"];
    const json grandchild = JsonOutput(cli.Run({"token", "create", "-format=json"}, parent_token));
    const ExitResult orphaned = cli.Run({"token", "revoke", "-mode=orphan", parent_token});
    REQUIRE_MESSAGE(orphaned.exit_code == 0, orphaned.err);
    CHECK(cli.Run({"token", "lookup", parent_token}).exit_code == 1);
    CHECK(cli.Run({"token", "lookup", grandchild["client_token"].get<std::string>()}).exit_code ==
          0);

    // Usage errors exit 2 and name the problem.
    const std::vector<std::vector<std::string>> usages = {
        {"token", "create", "-num-uses=many"},
        {"token", "create", "-metadata", "novalue"},
        {"token", "create", "-orphan", "-role=readers"},
        {"token", "create", "extra"},
        {"token", "revoke"},
        {"token", "revoke", "-self", "kw.x"},
        {"token", "revoke", "-mode=path", "kw.x"},
        {"token", "lookup", "a", "b"},
        {"token", "capabilities"},
        {"token", "capabilities", "a", "b", "c"},
        {"token", "create", "-no-such-flag"},
    };
    for (const auto& args : usages) {
      CAPTURE(args);
      const ExitResult run = cli.Run(args);
      CHECK(run.exit_code == 2);
      CHECK(run.err.starts_with("usage error: "));
    }
  }

  TEST_CASE("cli admin: policy write, read, list, delete") {
    DevServer server;
    REQUIRE(server.Start());
    const Cli cli(server.url(), server.token());
    const fs::path hcl = cli.home() / "app-reader.hcl";
    WriteTextFile(hcl, kAppPolicy);

    const ExitResult written = cli.Run({"policy", "write", "app-reader", hcl.string()});
    REQUIRE_MESSAGE(written.exit_code == 0, written.err);
    CHECK(written.out == "Success! Uploaded policy: app-reader\n");
    const ExitResult read = cli.Run({"policy", "read", "app-reader"});
    REQUIRE_MESSAGE(read.exit_code == 0, read.err);
    CHECK(read.out == kAppPolicy);

    const std::string json_policy =
        R"({"path": {"secret/data/json/*": {"capabilities": ["read"]}}})";
    const ExitResult from_stdin =
        cli.RunWithStdin({"policy", "write", "json-reader", "-"}, json_policy);
    REQUIRE_MESSAGE(from_stdin.exit_code == 0, from_stdin.err);
    const json read_json = JsonOutput(cli.Run({"policy", "read", "json-reader", "-format=json"}));
    CHECK(read_json["name"] == "json-reader");
    CHECK(Contains(read_json["policy"].get<std::string>(), "secret/data/json/*"));

    // The policy is enforced: a token with it reads the app's paths only.
    const json token =
        JsonOutput(cli.Run({"token", "create", "-policy=json-reader", "-format=json"}));
    const ExitResult caps = cli.Run({"token", "capabilities", "secret/data/json/a"},
                                    token["client_token"].get<std::string>());
    CHECK(caps.out == "read\n");

    const ExitResult listed = cli.Run({"policy", "list"});
    REQUIRE_MESSAGE(listed.exit_code == 0, listed.err);
    CHECK(listed.out.starts_with("Keys\n"));
    for (const std::string name : {"app-reader", "json-reader", "default", "root"}) {
      CHECK(Contains(listed.out, "\n" + name + "\n"));
    }
    const json names = JsonOutput(cli.Run({"policy", "list", "-format=json"}));
    REQUIRE(names.is_array());
    CHECK(std::find(names.begin(), names.end(), "app-reader") != names.end());

    const ExitResult deleted = cli.Run({"policy", "delete", "app-reader"});
    REQUIRE_MESSAGE(deleted.exit_code == 0, deleted.err);
    CHECK(deleted.out == "Success! Deleted policy: app-reader\n");
    const ExitResult missing = cli.Run({"policy", "read", "app-reader"});
    CHECK(missing.exit_code == 1);
    CHECK(Contains(missing.err, "404"));

    // A malformed document is the server's 400, naming the line; a missing file names it.
    const fs::path bad = cli.home() / "bad.hcl";
    WriteTextFile(bad, "path \"secret/*\" {\n  capabilities = [\"fly\"]\n}\n");
    const ExitResult rejected = cli.Run({"policy", "write", "bad", bad.string()});
    CHECK(rejected.exit_code == 1);
    CHECK(Contains(rejected.err, "400"));
    CHECK(Contains(rejected.err, "fly"));
    const ExitResult no_file =
        cli.Run({"policy", "write", "none", (cli.home() / "none.hcl").string()});
    CHECK(no_file.exit_code == 1);
    CHECK(Contains(no_file.err, "none.hcl"));
    CHECK(cli.RunWithStdin({"policy", "write", "empty", "-"}, "  \n").exit_code == 1);

    CHECK(cli.Run({"policy", "write", "only-name"}).exit_code == 2);
    CHECK(cli.Run({"policy", "read"}).exit_code == 2);
    CHECK(cli.Run({"policy", "list", "extra"}).exit_code == 2);
  }

  TEST_CASE("cli admin: pki issue, sign and jwt") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    auto generated =
        PostJson(*root, "/v1/pki/root/generate/internal", {{"trust_domain", "example.org"}});
    REQUIRE(StatusOf(generated) == 200);
    auto role = PostJson(*root, "/v1/pki/roles/web",
                         {{"allowed_spiffe_ids", {"spiffe://example.org/ns/*"}}});
    REQUIRE((StatusOf(role) == 200 || StatusOf(role) == 204));
    const Cli cli(server.url(), server.token());
    const fs::path dir = cli.home();
    const std::string spiffe_id = "spiffe://example.org/ns/web";

    // issue: the certificate alone with -field, checked by openssl.
    const ExitResult certificate =
        cli.Run({"pki", "issue", "web", "spiffe_id=" + spiffe_id, "ttl=30m", "-field=certificate"});
    REQUIRE_MESSAGE(certificate.exit_code == 0, certificate.err);
    const fs::path cert_file = dir / "web.pem";
    WriteTextFile(cert_file, certificate.out);
    const ExitResult text = Openssl({"x509", "-noout", "-text", "-in", cert_file.string()});
    REQUIRE_MESSAGE(text.exit_code == 0, text.err);
    CHECK(Contains(text.out, "URI:" + spiffe_id));

    // issue -out: the key goes to a 0600 file and not to stdout; it matches the certificate.
    const fs::path key_file = dir / "web-key.pem";
    const json issued = JsonOutput(cli.Run({"pki", "issue", "-out", key_file.string(), "web",
                                            "spiffe_id=" + spiffe_id, "-format=json"}));
    CHECK_FALSE(issued.contains("private_key"));
    CHECK(issued["spiffe_id"] == spiffe_id);
    struct stat info {};
    REQUIRE(::stat(key_file.c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0600);
    const fs::path issued_cert = dir / "issued.pem";
    WriteTextFile(issued_cert, issued["certificate"].get<std::string>());
    CHECK(PublicKeyOf("pkey", key_file) == PublicKeyOf("x509", issued_cert));

    // Without -out the private key is printed, to stdout only.
    const ExitResult with_key = cli.Run({"pki", "issue", "web", "spiffe_id=" + spiffe_id});
    REQUIRE_MESSAGE(with_key.exit_code == 0, with_key.err);
    CHECK(Contains(with_key.out, "private_key"));
    CHECK(Contains(with_key.out, "BEGIN PRIVATE KEY"));
    CHECK_FALSE(Contains(with_key.err, "PRIVATE KEY"));

    // sign: an openssl CSR; the certificate carries the CSR's public key.
    const fs::path csr_key = dir / "csr-key.pem";
    const fs::path csr = dir / "web.csr";
    REQUIRE(Openssl({"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                     csr_key.string()})
                .exit_code == 0);
    REQUIRE(
        Openssl({"req", "-new", "-key", csr_key.string(), "-subj", "/CN=web", "-out", csr.string()})
            .exit_code == 0);
    const ExitResult signed_cert = cli.Run({"pki", "sign", "web", "csr=@" + csr.string(),
                                            "spiffe_id=" + spiffe_id, "-field=certificate"});
    REQUIRE_MESSAGE(signed_cert.exit_code == 0, signed_cert.err);
    const fs::path signed_file = dir / "signed.pem";
    WriteTextFile(signed_file, signed_cert.out);
    CHECK(PublicKeyOf("x509", signed_file) == PublicKeyOf("req", csr));
    CHECK(PublicKeyOf("x509", signed_file) == PublicKeyOf("pkey", csr_key));

    // jwt: a JWT-SVID for the audience.
    const json jwt = JsonOutput(cli.Run(
        {"pki", "jwt", "web", "spiffe_id=" + spiffe_id, "audience=reports", "-format=json"}));
    const std::string jwt_token = jwt.value("token", "");
    CHECK(std::count(jwt_token.begin(), jwt_token.end(), '.') == 2);
    CHECK(jwt["audience"] == json({"reports"}));

    // The server's refusals exit 1; a missing role is a usage error.
    const ExitResult foreign =
        cli.Run({"pki", "issue", "web", "spiffe_id=spiffe://other.org/ns/web"});
    CHECK(foreign.exit_code == 1);
    CHECK(Contains(foreign.err, "400"));
    CHECK(cli.Run({"pki", "issue"}).exit_code == 2);
    CHECK(cli.Run({"pki", "sign", "web", "csr=@" + (dir / "none.csr").string()}).exit_code == 2);
  }

  TEST_CASE("cli admin: database creds and leases") {
    auto pg = RequireSharedPostgres();
    if (!pg) return;
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    auto configured = PostJson(*root, "/v1/database/config/pg",
                               pg->ConfigBody());
    REQUIRE(StatusOf(configured) == 204);
    auto role = PostJson(*root, "/v1/database/roles/cli",
                         {{"db_name", "pg"},
                          {"creation_statements",
                           "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
                           "VALID UNTIL '{{expiration}}'"},
                          {"default_ttl", "1h"},
                          {"max_ttl", "2h"}});
    REQUIRE(StatusOf(role) == 204);
    const Cli cli(server.url(), server.token());
    PgSession admin(pg->LoginInfo(pg->user, pg->password));
    REQUIRE_MESSAGE(admin.ok(), admin.error());

    // creds: json carries the lease with the credential; the credential logs in.
    const json creds = JsonOutput(cli.Run({"database", "creds", "cli", "-format=json"}));
    const std::string lease_id = creds.value("lease_id", "");
    const std::string username = creds.value("username", "");
    REQUIRE(lease_id.starts_with("database/creds/cli/"));
    REQUIRE_FALSE(username.empty());
    CHECK(creds["lease_duration"] == 3600);
    CHECK(creds["lease_renewable"] == true);
    PgSession login(pg->LoginInfo(username, creds.value("password", "")));
    CHECK_MESSAGE(login.ok(), login.error());

    const ExitResult table = cli.Run({"database", "creds", "cli"});
    REQUIRE_MESSAGE(table.exit_code == 0, table.err);
    for (const std::string row : {"lease_id", "lease_duration", "username", "password"}) {
      CHECK(Contains(table.out, row));
    }

    // lookup, renew, revoke of one lease.
    const json looked_up = JsonOutput(cli.Run({"lease", "lookup", lease_id, "-format=json"}));
    CHECK(looked_up["id"] == lease_id);
    CHECK(looked_up["ttl"].get<int>() > 3500);
    const json renewed =
        JsonOutput(cli.Run({"lease", "renew", "-increment=30m", lease_id, "-format=json"}));
    CHECK(renewed["lease_id"] == lease_id);
    CHECK(renewed["lease_duration"].get<int>() <= 1800);
    CHECK(renewed["lease_duration"].get<int>() > 1700);
    const ExitResult renewed_table = cli.Run({"lease", "renew", lease_id});
    REQUIRE_MESSAGE(renewed_table.exit_code == 0, renewed_table.err);
    CHECK(Contains(renewed_table.out, "lease_duration"));

    const ExitResult revoked = cli.Run({"lease", "revoke", lease_id});
    REQUIRE_MESSAGE(revoked.exit_code == 0, revoked.err);
    CHECK(revoked.out == "Success! Revoked lease: " + lease_id + "\n");
    CHECK(RoleCount(admin, username) == "0");
    const ExitResult gone = cli.Run({"lease", "lookup", lease_id});
    CHECK(gone.exit_code == 1);
    CHECK(Contains(gone.err, "invalid lease"));
    CHECK(cli.Run({"lease", "renew", lease_id}).exit_code == 1);

    // revoke -prefix: every lease of the role goes, in the background.
    const json first = JsonOutput(cli.Run({"database", "creds", "cli", "-format=json"}));
    const json second = JsonOutput(cli.Run({"database", "creds", "cli", "-format=json"}));
    const ExitResult by_prefix = cli.Run({"lease", "revoke", "-prefix", "database/creds/cli"});
    REQUIRE_MESSAGE(by_prefix.exit_code == 0, by_prefix.err);
    CHECK(by_prefix.out.starts_with("Success! "));
    CHECK(WaitLeaseGone(cli, first["lease_id"]));
    CHECK(WaitLeaseGone(cli, second["lease_id"]));
    CHECK(RoleCount(admin, first["username"]) == "0");
    CHECK(RoleCount(admin, second["username"]) == "0");

    // revoke -prefix -force removes leases too.
    const json forced = JsonOutput(cli.Run({"database", "creds", "cli", "-format=json"}));
    const ExitResult force =
        cli.Run({"lease", "revoke", "-prefix", "-force", "database/creds/cli"});
    REQUIRE_MESSAGE(force.exit_code == 0, force.err);
    CHECK(WaitLeaseGone(cli, forced["lease_id"]));

    CHECK(cli.Run({"lease", "revoke", "-force", lease_id}).exit_code == 2);
    CHECK(cli.Run({"lease", "lookup"}).exit_code == 2);
    const ExitResult unknown_role = cli.Run({"database", "creds", "no-such-role"});
    CHECK(unknown_role.exit_code == 1);
    CHECK(unknown_role.err.starts_with("error: "));
  }

  TEST_CASE("cli admin: audit commands with the global flags") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    for (int i = 0; i < 3; ++i) {
      REQUIRE(StatusOf(WriteSecret(*root, "audit/s" + std::to_string(i), {{"v", "x"}})) == 200);
    }
    auto signed_now = root->Post("/v1/sys/audit/checkpoint", "", "application/json");
    REQUIRE(StatusOf(signed_now) == 200);
    const Cli cli(server.url(), server.token());
    const fs::path dir = cli.home();

    const json verified = JsonOutput(cli.Run({"audit", "verify", "-format=json"}));
    CHECK(verified["ok"] == true);
    CHECK(verified["records_checked"].get<int>() > 3);
    const ExitResult size = cli.Run({"audit", "checkpoint", "-field=size"});
    REQUIRE_MESSAGE(size.exit_code == 0, size.err);
    CHECK(std::stoi(size.out) > 3);
    const json key = JsonOutput(cli.Run({"audit", "public-key", "-format=json"}));
    REQUIRE(key.contains("vkey"));
    const ExitResult vkey_text = cli.Run({"audit", "public-key"});
    CHECK(vkey_text.out == key["vkey"].get<std::string>() + "\n");
    const json records = JsonOutput(cli.Run(
        {"audit", "query", "-path-prefix", "secret/data/audit", "-limit=2", "-format=json"}));
    REQUIRE(records.is_array());
    CHECK(records.size() == 2);
    const ExitResult yaml = cli.Run({"audit", "query", "-format=yaml"});
    CHECK(yaml.exit_code == 2);
    CHECK(Contains(yaml.err, "usage: keyward audit query"));

    // export, then verify offline with the saved key and checkpoint, as JSON.
    const fs::path log = dir / "audit.jsonl";
    const fs::path checkpoint = dir / "latest.ckpt";
    const fs::path vkey = dir / "audit.vkey";
    REQUIRE(cli.Run({"audit", "checkpoint", "-o", checkpoint.string()}).exit_code == 0);
    REQUIRE(cli.Run({"audit", "public-key", "-o", vkey.string()}).exit_code == 0);
    REQUIRE(cli.Run({"audit", "export", "-o", log.string()}).exit_code == 0);
    const json offline =
        JsonOutput(cli.Run({"audit", "verify", "-log", log.string(), "-key", "@" + vkey.string(),
                            "-checkpoint", checkpoint.string(), "-format=json"}));
    CHECK(offline["verified"] == true);
    CHECK(offline["covered_size"].get<int>() > 3);
    const ExitResult root_field =
        cli.Run({"audit", "verify", "-log", log.string(), "-key", "@" + vkey.string(),
                 "-checkpoint", checkpoint.string(), "-field=root"});
    REQUIRE_MESSAGE(root_field.exit_code == 0, root_field.err);
    CHECK(root_field.out.rfind(offline["root"].get<std::string>(), 0) == 0);

    // A token without sudo gets exit 1 and the hint.
    const json reader = JsonOutput(cli.Run({"token", "create", "-format=json"}));
    const ExitResult refused =
        cli.Run({"audit", "verify"}, reader["client_token"].get<std::string>());
    CHECK(refused.exit_code == 1);
    CHECK(Contains(refused.err, "403"));
    CHECK(Contains(refused.err, "hint: "));
  }

  TEST_CASE("cli admin: audit over TLS flags") {
    DevTlsServer server;
    REQUIRE(server.Start());
    REQUIRE_FALSE(server.ca_file().empty());
    const Cli cli(server.url(), server.token());

    const ExitResult untrusted = cli.Run({"audit", "public-key"});
    CHECK(untrusted.exit_code == 1);
    CHECK(untrusted.err.starts_with("error: "));
    const ExitResult trusted =
        cli.Run({"audit", "public-key", "-ca-cert=" + server.ca_file().string()});
    REQUIRE_MESSAGE(trusted.exit_code == 0, trusted.err);
    CHECK(Contains(trusted.out, "+"));
    const ExitResult skipped = cli.Run({"audit", "verify", "-tls-skip-verify"});
    REQUIRE_MESSAGE(skipped.exit_code == 0, skipped.err);
    CHECK(Contains(skipped.out, "Verified              true"));
    const ExitResult token_lookup =
        cli.Run({"token", "lookup", "-ca-cert", server.ca_file().string(), "-field=policies"});
    REQUIRE_MESSAGE(token_lookup.exit_code == 0, token_lookup.err);
    CHECK(Contains(token_lookup.out, "root"));
  }

  TEST_CASE("cli admin: every admin command has help") {
    const Cli cli("http://127.0.0.1:9", "unused");
    for (const std::string name :
         {"token create",       "token lookup", "token renew",      "token revoke",
          "token capabilities", "policy write", "policy read",      "policy list",
          "policy delete",      "lease lookup", "lease renew",      "lease revoke",
          "database creds",     "pki issue",    "pki sign",         "pki jwt",
          "audit verify",       "audit export", "audit checkpoint", "audit public-key",
          "audit proof",        "audit query"}) {
      CAPTURE(name);
      std::vector<std::string> args;
      std::istringstream words(name);
      for (std::string word; words >> word;) args.push_back(word);
      args.push_back("-help");
      const ExitResult help = cli.Run(args);
      CHECK(help.exit_code == 0);
      CHECK(Contains(help.out, "Usage: keyward " + name));
      CHECK(Contains(help.out, "Example:"));
    }
    const ExitResult group = cli.Run({"audit", "-help"});
    CHECK(group.exit_code == 0);
    for (const std::string name : {"audit verify", "audit export", "audit query", "audit proof"}) {
      CHECK(Contains(group.out, name));
    }
  }
}

}  // namespace kw::e2e
