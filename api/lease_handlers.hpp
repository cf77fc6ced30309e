#pragma once

#include "api/request_context.hpp"

namespace kw::api {

// Serves Vault's lease endpoints: sys/leases/{lookup,renew,revoke,revoke-prefix/<prefix>,
// revoke-force/<prefix>,tidy}, LIST sys/leases/lookup/<prefix>, and the legacy sys/renew,
// sys/revoke (with /<lease_id> path forms), sys/revoke-prefix/<prefix> and
// sys/revoke-force/<prefix>.
Result<Reply> HandleLeases(RequestContext& context);

}  // namespace kw::api
