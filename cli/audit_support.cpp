#include "cli/audit_support.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>

namespace kw::cli::detail {

namespace {

std::string ErrnoText(int error) { return std::strerror(error); }

const char* CaFileFromEnvironment() {
  for (const char* name : {"KEYWARD_CACERT", "VAULT_CACERT"}) {
    if (const char* value = std::getenv(name); value && *value) return value;
  }
  return nullptr;
}

std::string ServerMessages(const nlohmann::json& body) {
  std::string text;
  if (!body.is_object() || !body.contains("errors") || !body["errors"].is_array()) return text;
  for (const auto& message : body["errors"]) {
    if (message.is_string()) text += ": " + message.get<std::string>();
  }
  return text;
}

}  // namespace

std::optional<std::string> ParsedFlags::last(const std::string& name) const {
  const auto found = values.find(name);
  if (found == values.end() || found->second.empty()) return std::nullopt;
  return found->second.back();
}

const std::vector<std::string>& ParsedFlags::all(const std::string& name) const {
  static const std::vector<std::string> kNone;
  const auto found = values.find(name);
  return found == values.end() ? kNone : found->second;
}

Result<ParsedFlags> ParseFlags(std::span<const std::string> args,
                               const std::set<std::string>& known) {
  ParsedFlags flags;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (!arg.starts_with("-") || arg == "-" || arg == "--") {
      return InvalidArgument("unexpected argument \"" + args[i] + "\"");
    }
    arg.remove_prefix(arg.starts_with("--") ? 2 : 1);
    if (arg == "help" || arg == "h") {
      flags.help = true;
      continue;
    }

    std::string name(arg.substr(0, arg.find('=')));
    if (!known.contains(name)) return InvalidArgument("unknown flag -" + name);
    std::string value;
    if (const std::size_t equals = arg.find('='); equals != std::string_view::npos) {
      value = std::string(arg.substr(equals + 1));
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return InvalidArgument("flag -" + name + " needs a value");
    }
    flags.values[name].push_back(std::move(value));
  }
  return flags;
}

Result<std::uint64_t> ParseCount(const std::string& name, const std::string& value) {
  std::uint64_t number = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), number);
  if (value.empty() || error != std::errc() || end != value.data() + value.size()) {
    return InvalidArgument("flag -" + name + ": \"" + value + "\" is not a decimal number");
  }
  return number;
}

ApiClient::ApiClient(const ServerTarget& target) : target_(target) {}

Result<nlohmann::json> ApiClient::GetData(const std::string& path, const httplib::Params& params) {
  if (!target_.address.starts_with("http://") && !target_.address.starts_with("https://")) {
    return InvalidArgument("invalid address \"" + target_.address +
                           "\": expected http://HOST:PORT or https://HOST:PORT");
  }
  httplib::Client client(target_.address);
  client.set_connection_timeout(10);
  client.set_read_timeout(300);
  if (const char* ca_file = CaFileFromEnvironment()) client.set_ca_cert_path(ca_file);
  httplib::Headers headers;
  if (!target_.token.empty()) headers.emplace("X-Vault-Token", target_.token);

  const std::string url = "/v1/" + path;
  auto response = client.Get(url, params, headers);
  if (!response) {
    return Unavailable("cannot reach " + target_.address + ": " +
                       httplib::to_string(response.error()));
  }
  nlohmann::json body = nlohmann::json::parse(response->body, nullptr, /*allow_exceptions=*/false);
  if (response->status != 200) {
    std::string message = "GET " + url + ": the server returned " +
                          std::to_string(response->status) + ServerMessages(body);
    if (response->status == 403) {
      message +=
          " (check that the token's policy allows this path, with sudo where the path "
          "needs it; pass the token with -token or KEYWARD_TOKEN)";
    }
    Code code = Code::kFailedPrecondition;
    if (response->status == 403) code = Code::kPermissionDenied;
    if (response->status == 404) code = Code::kNotFound;
    if (response->status >= 500) code = Code::kUnavailable;
    return MakeError(code, std::move(message));
  }
  if (body.is_discarded() || !body.is_object() || !body.contains("data") ||
      !body["data"].is_object()) {
    return DataLoss("GET " + url + ": the reply has no data object");
  }
  return std::move(body["data"]);
}

Result<AtomicFile> AtomicFile::Create(const std::string& path, int mode) {
  const std::string temporary = path + ".tmp";
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Unavailable("cannot create " + temporary + ": " + ErrnoText(errno));
  // An existing stale file keeps its old mode through O_CREAT, so set it explicitly.
  if (::fchmod(fd, static_cast<mode_t>(mode)) != 0) {
    const int error = errno;
    ::close(fd);
    return Unavailable("cannot set the mode of " + temporary + ": " + ErrnoText(error));
  }
  return AtomicFile(path, fd);
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)) {}

AtomicFile::~AtomicFile() {
  if (fd_ < 0) return;
  ::close(fd_);
  ::unlink((path_ + ".tmp").c_str());
}

Status AtomicFile::Write(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t written = ::write(fd_, bytes.data(), bytes.size());
    if (written < 0 && errno == EINTR) continue;
    if (written < 0) return Unavailable("cannot write " + path_ + ".tmp: " + ErrnoText(errno));
    bytes.remove_prefix(static_cast<std::size_t>(written));
  }
  return OkStatus();
}

Status AtomicFile::Commit() {
  const std::string temporary = path_ + ".tmp";
  if (::fsync(fd_) != 0) return Unavailable("cannot fsync " + temporary + ": " + ErrnoText(errno));
  const int fd = std::exchange(fd_, -1);
  if (::close(fd) != 0) return Unavailable("cannot close " + temporary + ": " + ErrnoText(errno));
  if (::rename(temporary.c_str(), path_.c_str()) != 0) {
    const int error = errno;
    ::unlink(temporary.c_str());
    return Unavailable("cannot rename " + temporary + " to " + path_ + ": " + ErrnoText(error));
  }

  std::filesystem::path directory = std::filesystem::path(path_).parent_path();
  if (directory.empty()) directory = ".";
  const int directory_fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (directory_fd < 0) {
    return Unavailable("cannot open directory " + directory.string() + ": " + ErrnoText(errno));
  }
  const int synced = ::fsync(directory_fd);
  const int error = errno;
  ::close(directory_fd);
  if (synced != 0) {
    return Unavailable("cannot fsync directory " + directory.string() + ": " + ErrnoText(error));
  }
  return OkStatus();
}

Status WriteFileAtomically(const std::string& path, std::string_view bytes, int mode) {
  KW_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::Create(path, mode));
  KW_RETURN_IF_ERROR(file.Write(bytes));
  return file.Commit();
}

Result<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int error = errno;
    if (error == ENOENT) return NotFound("cannot read " + path + ": no such file");
    return Unavailable("cannot read " + path + ": " + ErrnoText(error));
  }
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return Unavailable("cannot read " + path + ": read error");
  return content;
}

int PrintFailure(const Error& error) {
  std::cerr << "error: " << error.message() << "\n";
  return kExitFailure;
}

int PrintUsageError(std::string_view message, std::string_view help) {
  std::cerr << "usage error: " << message << "\n\n" << help;
  return kExitUsage;
}

}  // namespace kw::cli::detail
