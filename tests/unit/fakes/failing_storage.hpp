#pragma once

#include <atomic>

#include "storage/storage.hpp"

namespace kw::testing {

// Forwards to a real Storage, but fails every Commit with unavailable while
// `fail_commits` is set, as a full disk would. Thread-safe; `inner` must outlive it.
class FailingStorage final : public storage::Storage {
 public:
  explicit FailingStorage(storage::Storage& inner) : inner_(inner) {}

  std::atomic<bool> fail_commits{false};

  Result<std::optional<Bytes>> Get(std::string_view key) override { return inner_.Get(key); }
  Result<std::vector<std::string>> List(std::string_view prefix) override {
    return inner_.List(prefix);
  }
  Result<std::vector<storage::Entry>> Scan(std::string_view prefix, std::string_view start_after,
                                           std::size_t limit) override {
    return inner_.Scan(prefix, start_after, limit);
  }
  Result<std::optional<storage::Entry>> Last(std::string_view prefix) override {
    return inner_.Last(prefix);
  }
  Status Commit(storage::WriteBatch batch) override {
    if (fail_commits.load()) return Unavailable("storage: injected commit failure");
    return inner_.Commit(std::move(batch));
  }

 private:
  storage::Storage& inner_;
};

}  // namespace kw::testing
