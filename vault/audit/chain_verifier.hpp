#pragma once

#include "base/result.hpp"
#include "hsm/token.hpp"
#include "storage/storage.hpp"
#include "vault/audit/audit_log.hpp"

namespace kw::vault::audit::detail {

// Records read per Storage::Scan call, so verification runs in constant memory.
inline constexpr std::size_t kVerifyPageSize = 1000;

// Checks the stored chain against the authenticated head; AuditLog::Verify documents the
// result. Errors only when storage or the HSM fail; a broken chain is a report, not an error.
Result<VerifyReport> VerifyChain(storage::Storage& storage, hsm::Token& token,
                                 hsm::KeyHandle hmac_key);

}  // namespace kw::vault::audit::detail
