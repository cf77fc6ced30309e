#include "api/auth_reply.hpp"

namespace kw::api {

nlohmann::json AuthEnvelope(const RequestContext& context,
                            const vault::auth::CreatedToken& created) {
  const vault::auth::TokenEntry& entry = *created.entry;
  const std::int64_t now =
      std::chrono::duration_cast<std::chrono::seconds>(
          context.core.clock().Now().time_since_epoch()).count();
  nlohmann::json metadata = nullptr;
  if (!entry.meta.empty()) metadata = entry.meta;
  nlohmann::json auth = {{"client_token", std::string(created.token.RevealText())},
                         {"accessor", entry.accessor},
                         {"policies", entry.policies},
                         {"token_policies", entry.policies},
                         {"identity_policies", nullptr},
                         {"metadata", metadata},
                         {"lease_duration", entry.Ttl(now)},
                         {"renewable", entry.renewable},
                         {"entity_id", entry.entity_id},
                         {"token_type", "service"},
                         {"orphan", entry.orphan()},
                         {"mfa_requirement", nullptr},
                         {"num_uses", entry.num_uses}};
  nlohmann::json body = Envelope(context, nullptr);
  body["auth"] = std::move(auth);
  return body;
}

}  // namespace kw::api
