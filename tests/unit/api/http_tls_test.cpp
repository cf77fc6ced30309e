#include <stdlib.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

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

  TEST_CASE("stalled handshakes do not delay a TLS request") {
    TestCertificates certificates;
    auto options = TlsOptions(certificates);
    options.handshake_timeout = 1s;
    auto server = StartServer(options, EchoHandler());

    // A TLS record header that announces a 512-byte ClientHello, and the start of it.
    const std::string half_client_hello = {'\x16', '\x03', '\x01', '\x02', '\x00', '\x01',
                                           '\x00', '\x01', '\xfc', '\x03', '\x03'};
    std::vector<std::unique_ptr<RawClient>> stalled;
    for (int i = 0; i < 100; ++i) {
      stalled.push_back(std::make_unique<RawClient>(server->port()));
      REQUIRE(stalled.back()->Send(half_client_hello));
    }

    httplib::SSLClient client("127.0.0.1", server->port());
    client.set_ca_cert_path(certificates.Path("server.pem"));
    client.enable_server_certificate_verification(true);
    client.set_read_timeout(5, 0);
    const auto start = std::chrono::steady_clock::now();
    auto result = client.Get("/v1/sys/health");
    const auto elapsed = std::chrono::steady_clock::now() - start;
    REQUIRE(result);
    CHECK(result->status == 200);
    CHECK(elapsed < 1s);

    // A byte every 100 ms does not extend the handshake timeout, which bounds the whole
    // handshake.
    bool closed_while_sending = false;
    for (int round = 0; round < 30 && !closed_while_sending; ++round) {
      stalled.front()->Send(std::string(1, 'x'));
      closed_while_sending = stalled.front()->WaitReadable(100ms);
    }
    CHECK(closed_while_sending);
    for (auto& connection : stalled) CHECK(connection->WaitClosed(kWait));
  }
}

}  // namespace
}  // namespace kw::api
