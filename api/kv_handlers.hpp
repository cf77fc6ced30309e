#pragma once

#include "api/request_context.hpp"

namespace kw::api {

// Serves Vault's KV version 2 API for the mount at secret/: data, metadata, delete,
// undelete, destroy and config. `context.path` starts with "secret/".
Result<Reply> HandleKv(RequestContext& context);

}  // namespace kw::api
