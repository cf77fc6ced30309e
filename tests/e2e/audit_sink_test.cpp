// Audit sinks through the real binary. A file sink on a small tmpfs runs full, or its directory
// is deleted, so requests are refused and then resume. SIGHUP reopens a renamed file, a syslog
// sink sends to a socket the test owns, and secrets reach the sinks only as HMACs.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;
using std::chrono::steady_clock;

constexpr std::string_view kSoftHsmModule = "/usr/lib/softhsm/libsofthsm2.so";
constexpr auto kRefusalLimit = std::chrono::seconds(1);

// The server rejects a config or PIN file that other users can read.
void WriteText(const fs::path& path, const std::string& text) { WriteTextFile(path, text, 0600); }

std::string ReadText(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream stream(text);
  for (std::string line; std::getline(stream, line);) lines.push_back(line);
  return lines;
}

// Returns the record lines of a sink's output (those with "seq"). Fails the test on a line
// that is neither a record nor a checkpoint.
std::vector<std::string> RecordLines(const std::vector<std::string>& lines) {
  std::vector<std::string> records;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    CAPTURE(i);
    const json line = json::parse(lines[i], nullptr, /*allow_exceptions=*/false);
    REQUIRE(line.is_object());
    if (line.contains("seq")) {
      records.push_back(lines[i]);
    } else {
      CHECK(line.contains("checkpoint"));
    }
  }
  return records;
}

// Returns the stored bytes of every audit record, in sequence order.
std::vector<std::string> DatabaseRecords(const fs::path& db_path) {
  Database db(db_path);
  std::vector<std::string> records;
  for (auto& [key, value] :
       db.Rows("SELECT key, value FROM kv WHERE key >= 'sys/audit/log/' AND "
               "key < 'sys/audit/log0' ORDER BY key")) {
    records.push_back(std::move(value));
  }
  return records;
}

std::string FirstError(const httplib::Result& result) {
  const json body = BodyOf(result);
  if (!body.contains("errors") || body["errors"].empty()) return {};
  return body["errors"][0].get<std::string>();
}

// A tmpfs of 1 MiB mounted by the test (which runs as root) and unmounted on destruction.
class SmallTmpfs {
 public:
  explicit SmallTmpfs(fs::path path) : path_(std::move(path)) {
    fs::create_directories(path_);
    if (::mount("tmpfs", path_.c_str(), "tmpfs", 0, "size=1m,mode=0700") == 0) {
      mounted_ = true;
    } else {
      error_ = std::strerror(errno);
    }
  }
  ~SmallTmpfs() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }

  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
  bool mounted_ = false;
  std::string error_;
};

// Writes `path` until the file system reports it full.
void FillDisk(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  const std::string chunk(64 * 1024, 'f');
  for (;;) {
    const ssize_t written = ::write(fd, chunk.data(), chunk.size());
    if (written < static_cast<ssize_t>(chunk.size())) break;
  }
  ::close(fd);
}

// A Unix datagram socket that the test binds in its own directory and reads on a thread:
// the receiving end of the syslog sink. The kernel queues only a few datagrams per socket,
// so the thread drains it at once.
class SyslogReceiver {
 public:
  explicit SyslogReceiver(fs::path path) : path_(std::move(path)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    REQUIRE(path_.string().size() < sizeof address.sun_path);
    std::memcpy(address.sun_path, path_.c_str(), path_.string().size());
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    timeval timeout{0, 100'000};
    REQUIRE(::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) == 0);
    reader_ = std::thread([this] { Read(); });
  }
  ~SyslogReceiver() {
    stop_ = true;
    reader_.join();
    ::close(fd_);
  }

  std::vector<std::string> Messages() {
    std::lock_guard lock(mutex_);
    return messages_;
  }

  // Waits up to two seconds until `count` messages arrived; returns them.
  std::vector<std::string> WaitFor(std::size_t count) {
    const auto deadline = steady_clock::now() + std::chrono::seconds(2);
    while (Messages().size() < count && steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return Messages();
  }

 private:
  void Read() {
    std::string buffer(256 * 1024, '\0');
    while (!stop_) {
      const ssize_t received = ::recv(fd_, buffer.data(), buffer.size(), 0);
      if (received <= 0) continue;
      std::lock_guard lock(mutex_);
      messages_.emplace_back(buffer.data(), static_cast<std::size_t>(received));
    }
  }

  fs::path path_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::vector<std::string> messages_;  // guarded by mutex_
  std::thread reader_;
};

// Returns the message part of an RFC 5424 datagram from the syslog sink. Returns an empty string
// unless the header is the one the sink writes: PRI 166 is facility local4, informational.
std::string SyslogBody(const std::string& datagram) {
  static const std::regex header(
      R"(^<166>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \S+ )"
      R"(keyward-e2e \d+ (record|checkpoint) - )");
  std::smatch match;
  if (!std::regex_search(datagram, match, header)) return {};
  return datagram.substr(static_cast<std::size_t>(match.length(0)));
}

// A SoftHSM token in its own directory and a -config server with the given audit sinks. The
// server starts uninitialised; Start initialises it and keeps the root token.
class SinkServer {
 public:
  SinkServer(const TempDir& dir, json sinks) : dir_(dir.path()) {
    fs::create_directories(dir_ / "tokens");
    WriteText(dir_ / "softhsm2.conf", "directories.tokendir = " + (dir_ / "tokens").string() +
                                          "\nobjectstore.backend = file\nlog.level = ERROR\n");
    WriteText(dir_ / "pin", "e2e-user-pin-1234");
    const ExitResult token_init = RunProgram(
        "/usr/bin/softhsm2-util",
        {"--init-token", "--free", "--label", "e2e-sinks", "--pin", "e2e-user-pin-1234",
         "--so-pin", "e2e-so-pin-5678"},
        {SoftHsmEnv()});
    REQUIRE_MESSAGE(token_init.exit_code == 0, (token_init.out + token_init.err));
    const json config = {{"listener", {{"address", "127.0.0.1:0"}}},
                         {"storage", {{"path", db_path().string()}}},
                         {"hsm",
                          {{"module", std::string(kSoftHsmModule)},
                           {"token_label", "e2e-sinks"},
                           {"pin_file", (dir_ / "pin").string()}}},
                         {"audit", {{"sinks", std::move(sinks)}}}};
    WriteText(dir_ / "keyward.json", config.dump(2));
    process_ = std::make_unique<ServerProcess>(
        std::vector<std::string>{"server", "-config", (dir_ / "keyward.json").string()},
        std::vector<std::string>{SoftHsmEnv()}, dir_);
  }

  // Starts the server and initialises the vault; false when either fails.
  bool Start() {
    if (!process_->Start()) return false;
    auto init = MakeClient(port(), "")->Put("/v1/sys/init", "{}", "application/json");
    if (StatusOf(init) != 200) return false;
    root_token_ = BodyOf(init)["root_token"].get<std::string>();
    return true;
  }

  std::unique_ptr<httplib::Client> Client() const { return MakeClient(port(), root_token_); }
  const std::string& root_token() const { return root_token_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port()); }
  std::unique_ptr<httplib::Client> Anonymous() const { return MakeClient(port(), ""); }
  std::uint16_t port() const { return process_->port(); }
  ServerProcess& process() { return *process_; }
  fs::path db_path() const { return dir_ / "keyward.db"; }

 private:
  std::string SoftHsmEnv() const { return "SOFTHSM2_CONF=" + (dir_ / "softhsm2.conf").string(); }

  fs::path dir_;
  std::unique_ptr<ServerProcess> process_;
  std::string root_token_;
};

json FileSink(const fs::path& path) {
  return {{"name", "audit-file"}, {"type", "file"}, {"path", path.string()}};
}

// Runs the keyward CLI against the server at `url` with `token`; fails the test unless it exits 0.
void RunCli(const std::string& url, const std::string& token, std::vector<std::string> args) {
  args.push_back("-address=" + url);
  args.push_back("-token=" + token);
  const ExitResult run = RunToExit(args, {});
  REQUIRE_MESSAGE(run.exit_code == 0, (run.out + run.err));
}

// Returns the keys of a JSON object, sorted.
std::vector<std::string> KeysOf(const json& object) {
  std::vector<std::string> keys;
  for (const auto& [key, value] : object.items()) keys.push_back(key);
  return keys;
}

json SyslogSink(const fs::path& socket) {
  return {{"name", "audit-syslog"}, {"type", "syslog"},     {"path", socket.string()},
          {"facility", "local4"},   {"tag", "keyward-e2e"}};
}

}  // namespace

TEST_SUITE("e2e/audit_sinks") {
  TEST_CASE("full file sink refuses requests, then resumes") {
    TempDir dir;
    SmallTmpfs tmpfs(dir.path() / "mnt");
    if (!tmpfs.mounted()) {
      FAIL("mount -t tmpfs -o size=1m failed (the e2e suite runs as root): " << tmpfs.error());
    }
    const fs::path log = tmpfs.path() / "audit.log";
    SinkServer server(dir, json::array({FileSink(log)}));
    REQUIRE(server.Start());
    auto client = server.Client();
    for (int i = 0; i < 3; ++i) {
      REQUIRE(StatusOf(WriteSecret(*client, "kept/" + std::to_string(i), {{"v", i}})) == 200);
    }

    // The audit file's last page may still take a few records once the filler used the rest.
    FillDisk(tmpfs.path() / "filler");
    int failed_status = 0;
    std::string first_error;
    for (int i = 0; i < 50; ++i) {
      auto written = WriteSecret(*client, "fill/" + std::to_string(i), {{"v", i}});
      failed_status = StatusOf(written);
      first_error = FirstError(written);
      if (failed_status != 200) break;
    }
    REQUIRE(failed_status == 503);
    // The reply names the sink but not its error, which names the file.
    CHECK(first_error == "audit sink \"audit-file\" failed; requests are refused until it recovers (the server log has the cause)");
    CHECK(first_error.find(log.string()) == std::string::npos);

    // Later requests are refused before their handler runs, and at once.
    auto started = steady_clock::now();
    auto refused_write = WriteSecret(*client, "refused", {{"v", "never stored"}});
    CHECK(steady_clock::now() - started < kRefusalLimit);
    CHECK(StatusOf(refused_write) == 503);
    CHECK(FirstError(refused_write) == "audit sink \"audit-file\" failed; requests are refused until it recovers (the server log has the cause)");
    started = steady_clock::now();
    auto refused_read = client->Get("/v1/secret/data/kept/0");
    CHECK(steady_clock::now() - started < kRefusalLimit);
    CHECK(StatusOf(refused_read) == 503);
    CHECK(FirstError(refused_read).find("\"audit-file\"") != std::string::npos);

    auto health = server.Anonymous()->Get("/v1/sys/health");
    CHECK(StatusOf(health) == 503);
    const json health_body = BodyOf(health);
    CHECK(health_body["audit_failed"] == true);
    REQUIRE(health_body["audit_sinks"].size() == 1);
    CHECK(health_body["audit_sinks"][0]["name"] == "audit-file");
    CHECK(health_body["audit_sinks"][0]["type"] == "file");
    CHECK(health_body["audit_sinks"][0]["required"] == true);
    CHECK(health_body["audit_sinks"][0]["healthy"] == false);
    CHECK_FALSE(health_body["audit_sinks"][0].contains("error"));
    CHECK(health_body.dump().find(tmpfs.path().string()) == std::string::npos);

    // No partial line stays behind.
    const std::string during = ReadText(log);
    REQUIRE_FALSE(during.empty());
    CHECK(during.back() == '\n');
    CHECK(RecordLines(SplitLines(during)).size() >= 4);

    fs::remove(tmpfs.path() / "filler");
    started = steady_clock::now();
    int status = 0;
    while (steady_clock::now() - started < std::chrono::seconds(5)) {
      status = StatusOf(client->Get("/v1/secret/data/kept/0"));
      if (status == 200) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    CHECK(status == 200);
    CHECK(steady_clock::now() - started < std::chrono::milliseconds(2500));
    CHECK(StatusOf(client->Get("/v1/secret/data/refused")) == 404);
    auto recovered = server.Anonymous()->Get("/v1/sys/health");
    CHECK(StatusOf(recovered) == 200);
    CHECK(BodyOf(recovered)["audit_failed"] == false);
    CHECK(BodyOf(recovered)["audit_sinks"][0]["healthy"] == true);

    // The file caught up: its records are the database's, refusals included.
    auto verify = client->Get("/v1/sys/audit/verify");
    REQUIRE(StatusOf(verify) == 200);
    CHECK(BodyOf(verify)["data"]["ok"] == true);
    const std::vector<std::string> in_file = RecordLines(SplitLines(ReadText(log)));
    const std::vector<std::string> in_database = DatabaseRecords(server.db_path());
    CHECK(in_file.size() == BodyOf(verify)["data"]["records_checked"].get<std::size_t>() + 1);
    CHECK(in_file.size() == in_database.size());
    CHECK(in_file == in_database);
    CHECK(server.process().Stop() == 0);
  }

  TEST_CASE("deleted sink directory refuses requests, then resumes") {
    TempDir dir;
    const fs::path logs = dir.path() / "logs";
    fs::create_directories(logs);
    const fs::path log = logs / "audit.log";
    SinkServer server(dir, json::array({FileSink(log)}));
    REQUIRE(server.Start());
    auto client = server.Client();
    for (int i = 0; i < 5; ++i) {
      REQUIRE(StatusOf(WriteSecret(*client, "kept/" + std::to_string(i), {{"v", i}})) == 200);
    }
    REQUIRE(StatusOf(client->Post("/v1/sys/audit/checkpoint", "", "application/json")) == 200);
    REQUIRE(StatusOf(WriteSecret(*client, "kept/after-checkpoint", {{"v", 1}})) == 200);

    // The server still has the file open; the next record must not go to the deleted inode.
    REQUIRE(fs::remove_all(logs) >= 2);
    auto started = steady_clock::now();
    auto after_delete = WriteSecret(*client, "written-after-delete", {{"v", 1}});
    CHECK(steady_clock::now() - started < kRefusalLimit);
    CHECK(StatusOf(after_delete) == 503);
    CHECK(FirstError(after_delete) == "audit sink \"audit-file\" failed; requests are refused until it recovers (the server log has the cause)");
    started = steady_clock::now();
    auto refused_read = client->Get("/v1/secret/data/kept/0");
    CHECK(steady_clock::now() - started < kRefusalLimit);
    CHECK(StatusOf(refused_read) == 503);

    // sys/health needs no token: it names the sink but shows no path and no error text.
    auto health = server.Anonymous()->Get("/v1/sys/health");
    CHECK(StatusOf(health) == 503);
    const json health_body = BodyOf(health);
    CHECK(health_body["audit_failed"] == true);
    REQUIRE(health_body["audit_sinks"].size() == 1);
    const json& sink = health_body["audit_sinks"][0];
    CHECK(KeysOf(sink) == std::vector<std::string>{"healthy", "name", "required", "type"});
    CHECK(sink["name"] == "audit-file");
    CHECK(sink["healthy"] == false);
    CHECK(health.value().body.find(dir.path().string()) == std::string::npos);
    CHECK(health.value().body.find("audit.log") == std::string::npos);

    fs::create_directories(logs);
    started = steady_clock::now();
    int status = 0;
    while (steady_clock::now() - started < std::chrono::seconds(5)) {
      status = StatusOf(client->Get("/v1/secret/data/kept/0"));
      if (status == 200) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    REQUIRE(status == 200);
    CHECK(steady_clock::now() - started < std::chrono::milliseconds(2500));
    CHECK(StatusOf(server.Anonymous()->Get("/v1/sys/health")) == 200);

    // The new file starts at record 1, not where the deleted one stopped.
    REQUIRE(StatusOf(WriteSecret(*client, "kept/after-recovery", {{"v", 2}})) == 200);
    REQUIRE(StatusOf(client->Post("/v1/sys/audit/checkpoint", "", "application/json")) == 200);
    const fs::path checkpoint = dir.path() / "latest.ckpt";
    const fs::path key = dir.path() / "audit.vkey";
    RunCli(server.url(), server.root_token(), {"audit", "checkpoint", "-o", checkpoint.string()});
    RunCli(server.url(), server.root_token(), {"audit", "public-key", "-o", key.string()});
    REQUIRE(server.process().Stop() == 0);

    const std::vector<std::string> lines = SplitLines(ReadText(log));
    const std::vector<std::string> in_file = RecordLines(lines);
    REQUIRE_FALSE(in_file.empty());
    CHECK(json::parse(in_file.front())["seq"] == 1);
    CHECK(in_file == DatabaseRecords(server.db_path()));
    const auto checkpoint_lines = std::count_if(lines.begin(), lines.end(), [](const auto& line) {
      return line.starts_with("{\"checkpoint\":");
    });
    CHECK(checkpoint_lines >= 2);

    const ExitResult verified =
        RunToExit({"audit", "verify", "-log", log.string(), "-key", "@" + key.string(),
                   "-checkpoint", checkpoint.string()},
                  {"KEYWARD_ADDR=", "KEYWARD_TOKEN=", "VAULT_ADDR=", "VAULT_TOKEN="});
    CHECK_MESSAGE(verified.exit_code == 0, (verified.out + verified.err));
    CHECK(verified.out.find("Verified                true") != std::string::npos);
  }

  TEST_CASE("unopenable required sink stops start-up") {
    TempDir dir;
    const fs::path log = dir.path() / "missing" / "audit.log";
    const json config = {{"storage", {{"path", (dir.path() / "keyward.db").string()}}},
                         {"hsm", {{"token_label", "never-opened"}}},
                         {"audit", {{"sinks", json::array({FileSink(log)})}}}};
    WriteText(dir.path() / "keyward.json", config.dump());
    const ExitResult run =
        RunToExit({"server", "-config", (dir.path() / "keyward.json").string()}, {},
                  std::chrono::seconds(30));
    CHECK(run.exited);
    CHECK(run.exit_code == 1);
    CHECK(run.err.find("error: audit sink \"audit-file\" (file): open " + log.string() +
                       ": No such file or directory") != std::string::npos);
  }

  TEST_CASE("SIGHUP reopens a renamed file") {
    TempDir dir;
    const fs::path log = dir.path() / "audit.log";
    const fs::path rotated = dir.path() / "audit.log.1";
    SinkServer server(dir, json::array({FileSink(log)}));
    REQUIRE(server.Start());
    auto client = server.Client();
    REQUIRE(StatusOf(WriteSecret(*client, "before", {{"v", 1}})) == 200);

    fs::rename(log, rotated);
    REQUIRE(::kill(server.process().pid(), SIGHUP) == 0);
    const auto deadline = steady_clock::now() + std::chrono::seconds(2);
    while (!fs::exists(log) && steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    REQUIRE(fs::exists(log));
    REQUIRE(StatusOf(WriteSecret(*client, "after", {{"v", 2}})) == 200);
    CHECK(server.process().running());

    const std::vector<std::string> old_records = RecordLines(SplitLines(ReadText(rotated)));
    const std::vector<std::string> new_records = RecordLines(SplitLines(ReadText(log)));
    REQUIRE_FALSE(old_records.empty());
    REQUIRE(new_records.size() == 1);
    const std::uint64_t last_old = json::parse(old_records.back())["seq"];
    CHECK(json::parse(new_records[0])["seq"] == last_old + 1);
    CHECK(json::parse(new_records[0])["path"] == "secret/data/after");
    std::vector<std::string> both = old_records;
    both.insert(both.end(), new_records.begin(), new_records.end());
    CHECK(both == DatabaseRecords(server.db_path()));
    CHECK(server.process().Stop() == 0);
  }

  TEST_CASE("secrets reach file and syslog only as HMACs") {
    TempDir dir;
    const fs::path log = dir.path() / "audit.log";
    SyslogReceiver receiver(dir.path() / "log.sock");
    SinkServer server(dir, json::array({FileSink(log), SyslogSink(dir.path() / "log.sock")}));
    REQUIRE(server.Start());
    auto client = server.Client();

    const std::string secret = "e2e-sink-secret-" + RandomHex(8);
    REQUIRE(StatusOf(WriteSecret(*client, "app/db", {{"password", secret}})) == 200);
    REQUIRE(ReadSecretData(*client, "app/db") == json({{"password", secret}}));
    const std::string malformed = R"({"data": {"password": ")" + secret + "\"";
    CHECK(StatusOf(Send(*client, "POST", "/v1/secret/data/app/db", malformed)) == 400);

    std::string hash;
    for (const std::string device : {"audit-file", "audit-syslog", "database"}) {
      CAPTURE(device);
      auto hashed = PostJson(*client, "/v1/sys/audit-hash/" + device, {{"input", secret}});
      REQUIRE(StatusOf(hashed) == 200);
      const std::string value = BodyOf(hashed)["data"]["hash"];
      CHECK(value.starts_with("hmac-sha256:"));
      if (hash.empty()) hash = value;
      CHECK(value == hash);
    }
    auto unknown = PostJson(*client, "/v1/sys/audit-hash/nope", {{"input", "x"}});
    CHECK(StatusOf(unknown) == 400);
    CHECK(FirstError(unknown) ==
          "unknown audit device \"nope\": use one of database, audit-file, audit-syslog");

    const std::string file = ReadText(log);
    CHECK(file.find(secret) == std::string::npos);
    CHECK(file.find(hash) != std::string::npos);

    // Syslog receives the same lines as the file, one datagram each, in the same order.
    const std::vector<std::string> lines = SplitLines(file);
    const std::vector<std::string> datagrams = receiver.WaitFor(lines.size());
    REQUIRE(datagrams.size() == lines.size());
    bool hash_seen = false;
    for (std::size_t i = 0; i < datagrams.size(); ++i) {
      CAPTURE(i);
      CHECK(datagrams[i].find(secret) == std::string::npos);
      const std::string body = SyslogBody(datagrams[i]);
      CHECK(body == lines[i]);
      hash_seen = hash_seen || body.find(hash) != std::string::npos;
    }
    CHECK(hash_seen);
    CHECK(RecordLines(lines) == DatabaseRecords(server.db_path()));
    CHECK(server.process().Stop() == 0);
  }
}

}  // namespace kw::e2e
