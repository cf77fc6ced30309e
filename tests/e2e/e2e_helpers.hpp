#pragma once

#include <httplib.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

struct sqlite3;

// Helpers shared by the end-to-end tests: JSON bodies, raw sockets, the SQLite file.
namespace kw::e2e {

using nlohmann::json;

// Returns the status of `result`, or 0 when the request failed without a response.
int StatusOf(const httplib::Result& result);

// Parses the response body; null when there is no response or the body is not JSON.
json BodyOf(const httplib::Result& result);

// Sends POST `path` with `body` as application/json.
httplib::Result PostJson(httplib::Client& client, const std::string& path, const json& body);

// Sends `method` (LIST, PATCH, ...) with an optional body and headers.
httplib::Result Send(httplib::Client& client, const std::string& method, const std::string& path,
                     const std::string& body = "", const httplib::Headers& headers = {},
                     const std::string& content_type = "application/json");

// Writes {"data": data} to secret/data/<path> and returns the response.
httplib::Result WriteSecret(httplib::Client& client, const std::string& path, const json& data);

// Returns data.data of GET secret/data/<path>; null unless the status is 200.
json ReadSecretData(httplib::Client& client, const std::string& path);

// Returns `bytes` random bytes as lower-case hex.
std::string RandomHex(std::size_t bytes);

// A response read from a raw socket.
struct RawResponse {
  int status = 0;  // 0 when no status line arrived
  std::string head;
  std::string body;
  bool closed = false;  // the server closed the connection (or reset it)
};

// Connects to 127.0.0.1:`port`. Returns the socket, or -1.
int ConnectLoopback(std::uint16_t port);

// Sends `request` as is on a fresh connection and reads until the server closes it or
// `timeout` passes.
RawResponse SendRaw(std::uint16_t port, const std::string& request,
                    std::chrono::seconds timeout = std::chrono::seconds(20));

// Parses the status line and body out of bytes read from a socket.
RawResponse ParseRawResponse(const std::string& bytes);

// Returns true when the file at `path` contains `needle` (false when it does not exist).
bool FileContains(const std::filesystem::path& path, const std::string& needle);

// A connection to an SQLite file, opened read-write. Aborts the test process on open failure.
class Database {
 public:
  explicit Database(const std::filesystem::path& path);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Runs `sql` (no result rows). Returns false and prints the error on failure.
  bool Exec(const std::string& sql);
  // Returns the (key, value) rows of `sql`, which must select two columns.
  std::vector<std::pair<std::string, std::string>> Rows(const std::string& sql);
  // Returns the value stored under `key`.
  std::optional<std::string> Get(const std::string& key);
  // Replaces the value stored under `key` (the row must exist).
  bool Set(const std::string& key, const std::string& value);
  bool Delete(const std::string& key);

 private:
  ::sqlite3* db_ = nullptr;
};

// Returns the storage key of audit record `sequence`: sys/audit/log/ and 20 digits.
std::string AuditRecordKey(std::uint64_t sequence);

// Returns every audit record, in sequence order, parsed.
std::vector<json> AuditRecords(Database& db);

}  // namespace kw::e2e

namespace kw::e2e {

// The outcome of one curl run.
struct CurlResult {
  int exit_code = -1;  // curl's exit code: 0, or 35 for a failed TLS handshake, ...
  int status = 0;      // the HTTP status; 0 without a response
  json body;           // the parsed response body; null when not JSON
  std::string err;     // curl's stderr
};

// Runs /usr/bin/curl -sS with `args` and returns its exit code, the HTTP status and the body.
CurlResult Curl(const std::vector<std::string>& args);

// Writes `text` to `path`, replacing it, with `mode`.
void WriteTextFile(const std::filesystem::path& path, const std::string& text, int mode = 0600);

// Connects to 127.0.0.1:`port` with TLS limited to [`min_version`, `max_version`] (OpenSSL's
// TLS1_1_VERSION, ...; the client's security level lowered to 0 so that it offers old
// versions) and trusting `ca_file`. Returns the negotiated version ("TLSv1.3"), or an empty
// string when the handshake failed.
std::string TlsHandshakeVersion(std::uint16_t port, const std::string& ca_file, int min_version,
                                int max_version);

}  // namespace kw::e2e
