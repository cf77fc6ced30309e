#include "hsm/metered_token.hpp"

#include <chrono>
#include <string>
#include <utility>

namespace kw::hsm {
namespace {

metrics::LabelGrid OperationGrid() {
  std::vector<std::string> names(kTokenOperationNames.begin(), kTokenOperationNames.end());
  return metrics::LabelGrid{{{"operation", std::move(names)}}};
}

}  // namespace

TokenMetrics::TokenMetrics(metrics::Registry& registry)
    : operations(registry, "keyward_hsm_operations_total",
                 "PKCS#11 token calls by operation, failed ones included.", OperationGrid()),
      errors(registry, "keyward_hsm_operation_errors_total",
             "PKCS#11 token calls that returned an error, by operation.", OperationGrid()),
      duration(registry, "keyward_hsm_operation_duration_seconds",
               "Latency of PKCS#11 token calls by operation, waiting for a session included.",
               metrics::kLatencyBoundsNanos, metrics::kNanosPerSecond, OperationGrid(),
               metrics::ZeroSeries::kHide) {}

TokenMetrics& TokenMetrics::Global() {
  static TokenMetrics metrics(metrics::Registry::Global());
  return metrics;
}

MeteredToken::MeteredToken(std::unique_ptr<Token> token, TokenMetrics& metrics)
    : token_(std::move(token)) {
  for (std::size_t i = 0; i < kOperations; ++i) {
    calls_[i] = &metrics.operations.At(i);
    errors_[i] = &metrics.errors.At(i);
    durations_[i] = &metrics.duration.At(i);
  }
}

template <typename Call>
auto MeteredToken::Measure(TokenOperation operation, Call&& call) {
  const auto index = static_cast<std::size_t>(operation);
  const auto start = std::chrono::steady_clock::now();
  auto result = std::forward<Call>(call)(*token_);
  durations_[index]->Observe(metrics::NanosSince(start));
  calls_[index]->Increment();
  if (!result) errors_[index]->Increment();
  return result;
}

Result<KeyHandle> MeteredToken::FindKey(std::string_view label) {
  return Measure(TokenOperation::kFindKey, [&](Token& t) { return t.FindKey(label); });
}

Result<std::vector<std::string>> MeteredToken::ListKeyLabels(std::string_view prefix) {
  return Measure(TokenOperation::kListKeys, [&](Token& t) { return t.ListKeyLabels(prefix); });
}

Result<KeyHandle> MeteredToken::GenerateAesKey(std::string_view label) {
  return Measure(TokenOperation::kGenerateAesKey,
                 [&](Token& t) { return t.GenerateAesKey(label); });
}

Result<KeyHandle> MeteredToken::GenerateHmacKey(std::string_view label) {
  return Measure(TokenOperation::kGenerateHmacKey,
                 [&](Token& t) { return t.GenerateHmacKey(label); });
}

Result<Bytes> MeteredToken::EncryptGcm(KeyHandle key, ByteSpan plaintext, ByteSpan aad) {
  return Measure(TokenOperation::kAesGcmEncrypt,
                 [&](Token& t) { return t.EncryptGcm(key, plaintext, aad); });
}

Result<SecretBuffer> MeteredToken::DecryptGcm(KeyHandle key, ByteSpan sealed, ByteSpan aad) {
  return Measure(TokenOperation::kAesGcmDecrypt,
                 [&](Token& t) { return t.DecryptGcm(key, sealed, aad); });
}

Result<Bytes> MeteredToken::HmacSha256(KeyHandle key, ByteSpan data) {
  return Measure(TokenOperation::kSha256Hmac, [&](Token& t) { return t.HmacSha256(key, data); });
}

Result<KeyHandle> MeteredToken::GenerateEcP256KeyPair(std::string_view label) {
  return Measure(TokenOperation::kGenerateEcKeyPair,
                 [&](Token& t) { return t.GenerateEcP256KeyPair(label); });
}

Result<KeyHandle> MeteredToken::FindPrivateKey(std::string_view label) {
  return Measure(TokenOperation::kFindPrivateKey,
                 [&](Token& t) { return t.FindPrivateKey(label); });
}

Result<Bytes> MeteredToken::GetEcPublicKeySpki(std::string_view label) {
  return Measure(TokenOperation::kReadEcPublicKey,
                 [&](Token& t) { return t.GetEcPublicKeySpki(label); });
}

Result<Bytes> MeteredToken::SignEcdsa(KeyHandle key, ByteSpan digest) {
  return Measure(TokenOperation::kEcdsaSign, [&](Token& t) { return t.SignEcdsa(key, digest); });
}

Result<KeyHandle> MeteredToken::GenerateEd25519KeyPair(std::string_view label) {
  return Measure(TokenOperation::kGenerateEd25519KeyPair,
                 [&](Token& t) { return t.GenerateEd25519KeyPair(label); });
}

Result<Bytes> MeteredToken::GetEd25519PublicKey(std::string_view label) {
  return Measure(TokenOperation::kReadEd25519PublicKey,
                 [&](Token& t) { return t.GetEd25519PublicKey(label); });
}

Result<Bytes> MeteredToken::SignEd25519(KeyHandle key, ByteSpan message) {
  return Measure(TokenOperation::kEddsaSign,
                 [&](Token& t) { return t.SignEd25519(key, message); });
}

Result<KeyAttributes> MeteredToken::GetKeyAttributes(KeyHandle key) {
  return Measure(TokenOperation::kReadKeyAttributes,
                 [&](Token& t) { return t.GetKeyAttributes(key); });
}

Result<std::unique_ptr<Token>> OpenMeteredToken(const TokenConfig& config,
                                                const SecretBuffer& pin) {
  KW_ASSIGN_OR_RETURN(std::unique_ptr<Token> token, Token::Open(config, pin));
  return std::unique_ptr<Token>(
      std::make_unique<MeteredToken>(std::move(token), TokenMetrics::Global()));
}

}  // namespace kw::hsm
