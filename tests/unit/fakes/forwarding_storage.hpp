#pragma once

#include "storage/storage.hpp"

namespace kw::testing {

// A Storage that passes every call to another one; fakes derive from it and override the
// calls they change. Thread-safe as far as `inner` is; `inner` must outlive it.
class ForwardingStorage : public storage::Storage {
 public:
  explicit ForwardingStorage(storage::Storage& inner) : inner_(inner) {}

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
  Status Commit(storage::WriteBatch batch) override { return inner_.Commit(std::move(batch)); }

 protected:
  storage::Storage& inner_;
};

}  // namespace kw::testing
