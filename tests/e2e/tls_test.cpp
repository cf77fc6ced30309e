// The HTTPS listener of `keyward server -dev -dev-tls`: generated files, protocol versions,
// and plain -dev staying on HTTP.
#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <string>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;

std::string ReadText(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

int ModeOf(const fs::path& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return -1;
  return static_cast<int>(info.st_mode & 0777);
}

TEST_SUITE("e2e/tls") {
  TEST_CASE("dev-tls creates a CA and server certificate") {
    DevTlsServer server;
    REQUIRE(server.Start());
    CHECK(server.process().ReadStdout().find("Listening on: https://127.0.0.1:") !=
          std::string::npos);
    const fs::path tls = server.data_dir() / "tls";
    REQUIRE(server.ca_file() == tls / "ca.pem");
    CHECK(ModeOf(tls / "ca-key.pem") == 0600);
    CHECK(ModeOf(tls / "server-key.pem") == 0600);

    // The CA has an ECDSA P-256 key.
    FILE* file = std::fopen(server.ca_file().c_str(), "r");
    REQUIRE(file != nullptr);
    X509* ca = PEM_read_X509(file, nullptr, nullptr, nullptr);
    std::fclose(file);
    REQUIRE(ca != nullptr);
    CHECK(X509_check_ca(ca) == 1);
    EVP_PKEY* key = X509_get0_pubkey(ca);
    REQUIRE(key != nullptr);
    CHECK(EVP_PKEY_is_a(key, "EC") == 1);
    char curve[64] = {};
    EVP_PKEY_get_utf8_string_param(key, "group", curve, sizeof curve, nullptr);
    CHECK(std::string(curve) == "prime256v1");
    X509_free(ca);

    // curl verifies the server for each name in its certificate.
    for (const std::string host : {"127.0.0.1", "localhost"}) {
      CAPTURE(host);
      const CurlResult health =
          Curl({"--cacert", server.ca_file().string(), "https://" + host + ":" +
                                                            std::to_string(server.port()) +
                                                            "/v1/sys/health"});
      CHECK(health.exit_code == 0);
      CHECK(health.status == 200);
    }
    // The server certificate names all three loopback forms, and no other name.
    FILE* server_file = std::fopen((server.data_dir() / "tls" / "server.pem").c_str(), "r");
    REQUIRE(server_file != nullptr);
    X509* server_cert = PEM_read_X509(server_file, nullptr, nullptr, nullptr);
    std::fclose(server_file);
    REQUIRE(server_cert != nullptr);
    CHECK(X509_check_ip_asc(server_cert, "127.0.0.1", 0) == 1);
    CHECK(X509_check_ip_asc(server_cert, "::1", 0) == 1);
    CHECK(X509_check_host(server_cert, "localhost", 0, 0, nullptr) == 1);
    CHECK(X509_check_host(server_cert, "example.org", 0, 0, nullptr) == 0);
    X509_free(server_cert);
    const CurlResult other_name =
        Curl({"--cacert", server.ca_file().string(), "--resolve",
              "other-name:" + std::to_string(server.port()) + ":127.0.0.1",
              "https://other-name:" + std::to_string(server.port()) + "/v1/sys/health"});
    CHECK(other_name.exit_code != 0);
  }

  TEST_CASE("dev-tls reuses its CA after a restart") {
    DevTlsServer server;
    REQUIRE(server.Start());
    const std::string ca = ReadText(server.ca_file());
    const std::string cert = ReadText(server.data_dir() / "tls" / "server.pem");
    REQUIRE(server.Stop() == 0);
    REQUIRE(server.Start());
    CHECK(ReadText(server.ca_file()) == ca);
    CHECK(ReadText(server.data_dir() / "tls" / "server.pem") == cert);
    CHECK(Curl({"--cacert", server.ca_file().string(), server.url() + "/v1/sys/health"}).status ==
          200);
  }

  TEST_CASE("TLS 1.1 is rejected, 1.2 accepted, 1.3 preferred") {
    DevTlsServer server;
    REQUIRE(server.Start());
    const std::string ca = server.ca_file().string();
    CHECK(TlsHandshakeVersion(server.port(), ca, TLS1_VERSION, TLS1_1_VERSION).empty());
    CHECK(TlsHandshakeVersion(server.port(), ca, TLS1_2_VERSION, TLS1_2_VERSION) == "TLSv1.2");
    CHECK(TlsHandshakeVersion(server.port(), ca, TLS1_VERSION, TLS1_3_VERSION) == "TLSv1.3");

    const CurlResult old = Curl({"--cacert", ca, "--tls-max", "1.1", server.url() + "/v1/sys/health"});
    CHECK(old.exit_code != 0);
    CHECK(old.status == 0);
  }

  TEST_CASE("plain dev stays HTTP") {
    DevServer server;
    REQUIRE(server.Start());
    CHECK(server.process().ReadStdout().find("Listening on: http://127.0.0.1:") !=
          std::string::npos);
    CHECK(server.process().ReadStdout().find("CA Certificate:") == std::string::npos);
    CHECK_FALSE(fs::exists(server.data_dir() / "tls"));
    CHECK(Curl({server.url() + "/v1/sys/health"}).status == 200);
    CHECK(Curl({"--insecure", "https://127.0.0.1:" + std::to_string(server.port()) +
                                  "/v1/sys/health"})
              .exit_code != 0);
  }

  TEST_CASE("dev-tls without dev is a usage error") {
    const ExitResult run = RunToExit({"server", "-dev-tls", "-config", "/nonexistent"}, {});
    CHECK(run.exited);
    CHECK(run.exit_code == 2);
    CHECK(run.err.find("-dev-tls needs -dev") != std::string::npos);
  }
}

}  // namespace
}  // namespace kw::e2e
