#include "api/http/tls.hpp"

#include <openssl/err.h>
#include <openssl/x509.h>

namespace kw::api::detail {

namespace ssl = boost::asio::ssl;

namespace {

std::string OpenSslErrorText(const boost::system::error_code& error) {
  std::string text = error.message();
  return text.empty() ? std::string("unknown OpenSSL error") : text;
}

// Accepts every client certificate in the handshake. OpenSSL still checks the client's
// CertificateVerify signature, so the client proves it has the leaf's private key.
int AcceptAnyCertificate(int /*preverify_ok*/, X509_STORE_CTX* /*context*/) { return 1; }

std::string DerOf(X509* certificate) {
  unsigned char* bytes = nullptr;
  const int length = i2d_X509(certificate, &bytes);
  if (length <= 0) return {};
  std::string der(reinterpret_cast<const char*>(bytes), static_cast<std::size_t>(length));
  OPENSSL_free(bytes);
  return der;
}

// Requests a client certificate without verifying it. Session resumption is turned off: a
// resumed session carries the peer's leaf but not the intermediates it sent, and every
// connection must present the full chain for the application to verify.
void RequestClientCertificates(SSL_CTX* native) {
  SSL_CTX_set_verify(native, SSL_VERIFY_PEER, AcceptAnyCertificate);
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(native, SSL_OP_NO_TICKET);
  SSL_CTX_set_num_tickets(native, 0);
}

}  // namespace

Result<std::unique_ptr<ssl::context>> MakeTlsContext(const ServerOptions& options) {
  auto context = std::make_unique<ssl::context>(ssl::context::tls_server);
  context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                       ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  SSL_CTX* native = context->native_handle();
  if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1) {
    return Internal("TLS: setting the minimum protocol version to TLS 1.2 failed");
  }
  // TLS 1.2: forward-secret AEAD suites only (TLS 1.3's suites are all of that kind).
  if (SSL_CTX_set_cipher_list(native, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1) {
    return Internal("TLS: setting the TLS 1.2 cipher list failed");
  }

  boost::system::error_code error;
  context->use_certificate_chain_file(options.tls_cert_file, error);
  if (error) {
    return InvalidArgument("TLS: loading the certificate chain from " + options.tls_cert_file +
                           " failed: " + OpenSslErrorText(error));
  }
  context->use_private_key_file(options.tls_key_file, ssl::context::pem, error);
  if (error) {
    return InvalidArgument("TLS: loading the private key from " + options.tls_key_file +
                           " failed: " + OpenSslErrorText(error));
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    ERR_clear_error();
    return InvalidArgument("TLS: the private key in " + options.tls_key_file +
                           " does not match the certificate in " + options.tls_cert_file);
  }

  if (options.tls_request_client_cert && !options.tls_client_ca_file.empty()) {
    return InvalidArgument(
        "TLS: tls_request_client_cert and tls_client_ca_file are exclusive: set one of them");
  }
  if (options.tls_request_client_cert) RequestClientCertificates(native);

  if (!options.tls_client_ca_file.empty()) {
    context->load_verify_file(options.tls_client_ca_file, error);
    if (error) {
      return InvalidArgument("TLS: loading the client CA bundle from " +
                             options.tls_client_ca_file + " failed: " + OpenSslErrorText(error));
    }
    // Tell clients which CAs are accepted, so that they pick a matching certificate.
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(options.tls_client_ca_file.c_str());
    if (names != nullptr) SSL_CTX_set_client_CA_list(native, names);
    ERR_clear_error();
    // verify_peer without fail_if_no_peer_cert: a client without a certificate can still
    // authenticate with a token, but a certificate that is sent must verify.
    context->set_verify_mode(ssl::verify_peer);
  }
  return context;
}

std::optional<std::string> VerifiedPeerCertificateDer(SSL* ssl) {
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
  X509* certificate = SSL_get1_peer_certificate(ssl);
#else
  X509* certificate = SSL_get_peer_certificate(ssl);
#endif
  if (certificate == nullptr) return std::nullopt;
  std::optional<std::string> der;
  if (SSL_get_verify_result(ssl) == X509_V_OK) {
    unsigned char* bytes = nullptr;
    const int length = i2d_X509(certificate, &bytes);
    if (length > 0) {
      der.emplace(reinterpret_cast<const char*>(bytes), static_cast<std::size_t>(length));
    }
    OPENSSL_free(bytes);
  }
  X509_free(certificate);
  return der;
}

std::vector<std::string> PeerCertificateChainDer(SSL* ssl) {
  std::vector<std::string> chain;
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
  X509* leaf = SSL_get0_peer_certificate(ssl);
#else
  X509* leaf = SSL_get_peer_certificate(ssl);
  X509_free(leaf);  // the session keeps its own reference
#endif
  if (leaf == nullptr) return chain;
  chain.push_back(DerOf(leaf));
  // On the server side the stack contains the certificates after the leaf.
  STACK_OF(X509)* rest = SSL_get_peer_cert_chain(ssl);
  for (int i = 0; rest != nullptr && i < sk_X509_num(rest); ++i) {
    X509* certificate = sk_X509_value(rest, i);
    if (X509_cmp(certificate, leaf) == 0) continue;
    chain.push_back(DerOf(certificate));
  }
  return chain;
}

}  // namespace kw::api::detail
