// Logs in to keyward over mutual TLS with a client certificate (auth/cert), then keeps an
// X.509-SVID alive. A keyward::LifetimeWatcher issues a new one from pki/issue/PKI_ROLE when
// two thirds of the current one's lifetime have passed. The program prints each new SVID's
// SPIFFE ID and expiry, read from the certificate itself.
//
//   export KEYWARD_ADDR=https://127.0.0.1:8200 KEYWARD_CACERT=ca.pem
//   export KEYWARD_CLIENT_CERT=me.pem KEYWARD_CLIENT_KEY=me-key.pem
//   mtls_svid CERT_ROLE PKI_ROLE SPIFFE_ID RENEWALS [TIMEOUT_SECONDS]
//
// Exits 0 after RENEWALS new SVIDs, each issued before the previous one expired; 1 on any
// failure or when TIMEOUT_SECONDS (default 120) pass first; 2 on bad usage.
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <charconv>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "keyward/client.hpp"

namespace {

std::optional<long> ParsePositive(std::string_view text) {
  long value = 0;
  auto [end, failure] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (failure != std::errc() || end != text.data() + text.size() || value <= 0) {
    return std::nullopt;
  }
  return value;
}

// Fields read from the certificate itself, so that the output does not just repeat the reply.
struct CertificateFacts {
  std::string uri_san;        // the first URI SAN
  std::int64_t not_after = 0;  // Unix seconds
};

std::optional<CertificateFacts> ReadCertificate(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* certificate = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (certificate == nullptr) return std::nullopt;
  CertificateFacts facts;
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(certificate, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type == GEN_URI) {
      const ASN1_STRING* uri = name->d.uniformResourceIdentifier;
      facts.uri_san.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                           static_cast<std::size_t>(ASN1_STRING_length(uri)));
      break;
    }
  }
  GENERAL_NAMES_free(names);
  std::tm expiry{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(certificate), &expiry) == 1) {
    facts.not_after = timegm(&expiry);
  }
  X509_free(certificate);
  return facts;
}

std::string FormatUtc(std::int64_t unix_seconds) {
  const std::time_t time = unix_seconds;
  std::tm utc{};
  gmtime_r(&time, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

std::int64_t NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Checks an SVID and prints it; returns an empty string or what is wrong.
std::string CheckSvid(int index, const keyward::X509Svid& svid, const std::string& spiffe_id) {
  auto facts = ReadCertificate(svid.certificate);
  if (!facts) return "SVID " + std::to_string(index) + " is not a PEM certificate";
  if (facts->uri_san != spiffe_id) {
    return "SVID " + std::to_string(index) + " names " + facts->uri_san + ", expected " +
           spiffe_id;
  }
  if (svid.private_key.empty()) return "SVID " + std::to_string(index) + " has no private key";
  std::cout << "svid " << index << ": " << facts->uri_san << " expires "
            << FormatUtc(facts->not_after) << " serial " << svid.serial_number << std::endl;
  return "";
}

struct Mailbox {
  std::mutex mutex;
  std::condition_variable arrived;
  std::deque<std::pair<keyward::X509Svid, std::int64_t>> svids;  // with arrival time
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5 && argc != 6) {
    std::cerr << "usage: mtls_svid CERT_ROLE PKI_ROLE SPIFFE_ID RENEWALS [TIMEOUT_SECONDS]\n";
    return 2;
  }
  const std::string cert_role = argv[1];
  const std::string pki_role = argv[2];
  const std::string spiffe_id = argv[3];
  const auto renewals = ParsePositive(argv[4]);
  const auto timeout = ParsePositive(argc == 6 ? argv[5] : "120");
  if (!renewals || !timeout) {
    std::cerr << "mtls_svid: RENEWALS and TIMEOUT_SECONDS must be positive integers\n";
    return 2;
  }

  auto config = keyward::ClientConfig::FromEnvironment();
  if (!config.ok()) {
    std::cerr << "mtls_svid: " << config.error().message() << "\n";
    return 2;
  }
  if (config->client_cert_file.empty() || !config->address.starts_with("https://")) {
    std::cerr << "mtls_svid: set KEYWARD_ADDR to an https:// address and KEYWARD_CLIENT_CERT "
                 "and KEYWARD_CLIENT_KEY to the client certificate and key\n";
    return 2;
  }
  auto created = keyward::Client::Create(std::move(config).value());
  if (!created.ok()) {
    std::cerr << "mtls_svid: " << created.error().message() << "\n";
    return 2;
  }
  keyward::Client& client = *created.value();

  keyward::WatcherOptions options;
  options.login = [cert_role](keyward::Client& c) { return c.CertLogin(cert_role); };
  options.on_error = [](const keyward::Error& error) {
    std::cerr << "mtls_svid: watcher: " << error.message() << " (will retry)\n";
  };
  auto auth = options.login(client);
  if (!auth.ok()) {
    std::cerr << "mtls_svid: certificate login failed: " << auth.error().message() << "\n";
    return 1;
  }
  client.SetToken(auth->client_token);
  std::cout << "logged in over mutual TLS as " << auth->entity_id << std::endl;

  const keyward::PkiIssueParams params{spiffe_id, std::nullopt};
  auto first = client.PkiIssue(pki_role, params);
  if (!first.ok()) {
    std::cerr << "mtls_svid: pki/issue/" << pki_role << " failed: " << first.error().message()
              << "\n";
    return 1;
  }
  std::string failure = CheckSvid(0, first.value(), spiffe_id);
  std::int64_t previous_expiry = first->expiration;

  Mailbox mailbox;
  long renewed = 0;
  if (failure.empty()) {
    keyward::LifetimeWatcher watcher(client, options);
    watcher.Watch<keyward::X509Svid>(
        first.value(),
        [pki_role, params](keyward::Client& c) { return c.PkiIssue(pki_role, params); },
        [&mailbox](const keyward::X509Svid& svid) {
          std::lock_guard lock(mailbox.mutex);
          mailbox.svids.emplace_back(svid, NowSeconds());
          mailbox.arrived.notify_all();
        });

    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(*timeout);
    while (renewed < *renewals && failure.empty()) {
      std::unique_lock lock(mailbox.mutex);
      if (!mailbox.arrived.wait_until(lock, deadline, [&] { return !mailbox.svids.empty(); })) {
        failure = "timed out after " + std::to_string(*timeout) + " s with " +
                  std::to_string(renewed) + " of " + std::to_string(*renewals) + " renewals";
        break;
      }
      auto [svid, arrived_at] = std::move(mailbox.svids.front());
      mailbox.svids.pop_front();
      lock.unlock();
      ++renewed;
      failure = CheckSvid(static_cast<int>(renewed), svid, spiffe_id);
      if (failure.empty() && arrived_at >= previous_expiry) {
        failure = "SVID " + std::to_string(renewed) + " arrived after the previous one expired";
      }
      previous_expiry = svid.expiration;
    }
  }

  if (!failure.empty()) {
    std::cerr << "mtls_svid: " << failure << "\n";
    return 1;
  }
  std::cout << "mtls_svid: renewed the X.509-SVID of " << spiffe_id << " " << renewed
            << " times, each before the previous one expired" << std::endl;
  return 0;
}
