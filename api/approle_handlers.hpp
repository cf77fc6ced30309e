#pragma once

#include "api/request_context.hpp"

namespace kw::api {

// Serves the AppRole auth method below auth/approle/: roles, role IDs, secret IDs, tidy and
// login. Login needs no token; the router has checked the caller's policy for the others.
Result<Reply> HandleAppRole(RequestContext& context);

}  // namespace kw::api
