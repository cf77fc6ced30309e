#include "api/audit_handlers.hpp"

#include <string>
#include <vector>

#include "api/json_fields.hpp"
#include "vault/audit/merkle.hpp"
#include "vault/audit/merkle_store.hpp"
#include "vault/audit/signed_note.hpp"

namespace kw::api {
namespace {

namespace merkle = vault::audit::merkle;
namespace note = vault::audit::note;

std::string Base64Of(const merkle::Hash& hash) { return ToBase64(ByteSpan(hash.data(), hash.size())); }

nlohmann::json Base64List(const std::vector<merkle::Hash>& hashes) {
  nlohmann::json list = nlohmann::json::array();
  for (const merkle::Hash& hash : hashes) list.push_back(Base64Of(hash));
  return list;
}

// Reads the unsigned integer query parameter `name`. invalid_argument naming it when absent
// (unless `fallback` is given) or not a decimal number.
Result<std::uint64_t> QueryNumber(const RequestContext& c, std::string_view name,
                                  std::optional<std::uint64_t> fallback = std::nullopt) {
  const std::optional<std::string_view> text = c.Query(name);
  if (!text) {
    if (fallback) return *fallback;
    return InvalidArgument("missing query parameter \"" + std::string(name) +
                           "\": a non-negative integer");
  }
  const std::optional<std::int64_t> value = ParseNonNegative(*text);
  if (!value) {
    return InvalidArgument("query parameter \"" + std::string(name) +
                           "\" must be a non-negative integer");
  }
  return static_cast<std::uint64_t>(*value);
}

// The size proofs are built against by default, and the bound on any requested size: the
// records committed so far.
Result<std::uint64_t> CommittedSize(RequestContext& c) { return c.vault->audit->CommittedSize(); }

Status CheckTreeSize(std::string_view name, std::uint64_t size, std::uint64_t committed) {
  if (size > committed) {
    return InvalidArgument("query parameter \"" + std::string(name) + "\" is " +
                           std::to_string(size) + " but the log holds " +
                           std::to_string(committed) + " records");
  }
  return OkStatus();
}

Result<Reply> Checkpoint(RequestContext& c) {
  KW_ASSIGN_OR_RETURN(auto latest, c.vault->audit->LatestCheckpoint());
  if (!latest) {
    return NotFound("no audit checkpoint was signed yet: one is signed within the checkpoint "
                    "interval after the first records");
  }
  const note::VerifierKey* key = c.vault->audit->checkpoint_key();
  nlohmann::json data = {{"checkpoint", latest->note},
                         {"origin", key ? key->name : std::string()},
                         {"size", latest->size},
                         {"root", Base64Of(latest->root)}};
  return Reply{200, Envelope(c, std::move(data))};
}

Result<Reply> PublicKey(RequestContext& c) {
  const note::VerifierKey* key = c.vault->audit->checkpoint_key();
  if (!key) return FailedPrecondition("the audit log has no checkpoint signing key");
  char key_id[9];
  std::snprintf(key_id, sizeof key_id, "%08x", key->key_id);
  nlohmann::json data = {
      {"vkey", note::FormatVkey(*key)},
      {"name", key->name},
      {"key_id", key_id},
      {"algorithm", key->type == note::KeyType::kEd25519 ? "ed25519" : "ecdsa-p256"},
      {"public_key", ToBase64(key->public_key)}};
  return Reply{200, Envelope(c, std::move(data))};
}

Result<Reply> InclusionProof(RequestContext& c) {
  KW_ASSIGN_OR_RETURN(const std::uint64_t committed, CommittedSize(c));
  KW_ASSIGN_OR_RETURN(const std::uint64_t size, QueryNumber(c, "tree_size", committed));
  KW_ASSIGN_OR_RETURN(const std::uint64_t index, QueryNumber(c, "index"));
  KW_RETURN_IF_ERROR(CheckTreeSize("tree_size", size, committed));
  if (index >= size) {
    return InvalidArgument("query parameter \"index\" is " + std::to_string(index) +
                           " but must be below tree_size " + std::to_string(size) +
                           " (index 0 is record 1)");
  }
  const merkle::NodeReader read = merkle::StorageNodeReader(c.core.storage());
  KW_ASSIGN_OR_RETURN(const std::vector<merkle::Hash> proof,
                      merkle::InclusionProof(index, size, read));
  KW_ASSIGN_OR_RETURN(const merkle::Hash leaf, read(0, index));
  KW_ASSIGN_OR_RETURN(const merkle::Hash root, merkle::RootAt(size, read));
  nlohmann::json data = {{"index", index},
                         {"tree_size", size},
                         {"leaf_hash", Base64Of(leaf)},
                         {"root", Base64Of(root)},
                         {"proof", Base64List(proof)}};
  return Reply{200, Envelope(c, std::move(data))};
}

Result<Reply> ConsistencyProof(RequestContext& c) {
  KW_ASSIGN_OR_RETURN(const std::uint64_t committed, CommittedSize(c));
  KW_ASSIGN_OR_RETURN(const std::uint64_t first, QueryNumber(c, "first"));
  KW_ASSIGN_OR_RETURN(const std::uint64_t second, QueryNumber(c, "second", committed));
  KW_RETURN_IF_ERROR(CheckTreeSize("second", second, committed));
  if (first == 0 || first > second) {
    return InvalidArgument("query parameter \"first\" must be between 1 and second (" +
                           std::to_string(second) + ")");
  }
  const merkle::NodeReader read = merkle::StorageNodeReader(c.core.storage());
  KW_ASSIGN_OR_RETURN(const std::vector<merkle::Hash> proof,
                      merkle::ConsistencyProof(first, second, read));
  KW_ASSIGN_OR_RETURN(const merkle::Hash first_root, merkle::RootAt(first, read));
  KW_ASSIGN_OR_RETURN(const merkle::Hash second_root, merkle::RootAt(second, read));
  nlohmann::json data = {{"first", first},
                         {"second", second},
                         {"first_root", Base64Of(first_root)},
                         {"second_root", Base64Of(second_root)},
                         {"proof", Base64List(proof)}};
  return Reply{200, Envelope(c, std::move(data))};
}

}  // namespace

Result<Reply> HandleAuditLog(RequestContext& c) {
  const std::string& path = c.path;
  if (path == "sys/audit/records") return HandleAuditRecords(c);
  if (path == "sys/audit/checkpoints") return HandleAuditCheckpoints(c);
  if (path == "sys/audit/prune") return HandleAuditPrune(c);

  const bool read = c.operation == "read";
  if (path == "sys/audit/checkpoint") {
    if (c.method == "POST" || c.method == "PUT") {
      // Signs one now, for an auditor who wants the latest records covered before an export.
      KW_ASSIGN_OR_RETURN(auto made, c.core.Checkpoint());
      (void)made;
      return Checkpoint(c);
    }
    return read ? Checkpoint(c) : MethodNotAllowed(c);
  }
  if (path == "sys/audit/public-key") return read ? PublicKey(c) : MethodNotAllowed(c);
  if (path == "sys/audit/proof/inclusion") return read ? InclusionProof(c) : MethodNotAllowed(c);
  if (path == "sys/audit/proof/consistency") return read ? ConsistencyProof(c) : MethodNotAllowed(c);
  return ErrorReply(404, {"no handler for route \"" + path + "\""});
}

}  // namespace kw::api
