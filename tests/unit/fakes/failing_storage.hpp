#pragma once

#include <atomic>

#include "tests/unit/fakes/forwarding_storage.hpp"

namespace kw::testing {

// Forwards to a real Storage, but fails every Commit with unavailable while
// `fail_commits` is set, as a full disk would. Thread-safe; `inner` must outlive it.
class FailingStorage final : public ForwardingStorage {
 public:
  using ForwardingStorage::ForwardingStorage;

  std::atomic<bool> fail_commits{false};

  Status Commit(storage::WriteBatch batch) override {
    if (fail_commits.load()) return Unavailable("storage: injected commit failure");
    return ForwardingStorage::Commit(std::move(batch));
  }
};

}  // namespace kw::testing
