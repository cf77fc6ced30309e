#include "api/dev_tls.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace kw::api {
namespace {

namespace fs = std::filesystem;

constexpr std::int64_t kDay = 24 * 3600;
constexpr std::int64_t kCaLifetime = 10 * 365 * kDay;
constexpr std::int64_t kServerLifetime = 365 * kDay;
// Certificates start an hour in the past, so that a client whose clock is slightly behind
// accepts them.
constexpr std::int64_t kBackdate = 3600;

struct PkeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct X509Deleter {
  void operator()(X509* certificate) const { X509_free(certificate); }
};
struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

tl::unexpected<Error> OpenSslFailure(std::string_view call) {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  char text[256] = "unknown error";
  if (code != 0) ERR_error_string_n(code, text, sizeof text);
  return Internal("dev TLS: " + std::string(call) + " failed: " + text);
}

std::string BioText(BIO* bio) {
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(length));
}

// Writes `text` to `path` through a temporary file renamed into place, created with `mode`.
Status WriteFileAtomically(const fs::path& path, const std::string& text, mode_t mode) {
  const fs::path temporary = path.string() + ".tmp";
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Unavailable("dev TLS: cannot write " + temporary.string());
  bool ok = ::fchmod(fd, mode) == 0;
  std::size_t written = 0;
  while (ok && written < text.size()) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    ok = n > 0;
    if (ok) written += static_cast<std::size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  ok = ::close(fd) == 0 && ok;
  if (!ok || std::rename(temporary.c_str(), path.c_str()) != 0) {
    ::unlink(temporary.c_str());
    return Unavailable("dev TLS: cannot write " + path.string());
  }
  return OkStatus();
}

Result<PkeyPtr> GenerateKey() {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return OpenSslFailure("EVP_PKEY_Q_keygen(P-256)");
  return key;
}

Status AddExtension(X509* certificate, X509* issuer, int nid, const char* value) {
  X509V3_CTX context;
  X509V3_set_ctx(&context, issuer, certificate, nullptr, nullptr, 0);
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &context, nid, value);
  if (extension == nullptr) return OpenSslFailure("X509V3_EXT_conf_nid");
  const int added = X509_add_ext(certificate, extension, -1);
  X509_EXTENSION_free(extension);
  if (added != 1) return OpenSslFailure("X509_add_ext");
  return OkStatus();
}

// The fields that the CA and server certificates share: a random positive 127-bit serial
// number, the validity window and the subject.
Result<X509Ptr> NewCertificate(EVP_PKEY* key, const char* common_name, std::int64_t now,
                               std::int64_t lifetime) {
  X509Ptr certificate(X509_new());
  if (!certificate) return OpenSslFailure("X509_new");
  unsigned char serial_bytes[16];
  if (RAND_bytes(serial_bytes, sizeof serial_bytes) != 1) return OpenSslFailure("RAND_bytes");
  serial_bytes[0] &= 0x7f;
  std::unique_ptr<BIGNUM, decltype(&BN_free)> serial(
      BN_bin2bn(serial_bytes, sizeof serial_bytes, nullptr), BN_free);
  if (!serial || BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(certificate.get())) ==
                     nullptr) {
    return OpenSslFailure("BN_to_ASN1_INTEGER");
  }
  X509_set_version(certificate.get(), 2);
  if (ASN1_TIME_set(X509_getm_notBefore(certificate.get()), now - kBackdate) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(certificate.get()), now + lifetime) == nullptr) {
    return OpenSslFailure("ASN1_TIME_set");
  }
  X509_NAME* subject = X509_get_subject_name(certificate.get());
  X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("keyward dev"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name), -1, -1, 0);
  if (X509_set_pubkey(certificate.get(), key) != 1) return OpenSslFailure("X509_set_pubkey");
  return certificate;
}

Result<X509Ptr> IssueCa(EVP_PKEY* key, std::int64_t now) {
  KW_ASSIGN_OR_RETURN(X509Ptr ca, NewCertificate(key, "keyward dev CA", now, kCaLifetime));
  X509_set_issuer_name(ca.get(), X509_get_subject_name(ca.get()));
  KW_RETURN_IF_ERROR(AddExtension(ca.get(), ca.get(), NID_basic_constraints,
                                  "critical,CA:TRUE,pathlen:0"));
  KW_RETURN_IF_ERROR(
      AddExtension(ca.get(), ca.get(), NID_key_usage, "critical,keyCertSign,cRLSign"));
  KW_RETURN_IF_ERROR(AddExtension(ca.get(), ca.get(), NID_subject_key_identifier, "hash"));
  if (X509_sign(ca.get(), key, EVP_sha256()) <= 0) return OpenSslFailure("X509_sign");
  return ca;
}

Result<X509Ptr> IssueServer(EVP_PKEY* key, X509* ca, EVP_PKEY* ca_key, std::int64_t now) {
  KW_ASSIGN_OR_RETURN(X509Ptr server, NewCertificate(key, "localhost", now, kServerLifetime));
  X509_set_issuer_name(server.get(), X509_get_subject_name(ca));
  KW_RETURN_IF_ERROR(AddExtension(server.get(), ca, NID_basic_constraints, "critical,CA:FALSE"));
  KW_RETURN_IF_ERROR(AddExtension(server.get(), ca, NID_key_usage, "critical,digitalSignature"));
  KW_RETURN_IF_ERROR(AddExtension(server.get(), ca, NID_ext_key_usage, "serverAuth"));
  KW_RETURN_IF_ERROR(AddExtension(server.get(), ca, NID_subject_alt_name,
                                  "DNS:localhost,IP:127.0.0.1,IP:::1"));
  KW_RETURN_IF_ERROR(AddExtension(server.get(), ca, NID_subject_key_identifier, "hash"));
  KW_RETURN_IF_ERROR(
      AddExtension(server.get(), ca, NID_authority_key_identifier, "keyid:always"));
  if (X509_sign(server.get(), ca_key, EVP_sha256()) <= 0) return OpenSslFailure("X509_sign");
  return server;
}

Status WriteCertificate(const fs::path& path, X509* certificate) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), certificate) != 1) {
    return OpenSslFailure("PEM_write_bio_X509");
  }
  return WriteFileAtomically(path, BioText(bio.get()), 0644);
}

Status WriteKey(const fs::path& path, EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpenSslFailure("PEM_write_bio_PrivateKey");
  }
  std::string text = BioText(bio.get());
  auto written = WriteFileAtomically(path, text, 0600);
  OPENSSL_cleanse(text.data(), text.size());
  return written;
}

Result<X509Ptr> ReadCertificate(const fs::path& path) {
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  X509Ptr certificate(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!certificate) return OpenSslFailure("reading " + path.string());
  return certificate;
}

Result<PkeyPtr> ReadKey(const fs::path& path) {
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  PkeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!key) return OpenSslFailure("reading " + path.string());
  return key;
}

// Returns whether the server certificate and key parse, belong together (a crash between
// writing the two can leave a mismatch) and are valid for another day.
bool ServerCertificateUsable(const DevTlsFiles& files, std::int64_t now) {
  auto certificate = ReadCertificate(files.server_cert);
  auto key = ReadKey(files.server_key);
  if (!certificate || !key) return false;
  if (X509_check_private_key(certificate->get(), key->get()) != 1) {
    ERR_clear_error();
    return false;
  }
  std::time_t soon = static_cast<std::time_t>(now + kDay);
  return X509_cmp_time(X509_get0_notAfter(certificate->get()), &soon) > 0;
}

}  // namespace

DevTlsFiles DevTlsPaths(const fs::path& data_dir) {
  const fs::path dir = data_dir / "tls";
  return {dir / "ca.pem", dir / "ca-key.pem", dir / "server.pem", dir / "server-key.pem"};
}

Result<DevTlsFiles> PrepareDevTls(const fs::path& data_dir, const Clock& clock) {
  const DevTlsFiles files = DevTlsPaths(data_dir);
  std::error_code ec;
  fs::create_directories(files.ca_cert.parent_path(), ec);
  if (ec) {
    return Unavailable("dev TLS: cannot create " + files.ca_cert.parent_path().string() + ": " +
                       ec.message());
  }
  ::chmod(files.ca_cert.parent_path().c_str(), 0700);
  const std::int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                               clock.Now().time_since_epoch()).count();

  PkeyPtr ca_key;
  X509Ptr ca;
  if (fs::exists(files.ca_cert) && fs::exists(files.ca_key)) {
    KW_ASSIGN_OR_RETURN(ca, ReadCertificate(files.ca_cert));
    KW_ASSIGN_OR_RETURN(ca_key, ReadKey(files.ca_key));
  } else {
    KW_ASSIGN_OR_RETURN(ca_key, GenerateKey());
    KW_ASSIGN_OR_RETURN(ca, IssueCa(ca_key.get(), now));
    KW_RETURN_IF_ERROR(WriteKey(files.ca_key, ca_key.get()));
    KW_RETURN_IF_ERROR(WriteCertificate(files.ca_cert, ca.get()));
    // A new CA invalidates a server certificate left from an earlier one.
    fs::remove(files.server_cert, ec);
  }

  if (ServerCertificateUsable(files, now)) {
    return files;
  }
  KW_ASSIGN_OR_RETURN(PkeyPtr server_key, GenerateKey());
  KW_ASSIGN_OR_RETURN(X509Ptr server, IssueServer(server_key.get(), ca.get(), ca_key.get(), now));
  KW_RETURN_IF_ERROR(WriteKey(files.server_key, server_key.get()));
  KW_RETURN_IF_ERROR(WriteCertificate(files.server_cert, server.get()));
  return files;
}

}  // namespace kw::api
