#include "tests/e2e/server_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

extern char** environ;

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;
using std::chrono::steady_clock;

std::string ReadFileFrom(const fs::path& path, std::size_t offset) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return {};
  file.seekg(static_cast<std::streamoff>(offset));
  std::stringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

std::size_t FileSize(const fs::path& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  return ec ? 0 : static_cast<std::size_t>(size);
}

// Returns the current environment with `extra` (NAME=value) added or replacing entries.
std::vector<std::string> ChildEnvironment(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string text(*entry);
    const std::string name = text.substr(0, text.find('='));
    bool replaced = false;
    for (const auto& added : extra) replaced |= added.substr(0, added.find('=')) == name;
    if (!replaced) env.push_back(text);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

// Spawns `binary` with `args`, stdin from /dev/null and stdout and stderr appended to
// the given files. Returns the pid, or -1.
pid_t Spawn(const std::string& binary, const std::vector<std::string>& args,
            const std::vector<std::string>& extra_env, const fs::path& stdout_path,
            const fs::path& stderr_path) {
  std::vector<std::string> argv_text;
  argv_text.push_back(binary);
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& arg : argv_text) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_text = ChildEnvironment(extra_env);
  std::vector<char*> envp;
  for (auto& entry : env_text) envp.push_back(entry.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, stdout_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0600);
  posix_spawn_file_actions_addopen(&actions, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0600);
  // The child starts with no blocked signals and default dispositions, whatever the test
  // process uses.
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t empty;
  sigemptyset(&empty);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGINT);
  posix_spawnattr_setsigmask(&attributes, &empty);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  pid_t pid = -1;
  const int rc = posix_spawn(&pid, binary.c_str(), &actions, &attributes, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (rc != 0) {
    std::cerr << "posix_spawn " << binary << " failed: " << std::strerror(rc) << "\n";
    return -1;
  }
  return pid;
}

// Waits up to `timeout` for `pid` to exit. Returns its wait status, or nullopt on timeout.
std::optional<int> WaitFor(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) return status;
    if (done < 0) return 0;
    if (steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int ExitCodeOf(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }

// Returns the rest of the line after `label` in `text`, when a whole line is there.
std::optional<std::string> LineValue(const std::string& text, std::string_view label) {
  const std::size_t start = text.rfind(label);
  if (start == std::string::npos) return std::nullopt;
  const std::size_t end = text.find('\n', start);
  if (end == std::string::npos) return std::nullopt;
  return text.substr(start + label.size(), end - start - label.size());
}

}  // namespace

fs::path KeywardBinary() {
  if (const char* env = std::getenv("KEYWARD_BINARY"); env != nullptr && *env != '\0') return env;
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return (self.parent_path() / ".." / ".." / "cli" / "keyward").lexically_normal();
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern =
      std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/keyward-e2e-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::cerr << "mkdtemp " << pattern << " failed: " << std::strerror(errno) << "\n";
    std::abort();
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

ExitResult RunToExit(const std::vector<std::string>& args,
                     const std::vector<std::string>& extra_env, std::chrono::seconds timeout) {
  return RunProgram(KeywardBinary().string(), args, extra_env, timeout);
}

ExitResult RunProgram(const std::string& program, const std::vector<std::string>& args,
                      const std::vector<std::string>& extra_env, std::chrono::seconds timeout) {
  TempDir logs;
  const fs::path out = logs.path() / "stdout";
  const fs::path err = logs.path() / "stderr";
  ExitResult result;
  const pid_t pid = Spawn(program, args, extra_env, out, err);
  if (pid < 0) return result;
  std::optional<int> status = WaitFor(pid, timeout);
  if (!status) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  } else {
    result.exited = WIFEXITED(*status);
    result.exit_code = ExitCodeOf(*status);
  }
  result.out = ReadFileFrom(out, 0);
  result.err = ReadFileFrom(err, 0);
  return result;
}

ServerProcess::ServerProcess(std::vector<std::string> args, std::vector<std::string> extra_env,
                             fs::path log_dir)
    : args_(std::move(args)),
      extra_env_(std::move(extra_env)),
      stdout_path_(log_dir / "server.stdout"),
      stderr_path_(log_dir / "server.stderr") {}

ServerProcess::~ServerProcess() {
  if (running()) Kill();
}

bool ServerProcess::Start(std::chrono::seconds timeout) {
  if (running()) return false;
  const std::size_t offset = FileSize(stdout_path_);
  const std::size_t err_offset = FileSize(stderr_path_);
  pid_ = Spawn(KeywardBinary().string(), args_, extra_env_, stdout_path_, stderr_path_);
  if (pid_ < 0) return false;
  port_ = 0;
  root_token_.clear();

  const auto deadline = steady_clock::now() + timeout;
  while (steady_clock::now() < deadline) {
    const std::string out = ReadFileFrom(stdout_path_, offset);
    if (auto address = LineValue(out, "Listening on: ")) {
      port_ = static_cast<std::uint16_t>(std::stoi(address->substr(address->rfind(':') + 1)));
      root_token_ = LineValue(out, "Root Token: ").value_or("");
      return true;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      std::cerr << "keyward server exited with code " << ExitCodeOf(status)
                << " before listening; stderr:\n"
                << ReadFileFrom(stderr_path_, err_offset) << "\n";
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::cerr << "keyward server did not print \"Listening on:\" within " << timeout.count()
            << " s; stderr:\n"
            << ReadFileFrom(stderr_path_, err_offset) << "\n";
  Kill();
  return false;
}

int ServerProcess::Stop(std::chrono::seconds timeout) {
  if (!running()) return -1;
  ::kill(pid_, SIGTERM);
  std::optional<int> status = WaitFor(pid_, timeout);
  if (!status) {
    std::cerr << "keyward server ignored SIGTERM for " << timeout.count() << " s; killing it\n";
    Kill();
    return -1;
  }
  pid_ = -1;
  return ExitCodeOf(*status);
}

void ServerProcess::Kill() {
  if (!running()) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

std::string ServerProcess::ReadStdout() const { return ReadFileFrom(stdout_path_, 0); }
std::string ServerProcess::ReadStderr() const { return ReadFileFrom(stderr_path_, 0); }

DevServer::DevServer(std::optional<std::string> root_token)
    : data_dir_(temp_.path() / "data"), root_token_(std::move(root_token)) {
  process_ =
      std::make_unique<ServerProcess>(Args(root_token_), std::vector<std::string>{}, temp_.path());
}

std::vector<std::string> DevServer::Args(const std::optional<std::string>& root_token) const {
  std::vector<std::string> args = {"server", "-dev", "-dev-listen-address=127.0.0.1:0",
                                   "-dev-data-dir=" + data_dir_.string()};
  if (root_token) args.push_back("-dev-root-token-id=" + *root_token);
  return args;
}

bool DevServer::Start() {
  process_->set_args(Args(root_token_));
  return process_->Start();
}

bool DevServer::Restart(std::optional<std::string> root_token) {
  if (process_->running()) process_->Stop();
  root_token_ = std::move(root_token);
  return Start();
}

std::string DevServer::url() const { return "http://127.0.0.1:" + std::to_string(port()); }

std::unique_ptr<httplib::Client> DevServer::Client() const { return MakeClient(port(), token()); }

std::unique_ptr<httplib::Client> DevServer::AnonymousClient() const {
  return MakeClient(port(), "");
}

std::unique_ptr<httplib::Client> MakeClient(std::uint16_t port, const std::string& token) {
  auto client = std::make_unique<httplib::Client>("127.0.0.1", port);
  client->set_connection_timeout(10);
  client->set_read_timeout(60);
  client->set_write_timeout(60);
  if (!token.empty()) client->set_default_headers({{"X-Vault-Token", token}});
  return client;
}

long ResidentKib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
  }
  return -1;
}

}  // namespace kw::e2e

namespace kw::e2e {

DevTlsServer::DevTlsServer() : data_dir_(temp_.path() / "data") {
  process_ = std::make_unique<ServerProcess>(
      std::vector<std::string>{"server", "-dev", "-dev-tls", "-dev-listen-address=127.0.0.1:0",
                               "-dev-data-dir=" + data_dir_.string(),
                               "-dev-root-token-id=" + std::string(kRootToken)},
      std::vector<std::string>{}, temp_.path());
}

bool DevTlsServer::Start() {
  if (!process_->Start()) return false;
  ca_file_ = LineValue(process_->ReadStdout(), "CA Certificate: ").value_or("");
  return true;
}

std::string DevTlsServer::url() const { return "https://127.0.0.1:" + std::to_string(port()); }

}  // namespace kw::e2e
