#include "api/token_handlers.hpp"

namespace kw::api {

Result<Reply> HandleTokenLookupSelf(RequestContext& c, std::string_view token) {
  if (c.operation != "read" && c.method != "POST" && c.method != "PUT") return MethodNotAllowed(c);
  // NOTE: only the root token exists so far, so the fields are the root token's.
  nlohmann::json data = {{"accessor", c.identity.accessor},
                         {"creation_ttl", 0},
                         {"display_name", "root"},
                         {"entity_id", ""},
                         {"expire_time", nullptr},
                         {"explicit_max_ttl", 0},
                         {"id", std::string(token)},
                         {"meta", nullptr},
                         {"num_uses", 0},
                         {"orphan", true},
                         {"path", "auth/token/root"},
                         {"policies", c.identity.policies},
                         {"renewable", false},
                         {"ttl", 0},
                         {"type", "service"}};
  return Reply{200, Envelope(c, std::move(data))};
}

}  // namespace kw::api
