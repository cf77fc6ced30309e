// Start-up checks through the real binary. The server rejects a config file, HSM PIN file,
// data directory or database that other users can read, and prints the chmod that fixes it.
// It locks its memory, and a configured server that cannot lock it does not start.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <thread>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kSoftHsmModule = "/usr/lib/softhsm/libsofthsm2.so";
// How long a server that should be rejected may run before RunToExit kills it.
constexpr std::chrono::seconds kRejectTimeout{20};

// A SoftHSM token, a PIN file and a -config file whose database lives in data/. Every file
// starts private (0600, directories 0700); the cases loosen one of them.
class ConfigFiles {
 public:
  ConfigFiles() {
    fs::create_directories(root() / "tokens");
    fs::create_directories(data_dir());
    fs::permissions(data_dir(), fs::perms::owner_all, fs::perm_options::replace);
    WriteTextFile(root() / "softhsm2.conf",
                  "directories.tokendir = " + (root() / "tokens").string() +
                      "\nobjectstore.backend = file\nlog.level = ERROR\n");
    WriteTextFile(pin_file(), "e2e-user-pin-1234");
    const ExitResult token_init = RunProgram(
        "/usr/bin/softhsm2-util",
        {"--init-token", "--free", "--label", "e2e-perms", "--pin", "e2e-user-pin-1234",
         "--so-pin", "e2e-so-pin-5678"},
        {SoftHsmEnv()});
    REQUIRE_MESSAGE(token_init.exit_code == 0, (token_init.out + token_init.err));
    WriteConfig(json::object());
  }

  // Writes the config with `extra` merged into its top level.
  void WriteConfig(const json& extra) {
    json config = {{"listener", {{"address", "127.0.0.1:0"}}},
                   {"storage", {{"path", db_path().string()}}},
                   {"hsm",
                    {{"module", std::string(kSoftHsmModule)},
                     {"token_label", "e2e-perms"},
                     {"pin_file", pin_file().string()}}}};
    config.update(extra);
    WriteTextFile(config_path(), config.dump(2));
  }

  const fs::path& root() const { return dir_.path(); }
  fs::path data_dir() const { return root() / "data"; }
  fs::path db_path() const { return data_dir() / "keyward.db"; }
  fs::path pin_file() const { return root() / "pin"; }
  fs::path config_path() const { return root() / "keyward.json"; }
  std::string SoftHsmEnv() const { return "SOFTHSM2_CONF=" + (root() / "softhsm2.conf").string(); }
  std::vector<std::string> ServerArgs() const {
    return {"server", "-config", config_path().string()};
  }

  // Runs the server, expecting it to exit at once.
  ExitResult RunRejected() const { return RunToExit(ServerArgs(), {SoftHsmEnv()}, kRejectTimeout); }

  // Starts the server, checks that it listens, and stops it. Returns its stderr.
  std::string StartAndStop() const {
    ServerProcess server(ServerArgs(), {SoftHsmEnv()}, root());
    const bool started = server.Start();
    const std::string err = server.ReadStderr();
    CHECK_MESSAGE(started, err);
    if (started) CHECK(server.Stop() == 0);
    return err;
  }

 private:
  TempDir dir_;
};

void SetMode(const fs::path& path, int mode) {
  REQUIRE_MESSAGE(::chmod(path.c_str(), static_cast<mode_t>(mode)) == 0, path.string());
}

int ModeOf(const fs::path& path) {
  struct stat info {};
  REQUIRE_MESSAGE(::stat(path.c_str(), &info) == 0, path.string());
  return static_cast<int>(info.st_mode & 07777);
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Checks that `run` exited non-zero with an error naming `path` and the chmod that fixes it.
void CheckRejected(const ExitResult& run, const fs::path& path, const std::string& fix) {
  CHECK_MESSAGE(run.exited, run.err);
  CHECK(run.exit_code != 0);
  CHECK_MESSAGE(Contains(run.err, "error: "), run.err);
  CHECK_MESSAGE(Contains(run.err, path.string() + " is "), run.err);
  CHECK_MESSAGE(Contains(run.err, "run " + fix + " " + path.string()), run.err);
  CHECK_MESSAGE(!Contains(run.out, "Listening on:"), run.out);
}

// Returns a field of /proc/<pid>/status in KiB ("VmLck", "VmRSS"), or -1.
long ProcStatusKib(pid_t pid, const std::string& field) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with(field + ":")) return std::stol(line.substr(field.size() + 1));
  }
  return -1;
}

// The prefix that runs a command without CAP_IPC_LOCK and with RLIMIT_MEMLOCK at 4 MiB, so
// that mlockall of the whole process fails even for root.
std::vector<std::string> WithoutMemoryLock(std::vector<std::string> args) {
  std::vector<std::string> wrapped = {"--memlock=4194304:4194304", "/usr/bin/setpriv",
                                      "--bounding-set=-ipc_lock", "--inh-caps=-ipc_lock",
                                      KeywardBinary().string()};
  wrapped.insert(wrapped.end(), args.begin(), args.end());
  return wrapped;
}

// Returns true when the server is a sanitizer build, which skips mlockall and logs that it
// did, so that the memory checks do not apply.
bool SkippedLocking(const std::string& server_stderr) {
  return Contains(server_stderr, "memory locking skipped: sanitizer builds");
}

}  // namespace

TEST_SUITE("e2e/permissions") {
  TEST_CASE("private files start") {
    ConfigFiles files;
    const std::string err = files.StartAndStop();
    CHECK_MESSAGE(!Contains(err, "readable by its group"), err);
    // The server created the database under umask 077.
    CHECK(ModeOf(files.db_path()) == 0600);
  }

  TEST_CASE("world-readable config file rejected") {
    ConfigFiles files;
    SetMode(files.config_path(), 0644);
    const ExitResult run = files.RunRejected();
    CheckRejected(run, files.config_path(), "chmod 600");
    CHECK_MESSAGE(Contains(run.err, "the config file " + files.config_path().string() +
                                        " is readable by other users (mode 0644)"),
                  run.err);
    // The database was never opened.
    CHECK(!fs::exists(files.db_path()));

    SetMode(files.config_path(), 0600);
    files.StartAndStop();
  }

  TEST_CASE("world-writable config file rejected") {
    ConfigFiles files;
    SetMode(files.config_path(), 0602);
    const ExitResult run = files.RunRejected();
    CheckRejected(run, files.config_path(), "chmod 600");
    CHECK_MESSAGE(Contains(run.err, "is writable by other users (mode 0602)"), run.err);
  }

  TEST_CASE("group-readable config file warns") {
    ConfigFiles files;
    SetMode(files.config_path(), 0640);
    const std::string err = files.StartAndStop();
    CHECK_MESSAGE(Contains(err, "readable by its group; run chmod 600 " +
                                    files.config_path().string()),
                  err);
  }

  TEST_CASE("group-writable config file rejected") {
    ConfigFiles files;
    SetMode(files.config_path(), 0620);
    const ExitResult run = files.RunRejected();
    CheckRejected(run, files.config_path(), "chmod 600");
    CHECK_MESSAGE(Contains(run.err, "is writable by its group (mode 0620)"), run.err);
  }

  TEST_CASE("config and PIN file owned by another user rejected") {
    // The owner of the config names the PKCS#11 module that the server loads. The test runs as
    // root, so it can hand the files to `nobody` (uid 65534), as an attacker's own files are.
    constexpr uid_t kNobody = 65534;
    ConfigFiles files;
    REQUIRE(::chown(files.config_path().c_str(), kNobody, static_cast<gid_t>(-1)) == 0);
    ExitResult run = files.RunRejected();
    CHECK(run.exit_code != 0);
    CHECK_MESSAGE(Contains(run.err, "the config file " + files.config_path().string() +
                                        " belongs to user id 65534"),
                  run.err);
    CHECK_MESSAGE(Contains(run.err, "run chown " + std::to_string(::geteuid()) + " " +
                                        files.config_path().string()),
                  run.err);
    REQUIRE(::chown(files.config_path().c_str(), ::geteuid(), static_cast<gid_t>(-1)) == 0);

    REQUIRE(::chown(files.pin_file().c_str(), kNobody, static_cast<gid_t>(-1)) == 0);
    run = files.RunRejected();
    CHECK(run.exit_code != 0);
    CHECK_MESSAGE(Contains(run.err, "the HSM PIN file " + files.pin_file().string() +
                                        " belongs to user id 65534"),
                  run.err);
    REQUIRE(::chown(files.pin_file().c_str(), ::geteuid(), static_cast<gid_t>(-1)) == 0);
    files.StartAndStop();
  }

  TEST_CASE("world-readable PIN file rejected") {
    ConfigFiles files;
    SetMode(files.pin_file(), 0644);
    const ExitResult run = files.RunRejected();
    CheckRejected(run, files.pin_file(), "chmod 600");
    CHECK_MESSAGE(Contains(run.err, "the HSM PIN file " + files.pin_file().string()), run.err);
    CHECK_MESSAGE(!Contains(run.err + run.out, "e2e-user-pin-1234"), run.err);

    SetMode(files.pin_file(), 0600);
    files.StartAndStop();
  }

  TEST_CASE("world-readable data directory rejected") {
    ConfigFiles files;
    SetMode(files.data_dir(), 0755);
    const ExitResult run = files.RunRejected();
    CheckRejected(run, files.data_dir(), "chmod 700");
    CHECK_MESSAGE(Contains(run.err, "the data directory " + files.data_dir().string() +
                                        " is readable by other users (mode 0755)"),
                  run.err);

    SetMode(files.data_dir(), 0700);
    files.StartAndStop();
  }

  TEST_CASE("world-readable database rejected") {
    ConfigFiles files;
    files.StartAndStop();
    REQUIRE(fs::exists(files.db_path()));
    SetMode(files.db_path(), 0644);
    const ExitResult run = files.RunRejected();
    CheckRejected(run, files.db_path(), "chmod 600");
    CHECK_MESSAGE(Contains(run.err, "the database file " + files.db_path().string()), run.err);

    SetMode(files.db_path(), 0600);
    files.StartAndStop();
  }

  TEST_CASE("world-readable WAL file rejected") {
    ConfigFiles files;
    const fs::path wal = files.db_path().string() + "-wal";
    WriteTextFile(wal, "", 0604);
    const ExitResult run = files.RunRejected();
    CheckRejected(run, wal, "chmod 600");

    SetMode(wal, 0600);
    files.StartAndStop();
  }

  TEST_CASE("missing config file named") {
    TempDir dir;
    const fs::path missing = dir.path() / "absent.json";
    const ExitResult run = RunToExit({"server", "-config", missing.string()}, {}, kRejectTimeout);
    CHECK(run.exited);
    CHECK(run.exit_code != 0);
    CHECK_MESSAGE(Contains(run.err, "cannot read config file " + missing.string()), run.err);
  }

  TEST_CASE("dev mode creates private files") {
    DevServer server;
    REQUIRE(server.Start());
    CHECK(server.Stop() == 0);
    const fs::path dir = server.data_dir();
    CHECK(ModeOf(dir) == 0700);
    CHECK(ModeOf(dir / "tokens") == 0700);
    CHECK(ModeOf(dir / "hsm-pin") == 0600);
    CHECK(ModeOf(dir / "softhsm2.conf") == 0600);
    CHECK(ModeOf(dir / "keyward.db") == 0600);
    // SoftHSM's token directory and object files: nothing for other users either.
    for (const auto& entry : fs::recursive_directory_iterator(dir)) {
      INFO(entry.path().string());
      CHECK((ModeOf(entry.path()) & 0007) == 0);
    }
  }

  TEST_CASE("dev mode rejects a world-readable PIN file") {
    DevServer server;
    REQUIRE(server.Start());
    CHECK(server.Stop() == 0);
    const fs::path pin = server.data_dir() / "hsm-pin";
    SetMode(pin, 0644);
    const ExitResult run = RunToExit({"server", "-dev", "-dev-listen-address=127.0.0.1:0",
                                      "-dev-data-dir=" + server.data_dir().string()},
                                     {}, kRejectTimeout);
    CheckRejected(run, pin, "chmod 600");

    SetMode(pin, 0600);
    REQUIRE(server.Start());
    CHECK(server.Stop() == 0);
  }
}

TEST_SUITE("e2e/memory_lock") {
  TEST_CASE("dev server locks its memory") {
    DevServer server;
    REQUIRE(server.Start());
    // Let the worker threads and the sweeper start.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const pid_t pid = server.process().pid();
    const long locked = ProcStatusKib(pid, "VmLck");
    const long resident = ProcStatusKib(pid, "VmRSS");
    const std::string err = server.process().ReadStderr();
    MESSAGE("dev server VmLck " << locked << " KiB, VmRSS " << resident << " KiB");
    if (SkippedLocking(err)) {
      MESSAGE("sanitizer build: the server does not lock memory");
      return;
    }
    CHECK_MESSAGE(Contains(err, "memory locked (mlockall)"), err);
    REQUIRE(locked > 0);
    REQUIRE(resident > 0);
    // MCL_CURRENT | MCL_FUTURE: every mapping is locked, so locked covers resident.
    CHECK(locked >= resident);
  }

  TEST_CASE("disable_mlock leaves memory unlocked") {
    ConfigFiles files;
    files.WriteConfig({{"disable_mlock", true}});
    ServerProcess unlocked(files.ServerArgs(), {files.SoftHsmEnv()}, files.root());
    REQUIRE(unlocked.Start());
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const long unlocked_locked = ProcStatusKib(unlocked.pid(), "VmLck");
    const long unlocked_resident = ProcStatusKib(unlocked.pid(), "VmRSS");
    const std::string unlocked_err = unlocked.ReadStderr();
    CHECK(unlocked.Stop() == 0);
    CHECK_MESSAGE(Contains(unlocked_err, "memory locking is off (disable_mlock is true)"),
                  unlocked_err);
    // Only libsodium's guarded allocations are locked.
    CHECK(unlocked_locked < unlocked_resident);

    files.WriteConfig(json::object());
    ServerProcess locked(files.ServerArgs(), {files.SoftHsmEnv()}, files.root());
    REQUIRE(locked.Start());
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const long locked_locked = ProcStatusKib(locked.pid(), "VmLck");
    const long locked_resident = ProcStatusKib(locked.pid(), "VmRSS");
    const std::string locked_err = locked.ReadStderr();
    CHECK(locked.Stop() == 0);
    MESSAGE("config server VmRSS " << unlocked_resident << " KiB unlocked, " << locked_resident
                                   << " KiB locked (VmLck " << locked_locked << " KiB)");
    if (SkippedLocking(locked_err)) return;
    CHECK(locked_locked >= locked_resident);
    // MCL_ONFAULT: locking faults in nothing. Without it every thread stack (8 MiB each)
    // would become resident at start.
    CHECK(locked_resident < unlocked_resident + 8 * 1024);
  }

  TEST_CASE("dev mode goes on when mlockall fails") {
    TempDir dir;
    // The server serves until RunProgram kills it after the timeout.
    const ExitResult run = RunProgram(
        "/usr/bin/prlimit",
        WithoutMemoryLock({"server", "-dev", "-dev-listen-address=127.0.0.1:0",
                           "-dev-data-dir=" + (dir.path() / "data").string()}),
        {}, std::chrono::seconds(8));
    CHECK_MESSAGE(Contains(run.out, "Listening on:"), (run.out + run.err));
    if (SkippedLocking(run.err)) return;
    CHECK_MESSAGE(Contains(run.err, "memory not locked; secrets may reach swap"), run.err);
    CHECK_MESSAGE(Contains(run.err, "cannot lock memory (mlockall: "), run.err);
  }

  TEST_CASE("config mode rejects a failed mlockall") {
    ConfigFiles files;
    const ExitResult run =
        RunProgram("/usr/bin/prlimit", WithoutMemoryLock(files.ServerArgs()), {files.SoftHsmEnv()},
                   kRejectTimeout);
    if (SkippedLocking(run.err)) {
      MESSAGE("sanitizer build: the server does not lock memory");
      return;
    }
    CHECK_MESSAGE(run.exited, run.err);
    CHECK(run.exit_code != 0);
    CHECK_MESSAGE(Contains(run.err, "error: cannot lock memory (mlockall: "), run.err);
    CHECK_MESSAGE(Contains(run.err, "RLIMIT_MEMLOCK is 4096 KiB"), run.err);
    CHECK_MESSAGE(Contains(run.err, "\"disable_mlock\": true"), run.err);
    CHECK(!Contains(run.out, "Listening on:"));
  }
}

}  // namespace kw::e2e
