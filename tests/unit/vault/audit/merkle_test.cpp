#include "vault/audit/merkle.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/bytes.hpp"
#include "tests/unit/fakes/softhsm_fixture.hpp"

namespace kw::vault::audit::merkle {
namespace {

using kw::testing::ErrorText;
using NodeId = std::pair<int, std::uint64_t>;  // (level, index)

Hash HashOf(std::string_view hex) {
  const std::optional<Hash> hash = HashFromHex(hex);
  REQUIRE_MESSAGE(hash.has_value(), "not a hash: " << hex);
  return *hash;
}

std::string Hex(const Hash& hash) { return ToHex(hash); }

// The eight-leaf reference tree that the fixture corpus also uses: leaves d0..d7 as hex, its
// roots for sizes 0..8, and its leaf and inner node hashes.
const char* const kReferenceLeaves[] = {
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
};
const char* const kReferenceRoots[] = {
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};
constexpr std::string_view kH0 = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d";
constexpr std::string_view kH1 = "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7";
constexpr std::string_view kH2 = "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7";
constexpr std::string_view kH3 = "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7";
constexpr std::string_view kH4 = "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b";
constexpr std::string_view kH6 = "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f";
constexpr std::string_view kH01 =
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125";
constexpr std::string_view kH23 =
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e";
constexpr std::string_view kH45 =
    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a";
constexpr std::string_view kH67 =
    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0";
constexpr std::string_view kH0123 =
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7";
constexpr std::string_view kH4567 =
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4";
constexpr std::string_view kH0123456 =
    "837dbb152e9b079010717e84e865da4ebc0fa198a806d59d31bf15accef22d0e";

// Returns `count` leaf hashes: the reference tree's eight leaves, then leaves "leaf-<i>".
std::vector<Hash> TestLeafHashes(std::size_t count) {
  std::vector<Hash> hashes;
  for (std::size_t i = 0; i < count; ++i) {
    if (i < std::size(kReferenceLeaves)) {
      const std::optional<Bytes> leaf = FromHex(kReferenceLeaves[i]);
      REQUIRE(leaf.has_value());
      hashes.push_back(LeafHash(*leaf));
    } else {
      hashes.push_back(LeafHash(AsBytes("leaf-" + std::to_string(i))));
    }
  }
  return hashes;
}

// The RFC 9162 section 2.1 definitions, by plain recursion over the leaf hashes, as the
// independent reference for the O(log n) code under test.
std::uint64_t LargestPowerOfTwoBelow(std::uint64_t n) { return std::bit_floor(n - 1); }

Hash ReferenceRoot(std::span<const Hash> leaves) {
  if (leaves.empty()) return EmptyRoot();
  if (leaves.size() == 1) return leaves[0];
  const std::size_t k = LargestPowerOfTwoBelow(leaves.size());
  return NodeHash(ReferenceRoot(leaves.first(k)), ReferenceRoot(leaves.subspan(k)));
}

void ReferencePath(std::uint64_t m, std::span<const Hash> leaves, std::vector<Hash>& path) {
  if (leaves.size() <= 1) return;
  const std::size_t k = LargestPowerOfTwoBelow(leaves.size());
  if (m < k) {
    ReferencePath(m, leaves.first(k), path);
    path.push_back(ReferenceRoot(leaves.subspan(k)));
  } else {
    ReferencePath(m - k, leaves.subspan(k), path);
    path.push_back(ReferenceRoot(leaves.first(k)));
  }
}

void ReferenceSubproof(std::uint64_t m, std::span<const Hash> leaves, bool complete_subtree,
                       std::vector<Hash>& proof) {
  if (m == leaves.size()) {
    if (!complete_subtree) proof.push_back(ReferenceRoot(leaves));
    return;
  }
  const std::size_t k = LargestPowerOfTwoBelow(leaves.size());
  if (m <= k) {
    ReferenceSubproof(m, leaves.first(k), complete_subtree, proof);
    proof.push_back(ReferenceRoot(leaves.subspan(k)));
  } else {
    ReferenceSubproof(m - k, leaves.subspan(k), false, proof);
    proof.push_back(ReferenceRoot(leaves.first(k)));
  }
}

// Every complete node of a tree built with CompactRange::Append, kept in memory.
class MemoryTree {
 public:
  explicit MemoryTree(const std::vector<Hash>& leaf_hashes) {
    CompactRange range;
    roots_.push_back(range.Root());
    for (const Hash& leaf : leaf_hashes) {
      range.Append(leaf, [this](int level, std::uint64_t index, const Hash& hash) {
        nodes_[{level, index}] = hash;
      });
      roots_.push_back(range.Root());
    }
  }

  const Hash& Root(std::uint64_t size) const { return roots_.at(size); }
  std::size_t node_count() const { return nodes_.size(); }

  // Returns a reader of the tree of the first `size` leaves that counts its calls in `reads`
  // and fails for any node that is not complete in that tree, so a proof that depends on later
  // leaves cannot pass.
  NodeReader Reader(std::uint64_t size, int& reads) const {
    return [this, size, &reads](int level, std::uint64_t index) -> Result<Hash> {
      ++reads;
      if (level < 0 || level > 63 || index >= (size >> level)) {
        return NotFound("node (" + std::to_string(level) + ", " + std::to_string(index) +
                        ") is not complete in a tree of size " + std::to_string(size));
      }
      return nodes_.at({level, index});
    };
  }

 private:
  std::map<NodeId, Hash> nodes_;
  std::vector<Hash> roots_;
};

// Returns the node reads allowed for one proof in a tree of `size` leaves: one per proof hash,
// plus one per set bit below the level of the single right-edge hash.
int ReadBound(std::uint64_t size) {
  const int ceil_log2 = size <= 1 ? 0 : std::bit_width(size - 1);
  return 2 * ceil_log2 + 2;
}

Hash FlipBit(Hash hash, std::size_t bit) {
  hash[bit / 8 % hash.size()] ^= static_cast<std::uint8_t>(1u << (bit % 8));
  return hash;
}

// --- Fixture corpus -------------------------------------------------------------------------

std::filesystem::path MerkleFixtures() {
  return std::filesystem::path(KEYWARD_FIXTURES_DIR) / "merkle";
}

// Returns the JSON files below fixtures/merkle/<kind>, sorted.
std::vector<std::filesystem::path> FixtureFiles(std::string_view kind) {
  std::vector<std::filesystem::path> files;
  const std::filesystem::path root = MerkleFixtures() / kind;
  if (!std::filesystem::is_directory(root)) return files;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    if (entry.is_regular_file() && entry.path().extension() == ".json") {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

nlohmann::json ReadJson(const std::filesystem::path& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  return nlohmann::json::parse(in);
}

Bytes Base64Field(const nlohmann::json& fixture, const char* name) {
  const std::optional<Bytes> bytes = FromBase64(fixture.at(name).get<std::string>());
  REQUIRE_MESSAGE(bytes.has_value(), name << " is not base64");
  return *bytes;
}

// Hashes in the corpus are plain byte strings, some of them not 32 bytes long. A leaf hash or
// proof hash of another length cannot be passed to the verifiers, so the fixture counts as
// rejected, and the corpus expects every such fixture to fail. A root of another length is
// replaced by SHA-256(0xff ‖ bytes). Equal roots stay equal, which is all that counts when both
// tree sizes are the same, and no computed root matches the stand-in.
std::optional<Hash> ExactHash(const Bytes& bytes) {
  if (bytes.size() != std::tuple_size_v<Hash>) return std::nullopt;
  Hash hash;
  std::copy(bytes.begin(), bytes.end(), hash.begin());
  return hash;
}

Hash RootStandIn(const Bytes& bytes) {
  if (const std::optional<Hash> exact = ExactHash(bytes)) return *exact;
  Bytes tagged{0xff};
  tagged.insert(tagged.end(), bytes.begin(), bytes.end());
  const Bytes digest = Sha256(tagged);
  return *ExactHash(digest);
}

std::optional<std::vector<Hash>> ProofField(const nlohmann::json& fixture) {
  std::vector<Hash> proof;
  if (fixture.at("proof").is_null()) return proof;
  for (const auto& element : fixture.at("proof")) {
    const std::optional<Bytes> bytes = FromBase64(element.get<std::string>());
    REQUIRE_MESSAGE(bytes.has_value(), "proof element is not base64");
    const std::optional<Hash> hash = ExactHash(*bytes);
    if (!hash) return std::nullopt;
    proof.push_back(*hash);
  }
  return proof;
}

// The result of verifying one fixture: accepted, or the reason it was rejected.
struct Outcome {
  bool accepted = false;
  std::string reason;
};

Outcome VerifyInclusionFixture(const nlohmann::json& fixture) {
  const std::optional<Hash> leaf_hash = ExactHash(Base64Field(fixture, "leafHash"));
  if (!leaf_hash) return {false, "leaf hash is not 32 bytes"};
  const std::optional<std::vector<Hash>> proof = ProofField(fixture);
  if (!proof) return {false, "a proof hash is not 32 bytes"};
  const Status verified = VerifyInclusion(fixture.at("leafIdx").get<std::uint64_t>(),
                                          fixture.at("treeSize").get<std::uint64_t>(), *leaf_hash,
                                          *proof, RootStandIn(Base64Field(fixture, "root")));
  return {verified.has_value(), verified ? "" : ErrorText(verified.error())};
}

Outcome VerifyConsistencyFixture(const nlohmann::json& fixture) {
  const std::optional<std::vector<Hash>> proof = ProofField(fixture);
  if (!proof) return {false, "a proof hash is not 32 bytes"};
  const Status verified = VerifyConsistency(fixture.at("size1").get<std::uint64_t>(),
                                            fixture.at("size2").get<std::uint64_t>(),
                                            RootStandIn(Base64Field(fixture, "root1")),
                                            RootStandIn(Base64Field(fixture, "root2")), *proof);
  return {verified.has_value(), verified ? "" : ErrorText(verified.error())};
}

// The proofs of the corpus's accepted fixtures over the reference tree, keyed by
// (index, size) for inclusion and (first, second) for consistency.
struct FixtureProofs {
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::vector<Hash>> inclusion;
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::vector<Hash>> consistency;
};

FixtureProofs LoadReferenceTreeProofs(const MemoryTree& tree) {
  FixtureProofs proofs;
  for (const auto& path : FixtureFiles("inclusion")) {
    const nlohmann::json fixture = ReadJson(path);
    if (fixture.at("wantErr").get<bool>()) continue;
    const auto size = fixture.at("treeSize").get<std::uint64_t>();
    if (size > std::size(kReferenceLeaves)) continue;
    if (RootStandIn(Base64Field(fixture, "root")) != tree.Root(size)) continue;
    proofs.inclusion[{fixture.at("leafIdx").get<std::uint64_t>(), size}] = *ProofField(fixture);
  }
  for (const auto& path : FixtureFiles("consistency")) {
    const nlohmann::json fixture = ReadJson(path);
    if (fixture.at("wantErr").get<bool>()) continue;
    const auto first = fixture.at("size1").get<std::uint64_t>();
    const auto second = fixture.at("size2").get<std::uint64_t>();
    if (second > std::size(kReferenceLeaves)) continue;
    if (RootStandIn(Base64Field(fixture, "root2")) != tree.Root(second)) continue;
    proofs.consistency[{first, second}] = *ProofField(fixture);
  }
  return proofs;
}

TEST_SUITE("vault/audit/merkle") {
  TEST_CASE("hash vectors") {
    CHECK(Hex(EmptyRoot()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(Hex(LeafHash({})) == kH0);
    CHECK(Hex(LeafHash(AsBytes("L123456"))) ==
          "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56");
    // The published node vector hashes two 4-byte children, which NodeHash's 32-byte
    // parameters cannot take, so the reference tree's inner nodes check NodeHash instead.
    CHECK(Hex(NodeHash(HashOf(kH0), HashOf(kH1))) == kH01);
    CHECK(Hex(NodeHash(HashOf(kH01), HashOf(kH23))) == kH0123);
    CHECK(Hex(NodeHash(HashOf(kH23), HashOf(kH01))) != kH0123);
  }

  TEST_CASE("hash from hex") {
    CHECK(HashFromHex(kH1).has_value());
    CHECK(Hex(*HashFromHex(kH1)) == kH1);
    CHECK_FALSE(HashFromHex("").has_value());
    CHECK_FALSE(HashFromHex(kH1.substr(0, 62)).has_value());
    CHECK_FALSE(HashFromHex(std::string(kH1) + "00").has_value());
    CHECK_FALSE(HashFromHex("96A296D224F285C67BEE93C30F8A309157F0DAA35DC5B87E410B78630A09CFC7")
                    .has_value());
    CHECK_FALSE(HashFromHex("g6a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7")
                    .has_value());
  }

  TEST_CASE("reference tree roots and nodes") {
    const std::vector<Hash> leaves = TestLeafHashes(8);
    CHECK(Hex(leaves[1]) == kH1);
    CHECK(Hex(leaves[7]) == "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1");

    CompactRange range;
    std::map<NodeId, Hash> nodes;
    CHECK(Hex(range.Root()) == kReferenceRoots[0]);
    for (std::size_t size = 1; size <= 8; ++size) {
      range.Append(leaves[size - 1], [&nodes](int level, std::uint64_t index, const Hash& hash) {
        CHECK(nodes.count({level, index}) == 0);
        nodes[{level, index}] = hash;
      });
      CAPTURE(size);
      CHECK(range.size() == size);
      CHECK(range.pieces().size() == static_cast<std::size_t>(std::popcount(size)));
      CHECK(Hex(range.Root()) == kReferenceRoots[size]);
    }

    CHECK(nodes.size() == 15);
    CHECK(Hex(nodes.at({0, 5})) ==
          "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658");
    CHECK(Hex(nodes.at({1, 0})) == kH01);
    CHECK(Hex(nodes.at({1, 1})) == kH23);
    CHECK(Hex(nodes.at({1, 2})) == kH45);
    CHECK(Hex(nodes.at({1, 3})) == kH67);
    CHECK(Hex(nodes.at({2, 0})) == kH0123);
    CHECK(Hex(nodes.at({2, 1})) == kH4567);
    CHECK(Hex(nodes.at({3, 0})) == kReferenceRoots[8]);

    const MemoryTree tree(leaves);
    for (std::uint64_t size = 0; size <= 8; ++size) {
      CAPTURE(size);
      int reads = 0;
      const Result<Hash> root = RootAt(size, tree.Reader(size, reads));
      REQUIRE_MESSAGE(root.has_value(), ErrorText(root.error()));
      CHECK(Hex(*root) == kReferenceRoots[size]);
      CHECK(reads == std::popcount(size));
    }
  }

  TEST_CASE("reference tree proof vectors") {
    const MemoryTree tree(TestLeafHashes(8));
    const auto inclusion = [&tree](std::uint64_t index, std::uint64_t size) {
      int reads = 0;
      const Result<std::vector<Hash>> proof = InclusionProof(index, size, tree.Reader(size, reads));
      REQUIRE_MESSAGE(proof.has_value(), ErrorText(proof.error()));
      std::vector<std::string> hex;
      for (const Hash& hash : *proof) hex.push_back(Hex(hash));
      return hex;
    };
    const auto consistency = [&tree](std::uint64_t first, std::uint64_t second) {
      int reads = 0;
      const Result<std::vector<Hash>> proof =
          ConsistencyProof(first, second, tree.Reader(second, reads));
      REQUIRE_MESSAGE(proof.has_value(), ErrorText(proof.error()));
      std::vector<std::string> hex;
      for (const Hash& hash : *proof) hex.push_back(Hex(hash));
      return hex;
    };
    using Hexes = std::vector<std::string>;
    const auto s = [](std::string_view hex) { return std::string(hex); };

    CHECK(inclusion(0, 8) == Hexes{s(kH1), s(kH23), s(kH4567)});
    CHECK(inclusion(5, 8) == Hexes{s(kH4), s(kH67), s(kH0123)});
    CHECK(inclusion(2, 3) == Hexes{s(kH01)});
    CHECK(inclusion(1, 5) == Hexes{s(kH0), s(kH23), s(kH4)});
    CHECK(inclusion(0, 1).empty());

    CHECK(consistency(1, 8) == Hexes{s(kH1), s(kH23), s(kH4567)});
    CHECK(consistency(6, 8) == Hexes{s(kH45), s(kH67), s(kH0123)});
    CHECK(consistency(2, 5) == Hexes{s(kH23), s(kH4)});
    CHECK(consistency(6, 7) == Hexes{s(kH45), s(kH6), s(kH0123)});
    CHECK(consistency(4, 8) == Hexes{s(kH4567)});
    CHECK(consistency(3, 7) == Hexes{s(kH2), s(kH3), s(kH01), s(kH0123456)});
    CHECK(consistency(1, 1).empty());
  }

  TEST_CASE("compact range from pieces") {
    const std::vector<Hash> leaves = TestLeafHashes(7);
    CompactRange built;
    for (const Hash& leaf : leaves) built.Append(leaf);

    const Result<CompactRange> restored = CompactRange::FromPieces(7, built.pieces());
    REQUIRE_MESSAGE(restored.has_value(), ErrorText(restored.error()));
    CHECK(restored->size() == 7);
    CHECK(Hex(restored->Root()) == kReferenceRoots[7]);

    CompactRange extended = *restored;
    extended.Append(TestLeafHashes(8)[7]);
    CHECK(Hex(extended.Root()) == kReferenceRoots[8]);
    CHECK(extended.pieces().size() == 1);

    const Result<CompactRange> too_few = CompactRange::FromPieces(7, {built.pieces()[0]});
    REQUIRE_FALSE(too_few.has_value());
    CHECK(too_few.error().code() == Code::kInvalidArgument);

    const Result<CompactRange> too_many = CompactRange::FromPieces(0, {built.pieces()[0]});
    REQUIRE_FALSE(too_many.has_value());
    CHECK(too_many.error().code() == Code::kInvalidArgument);

    const Result<CompactRange> empty = CompactRange::FromPieces(0, {});
    REQUIRE(empty.has_value());
    CHECK(Hex(empty->Root()) == kReferenceRoots[0]);
  }

  TEST_CASE("append reports every completed node") {
    CompactRange range;
    std::vector<NodeId> reported;
    for (std::uint64_t leaf = 0; leaf < 8; ++leaf) {
      range.Append(TestLeafHashes(8)[leaf],
                   [&reported](int level, std::uint64_t index, const Hash&) {
                     reported.emplace_back(level, index);
                   });
    }
    const std::vector<NodeId> expected = {{0, 0}, {0, 1}, {1, 0}, {0, 2}, {0, 3},
                                          {1, 1}, {2, 0}, {0, 4}, {0, 5}, {1, 2},
                                          {0, 6}, {0, 7}, {1, 3}, {2, 1}, {3, 0}};
    CHECK(reported == expected);
  }

  TEST_CASE("corpus fixtures verify as expected") {
    int files = 0;
    int accepted = 0;
    for (const std::string_view kind : {"inclusion", "consistency"}) {
      int files_of_kind = 0;
      for (const auto& path : FixtureFiles(kind)) {
        const nlohmann::json fixture = ReadJson(path);
        const Outcome outcome = kind == "inclusion" ? VerifyInclusionFixture(fixture)
                                                    : VerifyConsistencyFixture(fixture);
        const bool want_error = fixture.at("wantErr").get<bool>();
        CHECK_MESSAGE(outcome.accepted == !want_error,
                      path.string() << " (" << fixture.at("desc").get<std::string>()
                                    << "): " << (outcome.accepted ? "accepted" : outcome.reason));
        ++files_of_kind;
        if (outcome.accepted) ++accepted;
      }
      CAPTURE(kind);
      CHECK(files_of_kind > 40);
      files += files_of_kind;
    }
    CHECK(files > 100);
    CHECK(accepted > 10);
  }

  TEST_CASE("generated inclusion proofs up to size 70") {
    constexpr std::uint64_t kMaxSize = 70;
    const std::vector<Hash> leaves = TestLeafHashes(kMaxSize);
    const MemoryTree tree(leaves);
    CHECK(tree.node_count() == 2 * kMaxSize - std::popcount(kMaxSize));
    const FixtureProofs fixtures = LoadReferenceTreeProofs(tree);
    int compared_with_fixture = 0;

    for (std::uint64_t size = 1; size <= kMaxSize; ++size) {
      const std::span<const Hash> prefix(leaves.data(), size);
      const Hash& root = tree.Root(size);
      REQUIRE(root == ReferenceRoot(prefix));

      for (std::uint64_t index = 0; index < size; ++index) {
        CAPTURE(size);
        CAPTURE(index);
        int reads = 0;
        const Result<std::vector<Hash>> proof =
            InclusionProof(index, size, tree.Reader(size, reads));
        REQUIRE_MESSAGE(proof.has_value(), ErrorText(proof.error()));
        CHECK(reads <= ReadBound(size));

        std::vector<Hash> expected;
        ReferencePath(index, prefix, expected);
        CHECK(*proof == expected);
        if (const auto fixture = fixtures.inclusion.find({index, size});
            fixture != fixtures.inclusion.end()) {
          CHECK(*proof == fixture->second);
          ++compared_with_fixture;
        }

        const Status verified = VerifyInclusion(index, size, leaves[index], *proof, root);
        CHECK_MESSAGE(verified.has_value(), ErrorText(verified.error()));

        // Every corruption must be rejected.
        for (std::size_t i = 0; i < proof->size(); ++i) {
          std::vector<Hash> flipped = *proof;
          flipped[i] = FlipBit(flipped[i], i * 37);
          CHECK_FALSE(VerifyInclusion(index, size, leaves[index], flipped, root).has_value());
        }
        std::vector<Hash> longer = *proof;
        longer.push_back(root);
        CHECK_FALSE(VerifyInclusion(index, size, leaves[index], longer, root).has_value());
        if (!proof->empty()) {
          const std::span<const Hash> shorter(proof->data(), proof->size() - 1);
          CHECK_FALSE(VerifyInclusion(index, size, leaves[index], shorter, root).has_value());
        }
        if (index + 1 < size) {
          CHECK_FALSE(VerifyInclusion(index + 1, size, leaves[index], *proof, root).has_value());
        }
        if ((index ^ 1) < size) {
          CHECK_FALSE(VerifyInclusion(index ^ 1, size, leaves[index], *proof, root).has_value());
        }
        const Hash other_leaf = leaves[(index + 1) % kMaxSize];
        CHECK_FALSE(VerifyInclusion(index, size, other_leaf, *proof, root).has_value());
        CHECK_FALSE(
            VerifyInclusion(index, size, leaves[index], *proof, FlipBit(root, 0)).has_value());
      }
    }
    // (0, 1), (0, 8), (5, 8), (2, 3) and (1, 5) have accepted fixtures over the reference tree.
    CHECK(compared_with_fixture == 5);
  }

  TEST_CASE("generated consistency proofs up to size 70") {
    constexpr std::uint64_t kMaxSize = 70;
    const std::vector<Hash> leaves = TestLeafHashes(kMaxSize);
    const MemoryTree tree(leaves);
    const FixtureProofs fixtures = LoadReferenceTreeProofs(tree);
    int compared_with_fixture = 0;

    for (std::uint64_t second = 1; second <= kMaxSize; ++second) {
      const std::span<const Hash> prefix(leaves.data(), second);
      const Hash& second_root = tree.Root(second);

      for (std::uint64_t first = 1; first <= second; ++first) {
        CAPTURE(first);
        CAPTURE(second);
        const Hash& first_root = tree.Root(first);
        int reads = 0;
        const Result<std::vector<Hash>> proof =
            ConsistencyProof(first, second, tree.Reader(second, reads));
        REQUIRE_MESSAGE(proof.has_value(), ErrorText(proof.error()));
        CHECK(reads <= ReadBound(second));

        std::vector<Hash> expected;
        if (first < second) ReferenceSubproof(first, prefix, true, expected);
        CHECK(*proof == expected);
        if (const auto fixture = fixtures.consistency.find({first, second});
            fixture != fixtures.consistency.end()) {
          CHECK(*proof == fixture->second);
          ++compared_with_fixture;
        }

        const Status verified = VerifyConsistency(first, second, first_root, second_root, *proof);
        CHECK_MESSAGE(verified.has_value(), ErrorText(verified.error()));
        if (first == second) continue;

        // Every corruption must be rejected.
        for (std::size_t i = 0; i < proof->size(); ++i) {
          std::vector<Hash> flipped = *proof;
          flipped[i] = FlipBit(flipped[i], i * 41);
          CHECK_FALSE(
              VerifyConsistency(first, second, first_root, second_root, flipped).has_value());
        }
        std::vector<Hash> longer = *proof;
        longer.push_back(second_root);
        CHECK_FALSE(VerifyConsistency(first, second, first_root, second_root, longer).has_value());
        const std::span<const Hash> shorter(proof->data(), proof->size() - 1);
        CHECK_FALSE(VerifyConsistency(first, second, first_root, second_root, shorter).has_value());
        CHECK_FALSE(VerifyConsistency(first, second, second_root, first_root, *proof).has_value());
        CHECK_FALSE(VerifyConsistency(first, second, FlipBit(first_root, 3), second_root, *proof)
                        .has_value());
        CHECK_FALSE(VerifyConsistency(first, second, first_root, FlipBit(second_root, 3), *proof)
                        .has_value());
      }
    }
    // 1 -> 1, 1 -> 8, 6 -> 8, 2 -> 5 and 6 -> 7 have accepted fixtures over the reference tree.
    CHECK(compared_with_fixture == 5);
  }

  TEST_CASE("proofs in huge trees stay logarithmic") {
    // A tree whose leaves are all equal has one hash per level, so a reader can serve trees of
    // any size in O(1) while the proofs still have to verify against real roots.
    std::vector<Hash> level_hash = {LeafHash(AsBytes("same leaf"))};
    for (int level = 1; level < 64; ++level) {
      level_hash.push_back(NodeHash(level_hash.back(), level_hash.back()));
    }
    const auto reader = [&level_hash](std::uint64_t size, int& reads) -> NodeReader {
      return [&level_hash, size, &reads](int level, std::uint64_t index) -> Result<Hash> {
        ++reads;
        if (level < 0 || level > 63 || index >= (size >> level)) {
          return NotFound("node is not complete in a tree of size " + std::to_string(size));
        }
        return level_hash[static_cast<std::size_t>(level)];
      };
    };
    const auto root_at = [&reader](std::uint64_t size) {
      int reads = 0;
      const Result<Hash> root = RootAt(size, reader(size, reads));
      REQUIRE_MESSAGE(root.has_value(), ErrorText(root.error()));
      CHECK(reads == std::popcount(size));
      return *root;
    };

    constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
    for (const std::uint64_t size :
         {std::uint64_t{1'000'000'007}, (std::uint64_t{1} << 40) - 1, (std::uint64_t{1} << 63),
          (std::uint64_t{1} << 63) + 12345, kMax - 1, kMax}) {
      CAPTURE(size);
      const Hash root = root_at(size);
      for (const std::uint64_t index :
           {std::uint64_t{0}, std::uint64_t{1}, size / 3, size / 2, size - 2, size - 1}) {
        CAPTURE(index);
        int reads = 0;
        const Result<std::vector<Hash>> proof = InclusionProof(index, size, reader(size, reads));
        REQUIRE_MESSAGE(proof.has_value(), ErrorText(proof.error()));
        CHECK(reads <= ReadBound(size));
        const Status verified = VerifyInclusion(index, size, level_hash[0], *proof, root);
        CHECK_MESSAGE(verified.has_value(), ErrorText(verified.error()));
      }
      for (const std::uint64_t first : {std::uint64_t{1}, std::uint64_t{2}, std::uint64_t{3},
                                        size / 3, size / 2 + 1, size - 1}) {
        CAPTURE(first);
        int reads = 0;
        const Result<std::vector<Hash>> proof = ConsistencyProof(first, size, reader(size, reads));
        REQUIRE_MESSAGE(proof.has_value(), ErrorText(proof.error()));
        CHECK(reads <= ReadBound(size));
        const Status verified = VerifyConsistency(first, size, root_at(first), root, *proof);
        CHECK_MESSAGE(verified.has_value(), ErrorText(verified.error()));
      }
    }
  }

  TEST_CASE("proof arguments out of range") {
    const MemoryTree tree(TestLeafHashes(8));
    int reads = 0;
    const NodeReader read = tree.Reader(8, reads);

    const Result<std::vector<Hash>> past_end = InclusionProof(8, 8, read);
    REQUIRE_FALSE(past_end.has_value());
    CHECK(past_end.error().code() == Code::kInvalidArgument);
    CHECK(past_end.error().message().find("leaf index 8") != std::string::npos);

    const Result<std::vector<Hash>> empty_tree = InclusionProof(0, 0, read);
    REQUIRE_FALSE(empty_tree.has_value());
    CHECK(empty_tree.error().code() == Code::kInvalidArgument);

    const Result<std::vector<Hash>> from_empty = ConsistencyProof(0, 8, read);
    REQUIRE_FALSE(from_empty.has_value());
    CHECK(from_empty.error().code() == Code::kInvalidArgument);

    const Result<std::vector<Hash>> backwards = ConsistencyProof(8, 7, read);
    REQUIRE_FALSE(backwards.has_value());
    CHECK(backwards.error().code() == Code::kInvalidArgument);

    const Result<std::vector<Hash>> same = ConsistencyProof(5, 5, read);
    REQUIRE(same.has_value());
    CHECK(same->empty());
    CHECK(reads == 0);
  }

  TEST_CASE("reader errors propagate") {
    const NodeReader broken = [](int level, std::uint64_t index) -> Result<Hash> {
      return DataLoss("node " + std::to_string(level) + "/" + std::to_string(index) + " lost");
    };
    const Result<Hash> root = RootAt(5, broken);
    REQUIRE_FALSE(root.has_value());
    CHECK(root.error().code() == Code::kDataLoss);

    const Result<std::vector<Hash>> inclusion = InclusionProof(2, 5, broken);
    REQUIRE_FALSE(inclusion.has_value());
    CHECK(inclusion.error().code() == Code::kDataLoss);

    const Result<std::vector<Hash>> consistency = ConsistencyProof(3, 5, broken);
    REQUIRE_FALSE(consistency.has_value());
    CHECK(consistency.error().code() == Code::kDataLoss);

    CHECK(RootAt(0, broken).has_value());
  }

  TEST_CASE("verification errors name the cause") {
    const MemoryTree tree(TestLeafHashes(8));
    const std::vector<Hash> leaves = TestLeafHashes(8);
    const std::vector<Hash> proof = {HashOf(kH4), HashOf(kH67), HashOf(kH0123)};
    const Hash& root = tree.Root(8);
    REQUIRE(VerifyInclusion(5, 8, leaves[5], proof, root).has_value());

    const Status out_of_range = VerifyInclusion(8, 8, leaves[5], proof, root);
    REQUIRE_FALSE(out_of_range.has_value());
    CHECK(out_of_range.error().code() == Code::kInvalidArgument);
    CHECK(out_of_range.error().message() == "leaf index 8 is out of range for tree size 8");

    std::vector<Hash> longer = proof;
    longer.push_back(root);
    const Status too_long = VerifyInclusion(5, 8, leaves[5], longer, root);
    REQUIRE_FALSE(too_long.has_value());
    CHECK(too_long.error().message() ==
          "inclusion proof has 4 hashes, expected 3 for leaf 5 in a tree of size 8");

    const Status too_short = VerifyInclusion(5, 8, leaves[5], std::span(proof).first(2), root);
    REQUIRE_FALSE(too_short.has_value());
    CHECK(too_short.error().message() ==
          "inclusion proof has 2 hashes, expected 3 for leaf 5 in a tree of size 8");

    const Status wrong_leaf = VerifyInclusion(5, 8, leaves[4], proof, root);
    REQUIRE_FALSE(wrong_leaf.has_value());
    CHECK(wrong_leaf.error().code() == Code::kInvalidArgument);
    CHECK(wrong_leaf.error().message().starts_with("root mismatch"));

    const std::vector<Hash> consistency = {HashOf(kH45), HashOf(kH67), HashOf(kH0123)};
    REQUIRE(VerifyConsistency(6, 8, tree.Root(6), root, consistency).has_value());

    const Status swapped = VerifyConsistency(8, 6, root, tree.Root(6), consistency);
    REQUIRE_FALSE(swapped.has_value());
    CHECK(swapped.error().message() == "first tree size 8 exceeds second tree size 6");

    const Status from_zero = VerifyConsistency(0, 8, EmptyRoot(), root, {});
    REQUIRE_FALSE(from_zero.has_value());
    CHECK(from_zero.error().code() == Code::kInvalidArgument);

    const Status equal_with_proof = VerifyConsistency(8, 8, root, root, consistency);
    REQUIRE_FALSE(equal_with_proof.has_value());
    CHECK(equal_with_proof.error().code() == Code::kInvalidArgument);

    const Status equal_other_roots = VerifyConsistency(8, 8, root, tree.Root(6), {});
    REQUIRE_FALSE(equal_other_roots.has_value());
    CHECK(equal_other_roots.error().message().starts_with("root mismatch"));
    CHECK(VerifyConsistency(8, 8, root, root, {}).has_value());

    const Status empty = VerifyConsistency(6, 8, tree.Root(6), root, {});
    REQUIRE_FALSE(empty.has_value());
    CHECK(empty.error().message() ==
          "consistency proof has 0 hashes, expected 3 from tree size 6 to 8");

    std::vector<Hash> extra = consistency;
    extra.push_back(root);
    const Status too_long_consistency = VerifyConsistency(6, 8, tree.Root(6), root, extra);
    REQUIRE_FALSE(too_long_consistency.has_value());
    CHECK(too_long_consistency.error().message() ==
          "consistency proof has 4 hashes, expected 3 from tree size 6 to 8");

    const Status wrong_old_root = VerifyConsistency(6, 8, tree.Root(5), root, consistency);
    REQUIRE_FALSE(wrong_old_root.has_value());
    CHECK(wrong_old_root.error().message().find("first tree size 6") != std::string::npos);

    const Status wrong_new_root = VerifyConsistency(6, 8, tree.Root(6), tree.Root(7), consistency);
    REQUIRE_FALSE(wrong_new_root.has_value());
    CHECK(wrong_new_root.error().message().find("second tree size 8") != std::string::npos);
  }

  TEST_CASE("padded proof rejected by length") {
    // The RFC 9162 loop stops once it reaches the root, so the padding is never hashed.
    const std::vector<Hash> leaves = TestLeafHashes(8);
    const MemoryTree tree(leaves);
    std::vector<Hash> padded = {HashOf(kH4), HashOf(kH67), HashOf(kH0123)};
    padded.resize(1'000'000, tree.Root(8));
    const Status verified = VerifyInclusion(5, 8, leaves[5], padded, tree.Root(8));
    REQUIRE_FALSE(verified.has_value());
    CHECK(verified.error().message() ==
          "inclusion proof has 1000000 hashes, expected 3 for leaf 5 in a tree of size 8");
  }
}

}  // namespace
}  // namespace kw::vault::audit::merkle
