#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/ssl/context.hpp>
#include <openssl/ssl.h>

#include "api/http_server.hpp"
#include "base/result.hpp"

namespace kw::api::detail {

// Creates the server TLS context (TLS 1.2 or newer) from the PEM files in `options`. When
// tls_client_ca_file is set, the server requests a client certificate, and one that is sent
// must verify against that bundle. With tls_request_client_cert, the server requests a
// certificate and accepts any whose private key the client proves it has, leaving
// verification to the application. Either way a client without a certificate is still
// accepted. invalid_argument names the file that could not be loaded, or both modes set.
Result<std::unique_ptr<boost::asio::ssl::context>> MakeTlsContext(const ServerOptions& options);

// Returns the DER encoding of the peer's certificate when the peer sent one and it verified,
// otherwise nullopt.
std::optional<std::string> VerifiedPeerCertificateDer(SSL* ssl);

// Returns every certificate the peer presented, leaf first, DER, whether or not it verified;
// empty when it presented none.
std::vector<std::string> PeerCertificateChainDer(SSL* ssl);

}  // namespace kw::api::detail
