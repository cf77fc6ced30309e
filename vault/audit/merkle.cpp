#include "vault/audit/merkle.hpp"

#include <sodium.h>

#include <algorithm>
#include <bit>
#include <limits>
#include <string>
#include <utility>

namespace kw::vault::audit::merkle {

namespace {

// Domain separation of RFC 6962 section 2.1, so that a leaf can never pass for a node.
constexpr std::uint8_t kLeafPrefix = 0x00;
constexpr std::uint8_t kNodePrefix = 0x01;

Hash PrefixedSha256(std::uint8_t prefix, ByteSpan first, ByteSpan second) {
  crypto_hash_sha256_state state;
  crypto_hash_sha256_init(&state);
  crypto_hash_sha256_update(&state, &prefix, 1);
  crypto_hash_sha256_update(&state, first.data(), first.size());
  crypto_hash_sha256_update(&state, second.data(), second.size());
  Hash digest;
  crypto_hash_sha256_final(&state, digest.data());
  return digest;
}

// Returns `value >> shift`, which is 0 for shift 64 (a plain shift by 64 is undefined).
std::uint64_t ShiftRight(std::uint64_t value, int shift) {
  return shift >= 64 ? 0 : value >> shift;
}

// Returns the hash of the leaves [(size >> levels) << levels, size): the pieces of the tree of
// `size` leaves below level `levels`, folded right to left as RFC 9162 splits a tree. Reads one
// node per set bit of `size` below `levels`, and the caller ensures there is at least one.
Result<Hash> FoldPieces(std::uint64_t size, int levels, const NodeReader& read) {
  std::optional<Hash> folded;
  for (int level = 0; level < levels && level < 64; ++level) {
    if (((size >> level) & 1) == 0) continue;
    KW_ASSIGN_OR_RETURN(const Hash piece, read(level, (size >> level) - 1));
    folded = folded ? NodeHash(piece, *folded) : piece;
  }
  KW_CHECK(folded.has_value(), "FoldPieces called without a piece to fold");
  return *folded;
}

// Appends to `proof` the siblings of the complete node (level, index) and of each of its
// ancestors in the tree of `size` leaves, bottom up. A sibling is either a complete node (one
// read) or the right-edge node of the tree, whose hash is the fold of the pieces below its
// level. At most one sibling lies on the right edge: above it the path runs along the right
// edge, where every sibling is a complete left node.
Status AppendAuditPath(int level, std::uint64_t index, std::uint64_t size, const NodeReader& read,
                       std::vector<Hash>& proof) {
  std::uint64_t last = (size - 1) >> level;  // the rightmost node index on this level
  for (; last > 0; ++level, index >>= 1, last >>= 1) {
    if (index & 1) {
      KW_ASSIGN_OR_RETURN(const Hash left, read(level, index - 1));
      proof.push_back(left);
    } else if (index < last) {
      const std::uint64_t sibling = index + 1;
      const bool complete = sibling < (size >> level);
      KW_ASSIGN_OR_RETURN(const Hash right,
                          complete ? read(level, sibling) : FoldPieces(size, level, read));
      proof.push_back(right);
    }
    // Otherwise the node is the rightmost on its level with no right sibling, so RFC 9162
    // promotes it to the next level unchanged.
  }
  return OkStatus();
}

// Returns the number of hashes in the audit path of node (level, index) in the tree of `size`
// leaves. Below the level where the path meets the right edge, every node has a sibling. On the
// right edge, only the nodes with odd index (right children) have one.
std::uint64_t AuditPathSize(int level, std::uint64_t index, std::uint64_t size) {
  const std::uint64_t last = (size - 1) >> level;
  const int below_edge = std::bit_width(index ^ last);
  return static_cast<std::uint64_t>(below_edge) +
         static_cast<std::uint64_t>(std::popcount(ShiftRight(index, below_edge)));
}

std::uint64_t InclusionProofSize(std::uint64_t index, std::uint64_t size) {
  return AuditPathSize(0, index, size);
}

// Returns the number of hashes in the consistency proof for first < second: the last piece of
// the first tree (left out when it is the whole first tree), then that piece's audit path.
std::uint64_t ConsistencyProofSize(std::uint64_t first, std::uint64_t second) {
  const int level = std::countr_zero(first);
  const std::uint64_t index = (first - 1) >> level;
  return (index != 0 ? 1 : 0) + AuditPathSize(level, index, second);
}

// Shifts both values right until the low bit of `fn` is set or `fn` is 0.
void ShiftUntilOdd(std::uint64_t& fn, std::uint64_t& sn) {
  while (fn != 0 && (fn & 1) == 0) {
    fn >>= 1;
    sn >>= 1;
  }
}

std::string InclusionSizeMismatch(std::size_t actual, std::uint64_t index, std::uint64_t size) {
  return "inclusion proof has " + std::to_string(actual) + " hashes, expected " +
         std::to_string(InclusionProofSize(index, size)) + " for leaf " + std::to_string(index) +
         " in a tree of size " + std::to_string(size);
}

std::string ConsistencySizeMismatch(std::size_t actual, std::uint64_t first, std::uint64_t second) {
  return "consistency proof has " + std::to_string(actual) + " hashes, expected " +
         std::to_string(ConsistencyProofSize(first, second)) + " from tree size " +
         std::to_string(first) + " to " + std::to_string(second);
}

}  // namespace

Hash EmptyRoot() {
  Hash digest;
  crypto_hash_sha256(digest.data(), nullptr, 0);
  return digest;
}

Hash LeafHash(ByteSpan leaf) { return PrefixedSha256(kLeafPrefix, leaf, {}); }

Hash NodeHash(const Hash& left, const Hash& right) {
  return PrefixedSha256(kNodePrefix, left, right);
}

std::optional<Hash> HashFromHex(std::string_view text) {
  if (text.size() != 2 * std::tuple_size_v<Hash>) return std::nullopt;
  for (const char c : text) {
    const bool digit = c >= '0' && c <= '9';
    const bool letter = c >= 'a' && c <= 'f';
    if (!digit && !letter) return std::nullopt;
  }
  const std::optional<Bytes> bytes = FromHex(text);
  if (!bytes || bytes->size() != std::tuple_size_v<Hash>) return std::nullopt;
  Hash hash;
  std::copy(bytes->begin(), bytes->end(), hash.begin());
  return hash;
}

Result<CompactRange> CompactRange::FromPieces(std::uint64_t size, std::vector<Hash> pieces) {
  const auto expected = static_cast<std::size_t>(std::popcount(size));
  if (pieces.size() != expected) {
    return InvalidArgument("compact range of size " + std::to_string(size) + " needs " +
                           std::to_string(expected) + " pieces (one per set bit), got " +
                           std::to_string(pieces.size()));
  }
  CompactRange range;
  range.size_ = size;
  range.pieces_ = std::move(pieces);
  return range;
}

void CompactRange::Append(
    const Hash& leaf_hash,
    const std::function<void(int level, std::uint64_t index, const Hash& hash)>& on_node) {
  KW_CHECK(size_ < std::numeric_limits<std::uint64_t>::max(), "audit tree is full");
  Hash hash = leaf_hash;
  int level = 0;
  std::uint64_t index = size_;
  if (on_node) on_node(level, index, hash);

  // Each set low bit of the old size is a piece of the same level as the new node, to its
  // left: merge the two, as a binary counter carries.
  for (std::uint64_t rest = size_; (rest & 1) != 0; rest >>= 1) {
    hash = NodeHash(pieces_.back(), hash);
    pieces_.pop_back();
    ++level;
    index >>= 1;
    if (on_node) on_node(level, index, hash);
  }
  pieces_.push_back(hash);
  ++size_;
}

Hash CompactRange::Root() const {
  if (pieces_.empty()) return EmptyRoot();
  Hash root = pieces_.back();
  for (auto piece = pieces_.rbegin() + 1; piece != pieces_.rend(); ++piece) {
    root = NodeHash(*piece, root);
  }
  return root;
}

Result<Hash> RootAt(std::uint64_t size, const NodeReader& read) {
  if (size == 0) return EmptyRoot();
  return FoldPieces(size, 64, read);
}

Result<std::vector<Hash>> InclusionProof(std::uint64_t index, std::uint64_t size,
                                         const NodeReader& read) {
  if (index >= size) {
    return InvalidArgument("leaf index " + std::to_string(index) +
                           " is out of range for tree size " + std::to_string(size));
  }
  std::vector<Hash> proof;
  proof.reserve(InclusionProofSize(index, size));
  KW_RETURN_IF_ERROR(AppendAuditPath(0, index, size, read, proof));
  return proof;
}

Result<std::vector<Hash>> ConsistencyProof(std::uint64_t first, std::uint64_t second,
                                           const NodeReader& read) {
  if (first == 0) return InvalidArgument("first tree size must be at least 1, got 0");
  if (first > second) {
    return InvalidArgument("first tree size " + std::to_string(first) +
                           " exceeds second tree size " + std::to_string(second));
  }
  std::vector<Hash> proof;
  if (first == second) return proof;

  // The last piece of the first tree is the node (level, index). When it is the whole first
  // tree the verifier starts from the first root and the proof leaves it out.
  const int level = std::countr_zero(first);
  const std::uint64_t index = (first - 1) >> level;
  proof.reserve(ConsistencyProofSize(first, second));
  if (index != 0) {
    KW_ASSIGN_OR_RETURN(const Hash piece, read(level, index));
    proof.push_back(piece);
  }
  KW_RETURN_IF_ERROR(AppendAuditPath(level, index, second, read, proof));
  return proof;
}

Status VerifyInclusion(std::uint64_t index, std::uint64_t size, const Hash& leaf_hash,
                       std::span<const Hash> proof, const Hash& root) {
  if (index >= size) {
    return InvalidArgument("leaf index " + std::to_string(index) +
                           " is out of range for tree size " + std::to_string(size));
  }

  // RFC 9162 section 2.1.3.2: fn walks the leaf's path and sn the tree's right edge. sn reaching
  // 0 means the root was reached, which bounds the proof length.
  std::uint64_t fn = index;
  std::uint64_t sn = size - 1;
  Hash computed = leaf_hash;
  for (const Hash& sibling : proof) {
    if (sn == 0) return InvalidArgument(InclusionSizeMismatch(proof.size(), index, size));
    if ((fn & 1) != 0 || fn == sn) {
      computed = NodeHash(sibling, computed);
      ShiftUntilOdd(fn, sn);
    } else {
      computed = NodeHash(computed, sibling);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return InvalidArgument(InclusionSizeMismatch(proof.size(), index, size));

  if (computed != root) {
    return InvalidArgument("root mismatch: the inclusion proof of leaf " + std::to_string(index) +
                           " in a tree of size " + std::to_string(size) +
                           " computes a different root (wrong leaf hash, proof or root)");
  }
  return OkStatus();
}

Status VerifyConsistency(std::uint64_t first, std::uint64_t second, const Hash& first_root,
                         const Hash& second_root, std::span<const Hash> proof) {
  if (first > second) {
    return InvalidArgument("first tree size " + std::to_string(first) +
                           " exceeds second tree size " + std::to_string(second));
  }
  if (first == 0) {
    return InvalidArgument(
        "first tree size is 0: every tree extends the empty tree, so there is nothing to prove");
  }
  if (first == second) {
    if (!proof.empty()) {
      return InvalidArgument("consistency proof between equal tree sizes must be empty, got " +
                             std::to_string(proof.size()) + " hashes");
    }
    if (first_root != second_root) {
      return InvalidArgument("root mismatch: two different roots for tree size " +
                             std::to_string(first));
    }
    return OkStatus();
  }
  if (proof.empty()) return InvalidArgument(ConsistencySizeMismatch(0, first, second));

  // RFC 9162 section 2.1.4.2. When the first tree is a perfect subtree of the second its root
  // is the starting node, otherwise the proof's first hash (its last piece) is.
  const bool first_is_perfect = std::has_single_bit(first);
  const Hash& start = first_is_perfect ? first_root : proof.front();
  const std::span<const Hash> path = first_is_perfect ? proof : proof.subspan(1);

  std::uint64_t fn = first - 1;
  std::uint64_t sn = second - 1;
  while ((fn & 1) != 0) {
    fn >>= 1;
    sn >>= 1;
  }
  Hash first_computed = start;
  Hash second_computed = start;
  for (const Hash& sibling : path) {
    if (sn == 0) return InvalidArgument(ConsistencySizeMismatch(proof.size(), first, second));
    if ((fn & 1) != 0 || fn == sn) {
      first_computed = NodeHash(sibling, first_computed);
      second_computed = NodeHash(sibling, second_computed);
      ShiftUntilOdd(fn, sn);
    } else {
      second_computed = NodeHash(second_computed, sibling);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return InvalidArgument(ConsistencySizeMismatch(proof.size(), first, second));

  if (first_computed != first_root) {
    return InvalidArgument(
        "root mismatch: the consistency proof computes a different root for first tree size " +
        std::to_string(first));
  }
  if (second_computed != second_root) {
    return InvalidArgument(
        "root mismatch: the consistency proof computes a different root for second tree size " +
        std::to_string(second));
  }
  return OkStatus();
}

}  // namespace kw::vault::audit::merkle
