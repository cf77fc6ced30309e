#include "cli/audit_support.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace kw::cli::detail {

namespace {

std::string ErrnoText(int error) { return std::strerror(error); }

std::string ServerMessages(const nlohmann::json& body) {
  std::string text;
  if (!body.is_object() || !body.contains("errors") || !body["errors"].is_array()) return text;
  for (const auto& message : body["errors"]) {
    if (message.is_string()) text += ": " + message.get<std::string>();
  }
  return text;
}

}  // namespace

std::optional<int> RejectPositional(Context& context, const Args& args, const Command& command) {
  if (args.positional.empty()) return std::nullopt;
  return ReportUsage("unexpected argument \"" + args.positional.front() + "\"", command,
                     context.err);
}

Result<std::uint64_t> ParseCount(const std::string& name, const std::string& value) {
  std::uint64_t number = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), number);
  if (value.empty() || error != std::errc() || end != value.data() + value.size()) {
    return InvalidArgument("flag -" + name + ": \"" + value + "\" is not a decimal number");
  }
  return number;
}

Result<nlohmann::json> GetData(Connection& connection, const std::string& path,
                               const httplib::Params& params) {
  KW_ASSIGN_OR_RETURN(HttpReply reply, connection.Send("GET", path, nullptr, params));
  const std::string url = "/v1/" + path;
  if (reply.status != 200) {
    std::string message = "GET " + url + ": the server returned " + std::to_string(reply.status) +
                          ServerMessages(reply.json);
    if (reply.status == 403) {
      message +=
          " (check that the token's policy allows this path, with sudo where the path "
          "needs it; pass the token with -token or KEYWARD_TOKEN)";
    }
    Code code = Code::kFailedPrecondition;
    if (reply.status == 403) code = Code::kPermissionDenied;
    if (reply.status == 404) code = Code::kNotFound;
    if (reply.status >= 500) code = Code::kUnavailable;
    return MakeError(code, std::move(message));
  }
  if (!reply.json.is_object() || !reply.json.contains("data") || !reply.json["data"].is_object()) {
    return DataLoss("GET " + url + ": the reply has no data object");
  }
  return std::move(reply.json["data"]);
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

}  // namespace kw::cli::detail
