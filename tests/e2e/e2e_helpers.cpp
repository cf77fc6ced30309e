#include "tests/e2e/e2e_helpers.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

namespace kw::e2e {

int StatusOf(const httplib::Result& result) { return result ? result->status : 0; }

json BodyOf(const httplib::Result& result) {
  if (!result) return nullptr;
  json body = json::parse(result->body, nullptr, /*allow_exceptions=*/false);
  return body.is_discarded() ? json(nullptr) : body;
}

httplib::Result PostJson(httplib::Client& client, const std::string& path, const json& body) {
  return client.Post(path.c_str(), body.dump(), "application/json");
}

httplib::Result Send(httplib::Client& client, const std::string& method, const std::string& path,
                     const std::string& body, const httplib::Headers& headers,
                     const std::string& content_type) {
  httplib::Request request;
  request.method = method;
  request.path = path;
  request.headers = headers;
  if (!body.empty()) {
    request.body = body;
    request.headers.emplace("Content-Type", content_type);
  }
  return client.send(request);
}

httplib::Result WriteSecret(httplib::Client& client, const std::string& path, const json& data) {
  return PostJson(client, "/v1/secret/data/" + path, {{"data", data}});
}

json ReadSecretData(httplib::Client& client, const std::string& path) {
  auto result = client.Get(("/v1/secret/data/" + path).c_str());
  if (StatusOf(result) != 200) return nullptr;
  json body = BodyOf(result);
  if (!body.is_object() || !body.contains("data") || !body["data"].is_object()) return nullptr;
  return body["data"].value("data", json(nullptr));
}

std::string RandomHex(std::size_t bytes) {
  static thread_local std::mt19937_64 engine{std::random_device{}()};
  std::string out;
  for (std::size_t i = 0; i < bytes; ++i) {
    char digits[3];
    std::snprintf(digits, sizeof digits, "%02x", static_cast<unsigned>(engine() & 0xff));
    out += digits;
  }
  return out;
}

int ConnectLoopback(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return -1;
  }
  timeval timeout{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  return fd;
}

RawResponse ParseRawResponse(const std::string& bytes) {
  RawResponse response;
  const std::size_t end_of_head = bytes.find("\r\n\r\n");
  response.head = bytes.substr(0, end_of_head);
  if (end_of_head != std::string::npos) response.body = bytes.substr(end_of_head + 4);
  if (bytes.starts_with("HTTP/1.") && bytes.size() >= 12) {
    response.status = std::atoi(bytes.substr(9, 3).c_str());
  }
  return response;
}

RawResponse SendRaw(std::uint16_t port, const std::string& request, std::chrono::seconds timeout) {
  RawResponse response;
  const int fd = ConnectLoopback(port);
  if (fd < 0) return response;
  std::size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }

  std::string bytes;
  bool closed = false;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd readable{fd, POLLIN, 0};
    if (::poll(&readable, 1, 100) <= 0) continue;
    char buffer[16384];
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) {
      closed = true;
      break;
    }
    bytes.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  response = ParseRawResponse(bytes);
  response.closed = closed;
  return response;
}

bool FileContains(const std::filesystem::path& path, const std::string& needle) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return false;
  std::stringstream contents;
  contents << file.rdbuf();
  return contents.str().find(needle) != std::string::npos;
}

Database::Database(const std::filesystem::path& path) {
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    std::cerr << "cannot open " << path << ": " << sqlite3_errmsg(db_) << "\n";
    std::abort();
  }
  sqlite3_busy_timeout(db_, 10000);
}

Database::~Database() { sqlite3_close(db_); }

bool Database::Exec(const std::string& sql) {
  char* error = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    std::cerr << "sqlite: " << sql << ": " << (error != nullptr ? error : "?") << "\n";
    sqlite3_free(error);
    return false;
  }
  return true;
}

std::vector<std::pair<std::string, std::string>> Database::Rows(const std::string& sql) {
  std::vector<std::pair<std::string, std::string>> rows;
  sqlite3_stmt* statement = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &statement, nullptr) != SQLITE_OK) {
    std::cerr << "sqlite: " << sql << ": " << sqlite3_errmsg(db_) << "\n";
    return rows;
  }
  const auto column = [statement](int index) {
    const void* bytes = sqlite3_column_blob(statement, index);
    const int size = sqlite3_column_bytes(statement, index);
    return bytes == nullptr
               ? std::string()
               : std::string(static_cast<const char*>(bytes), static_cast<std::size_t>(size));
  };
  while (sqlite3_step(statement) == SQLITE_ROW) rows.emplace_back(column(0), column(1));
  sqlite3_finalize(statement);
  return rows;
}

std::optional<std::string> Database::Get(const std::string& key) {
  sqlite3_stmt* statement = nullptr;
  sqlite3_prepare_v2(db_, "SELECT value FROM kv WHERE key = ?1", -1, &statement, nullptr);
  sqlite3_bind_text(statement, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
  std::optional<std::string> value;
  if (sqlite3_step(statement) == SQLITE_ROW) {
    const void* bytes = sqlite3_column_blob(statement, 0);
    const int size = sqlite3_column_bytes(statement, 0);
    value = bytes == nullptr
                ? std::string()
                : std::string(static_cast<const char*>(bytes), static_cast<std::size_t>(size));
  }
  sqlite3_finalize(statement);
  return value;
}

bool Database::Set(const std::string& key, const std::string& value) {
  sqlite3_stmt* statement = nullptr;
  sqlite3_prepare_v2(db_, "UPDATE kv SET value = ?2 WHERE key = ?1", -1, &statement, nullptr);
  sqlite3_bind_text(statement, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
  sqlite3_bind_blob(statement, 2, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  const bool done = sqlite3_step(statement) == SQLITE_DONE && sqlite3_changes(db_) == 1;
  sqlite3_finalize(statement);
  return done;
}

bool Database::Delete(const std::string& key) {
  sqlite3_stmt* statement = nullptr;
  sqlite3_prepare_v2(db_, "DELETE FROM kv WHERE key = ?1", -1, &statement, nullptr);
  sqlite3_bind_text(statement, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
  const bool done = sqlite3_step(statement) == SQLITE_DONE && sqlite3_changes(db_) == 1;
  sqlite3_finalize(statement);
  return done;
}

std::string AuditRecordKey(std::uint64_t sequence) {
  char digits[32];
  std::snprintf(digits, sizeof digits, "%020llu", static_cast<unsigned long long>(sequence));
  return std::string("sys/audit/log/") + digits;
}

std::vector<json> AuditRecords(Database& db) {
  std::vector<json> records;
  for (const auto& [key, value] :
       db.Rows("SELECT key, value FROM kv WHERE key >= 'sys/audit/log/' AND "
               "key < 'sys/audit/log0' ORDER BY key")) {
    records.push_back(json::parse(value, nullptr, /*allow_exceptions=*/false));
  }
  return records;
}

}  // namespace kw::e2e

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/stat.h>

#include "tests/e2e/server_process.hpp"

namespace kw::e2e {

CurlResult Curl(const std::vector<std::string>& args) {
  std::vector<std::string> all = {"-sS", "--max-time", "30", "-w", "\n%{http_code}"};
  all.insert(all.end(), args.begin(), args.end());
  const ExitResult run = RunProgram("/usr/bin/curl", all, {});
  CurlResult result;
  result.exit_code = run.exited ? run.exit_code : -1;
  result.err = run.err;
  const std::size_t newline = run.out.rfind('\n');
  if (newline == std::string::npos) return result;
  result.status = std::atoi(run.out.substr(newline + 1).c_str());
  json body = json::parse(run.out.substr(0, newline), nullptr, /*allow_exceptions=*/false);
  result.body = body.is_discarded() ? json(nullptr) : body;
  return result;
}

void WriteTextFile(const std::filesystem::path& path, const std::string& text, int mode) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file << text;
  file.close();
  ::chmod(path.c_str(), static_cast<mode_t>(mode));
}

std::string TlsHandshakeVersion(std::uint16_t port, const std::string& ca_file, int min_version,
                                int max_version) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> context(SSL_CTX_new(TLS_client_method()),
                                                            SSL_CTX_free);
  if (!context) return {};
  SSL_CTX_set_security_level(context.get(), 0);
  SSL_CTX_set_min_proto_version(context.get(), min_version);
  SSL_CTX_set_max_proto_version(context.get(), max_version);
  SSL_CTX_load_verify_locations(context.get(), ca_file.c_str(), nullptr);
  SSL_CTX_set_verify(context.get(), SSL_VERIFY_PEER, nullptr);
  const int fd = ConnectLoopback(port);
  if (fd < 0) return {};
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(context.get()), SSL_free);
  std::string version;
  if (ssl && SSL_set_fd(ssl.get(), fd) == 1) {
    SSL_set1_host(ssl.get(), "127.0.0.1");
    if (SSL_connect(ssl.get()) == 1) version = SSL_get_version(ssl.get());
    SSL_shutdown(ssl.get());
  }
  ERR_clear_error();
  ::close(fd);
  return version;
}

}  // namespace kw::e2e
