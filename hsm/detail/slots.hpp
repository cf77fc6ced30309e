#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include <p11-kit/pkcs11.h>

#include "base/result.hpp"

namespace kw::hsm::detail {

// Size of CK_TOKEN_INFO's label field: UTF-8, padded with spaces, not NUL-terminated.
inline constexpr std::size_t kTokenLabelSize = 32;

struct SlotToken {
  CK_SLOT_ID slot = 0;
  std::string label;  // trailing padding removed
  bool initialized = false;
};

// Lists the slots that hold a token, with each token's label. C_GetSlotList also makes SoftHSM
// look for tokens created since the last call.
Result<std::vector<SlotToken>> ListTokens(CK_FUNCTION_LIST* functions);

// Returns the slot whose initialised token is labelled `label`. not_found when none is;
// failed_precondition when several are.
Result<CK_SLOT_ID> FindSlotByLabel(CK_FUNCTION_LIST* functions, std::string_view label);

// Returns `label` padded with spaces to kTokenLabelSize. invalid_argument when it is empty or
// longer than kTokenLabelSize bytes.
Result<std::array<CK_UTF8CHAR, kTokenLabelSize>> PadTokenLabel(std::string_view label);

}  // namespace kw::hsm::detail
