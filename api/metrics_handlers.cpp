#include "api/metrics_handlers.hpp"

#include <sstream>

#include "vault/lease/lease_manager.hpp"

namespace kw::api {
namespace {

struct Metric {
  std::string_view name;  // Prometheus name; the JSON name replaces '_' by '.'
  std::string_view help;
  bool counter;
  std::uint64_t value;
};

std::vector<Metric> LeaseMetrics(const vault::lease::LeaseStats& stats) {
  return {
      {"keyward_leases_active", "Stored leases that are not being revoked.", false,
       stats.active},
      {"keyward_leases_revoking", "Leases whose revocation is queued or being retried.", false,
       stats.revoking},
      {"keyward_lease_prefix_jobs", "Prefix revocation jobs still running.", false,
       stats.prefix_jobs},
      {"keyward_lease_revocations_total", "Credentials revoked since start-up.", true,
       stats.revocations},
      {"keyward_lease_revocation_failures_total",
       "Failed credential revocation attempts since start-up.", true, stats.revocation_failures},
      {"keyward_lease_expirations_total", "Leases found expired since start-up.", true,
       stats.expirations},
  };
}

std::vector<Metric> RateLimitMetrics(const RateLimitStats& stats) {
  return {
      {"keyward_rate_limit_address_rejections_total",
       "Requests refused by the per-address rate limit since start-up.", true,
       stats.address_rejections},
      {"keyward_rate_limit_accessor_rejections_total",
       "Requests refused by the per-accessor rate limit since start-up.", true,
       stats.accessor_rejections},
      {"keyward_rate_limit_login_rejections_total",
       "Logins refused by the per-address login rate limit since start-up.", true,
       stats.login_rejections},
      {"keyward_approle_lockouts_total",
       "AppRole lockouts of a role ID and client address started since start-up.", true,
       stats.lockouts},
      {"keyward_approle_lockout_rejections_total",
       "AppRole logins refused during a lockout since start-up.", true,
       stats.lockout_rejections},
  };
}

std::string JsonName(std::string_view name) {
  std::string dotted(name);
  for (char& c : dotted) {
    if (c == '_') c = '.';
  }
  return dotted;
}

std::string PrometheusText(const std::vector<Metric>& metrics) {
  std::ostringstream out;
  for (const Metric& metric : metrics) {
    out << "# HELP " << metric.name << ' ' << metric.help << '\n'
        << "# TYPE " << metric.name << ' ' << (metric.counter ? "counter" : "gauge") << '\n'
        << metric.name << ' ' << metric.value << '\n';
  }
  return out.str();
}

// The shape of Vault's JSON metrics (go-metrics' in-memory sink): gauges with Name, Value and
// Labels; counters with Name, Count and the summary fields.
nlohmann::json JsonMetrics(const RequestContext& c, const std::vector<Metric>& metrics) {
  nlohmann::json gauges = nlohmann::json::array();
  nlohmann::json counters = nlohmann::json::array();
  for (const Metric& metric : metrics) {
    const double value = static_cast<double>(metric.value);
    if (metric.counter) {
      counters.push_back({{"Name", JsonName(metric.name)},
                          {"Count", metric.value},
                          {"Sum", value},
                          {"Min", value},
                          {"Max", value},
                          {"Mean", value},
                          {"Rate", 0},
                          {"Stddev", 0},
                          {"Labels", nlohmann::json::object()}});
    } else {
      gauges.push_back(
          {{"Name", JsonName(metric.name)}, {"Value", value}, {"Labels", nlohmann::json::object()}});
    }
  }
  return {{"Timestamp", FormatRfc3339(c.core.clock().Now())},
          {"Gauges", std::move(gauges)},
          {"Counters", std::move(counters)},
          {"Points", nlohmann::json::array()},
          {"Samples", nlohmann::json::array()}};
}

}  // namespace

Result<Reply> HandleMetrics(RequestContext& c) {
  if (c.operation != "read") return MethodNotAllowed(c);
  if (c.vault->leases == nullptr) return Unavailable("the lease manager is not running");
  KW_ASSIGN_OR_RETURN(auto stats, c.vault->leases->GetStats());
  std::vector<Metric> metrics = LeaseMetrics(stats);
  if (c.limits) {
    for (const Metric& metric : RateLimitMetrics(c.limits->Stats())) metrics.push_back(metric);
  }

  const auto format = c.Query("format");
  if (format && *format == "prometheus") {
    Reply reply(200, nullptr);
    reply.text = PrometheusText(metrics);
    reply.headers.emplace_back("Content-Type", "text/plain; version=0.0.4");
    return reply;
  }
  if (format && !format->empty()) {
    return InvalidArgument("invalid value for query parameter \"format\": use prometheus, or "
                           "leave it out for JSON");
  }
  return Reply{200, JsonMetrics(c, metrics)};
}

}  // namespace kw::api
