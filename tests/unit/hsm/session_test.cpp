// Session pool behaviour: concurrent callers, lost sessions and fork().
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "hsm/token.hpp"
#include "tests/unit/fakes/softhsm_fixture.hpp"
#include "tests/unit/hsm/pkcs11_test_util.hpp"

namespace kw::hsm {
namespace {

using kw::testing::ErrorText;
using kw::testing::SoftHsmFixture;

constexpr int kThreads = 8;
constexpr int kRoundsPerThread = 200;

// Encrypts and decrypts from kThreads threads at once; returns the number of failed rounds.
int RunConcurrentRoundTrips(Token& token, KeyHandle key) {
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRoundsPerThread; ++round) {
        std::string plaintext = "thread " + std::to_string(t) + " round " + std::to_string(round);
        auto sealed = token.EncryptGcm(key, AsBytes(plaintext), AsBytes(plaintext));
        if (!sealed) {
          ++failures;
          continue;
        }
        auto opened = token.DecryptGcm(key, *sealed, AsBytes(plaintext));
        if (!opened || opened->RevealText() != plaintext) ++failures;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  return failures.load();
}

TEST_SUITE("hsm/session") {
  TEST_CASE("concurrent encrypt from 8 threads succeeds") {
    SoftHsmFixture softhsm;
    std::size_t max_sessions = 16;
    SUBCASE("more sessions than threads") { max_sessions = 16; }
    SUBCASE("fewer sessions than threads") { max_sessions = 2; }
    auto token = softhsm.Open(max_sessions);
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    auto key = (*token)->GenerateAesKey("shared-key");
    REQUIRE_MESSAGE(key, ErrorText(key.error()));

    CHECK(RunConcurrentRoundTrips(**token, *key) == 0);
  }

  TEST_CASE("lost session is replaced and the call retried") {
    SoftHsmFixture softhsm;
    auto token = softhsm.Open(1);
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    detail::Pkcs11Token& pkcs11 = testing::AsPkcs11(**token);
    auto key = (*token)->GenerateAesKey("key");
    REQUIRE_MESSAGE(key, ErrorText(key.error()));

    // Close the pool's only session behind its back, then hand it back as if it were fine.
    {
      auto lease = pkcs11.CheckoutSession();
      REQUIRE_MESSAGE(lease, ErrorText(lease.error()));
      REQUIRE(pkcs11.functions()->C_CloseSession(lease->handle()) == CKR_OK);
    }

    auto sealed = (*token)->EncryptGcm(*key, AsBytes("value"), AsBytes("aad"));
    REQUIRE_MESSAGE(sealed, ErrorText(sealed.error()));
    auto opened = (*token)->DecryptGcm(*key, *sealed, AsBytes("aad"));
    REQUIRE_MESSAGE(opened, ErrorText(opened.error()));
    CHECK(opened->RevealText() == "value");
  }

  TEST_CASE("call is retried once only") {
    SoftHsmFixture softhsm;
    auto token = softhsm.Open(2);
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    detail::Pkcs11Token& pkcs11 = testing::AsPkcs11(**token);
    auto key = (*token)->GenerateAesKey("key");
    REQUIRE_MESSAGE(key, ErrorText(key.error()));

    // Put two closed sessions into the pool: the call and its one retry each meet one.
    {
      auto first = pkcs11.CheckoutSession();
      REQUIRE_MESSAGE(first, ErrorText(first.error()));
      auto second = pkcs11.CheckoutSession();
      REQUIRE_MESSAGE(second, ErrorText(second.error()));
      REQUIRE(pkcs11.functions()->C_CloseSession(first->handle()) == CKR_OK);
      REQUIRE(pkcs11.functions()->C_CloseSession(second->handle()) == CKR_OK);
    }

    auto failed = (*token)->EncryptGcm(*key, AsBytes("value"), AsBytes("aad"));
    REQUIRE_FALSE(failed);
    CHECK(failed.error().code() == Code::kUnavailable);
    CHECK(failed.error().message().find("CKR_SESSION_HANDLE_INVALID") != std::string::npos);

    // Both lost sessions were closed, so the next call opens a new one.
    auto sealed = (*token)->EncryptGcm(*key, AsBytes("value"), AsBytes("aad"));
    CHECK_MESSAGE(sealed, ErrorText(sealed.error()));
  }

  TEST_CASE("PKCS#11 call in a forked child fails") {
    // The fixture sets library.reset_on_fork = true, so SoftHSM returns
    // CKR_CRYPTOKI_NOT_INITIALIZED for every call in the child until it calls C_Initialize.
    SoftHsmFixture softhsm;
    auto token = softhsm.Open();
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    auto key = (*token)->GenerateAesKey("key");
    REQUIRE_MESSAGE(key, ErrorText(key.error()));

    constexpr int kChildFailedAsExpected = 0;
    constexpr int kChildCallSucceeded = 10;
    constexpr int kChildWrongCode = 11;
    constexpr int kChildWrongMessage = 12;
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      // _exit: no doctest reporting and no static destructors in the child.
      auto sealed = (*token)->EncryptGcm(*key, AsBytes("value"), AsBytes("aad"));
      if (sealed) _exit(kChildCallSucceeded);
      if (sealed.error().code() != Code::kUnavailable) _exit(kChildWrongCode);
      if (sealed.error().message().find("CKR_CRYPTOKI_NOT_INITIALIZED") == std::string::npos) {
        _exit(kChildWrongMessage);
      }
      _exit(kChildFailedAsExpected);
    }

    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == kChildFailedAsExpected);

    // The parent's token is unaffected.
    auto sealed = (*token)->EncryptGcm(*key, AsBytes("value"), AsBytes("aad"));
    CHECK_MESSAGE(sealed, ErrorText(sealed.error()));
  }
}

}  // namespace
}  // namespace kw::hsm
