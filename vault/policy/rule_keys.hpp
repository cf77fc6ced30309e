#pragma once

#include <string_view>

#include "base/result.hpp"

namespace kw::vault::policy::detail {

// Checks a key inside a path rule: only "capabilities" is accepted. Vault's rule parameters
// (allowed_parameters, min_wrapping_ttl, ...) get a "not supported" message, anything else an
// "unknown key" one. `where` ("line 3: path \"x\"" or "path \"x\"") starts the message.
Status CheckRuleKey(std::string_view key, std::string_view where);

}  // namespace kw::vault::policy::detail
