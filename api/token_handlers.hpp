#pragma once

#include "api/request_context.hpp"

namespace kw::api {

// Serves auth/token/lookup-self for the calling token, which Vault clients use to check that
// their token works (hvac's is_authenticated, for one).
Result<Reply> HandleTokenLookupSelf(RequestContext& context, std::string_view token);

}  // namespace kw::api
