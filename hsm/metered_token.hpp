#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <string_view>

#include "base/metrics.hpp"
#include "hsm/token.hpp"

namespace kw::hsm {

// The HSM operations that MeteredToken counts, one per Token call. Their label values are
// the names in kTokenOperationNames, in this order.
enum class TokenOperation : std::size_t {
  kAesGcmEncrypt,
  kAesGcmDecrypt,
  kSha256Hmac,
  kEcdsaSign,
  kEddsaSign,
  kFindKey,
  kFindPrivateKey,
  kListKeys,
  kGenerateAesKey,
  kGenerateHmacKey,
  kGenerateEcKeyPair,
  kGenerateEd25519KeyPair,
  kReadEcPublicKey,
  kReadEd25519PublicKey,
  kReadKeyAttributes,
  kCount,
};

inline constexpr std::array<std::string_view, static_cast<std::size_t>(TokenOperation::kCount)>
    kTokenOperationNames = {
        "aes_gcm_encrypt",     "aes_gcm_decrypt",        "sha256_hmac",
        "ecdsa_sign",          "eddsa_sign",             "find_key",
        "find_private_key",    "list_keys",              "generate_aes_key",
        "generate_hmac_key",   "generate_ec_key_pair",   "generate_ed25519_key_pair",
        "read_ec_public_key",  "read_ed25519_public_key", "read_key_attributes"};

// The metric families of HSM operations, labelled by `operation`: calls, failed calls and
// call latency. The server uses the process-wide registry, and tests may build their own.
struct TokenMetrics {
  explicit TokenMetrics(metrics::Registry& registry);

  // Returns the families in the process-wide registry.
  static TokenMetrics& Global();

  metrics::CounterFamily operations;
  metrics::CounterFamily errors;
  metrics::HistogramFamily duration;
};

// A Token that forwards every call to another Token and records, per operation, the call,
// whether it returned an error, and its latency. The wrapped token's key handles pass through
// unchanged. Thread-safe as far as the wrapped token is. The metrics must outlive it.
class MeteredToken final : public Token {
 public:
  MeteredToken(std::unique_ptr<Token> token, TokenMetrics& metrics);

  Result<KeyHandle> FindKey(std::string_view label) override;
  Result<std::vector<std::string>> ListKeyLabels(std::string_view prefix) override;
  Result<KeyHandle> GenerateAesKey(std::string_view label) override;
  Result<KeyHandle> GenerateHmacKey(std::string_view label) override;
  Result<Bytes> EncryptGcm(KeyHandle key, ByteSpan plaintext, ByteSpan aad) override;
  Result<SecretBuffer> DecryptGcm(KeyHandle key, ByteSpan sealed, ByteSpan aad) override;
  Result<Bytes> HmacSha256(KeyHandle key, ByteSpan data) override;
  Result<KeyHandle> GenerateEcP256KeyPair(std::string_view label) override;
  Result<KeyHandle> FindPrivateKey(std::string_view label) override;
  Result<Bytes> GetEcPublicKeySpki(std::string_view label) override;
  Result<Bytes> SignEcdsa(KeyHandle key, ByteSpan digest) override;
  Result<KeyHandle> GenerateEd25519KeyPair(std::string_view label) override;
  Result<Bytes> GetEd25519PublicKey(std::string_view label) override;
  Result<Bytes> SignEd25519(KeyHandle key, ByteSpan message) override;
  Result<KeyAttributes> GetKeyAttributes(KeyHandle key) override;

  // The wrapped token.
  Token& inner() { return *token_; }

 private:
  // Runs `call` on the wrapped token and records it under `operation`.
  template <typename Call>
  auto Measure(TokenOperation operation, Call&& call);

  static constexpr std::size_t kOperations = static_cast<std::size_t>(TokenOperation::kCount);

  std::unique_ptr<Token> token_;
  // The series of each operation, looked up once here rather than per call.
  std::array<metrics::Counter*, kOperations> calls_{};
  std::array<metrics::Counter*, kOperations> errors_{};
  std::array<metrics::Histogram*, kOperations> durations_{};
};

// Opens the token as Token::Open does and wraps it in a MeteredToken that records into
// TokenMetrics::Global(). Returns Token::Open's errors.
Result<std::unique_ptr<Token>> OpenMeteredToken(const TokenConfig& config,
                                                const SecretBuffer& pin);

}  // namespace kw::hsm
