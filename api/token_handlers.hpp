#pragma once

#include <string_view>

#include "api/request_context.hpp"
#include "base/result.hpp"

namespace kw::api {

// Serves auth/token/...: create (child, orphan, against a role), lookup, renew and revoke
// (by token, self and accessor), revoke-orphan, roles, accessors and tidy. `token` is the
// caller's own token text, which lookup-self returns as "id".
Result<Reply> HandleToken(RequestContext& c, std::string_view token);

}  // namespace kw::api
