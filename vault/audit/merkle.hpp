#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "base/bytes.hpp"
#include "base/result.hpp"

// The Merkle tree of RFC 6962 / RFC 9162 over the audit records: hashing, the compact range that
// an appender keeps, proof construction from stored subtree hashes, and proof verification.
// Nothing here touches storage or the HSM, so the offline verifier uses it too.
namespace kw::vault::audit::merkle {

using Hash = std::array<std::uint8_t, 32>;

// SHA-256 of the empty string: the root of a tree with no leaves.
Hash EmptyRoot();

// SHA-256(0x00 ‖ leaf).
Hash LeafHash(ByteSpan leaf);

// SHA-256(0x01 ‖ left ‖ right).
Hash NodeHash(const Hash& left, const Hash& right);

// Returns `text` (64 lower-case hex digits) as a hash; nullopt when malformed.
std::optional<Hash> HashFromHex(std::string_view text);

// The perfect subtrees that make up a tree of `size` leaves, one per set bit of `size`, largest
// (leftmost) first: enough to compute the root and to append further leaves.
class CompactRange {
 public:
  CompactRange() = default;

  // invalid_argument unless `pieces` has exactly one hash per set bit of `size`.
  static Result<CompactRange> FromPieces(std::uint64_t size, std::vector<Hash> pieces);

  std::uint64_t size() const { return size_; }
  const std::vector<Hash>& pieces() const { return pieces_; }

  // Appends the leaf hash of leaf number size(). Calls `on_node(level, index, hash)` for the
  // leaf itself (level 0, index = the leaf number) and then for every perfect subtree the
  // append completes, bottom up: (level, index) covers leaves [index << level, (index + 1) << level).
  void Append(const Hash& leaf_hash,
              const std::function<void(int level, std::uint64_t index, const Hash& hash)>&
                  on_node = nullptr);

  // The root of the tree of size() leaves; EmptyRoot() for size 0.
  Hash Root() const;

 private:
  std::uint64_t size_ = 0;
  std::vector<Hash> pieces_;
};

// Reads the hash of the perfect subtree (level, index), which covers leaves
// [index << level, (index + 1) << level). Proof construction only reads complete subtrees of
// the tree being proved, so a store that keeps every completed subtree can answer each call.
using NodeReader = std::function<Result<Hash>(int level, std::uint64_t index)>;

// Returns the root of the tree of the first `size` leaves, reading one node per set bit of
// `size`.
Result<Hash> RootAt(std::uint64_t size, const NodeReader& read);

// Returns the inclusion proof (audit path) of leaf `index` in the tree of `size` leaves, in the
// order RFC 9162 section 2.1.3.1 defines, with O(log size) node reads. invalid_argument when
// index >= size.
Result<std::vector<Hash>> InclusionProof(std::uint64_t index, std::uint64_t size,
                                         const NodeReader& read);

// Returns the consistency proof from the tree of `first` leaves to the tree of `second` leaves
// (RFC 9162 section 2.1.4.1), with O(log second) node reads. Empty when first == second.
// invalid_argument when first is 0 or first > second.
Result<std::vector<Hash>> ConsistencyProof(std::uint64_t first, std::uint64_t second,
                                           const NodeReader& read);

// Verifies an inclusion proof (RFC 9162 section 2.1.3.2). Returns OK when `leaf_hash` is leaf
// `index` of the tree of `size` leaves whose root is `root`. Otherwise returns invalid_argument
// naming what failed: index out of range, proof too long or too short, or root mismatch.
Status VerifyInclusion(std::uint64_t index, std::uint64_t size, const Hash& leaf_hash,
                       std::span<const Hash> proof, const Hash& root);

// Verifies a consistency proof (RFC 9162 section 2.1.4.2) between the tree of `first` leaves
// with root `first_root` and the tree of `second` leaves with root `second_root`.
// invalid_argument naming what failed otherwise. first == second needs an empty proof and equal
// roots; first == 0 and first > second are rejected.
Status VerifyConsistency(std::uint64_t first, std::uint64_t second, const Hash& first_root,
                         const Hash& second_root, std::span<const Hash> proof);

}  // namespace kw::vault::audit::merkle
