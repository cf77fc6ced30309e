#pragma once

#include <string_view>

#include "api/request_context.hpp"

namespace kw::api {

// Serves the PKI engine below pki/: the CA (root/generate/internal, intermediate/*, rotate),
// roles/<name>, issue/<role>, sign/<role>, jwt/issue/<role>, jwt/verify, certs, cert/<serial>,
// revoke, tidy, bundles/<trust_domain>, config, and the public reads of IsPublicPkiPath. The
// router has checked the caller's policy, except for the public reads.
Result<Reply> HandlePki(RequestContext& context);

// The reads that need no token, as in Vault and the SPIFFE federation endpoint: the bundle,
// the JWKS, the CA certificate and chain, and the CRL.
bool IsPublicPkiPath(std::string_view method, std::string_view path);

}  // namespace kw::api
