#pragma once

#include "api/http_server.hpp"
#include "vault/core.hpp"

namespace kw::api {

// Turns HTTP requests into vault calls: validates the target, serves the unauthenticated
// sys endpoints, authenticates the token, dispatches to the handler of the path, and commits
// the handler's writes together with the request's audit record before the response leaves
// (fail closed: a request whose record cannot be written gets 500 and changes nothing).
// Thread-safe; the core must outlive the router.
class Router {
 public:
  explicit Router(vault::Core& core) : core_(core) {}

  HttpResponse Handle(HttpRequest& request);

 private:
  vault::Core& core_;
};

}  // namespace kw::api
