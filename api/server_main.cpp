#include "api/server_main.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "api/dev_tls.hpp"
#include "api/router.hpp"
#include "api/server_config.hpp"
#include "base/bytes.hpp"
#include "base/log.hpp"
#include "hsm/token.hpp"
#include "storage/sqlite/sqlite_storage.hpp"
#include "vault/core.hpp"

namespace kw::api {
namespace {

constexpr std::string_view kDevTokenLabel = "keyward-dev";
constexpr std::string_view kSoftHsmModule = "/usr/lib/softhsm/libsofthsm2.so";

struct ServerFlags {
  bool dev = false;
  bool dev_tls = false;  // -dev-tls: HTTPS with a generated CA, client certificates requested
  std::string config_path;
  std::string dev_listen_address = "127.0.0.1:8200";
  std::optional<std::string> dev_root_token_id;
  std::string dev_data_dir = "keyward-dev";
};

void PrintUsage(std::ostream& out = std::cerr) {
  out << "Usage: keyward server -dev [-dev-tls] [-dev-listen-address=HOST:PORT] "
               "[-dev-root-token-id=TOKEN] [-dev-data-dir=DIR]\n"
               "       keyward server -config FILE\n\n"
               "Example: keyward server -dev -dev-listen-address=127.0.0.1:8200\n";
}

// Parses Go-style flags: -name=value, -name value, and --name forms.
std::optional<ServerFlags> ParseFlags(const std::vector<std::string>& args) {
  ServerFlags flags;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    if (arg.starts_with("--")) arg.erase(0, 1);
    std::string name = arg;
    std::optional<std::string> value;
    if (const std::size_t eq = arg.find('='); eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    const auto take_value = [&]() -> std::optional<std::string> {
      if (value) return value;
      if (i + 1 < args.size()) return args[++i];
      std::cerr << "flag " << name << " needs a value\n";
      return std::nullopt;
    };
    if (name == "-dev") {
      flags.dev = true;
    } else if (name == "-dev-tls") {
      flags.dev_tls = true;
    } else if (name == "-config") {
      auto v = take_value();
      if (!v) return std::nullopt;
      flags.config_path = *v;
    } else if (name == "-dev-listen-address") {
      auto v = take_value();
      if (!v) return std::nullopt;
      flags.dev_listen_address = *v;
    } else if (name == "-dev-root-token-id") {
      flags.dev_root_token_id = take_value();
      if (!flags.dev_root_token_id) return std::nullopt;
    } else if (name == "-dev-data-dir") {
      auto v = take_value();
      if (!v) return std::nullopt;
      flags.dev_data_dir = *v;
    } else {
      std::cerr << "unknown flag " << name << "\n";
      return std::nullopt;
    }
  }
  if (flags.dev == !flags.config_path.empty()) {
    std::cerr << "give exactly one of -dev and -config FILE\n";
    return std::nullopt;
  }
  if (flags.dev_tls && !flags.dev) {
    std::cerr << "-dev-tls needs -dev; with -config, set listener.tls_cert_file instead\n";
    return std::nullopt;
  }
  return flags;
}

Status WriteFile(const std::filesystem::path& path, std::string_view text, mode_t mode) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  if (!file) return Unavailable("cannot write " + path.string());
  file << text;
  file.close();
  if (!file || ::chmod(path.c_str(), mode) != 0) return Unavailable("cannot write " + path.string());
  return OkStatus();
}

// Creates the dev data directory, its SoftHSM configuration and token, and the PIN file on
// first start; points SOFTHSM2_CONF at that configuration. Touches no global configuration.
Result<ServerConfig> PrepareDev(const ServerFlags& flags) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::absolute(flags.dev_data_dir);
  std::error_code ec;
  fs::create_directories(dir / "tokens", ec);
  if (ec) return Unavailable("cannot create dev data directory " + dir.string() + ": " + ec.message());
  ::chmod(dir.c_str(), 0700);

  const fs::path conf = dir / "softhsm2.conf";
  if (!fs::exists(conf)) {
    KW_RETURN_IF_ERROR(WriteFile(conf,
                                 "directories.tokendir = " + (dir / "tokens").string() +
                                     "\nobjectstore.backend = file\nlog.level = ERROR\n"
                                     "slots.removable = false\nslots.mechanisms = ALL\n",
                                 0600));
  }
  ::setenv("SOFTHSM2_CONF", conf.c_str(), 1);

  const fs::path pin_file = dir / "hsm-pin";
  ServerConfig config;
  KW_RETURN_IF_ERROR(ParseListenAddress(flags.dev_listen_address, config.listener));
  config.storage_path = (dir / "keyward.db").string();
  config.core.token.module_path = std::string(kSoftHsmModule);
  config.core.token.token_label = std::string(kDevTokenLabel);
  config.core.pin_source.pin_file = pin_file.string();

  if (!fs::exists(pin_file)) {
    // First start: a fresh token with a random PIN that only this directory holds.
    std::string pin = ToHex(RandomBytes(16));
    std::string so_pin = ToHex(RandomBytes(16));
    auto created = hsm::InitializeToken(config.core.token.module_path, kDevTokenLabel,
                                        SecretBuffer::CopyFrom(so_pin), SecretBuffer::CopyFrom(pin));
    WipeString(so_pin);
    if (!created) {
      WipeString(pin);
      return tl::unexpected(created.error().WithContext("create dev HSM token"));
    }
    auto written = WriteFile(pin_file, pin, 0600);
    WipeString(pin);
    KW_RETURN_IF_ERROR(written);
  }

  if (flags.dev_tls) {
    SystemClock clock;
    KW_ASSIGN_OR_RETURN(DevTlsFiles tls, PrepareDevTls(dir, clock));
    config.listener.tls_cert_file = tls.server_cert.string();
    config.listener.tls_key_file = tls.server_key.string();
    config.listener.tls_request_client_cert = true;
  }
  return config;
}

// Waits for SIGINT or SIGTERM. SIGHUP in between reopens the audit sinks (after logrotate
// renamed a file) and the wait goes on.
Status WaitForSignal(vault::audit::SinkSet* sinks) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  for (;;) {
    int received = 0;
    if (sigwait(&signals, &received) != 0) return Internal("sigwait failed");
    if (received == SIGHUP) {
      log::Info("signal received, reopening audit sinks", {{"signal", "SIGHUP"}});
      if (sinks) sinks->Reopen();
      continue;
    }
    log::Info("signal received, shutting down",
              {{"signal", received == SIGINT ? "SIGINT" : "SIGTERM"}});
    return OkStatus();
  }
}

void ApplyLogLevel(const std::string& level) {
  if (level == "debug") log::SetLevel(log::Level::kDebug);
  if (level == "warn") log::SetLevel(log::Level::kWarn);
  if (level == "error") log::SetLevel(log::Level::kError);
}

// Opens storage and the core, brings the vault to its start-up state, serves until a signal.
int Serve(const ServerConfig& config, const ServerFlags& flags) {
  storage::sqlite::SqliteOptions storage_options;
  storage_options.path = config.storage_path;
  auto storage = storage::sqlite::Open(storage_options);
  if (!storage) {
    log::Error("cannot open storage", {{log::kPath, config.storage_path}, {log::kError, storage.error().message()}});
    return 1;
  }
  SystemClock clock;
  vault::Core core(config.core, **storage, clock);
  // Sinks catch up with the records already in the database before anything new is written.
  auto sinks = vault::audit::SinkSet::Open(config.core.audit.sinks, **storage, clock);
  if (!sinks) {
    log::Error("cannot open the audit sinks", {{log::kError, sinks.error().message()}});
    std::cerr << "error: " << sinks.error().message() << "\n";
    return 1;
  }
  core.SetAuditSinks(std::move(*sinks));

  std::optional<SecretBuffer> root_token;
  if (flags.dev) {
    std::optional<SecretBuffer> wanted;
    if (flags.dev_root_token_id) wanted = SecretBuffer::CopyFrom(*flags.dev_root_token_id);
    auto initialized = core.IsInitialized();
    Result<vault::InitResult> result = Internal("unreachable");
    if (initialized && !*initialized) {
      result = core.Initialize(wanted, std::nullopt);
    } else if (initialized) {
      auto unsealed = core.Unseal(std::nullopt);
      result = unsealed ? core.ResetRootToken(wanted) : tl::unexpected(unsealed.error());
      // A damaged audit log cannot record a new root token. Serve anyway, so that the root
      // token from before can run sys/audit/verify.
      if (unsealed && !result && result.error().code() == Code::kDataLoss) {
        log::Error("root token not replaced: the audit log cannot record it; the previous root "
                   "token stays valid",
                   {{log::kError, result.error().message()}});
        result = vault::InitResult{};
      }
    } else {
      result = tl::unexpected(initialized.error());
    }
    if (!result) {
      log::Error("dev mode start-up failed", {{log::kError, result.error().message()}});
      return 1;
    }
    if (!result->root_token.empty()) root_token = std::move(result->root_token);
  } else {
    auto initialized = core.IsInitialized();
    if (initialized && *initialized) {
      if (auto unsealed = core.Unseal(std::nullopt); !unsealed) {
        log::Warn("starting sealed; unseal with PUT /v1/sys/unseal",
                  {{log::kError, unsealed.error().message()}});
      }
    } else if (initialized) {
      log::Info("vault is not initialized; initialize with PUT /v1/sys/init");
    } else {
      log::Error("cannot read the initialisation state; starting sealed",
                 {{log::kError, initialized.error().message()}});
    }
  }

  Router router(core, config.rate_limit);
  ServerOptions listener = config.listener;
  listener.head_check = [&router](const HttpRequest& head) { return router.CheckHead(head); };
  auto server = HttpServer::Start(listener,
                                  [&router](HttpRequest& request) { return router.Handle(request); });
  if (!server) {
    log::Error("cannot start the listener", {{log::kError, server.error().message()}});
    return 1;
  }
  const bool tls = !config.listener.tls_cert_file.empty();
  std::string host = config.listener.host;
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  const std::string address = std::string(tls ? "https://" : "http://") + host + ":" +
                              std::to_string((*server)->port());
  if (root_token) {
    std::cout << "keyward dev server: data in " << std::filesystem::absolute(flags.dev_data_dir).string()
              << "\nRoot Token: " << root_token->RevealText() << "\n";
  }
  if (flags.dev_tls) {
    const auto ca = DevTlsPaths(std::filesystem::absolute(flags.dev_data_dir)).ca_cert;
    std::cout << "CA Certificate: " << ca.string() << "\n"
              << "Clients must trust it: export VAULT_CACERT='" << ca.string() << "'\n";
  }
  std::cout << "Listening on: " << address << "\n" << std::flush;
  root_token.reset();
  log::Info("server started", {{log::kAddress, address}});
  // Expired tokens are refused on use; the sweeper removes them so the store stays bounded.
  core.StartSweeper(std::chrono::seconds(10));

  const Status waited = WaitForSignal(core.audit_sinks());
  core.StopSweeper();
  (*server)->Stop();
  core.Seal();
  log::Info("server stopped");
  return waited ? 0 : 1;
}

// Returns the mode bits of `mode` as four octal digits, such as "0644".
std::string OctalMode(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof(text), "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

// Rejects a file or directory that other users can read or write, or that its group can
// write, because it contains a PIN, a key or the encrypted records. A group that can read it
// gets a warning only, for setups that share a group with a backup agent. It must also belong
// to the server's user or to root, because the owner of the config can name the PKCS#11 module
// that the server loads, and so run code as the server. A missing path passes here, so that the
// code that opens it reports it.
Status CheckPrivatePath(const std::filesystem::path& path, std::string_view what) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return OkStatus();
  const uid_t server_user = ::geteuid();
  if (info.st_uid != server_user && info.st_uid != 0) {
    return PermissionDenied(std::string(what) + " " + path.string() + " belongs to user id " +
                            std::to_string(info.st_uid) + ", not to the server's user (id " +
                            std::to_string(server_user) + ") or root: run chown " +
                            std::to_string(server_user) + " " + path.string());
  }
  const bool directory = S_ISDIR(info.st_mode);
  const std::string fix = std::string(directory ? "chmod 700 " : "chmod 600 ") + path.string();
  const std::string mode = OctalMode(info.st_mode);
  if ((info.st_mode & (S_IROTH | S_IWOTH)) != 0) {
    return PermissionDenied(std::string(what) + " " + path.string() + " is " +
                            ((info.st_mode & S_IWOTH) != 0 ? "writable" : "readable") +
                            " by other users (mode " + mode + "): run " + fix);
  }
  if ((info.st_mode & S_IWGRP) != 0) {
    return PermissionDenied(std::string(what) + " " + path.string() +
                            " is writable by its group (mode " + mode + "): run " + fix);
  }
  if ((info.st_mode & S_IRGRP) != 0) {
    log::Warn("readable by its group; run " + fix + " unless the group is meant to read it",
              {{log::kPath, path.string()}, {"mode", mode}});
  }
  return OkStatus();
}

// Checks the HSM PIN file, the directory of the database, the database and its WAL and
// shared-memory files. The config file is checked before it is read.
Status CheckDataPermissions(const ServerConfig& config) {
  namespace fs = std::filesystem;
  if (!config.core.pin_source.pin_file.empty()) {
    KW_RETURN_IF_ERROR(CheckPrivatePath(config.core.pin_source.pin_file, "the HSM PIN file"));
  }
  const fs::path database = fs::absolute(config.storage_path);
  KW_RETURN_IF_ERROR(CheckPrivatePath(database.parent_path(), "the data directory"));
  for (const char* suffix : {"", "-wal", "-shm"}) {
    KW_RETURN_IF_ERROR(
        CheckPrivatePath(database.string() + suffix, "the database file"));
  }
  return OkStatus();
}

// Builds where sanitizers reserve terabytes of shadow memory cannot lock all of it.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitizerBuild = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
constexpr bool kSanitizerBuild = true;
#else
constexpr bool kSanitizerBuild = false;
#endif
#else
constexpr bool kSanitizerBuild = false;
#endif

// Locks every page of the process, now and later, so that no secret copy (request bodies,
// parser buffers, OpenSSL state) goes to swap. MCL_ONFAULT locks pages as they are touched
// instead of populating every mapping, so reserved but unused thread stacks cost no memory.
// Without CAP_IPC_LOCK the whole address space must fit in RLIMIT_MEMLOCK.
Status LockMemory(bool disabled_by_config) {
  if (disabled_by_config) {
    log::Info("memory locking is off (disable_mlock is true)");
    return OkStatus();
  }
  if (kSanitizerBuild) {
    log::Warn("memory locking skipped: sanitizer builds reserve more address space than can be "
              "locked");
    return OkStatus();
  }
  if (::mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) == 0) {
    log::Info("memory locked (mlockall)");
    return OkStatus();
  }
  const int error = errno;
  rlimit limit{};
  std::string limit_text = "unknown";
  if (::getrlimit(RLIMIT_MEMLOCK, &limit) == 0) {
    limit_text = limit.rlim_cur == RLIM_INFINITY ? "unlimited"
                                                 : std::to_string(limit.rlim_cur / 1024) + " KiB";
  }
  return Unavailable(std::string("cannot lock memory (mlockall: ") + std::strerror(error) +
                     "; RLIMIT_MEMLOCK is " + limit_text +
                     "): give the server CAP_IPC_LOCK or an unlimited RLIMIT_MEMLOCK "
                     "(systemd: LimitMEMLOCK=infinity), or set \"disable_mlock\": true in the "
                     "config if swap is off or encrypted");
}

// Keeps secrets in this process's memory out of core files and away from debuggers of the same
// user: no core file (RLIMIT_CORE 0, hard limit too) and not dumpable (PR_SET_DUMPABLE 0).
Status DisableCoreDumps() {
  const rlimit no_core{0, 0};
  if (::setrlimit(RLIMIT_CORE, &no_core) != 0) {
    return Internal(std::string("cannot disable core dumps (setrlimit RLIMIT_CORE): ") +
                    std::strerror(errno));
  }
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return Internal(std::string("cannot make the process non-dumpable (prctl): ") +
                    std::strerror(errno));
  }
  return OkStatus();
}

}  // namespace

int RunServer(const std::vector<std::string>& args) {
  InitSodium();
  for (const std::string& arg : args) {
    if (arg == "-help" || arg == "--help" || arg == "-h") {
      PrintUsage(std::cout);
      return 0;
    }
  }
  const auto flags = ParseFlags(args);
  if (!flags) {
    PrintUsage();
    return 2;
  }
  // Before any secret is loaded. Fail closed: a server that could leave its keys' PIN and
  // decrypted records in a core file does not start.
  if (Status disabled = DisableCoreDumps(); !disabled) {
    log::Error("cannot start", {{log::kError, disabled.error().message()}});
    std::cerr << "error: " << disabled.error().message() << "\n";
    return 1;
  }
  // Block the stop signals and SIGHUP in every thread; the main thread takes them with sigwait.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  // The database, its WAL and the dev data files are for this user alone.
  ::umask(077);

  const auto report_start_failure = [](const Status& status) {
    log::Error("cannot start", {{log::kError, status.error().message()}});
    std::cerr << "error: " << status.error().message() << "\n";
    return 1;
  };
  // The config file may hold the HSM PIN: check it before reading it.
  if (!flags->dev) {
    if (Status checked = CheckPrivatePath(flags->config_path, "the config file"); !checked) {
      return report_start_failure(checked);
    }
  }
  Result<ServerConfig> config = flags->dev ? PrepareDev(*flags) : LoadServerConfig(flags->config_path);
  if (!config) return report_start_failure(tl::unexpected(config.error()));
  ApplyLogLevel(config->log_level);
  if (Status checked = CheckDataPermissions(*config); !checked) {
    return report_start_failure(checked);
  }

  // Before the PIN is read. Dev mode goes on without the lock. A configured server does not,
  // unless its config sets disable_mlock because swap needs no protection.
  if (Status locked = LockMemory(config->disable_mlock); !locked) {
    if (!flags->dev) return report_start_failure(locked);
    log::Warn("memory not locked; secrets may reach swap",
              {{log::kError, locked.error().message()}});
  }
  return Serve(*config, *flags);
}

}  // namespace kw::api
