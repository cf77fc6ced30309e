#pragma once

#include <optional>

#include "api/http_server.hpp"
#include "api/request_context.hpp"
#include "api/request_path.hpp"
#include "vault/core.hpp"

namespace kw::api {

// Returns whether `path` is served without a token and without an audit record, as Vault
// does: sys/health, sys/seal-status, sys/init and sys/unseal.
bool IsUnauthenticatedPath(std::string_view path);

// Serves the unauthenticated sys endpoints; they work while sealed.
Reply HandleUnauthenticatedSys(vault::Core& core, const HttpRequest& http,
                               const ParsedTarget& target);

// Serves the authenticated sys endpoints: seal, rotate, key-status, audit verification,
// audit-hash and mount listings.
Result<Reply> HandleSys(RequestContext& context);

}  // namespace kw::api
