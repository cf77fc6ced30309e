#pragma once

#include <string_view>

#include "api/request_context.hpp"
#include "base/result.hpp"

namespace kw::api {

// Returns whether `path` is a login endpoint, which takes no token: its body carries the
// credential the method checks.
bool IsLoginPath(std::string_view path);

// Checks that c.identity may perform c.operation on c.path: the policies' capabilities for
// the path (create for writes to a secret that does not exist yet, else update; sudo for
// the privileged paths), and the token's bound paths. permission_denied "permission denied"
// otherwise, with no hint of which rule refused, so paths cannot be probed.
Status CheckAccess(RequestContext& c);

}  // namespace kw::api
