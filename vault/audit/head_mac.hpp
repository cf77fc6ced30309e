#pragma once

#include "base/bytes.hpp"
#include "base/result.hpp"
#include "hsm/token.hpp"
#include "vault/audit/audit_record.hpp"

namespace kw::vault::audit::detail {

// Computes the head MAC, HMAC-SHA256 over HeadMacMessage(head), in the HSM.
Result<Bytes> ComputeHeadMac(hsm::Token& token, hsm::KeyHandle key, const Head& head);

// Recomputes the MAC of `stored.head` and compares it with `stored.mac` in constant time.
// Returns false on a mismatch; the HSM's error when the HMAC cannot be computed.
Result<bool> IsHeadMacValid(hsm::Token& token, hsm::KeyHandle key, const StoredHead& stored);

}  // namespace kw::vault::audit::detail
