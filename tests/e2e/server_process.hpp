#pragma once

#include <httplib.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

// The end-to-end harness: spawns the real `keyward` binary, waits for it to listen, stops or
// kills it, and builds HTTP clients for it. Every child gets its own temporary directory.
namespace kw::e2e {

inline constexpr std::string_view kRootToken = "e2e-root-token";

// Returns the keyward binary: $KEYWARD_BINARY, else ../../cli/keyward next to this test
// executable (the layout of a meson build directory).
std::filesystem::path KeywardBinary();

// A directory under $TMPDIR (or /tmp) that is removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A child process's outcome from RunToExit.
struct ExitResult {
  bool exited = false;  // false when it was killed after the timeout
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs the keyward binary with `args` and with `extra_env` (NAME=value) added to the
// environment. Waits up to `timeout`, then sends SIGKILL. Returns the exit code and output.
ExitResult RunToExit(const std::vector<std::string>& args,
                     const std::vector<std::string>& extra_env,
                     std::chrono::seconds timeout = std::chrono::seconds(60));

// Runs `program` (an absolute path) like RunToExit.
ExitResult RunProgram(const std::string& program, const std::vector<std::string>& args,
                      const std::vector<std::string>& extra_env,
                      std::chrono::seconds timeout = std::chrono::seconds(60));

// One keyward server child. Stdout and stderr of every start are appended to files in
// `log_dir`. Start and Stop may alternate any number of times; the destructor kills a child
// still running. One thread.
class ServerProcess {
 public:
  ServerProcess(std::vector<std::string> args, std::vector<std::string> extra_env,
                std::filesystem::path log_dir);
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Spawns the child and waits up to `timeout` for its "Listening on:" line. Returns false
  // (after printing the child's stderr) when it exits first or the time runs out.
  bool Start(std::chrono::seconds timeout = std::chrono::seconds(30));

  // Sends SIGTERM and waits up to `timeout`, then SIGKILL. Returns the exit code, or -1 when
  // the child had to be killed or died of a signal.
  int Stop(std::chrono::seconds timeout = std::chrono::seconds(15));

  // Sends SIGKILL and reaps the child.
  void Kill();

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  std::uint16_t port() const { return port_; }
  // The "Root Token:" of the latest start; empty when it printed none.
  const std::string& root_token() const { return root_token_; }
  void set_args(std::vector<std::string> args) { args_ = std::move(args); }

  // The whole stdout and stderr of every start so far.
  std::string ReadStdout() const;
  std::string ReadStderr() const;

 private:
  std::vector<std::string> args_;
  std::vector<std::string> extra_env_;
  std::filesystem::path stdout_path_;
  std::filesystem::path stderr_path_;
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
  std::string root_token_;
};

// A dev-mode server (`keyward server -dev`) on 127.0.0.1 with a port the kernel picks, its
// data in a fresh temporary directory that survives restarts of this object.
class DevServer {
 public:
  explicit DevServer(std::optional<std::string> root_token = std::string(kRootToken));

  // Starts the server with the current root token id.
  bool Start();
  // Stops the server if it runs and starts it again on the same data directory. `root_token`
  // replaces the -dev-root-token-id for this and later starts (nullopt: the server picks one).
  bool Restart(std::optional<std::string> root_token);
  int Stop() { return process_->Stop(); }
  void Kill() { process_->Kill(); }

  ServerProcess& process() { return *process_; }
  std::uint16_t port() const { return process_->port(); }
  std::string url() const;
  const std::filesystem::path& data_dir() const { return data_dir_; }
  std::filesystem::path db_path() const { return data_dir_ / "keyward.db"; }
  // The root token that the latest start printed.
  const std::string& token() const { return process_->root_token(); }

  // Returns a client that sends the root token in X-Vault-Token.
  std::unique_ptr<httplib::Client> Client() const;
  // Returns a client that sends no token.
  std::unique_ptr<httplib::Client> AnonymousClient() const;

 private:
  std::vector<std::string> Args(const std::optional<std::string>& root_token) const;

  TempDir temp_;
  std::filesystem::path data_dir_;
  std::optional<std::string> root_token_;
  std::unique_ptr<ServerProcess> process_;
};

// Returns a client for 127.0.0.1:`port` with generous timeouts; `token` goes into
// X-Vault-Token unless empty.
std::unique_ptr<httplib::Client> MakeClient(std::uint16_t port, const std::string& token);

// Returns VmRSS of `pid` in KiB from /proc/<pid>/status, or -1.
long ResidentKib(pid_t pid);

}  // namespace kw::e2e

namespace kw::e2e {

// A dev-mode server started with -dev-tls (HTTPS, client certificates requested) on
// 127.0.0.1 with a port the kernel picks, its data in a fresh temporary directory that
// survives restarts. Its CA file comes from the "CA Certificate:" line it prints.
class DevTlsServer {
 public:
  DevTlsServer();

  bool Start();
  int Stop() { return process_->Stop(); }

  ServerProcess& process() { return *process_; }
  std::uint16_t port() const { return process_->port(); }
  // https://127.0.0.1:<port>
  std::string url() const;
  const std::filesystem::path& data_dir() const { return data_dir_; }
  // A scratch directory for client keys and certificates, removed with the server's data.
  std::filesystem::path scratch_dir() const { return temp_.path(); }
  // The CA certificate file that the latest start printed; empty when it printed none.
  const std::filesystem::path& ca_file() const { return ca_file_; }
  const std::string& token() const { return process_->root_token(); }

 private:
  TempDir temp_;
  std::filesystem::path data_dir_;
  std::filesystem::path ca_file_;
  std::unique_ptr<ServerProcess> process_;
};

}  // namespace kw::e2e
