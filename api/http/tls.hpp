#pragma once

#include <memory>
#include <optional>
#include <string>

#include <boost/asio/ssl/context.hpp>
#include <openssl/ssl.h>

#include "api/http_server.hpp"
#include "base/result.hpp"

namespace kw::api::detail {

// Creates the server TLS context from the PEM files in `options`: TLS 1.2 or newer, and when
// tls_client_ca_file is set, a request for a client certificate that must verify against that
// bundle if one is sent (a connection without one is still accepted). invalid_argument names
// the file that could not be loaded.
Result<std::unique_ptr<boost::asio::ssl::context>> MakeTlsContext(const ServerOptions& options);

// Returns the DER encoding of the peer's certificate when the peer sent one and it verified,
// otherwise nullopt.
std::optional<std::string> VerifiedPeerCertificateDer(SSL* ssl);

}  // namespace kw::api::detail
