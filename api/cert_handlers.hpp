#pragma once

#include "api/request_context.hpp"

namespace kw::api {

// Serves the certificate auth method below auth/cert/: roles at certs/<name> (LIST, GET, PUT,
// POST, DELETE) and login, which takes the client certificate chain of the TLS connection and
// needs no token. The router has checked the caller's policy for everything but login.
Result<Reply> HandleCert(RequestContext& context);

}  // namespace kw::api
