// The keyward client's shared behaviour through the real binary: global flags and their
// environment variables, the token file, output formats, exit codes, help, and data arguments.
// Exact output is checked against a stub server in this process that returns known replies;
// server errors come from a real dev server.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;

// Every variable the client reads, blanked so that the caller's environment cannot leak in.
// The client treats an empty variable as unset.
const std::vector<std::string> kBlankEnvironment = {
    "KEYWARD_ADDR=",        "VAULT_ADDR=",        "KEYWARD_TOKEN=",       "VAULT_TOKEN=",
    "KEYWARD_CACERT=",      "VAULT_CACERT=",      "KEYWARD_CLIENT_CERT=", "VAULT_CLIENT_CERT=",
    "KEYWARD_CLIENT_KEY=",  "VAULT_CLIENT_KEY=",  "KEYWARD_SKIP_VERIFY=", "VAULT_SKIP_VERIFY=",
    "KEYWARD_FORMAT=",      "VAULT_FORMAT="};

// Returns the blank environment with HOME=`home`, and `extra` (NAME=value) replacing entries
// of the same name. Each name appears once, because the child's getenv finds the first.
std::vector<std::string> Environment(const fs::path& home,
                                     const std::vector<std::string>& extra = {}) {
  std::map<std::string, std::string> by_name;
  std::vector<std::string> entries = kBlankEnvironment;
  entries.push_back("HOME=" + home.string());
  entries.insert(entries.end(), extra.begin(), extra.end());
  for (const auto& entry : entries) by_name[entry.substr(0, entry.find('='))] = entry;

  std::vector<std::string> env;
  for (const auto& [name, entry] : by_name) env.push_back(entry);
  return env;
}

// Runs `keyward` with `args`, HOME in `home`, and `extra` variables.
ExitResult Keyward(const fs::path& home, const std::vector<std::string>& args,
                   const std::vector<std::string>& extra = {}) {
  return RunToExit(args, Environment(home, extra));
}

// Runs `script` with /bin/sh, with $KEYWARD set to the binary, for tests that need standard
// input.
ExitResult Shell(const fs::path& home, const std::string& script,
                 const std::vector<std::string>& extra = {}) {
  std::vector<std::string> with_binary = extra;
  with_binary.push_back("KEYWARD=" + KeywardBinary().string());
  return RunProgram("/bin/sh", {"-c", script}, Environment(home, with_binary));
}

// A request as the stub server received it.
struct SeenRequest {
  std::string method;
  std::string path;
  std::string body;
  std::string token;          // X-Vault-Token; empty when absent
  std::string vault_request;  // X-Vault-Request
  std::string content_type;
};

// An HTTP server on 127.0.0.1 that returns canned replies by path and records every request.
// Paths without a reply get 404 with {"errors":[]}.
class StubServer {
 public:
  explicit StubServer(std::string name) : name_(std::move(name)) {
    const auto handler = [this](const httplib::Request& request, httplib::Response& response) {
      Handle(request, response);
    };
    server_.Get(".*", handler);
    server_.Put(".*", handler);
    server_.Post(".*", handler);
    server_.Delete(".*", handler);
    port_ = server_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    // The socket listens from bind_to_any_port on, so connections made before the thread
    // starts accepting wait in the backlog.
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~StubServer() {
    server_.stop();
    thread_.join();
  }
  StubServer(const StubServer&) = delete;
  StubServer& operator=(const StubServer&) = delete;

  // Replies to `path` (such as "/v1/stub/read") with `status` and `body` (none when null).
  void Reply(const std::string& path, int status, const json& body) {
    std::lock_guard lock(mutex_);
    replies_[path] = {status, body};
  }

  std::vector<SeenRequest> Seen() const {
    std::lock_guard lock(mutex_);
    return seen_;
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  void Handle(const httplib::Request& request, httplib::Response& response) {
    std::lock_guard lock(mutex_);
    seen_.push_back({request.method, request.path, request.body,
                     request.get_header_value("X-Vault-Token"),
                     request.get_header_value("X-Vault-Request"),
                     request.get_header_value("Content-Type")});
    // The reply to stub/whoami is built from the request: the server's name and the token sent.
    if (request.path == "/v1/stub/whoami") {
      json body = {{"data",
                    {{"server", name_}, {"token", request.get_header_value("X-Vault-Token")}}}};
      response.set_content(body.dump(), "application/json");
      return;
    }
    auto it = replies_.find(request.path);
    if (it == replies_.end()) {
      response.status = 404;
      response.set_content(R"({"errors":[]})", "application/json");
      return;
    }
    response.status = it->second.first;
    if (!it->second.second.is_null()) {
      response.set_content(it->second.second.dump(), "application/json");
    }
  }

  std::string name_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::map<std::string, std::pair<int, json>> replies_;  // guarded by mutex_
  std::vector<SeenRequest> seen_;                          // guarded by mutex_
};

// A KV-like read reply whose data contains strings that look like a number and a boolean.
const json kReadReply = {
    {"request_id", "5c1e6f0e-read"},
    {"lease_id", ""},
    {"renewable", false},
    {"lease_duration", 0},
    {"data",
     {{"zeta", "last"},
      {"alpha", "1"},
      {"count", 123},
      {"flag", "true"},
      {"enabled", true},
      {"empty", nullptr},
      {"nested", {{"a", {1, 2}}}}}},
    {"wrap_info", nullptr},
    {"warnings", nullptr},
    {"auth", nullptr}};

// A login reply: no data, an auth block.
const json kLoginReply = {
    {"request_id", "5c1e6f0e-login"},
    {"lease_id", ""},
    {"renewable", false},
    {"lease_duration", 0},
    {"data", nullptr},
    {"wrap_info", nullptr},
    {"warnings", nullptr},
    {"auth",
     {{"client_token", "kw.stub-client-token"},
      {"accessor", "stub-accessor"},
      {"policies", {"default", "web"}},
      {"token_policies", {"default", "web"}},
      {"metadata", {{"role", "web"}}},
      {"lease_duration", 2764800},
      {"renewable", true}}}};

// A reply with a lease, like database credentials.
const json kLeaseReply = {
    {"request_id", "5c1e6f0e-lease"},
    {"lease_id", "database/creds/ro/abc"},
    {"renewable", true},
    {"lease_duration", 5400},
    {"data", {{"username", "v-ro-1"}, {"password", "stub-password"}}},
    {"wrap_info", nullptr},
    {"warnings", nullptr},
    {"auth", nullptr}};

// Returns a loopback port with nothing listening on it: bound by the kernel, then closed.
int ClosedLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  socklen_t length = sizeof address;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0);
  ::close(fd);
  return ntohs(address.sin_port);
}

// The command names in the "keyward -help" overview: indented lines of a name, two or more
// spaces, and a summary.
std::vector<std::string> OverviewCommands(const std::string& overview) {
  std::vector<std::string> names;
  std::istringstream lines(overview);
  bool in_flags = false;
  static const std::regex kCommandLine("^  ([a-z][a-z0-9 -]*[a-z0-9])  +\\S.*$");
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("Global flags")) in_flags = true;
    if (line.empty()) in_flags = false;
    std::smatch match;
    if (!in_flags && std::regex_match(line, match, kCommandLine)) names.push_back(match[1]);
  }
  return names;
}

std::vector<std::string> SplitWords(const std::string& text) {
  std::vector<std::string> words;
  std::istringstream stream(text);
  for (std::string word; stream >> word;) words.push_back(word);
  return words;
}

}  // namespace

TEST_SUITE("e2e/cli") {
  TEST_CASE("cli: address precedence") {
    TempDir home;
    StubServer flag_server("flag"), keyward_server("keyward"), vault_server("vault");
    const std::vector<std::string> read = {"read", "-field=server", "stub/whoami"};

    auto all = Keyward(home.path(), {"read", "-address=" + flag_server.url(), "-field=server",
                                     "stub/whoami"},
                       {"KEYWARD_ADDR=" + keyward_server.url(), "VAULT_ADDR=" + vault_server.url()});
    CHECK(all.exit_code == 0);
    CHECK(all.out == "flag");

    auto two_dashes = Keyward(home.path(), {"--address", flag_server.url(), "read",
                                            "-field=server", "stub/whoami"},
                              {"KEYWARD_ADDR=" + keyward_server.url()});
    CHECK(two_dashes.exit_code == 0);
    CHECK(two_dashes.out == "flag");

    auto env_both = Keyward(home.path(), read,
                            {"KEYWARD_ADDR=" + keyward_server.url(),
                             "VAULT_ADDR=" + vault_server.url()});
    CHECK(env_both.exit_code == 0);
    CHECK(env_both.out == "keyward");

    auto vault_only = Keyward(home.path(), read, {"VAULT_ADDR=" + vault_server.url()});
    CHECK(vault_only.exit_code == 0);
    CHECK(vault_only.out == "vault");
  }

  TEST_CASE("cli: token precedence and file") {
    TempDir home;
    StubServer stub("stub");
    const std::vector<std::string> read = {"read", "-field=token", "stub/whoami"};
    const std::string address = "KEYWARD_ADDR=" + stub.url();
    WriteTextFile(home.path() / ".keyward-token", "file-token\n", 0600);

    auto all = Keyward(home.path(), {"read", "stub/whoami", "-field=token", "-token=flag-token"},
                       {address, "KEYWARD_TOKEN=keyward-token", "VAULT_TOKEN=vault-token"});
    CHECK(all.exit_code == 0);
    CHECK(all.out == "flag-token");

    auto env_both = Keyward(home.path(), read,
                            {address, "KEYWARD_TOKEN=keyward-token", "VAULT_TOKEN=vault-token"});
    CHECK(env_both.out == "keyward-token");

    auto vault_only = Keyward(home.path(), read, {address, "VAULT_TOKEN=vault-token"});
    CHECK(vault_only.out == "vault-token");

    auto file_only = Keyward(home.path(), read, {address});
    CHECK(file_only.exit_code == 0);
    CHECK(file_only.out == "file-token");
    CHECK(file_only.err == "");

    // A token file that others can read is ignored, with a warning that gives the fix.
    fs::permissions(home.path() / ".keyward-token", fs::perms::owner_read |
                                                        fs::perms::owner_write |
                                                        fs::perms::group_read |
                                                        fs::perms::others_read);
    auto readable = Keyward(home.path(), read, {address});
    CHECK(readable.exit_code == 0);
    CHECK(readable.out == "");
    CHECK(readable.err.find("chmod 600") != std::string::npos);
    CHECK(readable.err.find("file-token") == std::string::npos);

    // Every request carries the X-Vault-Request header of Vault's clients.
    const auto seen = stub.Seen();
    REQUIRE_FALSE(seen.empty());
    for (const auto& request : seen) CHECK(request.vault_request == "true");
    CHECK(seen.back().token == "");
  }

  TEST_CASE("cli: login writes token file 0600") {
    DevServer server;
    REQUIRE(server.Start());
    TempDir home;
    const std::string address = "KEYWARD_ADDR=" + server.url();

    auto login = Shell(home.path(), "printf '%s\\n' \"$ROOT\" | \"$KEYWARD\" login -",
                       {address, "ROOT=" + server.token()});
    CHECK(login.exit_code == 0);
    CHECK(login.err == "");

    const fs::path file = home.path() / ".keyward-token";
    struct stat info {};
    REQUIRE(::stat(file.c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0600);
    std::ifstream stream(file);
    std::string contents((std::istreambuf_iterator<char>(stream)), std::istreambuf_iterator<char>());
    CHECK(contents == server.token() + "\n");
    // No temporary file is left next to it.
    int entries = 0;
    for (const auto& entry : fs::directory_iterator(home.path())) {
      (void)entry;
      ++entries;
    }
    CHECK(entries == 1);

    // The stored token is used when no flag or variable gives one.
    auto read = Keyward(home.path(), {"read", "-field=display_name", "auth/token/lookup-self"},
                        {address});
    CHECK(read.exit_code == 0);
    CHECK(read.out == "root");

    // A second login replaces the file and keeps the mode.
    auto again = Shell(home.path(), "printf '%s\\n' \"$ROOT\" | \"$KEYWARD\" login -",
                       {address, "ROOT=" + server.token()});
    CHECK(again.exit_code == 0);
    REQUIRE(::stat(file.c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0600);
  }

  TEST_CASE("cli: table output aligns") {
    TempDir home;
    StubServer stub("stub");
    stub.Reply("/v1/stub/read", 200, kReadReply);
    stub.Reply("/v1/stub/login", 200, kLoginReply);
    stub.Reply("/v1/stub/lease", 200, kLeaseReply);
    const std::string address = "KEYWARD_ADDR=" + stub.url();

    auto read = Keyward(home.path(), {"read", "stub/read"}, {address});
    CHECK(read.exit_code == 0);
    CHECK(read.out ==
          "Key      Value\n"
          "---      -----\n"
          "alpha    1\n"
          "count    123\n"
          "empty    n/a\n"
          "enabled  true\n"
          "flag     true\n"
          "nested   {\"a\":[1,2]}\n"
          "zeta     last\n");

    auto login = Keyward(home.path(), {"read", "stub/login"}, {address});
    CHECK(login.exit_code == 0);
    CHECK(login.out ==
          "Key              Value\n"
          "---              -----\n"
          "token            kw.stub-client-token\n"
          "token_accessor   stub-accessor\n"
          "token_duration   768h\n"
          "token_renewable  true\n"
          "token_policies   [\"default\",\"web\"]\n"
          "policies         [\"default\",\"web\"]\n"
          "token_meta_role  web\n");

    auto lease = Keyward(home.path(), {"read", "stub/lease"}, {address});
    CHECK(lease.exit_code == 0);
    CHECK(lease.out ==
          "Key              Value\n"
          "---              -----\n"
          "lease_id         database/creds/ro/abc\n"
          "lease_duration   1h30m\n"
          "lease_renewable  true\n"
          "password         stub-password\n"
          "username         v-ro-1\n");
  }

  TEST_CASE("cli: json and yaml output") {
    TempDir home;
    StubServer stub("stub");
    stub.Reply("/v1/stub/read", 200, kReadReply);
    stub.Reply("/v1/stub/login", 200, kLoginReply);
    const std::string address = "KEYWARD_ADDR=" + stub.url();

    auto data = Keyward(home.path(), {"read", "-format=json", "stub/read"}, {address});
    CHECK(data.exit_code == 0);
    CHECK(json::parse(data.out) == kReadReply["data"]);

    auto raw = Keyward(home.path(), {"-format", "json", "read", "stub/read", "-raw"}, {address});
    CHECK(raw.exit_code == 0);
    CHECK(json::parse(raw.out) == kReadReply);

    auto from_env = Keyward(home.path(), {"read", "stub/read"}, {address, "VAULT_FORMAT=json"});
    CHECK(json::parse(from_env.out) == kReadReply["data"]);

    auto auth = Keyward(home.path(), {"read", "stub/login", "-format=json"}, {address});
    CHECK(json::parse(auth.out) == kLoginReply["auth"]);

    auto yaml = Keyward(home.path(), {"read", "-format=yaml", "stub/read"}, {address});
    CHECK(yaml.exit_code == 0);
    CHECK(yaml.out ==
          "alpha: \"1\"\n"
          "count: 123\n"
          "empty: null\n"
          "enabled: true\n"
          "flag: \"true\"\n"
          "nested:\n"
          "  a:\n"
          "    - 1\n"
          "    - 2\n"
          "zeta: last\n");
  }

  TEST_CASE("cli: field prints one value raw") {
    TempDir home;
    StubServer stub("stub");
    stub.Reply("/v1/stub/read", 200, kReadReply);
    stub.Reply("/v1/stub/login", 200, kLoginReply);
    stub.Reply("/v1/stub/lease", 200, kLeaseReply);
    const std::string address = "KEYWARD_ADDR=" + stub.url();
    const auto field = [&](const std::string& path, const std::string& name) {
      return Keyward(home.path(), {"read", path, "-field=" + name}, {address});
    };

    CHECK(field("stub/read", "zeta").out == "last");
    CHECK(field("stub/read", "alpha").out == "1");
    CHECK(field("stub/read", "nested").out == "{\"a\":[1,2]}");
    CHECK(field("stub/login", "token").out == "kw.stub-client-token");
    CHECK(field("stub/login", "token_accessor").out == "stub-accessor");
    CHECK(field("stub/login", "accessor").out == "stub-accessor");
    CHECK(field("stub/lease", "lease_id").out == "database/creds/ro/abc");
    CHECK(field("stub/read", "request_id").out == "5c1e6f0e-read");

    auto missing = field("stub/read", "nothing");
    CHECK(missing.exit_code == 1);
    CHECK(missing.out == "");
    CHECK(missing.err.find("\"nothing\"") != std::string::npos);
  }

  TEST_CASE("cli: exit codes") {
    DevServer server;
    REQUIRE(server.Start());
    TempDir home;
    const std::string address = "KEYWARD_ADDR=" + server.url();

    auto ok = Keyward(home.path(), {"read", "sys/policy/default"},
                      {address, "KEYWARD_TOKEN=" + server.token()});
    CHECK(ok.exit_code == 0);

    auto unknown_command = Keyward(home.path(), {"raed", "secret/data/x"}, {address});
    CHECK(unknown_command.exit_code == 2);
    CHECK(unknown_command.err.find("unknown command \"raed\"") != std::string::npos);
    CHECK(unknown_command.err.find("keyward read") != std::string::npos);

    // Only the command words are repeated, never the arguments after them.
    auto unknown_subcommand = Keyward(home.path(), {"kv", "gte", "password=hunter2-value"},
                                      {address});
    CHECK(unknown_subcommand.exit_code == 2);
    CHECK(unknown_subcommand.err.find("unknown command \"kv gte\"") != std::string::npos);
    CHECK(unknown_subcommand.err.find("keyward kv get") != std::string::npos);
    CHECK(unknown_subcommand.err.find("hunter2-value") == std::string::npos);

    auto unknown_global = Keyward(home.path(), {"-nosuch", "read", "sys/policy/default"},
                                  {address});
    CHECK(unknown_global.exit_code == 2);
    CHECK(unknown_global.err.find("unknown global flag -nosuch") != std::string::npos);

    auto unknown_flag = Keyward(home.path(), {"read", "-nosuch", "sys/policy/default"}, {address});
    CHECK(unknown_flag.exit_code == 2);
    CHECK(unknown_flag.err.find("unknown flag -nosuch") != std::string::npos);
    CHECK(unknown_flag.err.find("usage: keyward read") != std::string::npos);

    auto missing_global = Keyward(home.path(), {"read", "sys/policy/default", "-address"});
    CHECK(missing_global.exit_code == 2);
    CHECK(missing_global.err.find("missing value for flag -address") != std::string::npos);

    auto missing_value = Keyward(home.path(), {"request", "PUT", "sys/policy/x", "-d"}, {address});
    CHECK(missing_value.exit_code == 2);
    CHECK(missing_value.err.find("missing value for flag -d") != std::string::npos);

    auto bad_format = Keyward(home.path(), {"read", "-format=xml", "sys/policy/default"},
                              {address});
    CHECK(bad_format.exit_code == 2);
    CHECK(bad_format.err.find("-format") != std::string::npos);

    auto bad_skip = Keyward(home.path(), {"read", "sys/policy/default"},
                            {address, "VAULT_SKIP_VERIFY=maybe"});
    CHECK(bad_skip.exit_code == 2);
    CHECK(bad_skip.err.find("VAULT_SKIP_VERIFY") != std::string::npos);

    auto forbidden = Keyward(home.path(), {"read", "secret/data/x"},
                             {address, "KEYWARD_TOKEN=not-a-token"});
    CHECK(forbidden.exit_code == 1);
    CHECK(forbidden.out == "");
    CHECK(forbidden.err ==
          "error: reading secret/data/x: the server answered 403: permission denied\n");
    CHECK(forbidden.err.find("not-a-token") == std::string::npos);

    const std::string closed = "http://127.0.0.1:" + std::to_string(ClosedLoopbackPort());
    auto unreachable = Keyward(home.path(), {"read", "sys/policy/default", "-address=" + closed});
    CHECK(unreachable.exit_code == 1);
    CHECK(unreachable.err.find("cannot reach " + closed) != std::string::npos);

    auto bad_address = Keyward(home.path(), {"read", "sys/policy/default",
                                             "-address=ftp://127.0.0.1:1"});
    CHECK(bad_address.exit_code == 1);
    CHECK(bad_address.err.find("invalid address") != std::string::npos);
  }

  TEST_CASE("cli: help for every command") {
    TempDir home;
    auto overview = Keyward(home.path(), {"-help"});
    CHECK(overview.exit_code == 0);
    CHECK(overview.out.find("Global flags") != std::string::npos);
    const auto commands = OverviewCommands(overview.out);
    // The overview lists the commands of every family.
    const std::set<std::string> listed(commands.begin(), commands.end());
    for (const char* expected : {"status", "read", "write", "request", "kv get", "kv put",
                                 "token create", "policy write", "lease revoke", "version"}) {
      CAPTURE(expected);
      CHECK(listed.contains(expected));
    }

    for (const auto& name : commands) {
      CAPTURE(name);
      std::vector<std::string> args = SplitWords(name);
      args.push_back("-help");
      auto help = Keyward(home.path(), args);
      CHECK(help.exit_code == 0);
      CHECK(help.out.find("Usage: keyward " + name) != std::string::npos);
      // An "Example:" line followed by a command line of this command.
      const std::regex example("(^|\n)Example:\\s+keyward " + name + "( |\n)");
      CHECK(std::regex_search(help.out, example));
      CHECK(help.err == "");
    }

    auto bare = Keyward(home.path(), {});
    CHECK(bare.exit_code == 2);
    CHECK(bare.err.find("Usage: keyward <command>") != std::string::npos);

    auto group = Keyward(home.path(), {"kv", "-help"});
    CHECK(group.exit_code == 0);
    CHECK(group.out.find("  kv get ") != std::string::npos);
    CHECK(group.out.find("  kv put ") != std::string::npos);
    CHECK(group.out.find("token create") == std::string::npos);

    auto subgroup = Keyward(home.path(), {"help", "kv", "metadata"});
    CHECK(subgroup.exit_code == 0);
    CHECK(subgroup.out.find("  kv metadata get ") != std::string::npos);
    CHECK(subgroup.out.find("  kv get ") == std::string::npos);

    auto group_alone = Keyward(home.path(), {"token"});
    CHECK(group_alone.exit_code == 2);
    CHECK(group_alone.err.find("  token create ") != std::string::npos);

    auto version = Keyward(home.path(), {"-version"});
    CHECK(version.exit_code == 0);
    CHECK(version.out.starts_with("keyward "));
  }

  TEST_CASE("cli: data arguments through write") {
    TempDir home;
    StubServer stub("stub");
    stub.Reply("/v1/stub/echo", 204, nullptr);
    const std::string address = "KEYWARD_ADDR=" + stub.url();
    // The body of the latest request as JSON; null when none arrived or it is not JSON.
    const auto last_body = [&]() -> json {
      const auto seen = stub.Seen();
      if (seen.empty()) return nullptr;
      json body = json::parse(seen.back().body, nullptr, /*allow_exceptions=*/false);
      return body.is_discarded() ? json(nullptr) : body;
    };

    auto plain = Keyward(home.path(), {"write", "stub/echo", "user=web", "port=5432"}, {address});
    CHECK(plain.exit_code == 0);
    CHECK(plain.out == "Success! Data written to: stub/echo\n");
    CHECK(last_body() == json({{"user", "web"}, {"port", "5432"}}));
    CHECK(stub.Seen().back().method == "PUT");
    CHECK(stub.Seen().back().content_type == "application/json");

    auto quiet = Keyward(home.path(), {"write", "-format=json", "stub/echo", "user=web"},
                         {address});
    CHECK(quiet.exit_code == 0);
    CHECK(quiet.out == "");

    // Standard input gives one value; echo's newline is not part of it.
    auto from_stdin = Shell(home.path(),
                            "echo 'stdin pass' | \"$KEYWARD\" write stub/echo password=- user=web",
                            {address});
    CHECK(from_stdin.exit_code == 0);
    CHECK(last_body() == json({{"password", "stdin pass"}, {"user", "web"}}));

    // A file gives its exact bytes.
    const fs::path secret_file = home.path() / "password.txt";
    WriteTextFile(secret_file, "file pass\n", 0600);
    auto from_file = Keyward(home.path(), {"write", "stub/echo", "password=@" + secret_file.string()},
                             {address});
    CHECK(from_file.exit_code == 0);
    CHECK(last_body() == json({{"password", "file pass\n"}}));

    // A lone "-" reads a whole JSON object.
    auto object = Shell(home.path(),
                        "printf '{\"ttl\":\"1h\",\"n\":3}' | \"$KEYWARD\" write stub/echo -",
                        {address});
    CHECK(object.exit_code == 0);
    CHECK(last_body() == json({{"ttl", "1h"}, {"n", 3}}));

    // A secret-looking key on the command line is rejected, and nothing is sent.
    const std::size_t sent_before = stub.Seen().size();
    for (const char* key : {"password", "db_password", "apiToken", "client-secret", "PIN"}) {
      CAPTURE(key);
      auto rejected = Keyward(home.path(),
                              {"write", "stub/echo", std::string(key) + "=hunter2-value"},
                              {address});
      CHECK(rejected.exit_code == 2);
      CHECK(rejected.err.find("-allow-argv") != std::string::npos);
      CHECK(rejected.err.find("hunter2-value") == std::string::npos);
      CHECK(rejected.out.find("hunter2-value") == std::string::npos);
    }
    CHECK(stub.Seen().size() == sent_before);

    // Keys that only contain a short secret word inside another word pass.
    auto mapping = Keyward(home.path(), {"write", "stub/echo", "mapping=a", "spin=b"}, {address});
    CHECK(mapping.exit_code == 0);

    auto allowed = Keyward(home.path(),
                           {"write", "stub/echo", "password=hunter2-value", "-allow-argv"},
                           {address});
    CHECK(allowed.exit_code == 0);
    CHECK(allowed.err.find("shell history") != std::string::npos);
    CHECK(allowed.err.find("hunter2-value") == std::string::npos);
    CHECK(last_body() == json({{"password", "hunter2-value"}}));

    // Malformed arguments are named by position, never echoed.
    auto malformed = Keyward(home.path(), {"write", "stub/echo", "hunter2-value"}, {address});
    CHECK(malformed.exit_code == 2);
    CHECK(malformed.err.find("data argument 1") != std::string::npos);
    CHECK(malformed.err.find("hunter2-value") == std::string::npos);

    auto missing_file = Keyward(home.path(),
                                {"write", "stub/echo", "password=@" + (home.path() / "none").string()},
                                {address});
    CHECK(missing_file.exit_code == 2);
    CHECK(missing_file.err.find("password") != std::string::npos);

    // The server's refusal does not echo the value back either.
    stub.Reply("/v1/stub/denied", 400, json{{"errors", {"invalid request"}}});
    auto denied = Shell(home.path(),
                        "echo hunter2-value | \"$KEYWARD\" write stub/denied password=-",
                        {address});
    CHECK(denied.exit_code == 1);
    CHECK(denied.err == "error: writing stub/denied: the server answered 400: invalid request\n");
  }
}

}  // namespace kw::e2e
