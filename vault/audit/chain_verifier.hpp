#pragma once

#include <span>

#include "base/result.hpp"
#include "hsm/token.hpp"
#include "storage/storage.hpp"
#include "vault/audit/audit_log.hpp"
#include "vault/audit/signed_note.hpp"

namespace kw::vault::audit::detail {

// Records read per Storage::Scan call, so verification runs in constant memory.
inline constexpr std::size_t kVerifyPageSize = 1000;

// Checks the stored log: the records through LogVerifier (after the prune marker when records
// were pruned), the authenticated head, the stored Merkle tree nodes, and every stored
// checkpoint up to the head against `checkpoint_keys`. AuditLog::Verify documents the result.
// Errors only when storage or the HSM fail; a broken log is a report, not an error. A stored
// checkpoint fails verification when no key in `checkpoint_keys` signed it, so pass the log's
// key whenever checkpoints exist.
Result<VerifyReport> VerifyChain(storage::Storage& storage, hsm::Token& token,
                                 hsm::KeyHandle hmac_key,
                                 std::span<const note::VerifierKey> checkpoint_keys = {});

}  // namespace kw::vault::audit::detail
