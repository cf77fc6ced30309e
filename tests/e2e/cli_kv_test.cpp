// The keyward CLI's kv, generic (read, write, list, delete, request), login, status and
// operator commands, run as the real binary against a dev server.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;

// A dev server and a HOME directory for the CLI, so that ~/.keyward-token is the test's own.
class CliFixture {
 public:
  CliFixture() { REQUIRE(server_.Start()); }

  // The environment of a CLI run with `token` in KEYWARD_TOKEN (empty: none, so the token
  // file applies). The VAULT_ variables are emptied so that the caller's shell cannot leak in.
  std::vector<std::string> Env(const std::string& token = std::string(kRootToken)) const {
    return {"HOME=" + home_.path().string(), "KEYWARD_ADDR=" + server_.url(),
            "KEYWARD_TOKEN=" + token,        "VAULT_ADDR=",
            "VAULT_TOKEN=",                  "KEYWARD_FORMAT=",
            "VAULT_FORMAT="};
  }

  // Runs `keyward args...` with the root token and no stdin.
  ExitResult Run(const std::vector<std::string>& args) const { return RunToExit(args, Env()); }

  // Runs `keyward args...` with `env` and `input` on stdin (through /bin/sh and a file, as
  // RunToExit gives the child /dev/null).
  ExitResult RunWithStdin(const std::vector<std::string>& args, const std::string& input,
                          std::vector<std::string> env = {}) const {
    if (env.empty()) env = Env();
    const fs::path input_file = scratch_.path() / ("stdin-" + RandomHex(8));
    WriteTextFile(input_file, input);
    env.push_back("KEYWARD_TEST_STDIN=" + input_file.string());
    std::vector<std::string> shell_args = {"-c", "exec \"$0\" \"$@\" < \"$KEYWARD_TEST_STDIN\"",
                                           KeywardBinary().string()};
    shell_args.insert(shell_args.end(), args.begin(), args.end());
    return RunProgram("/bin/sh", shell_args, env);
  }

  // Writes `text` to a new file in the scratch directory and returns its path.
  std::string File(const std::string& name, const std::string& text) const {
    const fs::path path = scratch_.path() / name;
    WriteTextFile(path, text);
    return path.string();
  }

  DevServer& server() { return server_; }
  const fs::path& home() const { return home_.path(); }
  fs::path token_file() const { return home_.path() / ".keyward-token"; }

 private:
  DevServer server_;
  TempDir home_;
  TempDir scratch_;
};

json ParseOut(const ExitResult& result) {
  json parsed = json::parse(result.out, nullptr, false);
  return parsed.is_discarded() ? json(nullptr) : parsed;
}

bool Has(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

std::string Trimmed(const std::string& text) {
  const auto first = text.find_first_not_of(" \n");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \n") - first + 1);
}

std::string ReadWholeFile(const fs::path& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// Creates AppRole role `name` with `policies` and returns its role ID and a new secret ID.
std::pair<std::string, std::string> CreateAppRole(httplib::Client& client, const std::string& name,
                                                  const json& policies) {
  REQUIRE(StatusOf(PostJson(client, "/v1/auth/approle/role/" + name,
                            {{"token_policies", policies}})) == 204);
  auto role = client.Get(("/v1/auth/approle/role/" + name + "/role-id").c_str());
  REQUIRE(StatusOf(role) == 200);
  auto secret = PostJson(client, "/v1/auth/approle/role/" + name + "/secret-id", json::object());
  REQUIRE(StatusOf(secret) == 200);
  return {BodyOf(role)["data"]["role_id"].get<std::string>(),
          BodyOf(secret)["data"]["secret_id"].get<std::string>()};
}

}  // namespace

TEST_SUITE("e2e/cli") {
  TEST_CASE("cli kv: put and get output") {
    CliFixture cli;
    const ExitResult first = cli.Run({"kv", "put", "secret/app/db", "user=alice", "port=5432"});
    CHECK(first.exit_code == 0);
    CHECK(Has(first.out, "== Secret Path =="));
    CHECK(Has(first.out, "secret/data/app/db"));
    CHECK(Has(first.out, "version"));
    // Flags may follow the path; -mount names the mount separately.
    const ExitResult second =
        cli.Run({"kv", "put", "app/db", "-mount=secret", "user=bob", "port=5432"});
    CHECK(second.exit_code == 0);

    const ExitResult table = cli.Run({"kv", "get", "secret/app/db"});
    CHECK(table.exit_code == 0);
    CHECK(Has(table.out, "== Secret Path =="));
    CHECK(Has(table.out, "== Metadata =="));
    CHECK(Has(table.out, "== Data =="));
    CHECK(Has(table.out, "bob"));
    CHECK_FALSE(Has(table.out, "alice"));

    const ExitResult old = cli.Run({"kv", "get", "-version=1", "secret/app/db"});
    CHECK(old.exit_code == 0);
    CHECK(Has(old.out, "alice"));
    CHECK_FALSE(Has(old.out, "bob"));

    const ExitResult field = cli.Run({"kv", "get", "-field=user", "secret/app/db"});
    CHECK(field.exit_code == 0);
    CHECK(field.out == "bob");
    const ExitResult old_field =
        cli.Run({"kv", "get", "-field=user", "-version", "1", "-mount=secret", "app/db"});
    CHECK(old_field.out == "alice");
    const ExitResult missing_field = cli.Run({"kv", "get", "-field=nope", "secret/app/db"});
    CHECK(missing_field.exit_code == 1);

    const ExitResult as_json = cli.Run({"kv", "get", "-format=json", "secret/app/db"});
    CHECK(as_json.exit_code == 0);
    const json parsed = ParseOut(as_json);
    CHECK(parsed["data"] == json({{"user", "bob"}, {"port", "5432"}}));
    CHECK(parsed["metadata"]["version"] == 2);

    const ExitResult missing = cli.Run({"kv", "get", "secret/app/none"});
    CHECK(missing.exit_code == 1);
    CHECK(Has(missing.err, "no secret at secret/app/none"));
    CHECK(missing.out.empty());

    const ExitResult no_mount = cli.Run({"kv", "get", "secret"});
    CHECK(no_mount.exit_code == 2);
    const ExitResult bad_version = cli.Run({"kv", "get", "-version=x", "secret/app/db"});
    CHECK(bad_version.exit_code == 2);
    CHECK(Has(bad_version.err, "-version"));
  }

  TEST_CASE("cli kv: patch and check-and-set") {
    CliFixture cli;
    REQUIRE(cli.Run({"kv", "put", "secret/app", "user=alice", "port=5432"}).exit_code == 0);

    const ExitResult patched = cli.Run({"kv", "patch", "secret/app", "port=5433"});
    CHECK(patched.exit_code == 0);
    CHECK(ReadSecretData(*cli.server().Client(), "app") ==
          json({{"user", "alice"}, {"port", "5433"}}));

    const ExitResult stale_put = cli.Run({"kv", "put", "-cas=1", "secret/app", "user=carol"});
    CHECK(stale_put.exit_code == 1);
    CHECK(Has(stale_put.err, "check-and-set parameter did not match the current version"));
    const ExitResult stale_patch = cli.Run({"kv", "patch", "-cas=1", "secret/app", "user=carol"});
    CHECK(stale_patch.exit_code == 1);
    CHECK(Has(stale_patch.err, "check-and-set parameter did not match the current version"));
    CHECK(ReadSecretData(*cli.server().Client(), "app")["user"] == "alice");

    const ExitResult current = cli.Run({"kv", "put", "-cas=2", "secret/app", "user=carol"});
    CHECK(current.exit_code == 0);
    const ExitResult version = cli.Run({"kv", "patch", "-cas=3", "-field=version", "secret/app",
                                        "port=6000"});
    CHECK(version.exit_code == 0);
    CHECK(version.out == "4");
    CHECK(ReadSecretData(*cli.server().Client(), "app") ==
          json({{"user", "carol"}, {"port", "6000"}}));

    const ExitResult create_only = cli.Run({"kv", "put", "-cas=0", "secret/app", "user=dave"});
    CHECK(create_only.exit_code == 1);

    const ExitResult absent = cli.Run({"kv", "patch", "secret/none", "a=b"});
    CHECK(absent.exit_code == 1);
    CHECK(Has(absent.err, "no secret at secret/none"));
    const ExitResult no_data = cli.Run({"kv", "patch", "secret/app"});
    CHECK(no_data.exit_code == 2);
  }

  TEST_CASE("cli kv: list") {
    CliFixture cli;
    REQUIRE(cli.Run({"kv", "put", "secret/team/a", "k=1"}).exit_code == 0);
    REQUIRE(cli.Run({"kv", "put", "secret/team/sub/b", "k=2"}).exit_code == 0);

    const ExitResult table = cli.Run({"kv", "list", "secret/team"});
    CHECK(table.exit_code == 0);
    CHECK(Has(table.out, "Keys"));
    CHECK(Has(table.out, "a\n"));
    CHECK(Has(table.out, "sub/\n"));

    const ExitResult as_json = cli.Run({"kv", "list", "-format=json", "-mount=secret", "team"});
    CHECK(as_json.exit_code == 0);
    CHECK(ParseOut(as_json) == json({"a", "sub/"}));

    const ExitResult root = cli.Run({"kv", "list", "-format=json", "secret/"});
    CHECK(root.exit_code == 0);
    CHECK(ParseOut(root) == json({"team/"}));

    const ExitResult missing = cli.Run({"kv", "list", "secret/nothing"});
    CHECK(missing.exit_code == 1);
    CHECK(Has(missing.err, "secret/nothing"));
  }

  TEST_CASE("cli kv: delete, undelete, destroy") {
    CliFixture cli;
    REQUIRE(cli.Run({"kv", "put", "secret/v", "n=one"}).exit_code == 0);
    REQUIRE(cli.Run({"kv", "put", "secret/v", "n=two"}).exit_code == 0);

    const ExitResult deleted = cli.Run({"kv", "delete", "secret/v"});
    CHECK(deleted.exit_code == 0);
    CHECK(Has(deleted.out, "Success!"));
    const ExitResult after_delete = cli.Run({"kv", "get", "secret/v"});
    CHECK(after_delete.exit_code == 1);
    CHECK(Has(after_delete.err, "version 2 of secret/v is deleted"));
    CHECK(Has(after_delete.out, "deletion_time"));
    CHECK(cli.Run({"kv", "get", "-field=n", "-version=1", "secret/v"}).out == "one");

    const ExitResult undeleted = cli.Run({"kv", "undelete", "-versions=2", "secret/v"});
    CHECK(undeleted.exit_code == 0);
    CHECK(cli.Run({"kv", "get", "-field=n", "secret/v"}).out == "two");

    const ExitResult destroyed = cli.Run({"kv", "destroy", "-versions=1", "secret/v"});
    CHECK(destroyed.exit_code == 0);
    const ExitResult gone = cli.Run({"kv", "get", "-version=1", "secret/v"});
    CHECK(gone.exit_code == 1);
    CHECK(Has(gone.err, "version 1 of secret/v is destroyed"));
    const ExitResult still_gone = cli.Run({"kv", "undelete", "-versions=1", "secret/v"});
    CHECK(still_gone.exit_code == 0);
    CHECK(cli.Run({"kv", "get", "-version=1", "secret/v"}).exit_code == 1);

    const ExitResult by_version = cli.Run({"kv", "delete", "-versions=2", "secret/v"});
    CHECK(by_version.exit_code == 0);
    CHECK(cli.Run({"kv", "get", "secret/v"}).exit_code == 1);

    CHECK(cli.Run({"kv", "undelete", "secret/v"}).exit_code == 2);
    CHECK(cli.Run({"kv", "destroy", "secret/v"}).exit_code == 2);
    const ExitResult bad_list = cli.Run({"kv", "destroy", "-versions=1,x", "secret/v"});
    CHECK(bad_list.exit_code == 2);
    CHECK(Has(bad_list.err, "-versions"));
  }

  TEST_CASE("cli kv: metadata get, put, delete") {
    CliFixture cli;
    REQUIRE(cli.Run({"kv", "put", "secret/m", "a=1"}).exit_code == 0);

    const ExitResult put = cli.Run({"kv", "metadata", "put", "-max-versions=3", "-cas-required",
                                    "-delete-version-after=1h", "-custom-metadata=owner=ops",
                                    "-custom-metadata", "team=db", "secret/m"});
    CHECK(put.exit_code == 0);
    CHECK(Has(put.out, "Success!"));

    const ExitResult as_json = cli.Run({"kv", "metadata", "get", "-format=json", "secret/m"});
    CHECK(as_json.exit_code == 0);
    const json metadata = ParseOut(as_json);
    CHECK(metadata["max_versions"] == 3);
    CHECK(metadata["cas_required"] == true);
    CHECK(metadata["delete_version_after"] == "1h0m0s");
    CHECK(metadata["custom_metadata"] == json({{"owner", "ops"}, {"team", "db"}}));
    CHECK(metadata["versions"].contains("1"));

    const ExitResult table = cli.Run({"kv", "metadata", "get", "secret/m"});
    CHECK(table.exit_code == 0);
    CHECK(Has(table.out, "== Metadata Path =="));
    CHECK(Has(table.out, "== Version 1 =="));
    CHECK(Has(table.out, "max_versions"));

    // cas_required now applies to writes.
    const ExitResult without_cas = cli.Run({"kv", "put", "secret/m", "a=2"});
    CHECK(without_cas.exit_code == 1);
    CHECK(Has(without_cas.err, "check-and-set parameter required"));
    CHECK(cli.Run({"kv", "put", "-cas=1", "secret/m", "a=2"}).exit_code == 0);

    const ExitResult off = cli.Run({"kv", "metadata", "put", "-cas-required=false", "secret/m"});
    CHECK(off.exit_code == 0);
    CHECK(cli.Run({"kv", "put", "secret/m", "a=3"}).exit_code == 0);

    const ExitResult bad =
        cli.Run({"kv", "metadata", "put", "-custom-metadata=novalue", "secret/m"});
    CHECK(bad.exit_code == 2);

    const ExitResult removed = cli.Run({"kv", "metadata", "delete", "secret/m"});
    CHECK(removed.exit_code == 0);
    CHECK(cli.Run({"kv", "get", "secret/m"}).exit_code == 1);
    const ExitResult no_metadata = cli.Run({"kv", "metadata", "get", "secret/m"});
    CHECK(no_metadata.exit_code == 1);
    CHECK(Has(no_metadata.err, "no secret at secret/m"));
  }

  TEST_CASE("cli kv: values from file and stdin") {
    CliFixture cli;
    const std::string password = "file-pass-" + RandomHex(8);
    const std::string file = cli.File("password.txt", password);
    CHECK(cli.Run({"kv", "put", "secret/f", "password=@" + file}).exit_code == 0);
    CHECK(ReadSecretData(*cli.server().Client(), "f") == json({{"password", password}}));

    const std::string piped = "stdin-pass-" + RandomHex(8);
    const ExitResult from_stdin =
        cli.RunWithStdin({"kv", "put", "secret/s", "user=web", "password=-"}, piped + "\n");
    CHECK(from_stdin.exit_code == 0);
    CHECK(ReadSecretData(*cli.server().Client(), "s") ==
          json({{"user", "web"}, {"password", piped}}));

    const ExitResult object =
        cli.RunWithStdin({"kv", "put", "secret/o", "-"}, R"({"token": "t-1", "n": "2"})");
    CHECK(object.exit_code == 0);
    CHECK(ReadSecretData(*cli.server().Client(), "o") == json({{"token", "t-1"}, {"n", "2"}}));

    const ExitResult patch_stdin =
        cli.RunWithStdin({"kv", "patch", "secret/s", "password=-"}, "rotated\n");
    CHECK(patch_stdin.exit_code == 0);
    CHECK(ReadSecretData(*cli.server().Client(), "s")["password"] == "rotated");

    const ExitResult missing_file = cli.Run({"kv", "put", "secret/f", "password=@/nonexistent"});
    CHECK(missing_file.exit_code == 2);
  }

  TEST_CASE("cli kv: secret key rejected on argv") {
    CliFixture cli;
    const std::string value = "argv-secret-" + RandomHex(8);
    for (const char* command : {"put", "patch"}) {
      CAPTURE(command);
      const ExitResult refused = cli.Run({"kv", command, "secret/p", "db_password=" + value});
      CHECK(refused.exit_code == 2);
      CHECK(Has(refused.err, "db_password"));
      CHECK(Has(refused.err, "-allow-argv"));
      CHECK_FALSE(Has(refused.err, value));
      CHECK_FALSE(Has(refused.out, value));
    }
    const ExitResult write = cli.Run({"write", "secret/data/p", "api_token=" + value});
    CHECK(write.exit_code == 2);
    CHECK_FALSE(Has(write.err, value));
    CHECK(StatusOf(cli.server().Client()->Get("/v1/secret/data/p")) == 404);

    const ExitResult allowed =
        cli.Run({"kv", "put", "-allow-argv", "secret/p", "db_password=" + value});
    CHECK(allowed.exit_code == 0);
    CHECK(Has(allowed.err, "shell history"));
    CHECK_FALSE(Has(allowed.err, value));
    CHECK(ReadSecretData(*cli.server().Client(), "p") == json({{"db_password", value}}));
  }

  TEST_CASE("cli kv: login with a token") {
    CliFixture cli;
    const std::string root(kRootToken);
    const ExitResult rejected = cli.RunWithStdin({"login"}, "not-a-token\n", cli.Env(""));
    CHECK(rejected.exit_code == 1);
    CHECK_FALSE(fs::exists(cli.token_file()));
    CHECK_FALSE(Has(rejected.err, "not-a-token"));

    const ExitResult no_store = cli.RunWithStdin({"login", "-no-store", "-"}, root, cli.Env(""));
    CHECK(no_store.exit_code == 0);
    CHECK(Has(no_store.out, root));
    CHECK_FALSE(fs::exists(cli.token_file()));

    const ExitResult logged_in = RunToExit({"login", root}, cli.Env(""));
    CHECK(logged_in.exit_code == 0);
    CHECK(Has(logged_in.out, "Success!"));
    REQUIRE(fs::exists(cli.token_file()));
    CHECK((fs::status(cli.token_file()).permissions() & fs::perms::all) ==
          (fs::perms::owner_read | fs::perms::owner_write));
    CHECK(ReadWholeFile(cli.token_file()).find(root) == 0);

    // Later commands use the stored token.
    REQUIRE(RunToExit({"kv", "put", "secret/after-login", "k=v"}, cli.Env("")).exit_code == 0);
    CHECK(RunToExit({"kv", "get", "-field=k", "secret/after-login"}, cli.Env("")).out == "v");
  }

  TEST_CASE("cli kv: login with approle") {
    CliFixture cli;
    auto root = cli.server().Client();
    REQUIRE(StatusOf(PostJson(*root, "/v1/sys/policies/acl/reader",
                              {{"policy", "path \"secret/data/shared\" { capabilities = "
                                          "[\"read\"] }"}})) == 204);
    REQUIRE(StatusOf(WriteSecret(*root, "shared", {{"k", "shared-value"}})) == 200);
    const auto [role_id, secret_id] = CreateAppRole(*root, "web", json::array({"reader"}));
    const std::string secret_file = cli.File("secret-id", secret_id + "\n");

    const ExitResult plain =
        RunToExit({"login", "-method=approle", "role_id=" + role_id, "secret_id=" + secret_id},
                  cli.Env(""));
    CHECK(plain.exit_code == 2);
    CHECK_FALSE(Has(plain.err, secret_id));
    CHECK_FALSE(fs::exists(cli.token_file()));

    const ExitResult wrong = cli.RunWithStdin(
        {"login", "-method=approle", "role_id=" + role_id, "secret_id=-"}, "wrong", cli.Env(""));
    CHECK(wrong.exit_code == 1);
    CHECK_FALSE(fs::exists(cli.token_file()));

    const ExitResult logged_in = RunToExit(
        {"login", "-method=approle", "role_id=" + role_id, "secret_id=@" + secret_file},
        cli.Env(""));
    CHECK(logged_in.exit_code == 0);
    CAPTURE(logged_in.err);
    REQUIRE(fs::exists(cli.token_file()));
    CHECK((fs::status(cli.token_file()).permissions() & fs::perms::all) ==
          (fs::perms::owner_read | fs::perms::owner_write));
    const std::string token = ReadWholeFile(cli.token_file());
    CHECK_FALSE(Has(token, std::string(kRootToken)));

    // The AppRole token reads what its policy allows, and nothing else.
    CHECK(RunToExit({"kv", "get", "-field=k", "secret/shared"}, cli.Env("")).out ==
          "shared-value");
    const ExitResult denied = RunToExit({"kv", "put", "secret/shared", "k=x"}, cli.Env(""));
    CHECK(denied.exit_code == 1);
    CHECK(Has(denied.err, "403"));
    const ExitResult self =
        RunToExit({"read", "-format=json", "auth/token/lookup-self"}, cli.Env(""));
    CHECK(self.exit_code == 0);
    CHECK(ParseOut(self)["policies"].dump().find("reader") != std::string::npos);

    const ExitResult field = RunToExit({"login", "-no-store", "-method=approle", "-field=token",
                                        "role_id=" + role_id, "secret_id=@" + secret_file},
                                       cli.Env(""));
    // Secret IDs have no use limit unless the role sets one, so the same one logs in again.
    CHECK(field.exit_code == 0);
    CHECK_FALSE(field.out.empty());
    CHECK_FALSE(Has(field.out, "Success!"));
    CHECK(Trimmed(field.out) != Trimmed(token));
    CHECK(ReadWholeFile(cli.token_file()) == token);
  }

  TEST_CASE("cli kv: login with a client certificate") {
    DevTlsServer server;
    REQUIRE(server.Start());
    REQUIRE_FALSE(server.ca_file().empty());
    TempDir home;
    const std::vector<std::string> admin = {
        "HOME=" + home.path().string(), "KEYWARD_ADDR=" + server.url(),
        "KEYWARD_CACERT=" + server.ca_file().string(), "KEYWARD_TOKEN=" + server.token(),
        "VAULT_ADDR=", "VAULT_TOKEN="};
    std::vector<std::string> workload = admin;
    workload[3] = "KEYWARD_TOKEN=";

    // The server's own PKI issues the SVID, and its CA is the cert method's trust anchor.
    REQUIRE(RunToExit({"request", "POST", "pki/root/generate/internal", "-d",
                       R"({"trust_domain": "example.org"})"},
                      admin).exit_code == 0);
    REQUIRE(RunToExit({"request", "POST", "pki/roles/bootstrap", "-d",
                       R"({"allowed_spiffe_ids": ["spiffe://example.org/ns/*"]})"},
                      admin).exit_code == 0);
    const ExitResult ca = RunToExit({"request", "GET", "pki/ca/pem"}, admin);
    REQUIRE(ca.exit_code == 0);
    REQUIRE(Has(ca.out, "BEGIN CERTIFICATE"));
    const fs::path ca_pem = server.scratch_dir() / "trust-anchor.pem";
    WriteTextFile(ca_pem, ca.out);
    REQUIRE(RunToExit({"write", "auth/cert/certs/workloads", "certificate=@" + ca_pem.string(),
                       "allowed_spiffe_ids=spiffe://example.org/ns/*", "policies=default"},
                      admin).exit_code == 0);
    const ExitResult issued =
        RunToExit({"write", "-format=json", "pki/issue/bootstrap",
                   "spiffe_id=spiffe://example.org/ns/web"},
                  admin);
    REQUIRE(issued.exit_code == 0);
    const json svid = ParseOut(issued);
    REQUIRE(svid["certificate"].is_string());
    const fs::path cert_file = server.scratch_dir() / "svid.pem";
    const fs::path key_file = server.scratch_dir() / "svid-key.pem";
    WriteTextFile(cert_file, svid["certificate"].get<std::string>());
    WriteTextFile(key_file, svid["private_key"].get<std::string>());

    const ExitResult no_cert = RunToExit({"login", "-method=cert"}, workload);
    CHECK(no_cert.exit_code == 2);
    CHECK(Has(no_cert.err, "-client-cert"));

    const ExitResult logged_in =
        RunToExit({"login", "-method=cert", "-client-cert=" + cert_file.string(),
                   "-client-key=" + key_file.string(), "name=workloads"},
                  workload);
    CHECK(logged_in.exit_code == 0);
    REQUIRE(fs::exists(home.path() / ".keyward-token"));
    const ExitResult self =
        RunToExit({"read", "-format=json", "auth/token/lookup-self"}, workload);
    CHECK(self.exit_code == 0);
    CHECK(ParseOut(self)["meta"]["spiffe_id"] == "spiffe://example.org/ns/web");
  }

  TEST_CASE("cli kv: generic commands on sys/policy") {
    CliFixture cli;
    const std::string rules = "path \"secret/data/app\" {\n  capabilities = [\"read\"]\n}\n";
    const std::string file = cli.File("app.hcl", rules);

    const ExitResult written = cli.Run({"write", "sys/policy/app", "policy=@" + file});
    CHECK(written.exit_code == 0);
    CHECK(Has(written.out, "Success! Data written to: sys/policy/app"));

    const ExitResult read = cli.Run({"read", "-format=json", "sys/policy/app"});
    CHECK(read.exit_code == 0);
    CHECK(ParseOut(read)["rules"] == rules);
    const ExitResult field = cli.Run({"read", "-field=name", "/sys/policy/app"});
    CHECK(field.out == "app");

    const ExitResult listed = cli.Run({"list", "-format=json", "sys/policy"});
    CHECK(listed.exit_code == 0);
    CHECK(ParseOut(listed).dump().find("\"app\"") != std::string::npos);

    const ExitResult deleted = cli.Run({"delete", "sys/policy/app"});
    CHECK(deleted.exit_code == 0);
    CHECK(Has(deleted.out, "Success!"));
    const ExitResult gone = cli.Run({"read", "sys/policy/app"});
    CHECK(gone.exit_code == 1);
    CHECK(Has(gone.err, "no value found at sys/policy/app"));

    CHECK(cli.Run({"write", "sys/policy/app"}).exit_code == 2);
    CHECK(cli.Run({"read"}).exit_code == 2);
    const ExitResult bad_body = cli.Run({"write", "-force", "sys/policy/empty"});
    CHECK(bad_body.exit_code == 1);
    CHECK(Has(bad_body.err, "policy"));
  }

  TEST_CASE("cli kv: request escape hatch") {
    CliFixture cli;
    const std::string body = cli.File("body.json", R"({"data": {"user": "web"}})");
    const ExitResult posted = cli.Run({"request", "POST", "secret/data/raw", "-d", "@" + body});
    CHECK(posted.exit_code == 0);
    CHECK(ParseOut(posted)["data"]["version"] == 1);

    const ExitResult missing = cli.Run({"request", "get", "/v1/secret/data/none"});
    CHECK(missing.exit_code == 1);
    CHECK(ParseOut(missing) == json({{"errors", json::array()}}));
    CHECK(Has(missing.err, "404"));

    const ExitResult head = cli.Run({"request", "-i", "GET", "secret/data/none"});
    CHECK(head.exit_code == 1);
    CHECK(head.out.starts_with("HTTP/1.1 404"));
    CHECK(Has(head.out, "Content-Type: application/json"));

    const std::string patch = R"({"data": {"port": "1"}})";
    const ExitResult unsupported = cli.Run({"request", "PATCH", "secret/data/raw", "-d", patch});
    CHECK(unsupported.exit_code == 1);
    CHECK(Has(unsupported.out, "merge-patch"));
    const ExitResult merged =
        cli.Run({"request", "PATCH", "secret/data/raw", "-d", patch, "-H",
                 "Content-Type: application/merge-patch+json"});
    CHECK(merged.exit_code == 0);
    CHECK(ReadSecretData(*cli.server().Client(), "raw") == json({{"user", "web"}, {"port", "1"}}));

    const ExitResult piped = cli.RunWithStdin({"request", "PUT", "secret/data/piped", "-d", "-"},
                                              R"({"data": {"a": "b"}})");
    CHECK(piped.exit_code == 0);
    CHECK(ReadSecretData(*cli.server().Client(), "piped") == json({{"a", "b"}}));

    const ExitResult anonymous =
        RunToExit({"request", "GET", "secret/data/raw"}, cli.Env(""));
    CHECK(anonymous.exit_code == 1);
    CHECK(Has(anonymous.out, "errors"));

    CHECK(cli.Run({"request", "GET"}).exit_code == 2);
    CHECK(cli.Run({"request", "GET", "sys/health", "-H", "NoColon"}).exit_code == 2);
  }

  TEST_CASE("cli kv: status, seal and unseal") {
    CliFixture cli;
    const ExitResult open = cli.Run({"status"});
    CHECK(open.exit_code == 0);
    CHECK(Has(open.out, "Sealed"));
    CHECK(Has(open.out, "false"));
    const ExitResult as_json = cli.Run({"status", "-format=json"});
    CHECK(as_json.exit_code == 0);
    CHECK(ParseOut(as_json)["sealed"] == false);

    const ExitResult init_status = cli.Run({"operator", "init", "-status"});
    CHECK(init_status.exit_code == 0);
    CHECK(Has(init_status.out, "Vault is initialized"));
    const ExitResult init_again = cli.Run({"operator", "init"});
    CHECK(init_again.exit_code == 1);
    CHECK(Has(init_again.err, "error"));

    const ExitResult rotated = cli.Run({"operator", "rotate", "-format=json"});
    CHECK(rotated.exit_code == 0);
    CHECK(ParseOut(rotated)["term"] == 2);

    const ExitResult sealed = cli.Run({"operator", "seal"});
    CHECK(sealed.exit_code == 0);
    CHECK(Has(sealed.out, "Success!"));
    const ExitResult sealed_status = cli.Run({"status"});
    CHECK(sealed_status.exit_code == 2);
    CHECK(Has(sealed_status.out, "true"));
    CHECK(cli.Run({"kv", "get", "secret/x"}).exit_code == 1);

    const fs::path pin_file = cli.server().data_dir() / "hsm-pin";
    REQUIRE(fs::exists(pin_file));
    const std::string pin = ReadWholeFile(pin_file);
    const ExitResult plain = cli.Run({"operator", "unseal", pin});
    CHECK(plain.exit_code == 2);
    CHECK_FALSE(Has(plain.err, pin));
    const ExitResult wrong = cli.RunWithStdin({"operator", "unseal"}, "0000\n");
    CHECK(wrong.exit_code == 1);
    CHECK(Has(wrong.err, "rejected the PIN"));
    CHECK(cli.Run({"status"}).exit_code == 2);

    const ExitResult unsealed = cli.Run({"operator", "unseal", "@" + pin_file.string()});
    CHECK(unsealed.exit_code == 0);
    CHECK(cli.Run({"status"}).exit_code == 0);

    REQUIRE(cli.Run({"operator", "seal"}).exit_code == 0);
    const ExitResult from_stdin = cli.RunWithStdin({"operator", "unseal", "-"}, pin + "\n");
    CHECK(from_stdin.exit_code == 0);
    CHECK(cli.Run({"kv", "put", "secret/x", "k=v"}).exit_code == 0);
  }
}

}  // namespace kw::e2e
