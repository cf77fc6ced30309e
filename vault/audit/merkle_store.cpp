#include "vault/audit/merkle_store.hpp"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <utility>
#include <vector>

namespace kw::vault::audit::merkle {

namespace {

struct Node {
  int level;
  std::uint64_t index;
  Hash hash;
};

Result<Hash> ReadNode(storage::Storage& storage, int level, std::uint64_t index) {
  const std::string key = TreeNodeKey(level, index);
  Result<std::optional<Bytes>> stored = storage.Get(key);
  if (!stored) return tl::unexpected(stored.error().WithContext("read audit tree node " + key));
  if (!stored->has_value()) return DataLoss("audit tree node " + key + " is missing");

  const Bytes& value = **stored;
  if (value.size() != std::tuple_size_v<Hash>) {
    return DataLoss("audit tree node " + key + " has " + std::to_string(value.size()) +
                    " bytes, expected " + std::to_string(std::tuple_size_v<Hash>));
  }
  Hash hash;
  std::copy(value.begin(), value.end(), hash.begin());
  return hash;
}

}  // namespace

std::string TreeNodeKey(int level, std::uint64_t index) {
  char suffix[2 + 1 + 20 + 1];
  std::snprintf(suffix, sizeof suffix, "%02d/%020llu", level,
                static_cast<unsigned long long>(index));
  return std::string(kTreePrefix) + suffix;
}

Status AppendLeaf(storage::Transaction& transaction, CompactRange& range, const Hash& leaf_hash) {
  CompactRange appended = range;
  std::vector<Node> completed;
  appended.Append(leaf_hash, [&completed](int level, std::uint64_t index, const Hash& hash) {
    completed.push_back({level, index, hash});
  });

  for (const Node& node : completed) {
    const std::string key = TreeNodeKey(node.level, node.index);
    Status put = transaction.Put(key, node.hash);
    if (!put) return tl::unexpected(put.error().WithContext("put audit tree node " + key));
  }

  range = std::move(appended);
  return OkStatus();
}

Result<CompactRange> LoadCompactRange(storage::Storage& storage, std::uint64_t size) {
  std::vector<Hash> pieces;
  for (int level = 63; level >= 0; --level) {
    const std::uint64_t count = size >> level;  // complete nodes on this level
    if ((count & 1) == 0) continue;
    KW_ASSIGN_OR_RETURN(const Hash piece, ReadNode(storage, level, count - 1));
    pieces.push_back(piece);
  }
  return CompactRange::FromPieces(size, std::move(pieces));
}

NodeReader StorageNodeReader(storage::Storage& storage) {
  return [&storage](int level, std::uint64_t index) { return ReadNode(storage, level, index); };
}

}  // namespace kw::vault::audit::merkle
