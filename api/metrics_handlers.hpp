#pragma once

#include "api/request_context.hpp"

namespace kw::api {

// Serves GET sys/metrics: lease gauges and counters as JSON in the shape of Vault's metrics
// endpoint, or in the Prometheus text format (version 0.0.4) with ?format=prometheus.
Result<Reply> HandleMetrics(RequestContext& context);

}  // namespace kw::api
