// Storage and HSM faults against the real server: a full file system, a read-only database and
// a PKCS#11 module that returns errors. Each case checks that requests fail with a clear 5xx and
// a log line, and that the server recovers once the fault is gone. Every acknowledged write must
// stay readable, and the HSM token must keep exactly the keys it had.
//
// The disk and read-only cases mount file systems, so they need root (or CAP_SYS_ADMIN). Where
// mount(2) is refused they fail under CI=true and are skipped with a message otherwise.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;

constexpr const char* kSoftHsmModule = "/usr/lib/softhsm/libsofthsm2.so";
constexpr const char* kPkcs11Tool = "/usr/bin/pkcs11-tool";
// The token label that dev mode gives its token.
constexpr const char* kDevTokenLabel = "keyward-dev";

bool InCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

// Reports that mount(2) was refused: a failure under CI=true, a loud skip otherwise. Returns
// false so that the caller can leave the test case.
bool MountUnavailable(const std::string& what) {
  const std::string message = what + ": " + std::strerror(errno) +
                              "; the fault tests need root or CAP_SYS_ADMIN to mount";
  if (InCi()) {
    FAIL(message);
  } else {
    std::cerr << "SKIPPED: " << message << "\n";
    MESSAGE("SKIPPED: " << message);
  }
  return false;
}

// A tmpfs of `size` mounted on a fresh directory, unmounted on destruction (lazily when the
// file system is still busy, so that a failed test never leaves it behind).
class TmpfsMount {
 public:
  TmpfsMount(fs::path point, const std::string& size) : point_(std::move(point)) {
    fs::create_directories(point_);
    const std::string options = "size=" + size + ",mode=0700";
    mounted_ = ::mount("tmpfs", point_.c_str(), "tmpfs", 0, options.c_str()) == 0;
  }
  ~TmpfsMount() {
    if (mounted_ && ::umount2(point_.c_str(), 0) != 0) ::umount2(point_.c_str(), MNT_DETACH);
  }
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;

  bool mounted() const { return mounted_; }
  const fs::path& path() const { return point_; }

 private:
  fs::path point_;
  bool mounted_ = false;
};

// A bind mount of `source` on `target` that can be switched between read-only and read-write.
// Unmounted on destruction.
class BindMount {
 public:
  BindMount(const fs::path& source, fs::path target) : target_(std::move(target)) {
    fs::create_directories(target_);
    mounted_ = ::mount(source.c_str(), target_.c_str(), nullptr, MS_BIND, nullptr) == 0;
  }
  ~BindMount() {
    if (mounted_ && ::umount2(target_.c_str(), 0) != 0) ::umount2(target_.c_str(), MNT_DETACH);
  }
  BindMount(const BindMount&) = delete;
  BindMount& operator=(const BindMount&) = delete;

  bool mounted() const { return mounted_; }

  // Returns 0, or the errno of the remount (EBUSY while a file on it is open for writing).
  int SetReadOnly(bool read_only) {
    unsigned long flags = MS_REMOUNT | MS_BIND;
    if (read_only) flags |= MS_RDONLY;
    return ::mount(nullptr, target_.c_str(), nullptr, flags, nullptr) == 0 ? 0 : errno;
  }

 private:
  fs::path target_;
  bool mounted_ = false;
};

std::vector<std::string> DevArgs(const fs::path& data_dir) {
  return {"server", "-dev", "-dev-listen-address=127.0.0.1:0",
          "-dev-data-dir=" + data_dir.string(), "-dev-root-token-id=" + std::string(kRootToken)};
}

// Fills the file system that contains `path` with one file until writing fails with ENOSPC.
// Returns false when another error stops it.
bool FillFileSystem(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return false;
  const std::string chunk(64 * 1024, 'f');
  bool full = false;
  for (int i = 0; i < 100000 && !full; ++i) {
    const ssize_t written = ::write(fd, chunk.data(), chunk.size());
    if (written < 0) {
      full = errno == ENOSPC;
      break;
    }
    if (static_cast<std::size_t>(written) < chunk.size()) {
      // A short write: the next one reports ENOSPC.
      continue;
    }
  }
  // The last partial pages: single bytes until nothing fits.
  for (int i = 0; i < 8192 && full; ++i) {
    if (::write(fd, "f", 1) != 1) break;
  }
  ::close(fd);
  return full;
}

// The labels of the objects on the dev token in `data_dir`, read with pkcs11-tool through the
// real SoftHSM module (never through the fault module), sorted. One entry per object, so that a
// second key with the same label shows. Empty when pkcs11-tool failed, shown in the test output.
std::vector<std::string> TokenObjectLabels(const fs::path& data_dir) {
  std::ifstream pin_file(data_dir / "hsm-pin");
  std::string pin;
  std::getline(pin_file, pin);
  const ExitResult run = RunProgram(
      kPkcs11Tool,
      {"--module", kSoftHsmModule, "--token-label", kDevTokenLabel, "--login", "--pin", pin,
       "--list-objects"},
      {"SOFTHSM2_CONF=" + (data_dir / "softhsm2.conf").string()}, std::chrono::seconds(60));
  if (!run.exited || run.exit_code != 0) {
    MESSAGE("pkcs11-tool failed: " << run.err);
    return {};
  }
  std::vector<std::string> labels;
  std::istringstream lines(run.out);
  for (std::string line; std::getline(lines, line);) {
    const std::size_t at = line.find("label:");
    if (at == std::string::npos) continue;
    std::string label = line.substr(at + 6);
    label.erase(0, label.find_first_not_of(' '));
    labels.push_back(label);
  }
  std::sort(labels.begin(), labels.end());
  return labels;
}

bool IsRunning(const ServerProcess& server) {
  return server.running() && ::kill(server.pid(), 0) == 0;
}

std::string FirstError(const httplib::Result& result) {
  const json body = BodyOf(result);
  if (!body.is_object() || !body.contains("errors") || !body["errors"].is_array() ||
      body["errors"].empty() || !body["errors"][0].is_string()) {
    return {};
  }
  return body["errors"][0].get<std::string>();
}

std::string BodyText(const httplib::Result& result) { return result ? result->body : ""; }

// A distinctive secret value; the tests check that no error body repeats it.
std::string SecretValue(const std::string& name) { return "fault-secret-" + name + "-value"; }

// Writes `count` secrets named `prefix`<i> and adds those acknowledged with 200 to `acked`.
void WriteAcknowledged(httplib::Client& client, const std::string& prefix, int count,
                       std::map<std::string, std::string>& acked) {
  for (int i = 0; i < count; ++i) {
    const std::string name = prefix + std::to_string(i);
    auto written = WriteSecret(client, name, {{"value", SecretValue(name)}});
    REQUIRE(StatusOf(written) == 200);
    acked[name] = SecretValue(name);
  }
}

// Checks that every acknowledged secret reads back with its value.
void CheckAllReadable(httplib::Client& client, const std::map<std::string, std::string>& acked) {
  std::size_t missing = 0;
  for (const auto& [name, value] : acked) {
    const json data = ReadSecretData(client, name);
    if (data != json({{"value", value}})) {
      ++missing;
      MESSAGE("acknowledged secret " << name << " reads back as " << data.dump());
    }
  }
  CHECK(missing == 0);
}

// The files of a server that first ran in dev mode (which created the token, the PIN file and
// the database) and then runs in config mode with a chosen PKCS#11 module.
struct ConfigRun {
  fs::path data_dir;
  fs::path config_path;
  fs::path control_file;  // the fault module's control file: faults while it exists

  void WriteConfig(const std::string& module) const {
    const json config = {
        {"listener", {{"address", "127.0.0.1:0"}}},
        {"storage", {{"path", (data_dir / "keyward.db").string()}}},
        {"hsm",
         {{"module", module},
          {"token_label", kDevTokenLabel},
          {"pin_file", (data_dir / "hsm-pin").string()}}},
    };
    WriteTextFile(config_path, config.dump(2), 0600);
  }

  std::vector<std::string> Env() const {
    return {"SOFTHSM2_CONF=" + (data_dir / "softhsm2.conf").string(),
            "PKCS11_FAULT_MODULE=" + std::string(kSoftHsmModule),
            "PKCS11_FAULT_CONTROL_FILE=" + control_file.string()};
  }

  void InjectFault(const std::string& spec) const {
    fs::remove(control_file.string() + ".log");
    WriteTextFile(control_file, spec, 0600);
  }
  void RemoveFault() const { fs::remove(control_file); }
  // How many calls the fault module failed since the latest InjectFault.
  std::size_t InjectedCount() const {
    std::ifstream log(control_file.string() + ".log");
    std::size_t count = 0;
    for (std::string line; std::getline(log, line);) ++count;
    return count;
  }
};

}  // namespace

TEST_SUITE("e2e/faults") {
  TEST_CASE("disk full rejects writes then recovers") {
    TempDir temp;
    TmpfsMount disk(temp.path() / "disk", "4m");
    if (!disk.mounted()) {
      MountUnavailable("mount tmpfs on " + disk.path().string());
      return;
    }
    const fs::path data_dir = disk.path() / "data";
    ServerProcess server(DevArgs(data_dir), {}, temp.path());
    REQUIRE(server.Start());
    auto client = MakeClient(server.port(), std::string(kRootToken));

    std::map<std::string, std::string> acked;
    WriteAcknowledged(*client, "before/", 10, acked);
    const std::vector<std::string> keys_before = TokenObjectLabels(data_dir);
    REQUIRE_FALSE(keys_before.empty());

    const fs::path filler = disk.path() / "filler";
    REQUIRE(FillFileSystem(filler));

    // Large values so that the WAL has to grow past the room that is left.
    int rejected = 0;
    for (int i = 0; i < 200 && rejected < 3; ++i) {
      const std::string name = "during/" + std::to_string(i);
      const std::string value = SecretValue(name) + std::string(32 * 1024, 'x');
      auto written = WriteSecret(*client, name, {{"value", value}});
      const int status = StatusOf(written);
      CAPTURE(status);
      CAPTURE(BodyText(written));
      if (status == 200) {
        acked[name] = value;
        continue;
      }
      ++rejected;
      CHECK(status == 503);
      const std::string error = FirstError(written);
      CHECK(error.find("full") != std::string::npos);
      CHECK(error.find("retry") != std::string::npos);
      CHECK(BodyText(written).find(SecretValue(name)) == std::string::npos);
    }
    REQUIRE(rejected > 0);

    // A read gets its response only once its audit record is stored, so it fails the same way
    // while the disk stays full. The health check is not audited and still works.
    auto read = client->Get("/v1/secret/data/before/0");
    CAPTURE(BodyText(read));
    if (StatusOf(read) == 200) {
      CHECK(BodyOf(read)["data"]["data"] == json({{"value", SecretValue("before/0")}}));
    } else {
      CHECK(StatusOf(read) == 503);
      CHECK(FirstError(read).find("full") != std::string::npos);
      CHECK(BodyText(read).find(SecretValue("before/0")) == std::string::npos);
    }
    CHECK(StatusOf(MakeClient(server.port(), "")->Get("/v1/sys/health")) == 200);
    CHECK(IsRunning(server));
    CHECK(server.ReadStderr().find("database or disk is full") != std::string::npos);

    // Space again: writes succeed without a restart.
    fs::remove(filler);
    WriteAcknowledged(*client, "after/", 10, acked);
    CheckAllReadable(*client, acked);

    // A restart finds everything and the same keys.
    REQUIRE(server.Stop() == 0);
    REQUIRE(server.Start());
    client = MakeClient(server.port(), std::string(kRootToken));
    CheckAllReadable(*client, acked);
    CHECK(TokenObjectLabels(data_dir) == keys_before);
    CHECK(server.Stop() == 0);
  }

  TEST_CASE("disk full at start refuses to start") {
    TempDir temp;
    TmpfsMount disk(temp.path() / "disk", "4m");
    if (!disk.mounted()) {
      MountUnavailable("mount tmpfs on " + disk.path().string());
      return;
    }
    const fs::path data_dir = disk.path() / "data";
    ServerProcess server(DevArgs(data_dir), {}, temp.path());
    REQUIRE(server.Start());
    std::map<std::string, std::string> acked;
    WriteAcknowledged(*MakeClient(server.port(), std::string(kRootToken)), "kept/", 5, acked);
    REQUIRE(server.Stop() == 0);
    const std::vector<std::string> keys_before = TokenObjectLabels(data_dir);
    REQUIRE_FALSE(keys_before.empty());

    // Dev mode writes at every start (it replaces the root token), so a full disk stops it.
    const fs::path filler = disk.path() / "filler";
    REQUIRE(FillFileSystem(filler));
    const ExitResult refused = RunToExit(DevArgs(data_dir), {}, std::chrono::seconds(60));
    CHECK(refused.exited);
    CHECK(refused.exit_code != 0);
    CHECK(refused.err.find("full") != std::string::npos);
    CHECK(refused.out.find("Listening on:") == std::string::npos);
    CHECK(TokenObjectLabels(data_dir) == keys_before);

    fs::remove(filler);
    REQUIRE(server.Start());
    CheckAllReadable(*MakeClient(server.port(), std::string(kRootToken)), acked);
    CHECK(TokenObjectLabels(data_dir) == keys_before);
    CHECK(server.Stop() == 0);
  }

  // Root ignores file modes, and Linux rejects (EBUSY) making a mount read-only while a process
  // has a file on it open for writing, as the server has its database. So the database is made
  // read-only between two starts, with a read-only bind mount of its directory.
  TEST_CASE("read-only database refuses to start") {
    TempDir temp;
    TmpfsMount disk(temp.path() / "disk", "16m");
    if (!disk.mounted()) {
      MountUnavailable("mount tmpfs on " + disk.path().string());
      return;
    }
    BindMount view(disk.path(), temp.path() / "view");
    if (!view.mounted()) {
      MountUnavailable("bind-mount " + disk.path().string());
      return;
    }
    const fs::path data_dir = temp.path() / "view" / "data";
    ServerProcess server(DevArgs(data_dir), {}, temp.path());
    REQUIRE(server.Start());
    std::map<std::string, std::string> acked;
    WriteAcknowledged(*MakeClient(server.port(), std::string(kRootToken)), "kept/", 5, acked);
    const std::vector<std::string> keys_before = TokenObjectLabels(data_dir);
    REQUIRE_FALSE(keys_before.empty());

    // While the server runs, the mount cannot become read-only.
    CHECK(view.SetReadOnly(true) == EBUSY);
    REQUIRE(server.Stop() == 0);
    REQUIRE(view.SetReadOnly(true) == 0);

    // Dev mode: exits at start and names the cause.
    const ExitResult dev = RunToExit(DevArgs(data_dir), {}, std::chrono::seconds(60));
    CHECK(dev.exited);
    CHECK(dev.exit_code != 0);
    CHECK(dev.out.find("Listening on:") == std::string::npos);
    CHECK(dev.err.find("read-only") != std::string::npos);

    // Config mode exits too, and never initialises a new vault.
    ConfigRun run{data_dir, temp.path() / "config.json", temp.path() / "no-fault"};
    run.WriteConfig(kSoftHsmModule);
    const ExitResult configured =
        RunToExit({"server", "-config", run.config_path.string()}, run.Env(),
                  std::chrono::seconds(60));
    CHECK(configured.exited);
    CHECK(configured.exit_code != 0);
    CHECK(configured.out.find("Listening on:") == std::string::npos);
    CHECK(configured.err.find("read-only") != std::string::npos);
    CHECK(TokenObjectLabels(data_dir) == keys_before);

    // Writable again: everything is there, under the same keys.
    REQUIRE(view.SetReadOnly(false) == 0);
    REQUIRE(server.Start());
    auto client = MakeClient(server.port(), std::string(kRootToken));
    CheckAllReadable(*client, acked);
    WriteAcknowledged(*client, "after/", 3, acked);
    CheckAllReadable(*client, acked);
    CHECK(TokenObjectLabels(data_dir) == keys_before);
    CHECK(server.Stop() == 0);
  }

  TEST_CASE("pkcs11 errors fail requests then recover") {
    const std::string shim = KEYWARD_PKCS11_FAULT_MODULE;
    REQUIRE_MESSAGE(!shim.empty(), "the e2e suite was built without tests/fault");
    REQUIRE(fs::exists(shim));
    TempDir temp;
    const fs::path data_dir = temp.path() / "data";
    {
      // Dev mode creates the token, the PIN file and the vault.
      ServerProcess dev(DevArgs(data_dir), {}, temp.path());
      REQUIRE(dev.Start());
      REQUIRE(dev.Stop() == 0);
    }
    ConfigRun run{data_dir, temp.path() / "config.json", temp.path() / "pkcs11-fault"};
    run.WriteConfig(shim);
    ServerProcess server({"server", "-config", run.config_path.string()}, run.Env(), temp.path());
    REQUIRE(server.Start());
    auto client = MakeClient(server.port(), std::string(kRootToken));

    std::map<std::string, std::string> acked;
    WriteAcknowledged(*client, "before/", 5, acked);
    CheckAllReadable(*client, acked);
    const std::vector<std::string> keys_before = TokenObjectLabels(data_dir);
    REQUIRE_FALSE(keys_before.empty());

    struct Fault {
      std::string spec;      // the control file's content
      std::string expected;  // the text that the server log must contain
    };
    const std::vector<Fault> faults = {
        {"CKR_DEVICE_ERROR C_Encrypt C_Decrypt", "CKR_DEVICE_ERROR"},
        {"CKR_SESSION_HANDLE_INVALID C_EncryptInit C_DecryptInit", "CKR_SESSION_HANDLE_INVALID"},
        {"CKR_DEVICE_REMOVED", "CKR_DEVICE_REMOVED"},
        {"CKR_GENERAL_ERROR C_Encrypt C_Decrypt C_Sign", "CKR_GENERAL_ERROR"},
    };
    int fault_index = 0;
    for (const Fault& fault : faults) {
      CAPTURE(fault.spec);
      const std::string name = "during/" + std::to_string(fault_index++);
      run.InjectFault(fault.spec);

      auto written = WriteSecret(*client, name, {{"value", SecretValue(name)}});
      CAPTURE(BodyText(written));
      CHECK(StatusOf(written) >= 500);
      CHECK(StatusOf(written) <= 503);
      CHECK_FALSE(FirstError(written).empty());
      CHECK(BodyText(written).find(SecretValue(name)) == std::string::npos);

      auto read = client->Get("/v1/secret/data/before/0");
      CAPTURE(BodyText(read));
      CHECK(StatusOf(read) >= 500);
      CHECK(StatusOf(read) <= 503);
      CHECK(BodyText(read).find(SecretValue("before/0")) == std::string::npos);
      CHECK(run.InjectedCount() > 0);
      CHECK(IsRunning(server));
      // The response may only report that the audit log failed; the log names the PKCS#11 error.
      CHECK(server.ReadStderr().find(fault.expected) != std::string::npos);

      // The fault is gone: the same requests succeed on re-opened sessions.
      run.RemoveFault();
      REQUIRE(StatusOf(WriteSecret(*client, name, {{"value", SecretValue(name)}})) == 200);
      acked[name] = SecretValue(name);
      CheckAllReadable(*client, acked);
    }
    CHECK(server.ReadStderr().find("PKCS#11 session closed for replacement") != std::string::npos);
    CHECK(TokenObjectLabels(data_dir) == keys_before);

    // A start while every PKCS#11 call fails: refused or sealed, never a new vault or new keys.
    REQUIRE(server.Stop() == 0);
    run.InjectFault("CKR_DEVICE_ERROR");
    const bool started = server.Start();
    if (started) {
      auto health = MakeClient(server.port(), "")->Get("/v1/sys/health");
      CHECK(StatusOf(health) == 503);
      CHECK(BodyOf(health)["initialized"] == true);
      CHECK(BodyOf(health)["sealed"] == true);
      CHECK(StatusOf(MakeClient(server.port(), std::string(kRootToken))
                         ->Get("/v1/secret/data/before/0")) == 503);
      CHECK(server.Stop() == 0);
    }
    CHECK(run.InjectedCount() > 0);
    CHECK(TokenObjectLabels(data_dir) == keys_before);

    run.RemoveFault();
    REQUIRE(server.Start());
    client = MakeClient(server.port(), std::string(kRootToken));
    CheckAllReadable(*client, acked);
    CHECK(TokenObjectLabels(data_dir) == keys_before);
    CHECK(server.Stop() == 0);
  }
}  // TEST_SUITE

}  // namespace kw::e2e
