#pragma once

#include <filesystem>

#include "base/clock.hpp"
#include "base/result.hpp"

namespace kw::api {

// The TLS files of `keyward server -dev -dev-tls`, all under <data dir>/tls/.
struct DevTlsFiles {
  std::filesystem::path ca_cert;      // ca.pem: the dev CA that clients trust (--cacert)
  std::filesystem::path ca_key;       // ca-key.pem, mode 0600
  std::filesystem::path server_cert;  // server.pem: for 127.0.0.1, ::1 and localhost
  std::filesystem::path server_key;   // server-key.pem, mode 0600
};

// Returns where the dev TLS files of `data_dir` live (whether or not they exist).
DevTlsFiles DevTlsPaths(const std::filesystem::path& data_dir);

// Creates the dev TLS files on first start, with OpenSSL: an ECDSA P-256 CA valid for 10
// years and a P-256 server certificate signed by it for 127.0.0.1, ::1 and localhost, valid
// for 1 year. Later starts reuse them; a server certificate that is missing, unreadable or
// expires within a day is issued again by the same CA. Private keys are written with mode
// 0600. unavailable when a file cannot be written; internal when OpenSSL fails.
Result<DevTlsFiles> PrepareDevTls(const std::filesystem::path& data_dir, const Clock& clock);

}  // namespace kw::api
