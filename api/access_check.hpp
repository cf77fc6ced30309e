#pragma once

#include <string_view>

#include "api/request_context.hpp"
#include "base/result.hpp"

namespace kw::api {

// Returns whether `path` is a login endpoint, which takes no token: its body carries the
// credential the method checks.
bool IsLoginPath(std::string_view path);

// Checks that c.identity may perform c.operation on c.path. The policies must grant the
// operation's capability on the path: create for a write to a secret that does not exist
// yet, else update, plus sudo on the privileged paths. The token's bound paths must match.
// Otherwise permission_denied "permission denied", with no hint of which rule rejected the
// request, so that paths cannot be probed.
Status CheckAccess(RequestContext& c);

}  // namespace kw::api
