#pragma once

#include <nlohmann/json.hpp>

#include "api/request_context.hpp"
#include "vault/auth/token_store.hpp"

namespace kw::api {

// Returns Vault's response envelope for a request that created `created`: data null and the
// `auth` block (client_token, accessor, policies, token_policies, metadata, lease_duration,
// renewable, entity_id, token_type, orphan). The body carries the token: the router's audit
// redaction replaces it by its HMAC.
nlohmann::json AuthEnvelope(const RequestContext& context, const vault::auth::CreatedToken& created);

}  // namespace kw::api
