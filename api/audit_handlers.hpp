#pragma once

#include "api/request_context.hpp"

namespace kw::api {

// Serves sys/audit/ except sys/audit/verify (a sys handler): the signed checkpoint and its
// public key, inclusion and consistency proofs, record queries, the stored checkpoints and
// pruning. The router has checked the caller's policy.
Result<Reply> HandleAuditLog(RequestContext& context);

// GET sys/audit/records: records filtered by time, accessor (with the tokens delegated from
// it), SPIFFE ID, path prefix and status, paged (api/audit_query_handlers.cpp).
Result<Reply> HandleAuditRecords(RequestContext& context);

// GET sys/audit/checkpoints: the stored signed checkpoints, by tree size, paged.
Result<Reply> HandleAuditCheckpoints(RequestContext& context);

// POST sys/audit/prune: archives and deletes records older than the retention age.
Result<Reply> HandleAuditPrune(RequestContext& context);

}  // namespace kw::api
