#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "base/bytes.hpp"
#include "fakes/manual_clock.hpp"
#include "fakes/softhsm_fixture.hpp"
#include "storage/sqlite/sqlite_storage.hpp"
#include "vault/barrier/barrier.hpp"

namespace kw::testing {

// A SoftHSM token with a data key, a SQLite file in a fresh directory, a barrier and a manual
// clock: what the vault's engines run on. Throws std::runtime_error on set-up failure.
struct VaultTestEnv {
  VaultTestEnv() {
    dir = std::filesystem::temp_directory_path() / ("kw-vault-test-" + ToHex(RandomBytes(6)));
    std::filesystem::create_directories(dir);
    auto opened = hsm.Open();
    if (!opened) throw std::runtime_error("open token: " + opened.error().message());
    token = std::move(*opened);
    if (!vault::Barrier::CreateFirstKey(*token)) throw std::runtime_error("create data key");
    auto loaded = vault::Barrier::Load(*token);
    if (!loaded) throw std::runtime_error("load barrier: " + loaded.error().message());
    barrier = std::move(*loaded);
    storage::sqlite::SqliteOptions options;
    options.path = (dir / "test.db").string();
    auto opened_storage = storage::sqlite::Open(options);
    if (!opened_storage) throw std::runtime_error("open storage: " + opened_storage.error().message());
    store = std::move(*opened_storage);
  }
  ~VaultTestEnv() {
    store.reset();
    barrier.reset();
    token.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }

  SoftHsmFixture hsm;
  std::filesystem::path dir;
  std::unique_ptr<hsm::Token> token;
  std::unique_ptr<vault::Barrier> barrier;
  std::unique_ptr<storage::Storage> store;
  ManualClock clock;
};

}  // namespace kw::testing
