#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.hpp"
#include "storage/storage.hpp"
#include "vault/audit/merkle.hpp"

// Persistence of the audit Merkle tree: the hash of every complete perfect subtree is stored
// under kTreePrefix as 32 raw bytes, so that roots and proofs for any past tree size need only
// O(log size) reads. AppendLeaf writes each node once, in the transaction of the leaf that
// completes it.
namespace kw::vault::audit::merkle {

inline constexpr std::string_view kTreePrefix = "sys/audit/tree/";

// Returns the storage key of node (level, index):
// kTreePrefix + <level, 2 digits> + "/" + <index, 20 digits>, zero-padded so keys sort by index.
std::string TreeNodeKey(int level, std::uint64_t index);

// Appends `leaf_hash` to `range` and puts every node the append completes (the leaf included)
// into `transaction`. On error `range` is unchanged, but the puts made before the failure stay
// in the transaction, so the caller must roll it back.
Status AppendLeaf(storage::Transaction& transaction, CompactRange& range, const Hash& leaf_hash);

// Reads the compact range of the tree of the first `size` leaves: one node per set bit of
// `size`. data_loss naming the key when a node is missing or is not 32 bytes long.
Result<CompactRange> LoadCompactRange(storage::Storage& storage, std::uint64_t size);

// Returns a reader of the stored nodes, with the same data_loss rule as LoadCompactRange.
// `storage` must outlive the reader.
NodeReader StorageNodeReader(storage::Storage& storage);

}  // namespace kw::vault::audit::merkle
