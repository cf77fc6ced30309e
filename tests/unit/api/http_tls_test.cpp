#include <stdlib.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <doctest/doctest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "api/http_server.hpp"
#include "base/bytes.hpp"
#include "tests/unit/api/http_test_client.hpp"

namespace kw::api {
namespace {

using namespace std::chrono_literals;
using testing::EchoHandler;
using testing::RawClient;
using testing::StartServer;
using testing::StatusOf;
using testing::TestOptions;

constexpr auto kWait = 5s;

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

// Self-signed P-256 certificates made with the openssl command-line tool in a temporary
// directory: one for the server (for 127.0.0.1) and one for a client, which is also the
// client CA bundle.
class TestCertificates {
 public:
  TestCertificates() {
    char pattern[] = "/tmp/kw-http-tls-XXXXXX";
    REQUIRE(::mkdtemp(pattern) != nullptr);
    dir_ = pattern;
    MakeCertificate("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1");
    MakeCertificate("client", "/CN=test-client", "extendedKeyUsage=clientAuth");
    const std::string der_command = "openssl x509 -in " + (dir_ / "client.pem").string() +
                                    " -outform DER -out " + (dir_ / "client.der").string();
    REQUIRE(std::system(der_command.c_str()) == 0);
  }
  ~TestCertificates() { std::filesystem::remove_all(dir_); }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  std::string ClientDerHex() const { return ToHex(AsBytes(ReadFile(dir_ / "client.der"))); }

 private:
  void MakeCertificate(const std::string& name, const std::string& subject,
                       const std::string& extension) {
    const std::string command =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
        " -subj " + subject + " -addext " + extension +
        " -keyout " + (dir_ / (name + "-key.pem")).string() +
        " -out " + (dir_ / (name + ".pem")).string() + " 2>/dev/null";
    REQUIRE(std::system(command.c_str()) == 0);
  }

  std::filesystem::path dir_;
};

ServerOptions TlsOptions(const TestCertificates& certificates) {
  auto options = TestOptions();
  options.tls_cert_file = certificates.Path("server.pem");
  options.tls_key_file = certificates.Path("server-key.pem");
  options.tls_client_ca_file = certificates.Path("client.pem");
  return options;
}

TEST_SUITE("api/http_server tls") {
  TEST_CASE("TLS round trip passes the client certificate") {
    TestCertificates certificates;
    auto server = StartServer(TlsOptions(certificates), EchoHandler());
    httplib::SSLClient client("127.0.0.1", server->port(), certificates.Path("client.pem"),
                              certificates.Path("client-key.pem"));
    client.set_ca_cert_path(certificates.Path("server.pem"));
    client.enable_server_certificate_verification(true);
    client.set_read_timeout(5, 0);

    auto result = client.Get("/v1/auth/cert/login");
    REQUIRE(result);
    CHECK(result->status == 200);
    const auto echo = nlohmann::json::parse(result->body);
    CHECK(echo["tls"] == true);
    REQUIRE(echo["client_certificate_der"].is_string());
    CHECK(echo["client_certificate_der"] == certificates.ClientDerHex());
  }

  TEST_CASE("TLS without a client certificate still serves") {
    TestCertificates certificates;
    auto server = StartServer(TlsOptions(certificates), EchoHandler());
    httplib::SSLClient client("127.0.0.1", server->port());
    client.set_ca_cert_path(certificates.Path("server.pem"));
    client.enable_server_certificate_verification(true);
    client.set_read_timeout(5, 0);

    auto result = client.Get("/v1/sys/health");
    REQUIRE(result);
    CHECK(result->status == 200);
    const auto echo = nlohmann::json::parse(result->body);
    CHECK(echo["tls"] == true);
    CHECK(echo["client_certificate_der"].is_null());
  }

  TEST_CASE("client certificate from an unknown CA fails the handshake") {
    TestCertificates certificates;
    auto server = StartServer(TlsOptions(certificates), EchoHandler());
    // The server certificate is not in the client CA bundle.
    httplib::SSLClient client("127.0.0.1", server->port(), certificates.Path("server.pem"),
                              certificates.Path("server-key.pem"));
    client.enable_server_certificate_verification(false);
    client.set_read_timeout(5, 0);

    auto result = client.Get("/v1/sys/health");
    CHECK_FALSE(result);
  }

  TEST_CASE("plain HTTP to the TLS listener gets no response") {
    TestCertificates certificates;
    auto server = StartServer(TlsOptions(certificates), EchoHandler());
    RawClient client(server->port());
    client.Send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    CHECK(StatusOf(client.ReadResponse(kWait)) == 0);
    CHECK(client.WaitClosed(kWait));
  }

  TEST_CASE("client that never handshakes is closed") {
    TestCertificates certificates;
    auto options = TlsOptions(certificates);
    options.handshake_timeout = 300ms;
    auto server = StartServer(options, EchoHandler());
    RawClient client(server->port());
    REQUIRE(client.connected());

    CHECK(client.WaitClosed(kWait));
  }
}

}  // namespace
}  // namespace kw::api
