#include "vault/audit/head_mac.hpp"

#include <sodium.h>

namespace kw::vault::audit::detail {

Result<Bytes> ComputeHeadMac(hsm::Token& token, hsm::KeyHandle key, const Head& head) {
  return token.HmacSha256(key, HeadMacMessage(head));
}

Result<bool> IsHeadMacValid(hsm::Token& token, hsm::KeyHandle key, const StoredHead& stored) {
  KW_ASSIGN_OR_RETURN(const Bytes expected, ComputeHeadMac(token, key, stored.head));
  if (expected.size() != stored.mac.size()) return false;
  return sodium_memcmp(expected.data(), stored.mac.data(), expected.size()) == 0;
}

}  // namespace kw::vault::audit::detail
