#include "vault/auth/token_counts.hpp"

#include <algorithm>
#include <charconv>
#include <map>
#include <optional>
#include <utility>

namespace kw::vault::auth {
namespace {

constexpr std::size_t kScanPage = 1000;

std::string CountKey(const TokenEntry& entry) {
  return std::string(kTokenCountPrefix) + std::string(TokenMountOf(entry)) + "/" +
         TokenRoleOf(entry);
}

// Returns the count in `value`, or 0 when it is absent or not a decimal number, because a
// count is only reported and must not stop token creation.
std::int64_t ParseCount(const std::optional<Bytes>& value) {
  if (!value) return 0;
  const std::string_view text = AsText(*value);
  std::int64_t count = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), count);
  if (error != std::errc() || end != text.data() + text.size()) return 0;
  return count;
}

// The finalizer of a batch that creates or removes tokens: it first runs the finalizer that
// was in place before (if any), then applies the summed changes by count key.
struct CountFinalizer {
  std::map<std::string, std::int64_t> deltas;
  std::function<Status(storage::Transaction&)> previous;

  Status operator()(storage::Transaction& transaction) const {
    if (previous) KW_RETURN_IF_ERROR(previous(transaction));
    for (const auto& [key, delta] : deltas) {
      if (delta == 0) continue;
      KW_ASSIGN_OR_RETURN(std::optional<Bytes> stored, transaction.Get(key));
      const std::int64_t count = std::max<std::int64_t>(0, ParseCount(stored) + delta);
      const std::string text = std::to_string(count);
      KW_RETURN_IF_ERROR(transaction.Put(key, AsBytes(text)));
    }
    return OkStatus();
  }
};

}  // namespace

std::string_view TokenMountOf(const TokenEntry& entry) {
  for (const std::string_view mount : {"token", "approle", "cert"}) {
    const std::string prefix = "auth/" + std::string(mount) + "/";
    if (entry.path.starts_with(prefix)) return mount;
  }
  return "other";
}

std::string TokenRoleOf(const TokenEntry& entry) {
  const std::string_view mount = TokenMountOf(entry);
  const char* meta_key = nullptr;
  if (mount == "token") return entry.role;
  if (mount == "approle") meta_key = "role_name";
  if (mount == "cert") meta_key = "cert_name";
  if (meta_key == nullptr) return {};
  const auto found = entry.meta.find(meta_key);
  return found == entry.meta.end() ? std::string() : found->second;
}

void StageTokenCountChange(const TokenEntry& entry, std::int64_t delta,
                           storage::WriteBatch& batch) {
  // While the batch's finalizer is still the one set here, a change joins its map, so that a
  // revocation of many tokens runs one finalizer instead of one nested call per token.
  if (auto* counts = batch.finalizer.target<CountFinalizer>()) {
    counts->deltas[CountKey(entry)] += delta;
    return;
  }
  CountFinalizer counts;
  counts.deltas[CountKey(entry)] = delta;
  counts.previous = std::move(batch.finalizer);
  batch.finalizer = std::move(counts);
}

Result<std::vector<TokenCount>> ReadTokenCounts(storage::Storage& storage) {
  std::vector<TokenCount> counts;
  std::string after;
  while (true) {
    KW_ASSIGN_OR_RETURN(std::vector<storage::Entry> page,
                        storage.Scan(kTokenCountPrefix, after, kScanPage));
    for (const storage::Entry& item : page) {
      const std::string_view rest = std::string_view(item.key).substr(kTokenCountPrefix.size());
      const std::size_t slash = rest.find('/');
      if (slash == std::string_view::npos) continue;
      counts.push_back({std::string(rest.substr(0, slash)), std::string(rest.substr(slash + 1)),
                        ParseCount(item.value)});
    }
    if (page.size() < kScanPage) return counts;
    after = page.back().key;
  }
}

}  // namespace kw::vault::auth
