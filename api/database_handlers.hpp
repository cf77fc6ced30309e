#pragma once

#include "api/request_context.hpp"

namespace kw::api {

// Serves the PostgreSQL database secrets engine below database/: config/<name>, reset/<name>,
// rotate-root/<name>, roles/<name>, creds/<role>, static-roles/<name>, static-creds/<name> and
// rotate-role/<name>. The router has checked the caller's policy.
Result<Reply> HandleDatabase(RequestContext& context);

}  // namespace kw::api
