#pragma once

#include "api/request_context.hpp"
#include "base/result.hpp"

namespace kw::api {

// ACL policies: `sys/policies/acl` (LIST), `sys/policies/acl/<name>` (GET, PUT, POST, DELETE)
// and the older `sys/policy` (GET, LIST) and `sys/policy/<name>` forms that hvac uses.
Result<Reply> HandlePolicies(RequestContext& c);

// Capability queries: `sys/capabilities-self` (the calling token), `sys/capabilities` (a token
// in the body) and `sys/capabilities-accessor` (a token's accessor in the body).
Result<Reply> HandleCapabilities(RequestContext& c);

}  // namespace kw::api
