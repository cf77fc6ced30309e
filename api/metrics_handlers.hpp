#pragma once

#include <cstdint>
#include <string_view>

#include "api/request_context.hpp"

namespace kw::api {

// Serves GET sys/metrics: every family of the process-wide metrics registry (requests, HSM
// operations, storage commits, audit appends) and gauges read at scrape time (leases and
// tokens by mount and role, the revocation queue, rate limits, seal state, start time). JSON
// in the shape of Vault's metrics endpoint, or the Prometheus text format (version 0.0.4)
// with ?format=prometheus.
Result<Reply> HandleMetrics(RequestContext& context);

// The route families that request metrics are labelled with, in label order.
enum class RouteFamily : std::size_t {
  kKv,
  kSys,
  kAuthToken,
  kAuthAppRole,
  kAuthCert,
  kDatabase,
  kPki,
  kLeases,
  kAudit,
  kPolicy,
  kOther,
  kCount,
};

// Returns the route family of a raw request target (path and query, still percent-encoded),
// by its path prefix below /v1/. A target that is not plainly one of them, an encoded one
// included, is kOther: no part of it becomes a label value. Allocates nothing.
RouteFamily RouteFamilyOf(std::string_view target);

// Records one request that Router::Handle served: a count by route family and status code,
// and its latency by route family and status class. Allocates nothing and takes no lock.
void ObserveRequest(RouteFamily family, int status, std::uint64_t nanos);

}  // namespace kw::api
