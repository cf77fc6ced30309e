// MeteredToken against a real SoftHSM token: calls pass through unchanged and are counted,
// failures included, in the metric families it was given.
#include "hsm/metered_token.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "tests/unit/fakes/softhsm_fixture.hpp"

namespace kw::hsm {
namespace {

using kw::testing::ErrorText;
using kw::testing::SoftHsmFixture;

std::size_t Index(TokenOperation operation) { return static_cast<std::size_t>(operation); }

}  // namespace

TEST_SUITE("hsm/metered_token") {
  TEST_CASE("calls are forwarded and counted by operation") {
    SoftHsmFixture fixture;
    auto opened = fixture.Open();
    REQUIRE_MESSAGE(opened, (opened ? "" : ErrorText(opened.error())));
    metrics::Registry registry;
    TokenMetrics metrics(registry);
    MeteredToken token(std::move(*opened), metrics);

    auto key = token.GenerateAesKey("metered-data");
    REQUIRE(key.has_value());
    const std::string text = "plaintext";
    const Bytes aad = {1, 2, 3};
    auto sealed = token.EncryptGcm(*key, AsBytes(text), aad);
    REQUIRE(sealed.has_value());
    for (int i = 0; i < 3; ++i) {
      auto opened_text = token.DecryptGcm(*key, *sealed, aad);
      REQUIRE(opened_text.has_value());
      CHECK(opened_text->RevealText() == text);
    }
    Bytes tampered = *sealed;
    tampered.back() ^= 0x01;
    auto rejected = token.DecryptGcm(*key, tampered, aad);
    REQUIRE_FALSE(rejected.has_value());
    CHECK(rejected.error().code() == Code::kDataLoss);

    const auto decrypt = Index(TokenOperation::kAesGcmDecrypt);
    const auto encrypt = Index(TokenOperation::kAesGcmEncrypt);
    CHECK(metrics.operations.At(decrypt).Value() == 4);
    CHECK(metrics.errors.At(decrypt).Value() == 1);
    CHECK(metrics.duration.At(decrypt).State().count == 4);
    CHECK(metrics.operations.At(encrypt).Value() == 1);
    CHECK(metrics.errors.At(encrypt).Value() == 0);
    CHECK(metrics.operations.At(Index(TokenOperation::kGenerateAesKey)).Value() == 1);
    CHECK(metrics.operations.At(Index(TokenOperation::kSha256Hmac)).Value() == 0);
  }

  TEST_CASE("families list every operation name") {
    metrics::Registry registry;
    TokenMetrics metrics(registry);
    const auto snapshot = registry.Snapshot();
    REQUIRE(snapshot.size() == 3);
    CHECK(snapshot[0].name == "keyward_hsm_operations_total");
    REQUIRE(snapshot[0].series.size() == kTokenOperationNames.size());
    for (std::size_t i = 0; i < kTokenOperationNames.size(); ++i) {
      CHECK(snapshot[0].series[i].labels ==
            metrics::Labels{{"operation", std::string(kTokenOperationNames[i])}});
    }
    // The latency family lists an operation only once it ran.
    CHECK(snapshot[2].series.empty());
  }
}

}  // namespace kw::hsm
