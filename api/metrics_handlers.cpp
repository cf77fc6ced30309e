#include "api/metrics_handlers.hpp"

#include <array>
#include <chrono>
#include <string>
#include <vector>

#include "base/metrics.hpp"
#include "storage/sqlite/sqlite_storage.hpp"
#include "vault/auth/token_counts.hpp"
#include "vault/lease/lease_manager.hpp"

namespace kw::api {
namespace {

using metrics::FamilySnapshot;
using metrics::Series;
using metrics::Type;

constexpr std::size_t kFamilies = static_cast<std::size_t>(RouteFamily::kCount);
constexpr std::array<std::string_view, kFamilies> kFamilyNames = {
    "kv",  "sys",    "auth_token", "auth_approle", "auth_cert", "database",
    "pki", "leases", "audit",      "policy",       "other"};

// Status codes with a label value of their own. Any other code counts under its class.
constexpr std::array<int, 12> kCodes = {200, 204, 400, 403, 404, 405,
                                        409, 412, 413, 429, 500, 503};
constexpr std::array<std::string_view, 4> kClasses = {"2xx", "3xx", "4xx", "5xx"};

std::vector<std::string> Strings(std::span<const std::string_view> values) {
  return {values.begin(), values.end()};
}

metrics::LabelGrid CodeGrid() {
  std::vector<std::string> codes;
  for (const int code : kCodes) codes.push_back(std::to_string(code));
  for (const std::string_view name : kClasses) codes.emplace_back(name);
  return {{{"family", Strings(kFamilyNames)}, {"code", std::move(codes)}}};
}

metrics::LabelGrid ClassGrid() {
  return {{{"family", Strings(kFamilyNames)}, {"code_class", Strings(kClasses)}}};
}

struct RequestMetrics {
  metrics::CounterFamily requests{
      metrics::Registry::Global(), "keyward_http_requests_total",
      "Requests served by the router, by route family and status code (code is a class such "
      "as 4xx for codes without a value of their own).",
      CodeGrid(), metrics::ZeroSeries::kHide};
  metrics::HistogramFamily duration{
      metrics::Registry::Global(), "keyward_http_request_duration_seconds",
      "Time from the router receiving a request until its response was ready (after its "
      "audit record committed, for requests that get one), by route family and status class.",
      metrics::kLatencyBoundsNanos, metrics::kNanosPerSecond, ClassGrid(),
      metrics::ZeroSeries::kHide};
};

RequestMetrics& Requests() {
  static RequestMetrics metrics;
  return metrics;
}

// Returns whether `path` is `name` or lies below it ("secret" and "secret/x", not "secrets").
bool IsUnder(std::string_view path, std::string_view name) {
  return path.starts_with(name) && (path.size() == name.size() || path[name.size()] == '/');
}

std::size_t ClassIndex(int status) {
  if (status < 300) return 0;
  if (status >= 500) return 3;
  return static_cast<std::size_t>(status / 100 - 2);
}

std::size_t CodeIndex(int status) {
  for (std::size_t i = 0; i < kCodes.size(); ++i) {
    if (kCodes[i] == status) return i;
  }
  return kCodes.size() + ClassIndex(status);
}

FamilySnapshot Scalar(std::string name, std::string help, Type type, double value) {
  Series series;
  series.value = value;
  return {std::move(name), std::move(help), type, {std::move(series)}};
}

void AddLeaseFamilies(const vault::lease::LeaseStats& stats,
                      std::vector<FamilySnapshot>& families) {
  const auto add = [&](const char* name, const char* help, Type type, std::uint64_t value) {
    families.push_back(Scalar(name, help, type, static_cast<double>(value)));
  };
  add("keyward_leases_active", "Stored leases that are not being revoked.", Type::kGauge,
      stats.active);
  add("keyward_leases_revoking",
      "Depth of the revocation queue: leases whose revocation is queued or being retried.",
      Type::kGauge, stats.revoking);
  add("keyward_lease_prefix_jobs", "Prefix revocation jobs still running.", Type::kGauge,
      stats.prefix_jobs);
  add("keyward_lease_revocations_total", "Credentials revoked since start-up.", Type::kCounter,
      stats.revocations);
  add("keyward_lease_revocation_failures_total",
      "Failed credential revocation attempts since start-up; each one is retried later with "
      "backoff.",
      Type::kCounter, stats.revocation_failures);
  add("keyward_lease_expirations_total", "Leases found expired since start-up.", Type::kCounter,
      stats.expirations);
}

void AddRateLimitFamilies(const RateLimitStats& stats, std::vector<FamilySnapshot>& families) {
  const auto add = [&](const char* name, const char* help, std::uint64_t value) {
    families.push_back(Scalar(name, help, Type::kCounter, static_cast<double>(value)));
  };
  add("keyward_rate_limit_address_rejections_total",
      "Requests refused by the per-address rate limit since start-up.", stats.address_rejections);
  add("keyward_rate_limit_accessor_rejections_total",
      "Requests refused by the per-accessor rate limit since start-up.",
      stats.accessor_rejections);
  add("keyward_rate_limit_login_rejections_total",
      "Logins refused by the per-address login rate limit since start-up.",
      stats.login_rejections);
  add("keyward_approle_lockouts_total",
      "AppRole lockouts of a role ID and client address started since start-up.", stats.lockouts);
  add("keyward_approle_lockout_rejections_total",
      "AppRole logins refused during a lockout since start-up.", stats.lockout_rejections);
}

// Adds the stored leases and the live tokens by mount and role. Both come from counters kept
// per role, so the scrape reads one storage row per role, not one per lease or token.
Status AddRoleFamilies(RequestContext& c, std::vector<FamilySnapshot>& families) {
  KW_ASSIGN_OR_RETURN(auto lease_counts, c.vault->leases->CountByRole());
  FamilySnapshot leases{"keyward_leases",
                        "Stored leases by secrets engine mount and role, revoking ones "
                        "included.",
                        Type::kGauge,
                        {}};
  for (const vault::lease::RoleLeaseCount& count : lease_counts) {
    Series series;
    series.labels = {{"mount", count.mount}, {"role", count.role}};
    series.value = static_cast<double>(count.count);
    leases.series.push_back(std::move(series));
  }
  families.push_back(std::move(leases));

  KW_ASSIGN_OR_RETURN(auto token_counts, vault::auth::ReadTokenCounts(c.core.storage()));
  FamilySnapshot tokens{"keyward_tokens",
                        "Live tokens by the auth mount that created them (token, approle, "
                        "cert) and their role; role is empty for tokens made without one.",
                        Type::kGauge,
                        {}};
  for (const vault::auth::TokenCount& count : token_counts) {
    Series series;
    series.labels = {{"mount", count.mount}, {"role", count.role}};
    series.value = static_cast<double>(count.count);
    tokens.series.push_back(std::move(series));
  }
  families.push_back(std::move(tokens));
  return OkStatus();
}

void AddServerFamilies(RequestContext& c, std::vector<FamilySnapshot>& families) {
  families.push_back(Scalar("keyward_unsealed",
                            "1 while the vault is unsealed, else 0. A sealed server answers "
                            "this endpoint with 503, so a scrape only sees 0 while it seals.",
                            Type::kGauge, c.core.sealed() ? 0 : 1));
  const double start = metrics::ProcessStartSeconds();
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  families.push_back(Scalar("keyward_start_time_seconds",
                            "Start time of the server process in Unix seconds.", Type::kGauge,
                            start));
  families.push_back(Scalar("keyward_uptime_seconds", "Seconds since the server process started.",
                            Type::kGauge, now - start));

  const auto* sqlite = dynamic_cast<const storage::sqlite::SqliteStorage*>(&c.core.storage());
  if (sqlite == nullptr) return;
  const storage::sqlite::CommitStats stats = sqlite->Stats();
  families.push_back(Scalar("keyward_storage_queued_batches",
                            "Write batches waiting for the writer thread.", Type::kGauge,
                            static_cast<double>(stats.queued)));
  families.push_back(Scalar("keyward_storage_writes_disabled",
                            "1 after a commit found the database file damaged: writes are "
                            "refused until it is restored and the server restarted.",
                            Type::kGauge, stats.writes_disabled ? 1 : 0));
}

}  // namespace

RouteFamily RouteFamilyOf(std::string_view target) {
  std::string_view path = target.substr(0, target.find('?'));
  if (path == "/.well-known/jwks.json") return RouteFamily::kPki;
  constexpr std::string_view kVersion = "/v1/";
  if (!path.starts_with(kVersion)) return RouteFamily::kOther;
  path.remove_prefix(kVersion.size());

  if (IsUnder(path, "secret")) return RouteFamily::kKv;
  if (path.starts_with("auth/token/")) return RouteFamily::kAuthToken;
  if (path.starts_with("auth/approle/")) return RouteFamily::kAuthAppRole;
  if (path.starts_with("auth/cert/")) return RouteFamily::kAuthCert;
  if (IsUnder(path, "database")) return RouteFamily::kDatabase;
  if (IsUnder(path, "pki")) return RouteFamily::kPki;
  if (IsUnder(path, "sys/policy") || IsUnder(path, "sys/policies") ||
      path.starts_with("sys/capabilities")) {
    return RouteFamily::kPolicy;
  }
  // sys/revoke also covers revoke-prefix and revoke-force, as the router routes them.
  if (IsUnder(path, "sys/leases") || path.starts_with("sys/revoke") ||
      IsUnder(path, "sys/renew")) {
    return RouteFamily::kLeases;
  }
  if (IsUnder(path, "sys/audit")) return RouteFamily::kAudit;
  if (path.starts_with("sys/")) return RouteFamily::kSys;
  return RouteFamily::kOther;
}

void ObserveRequest(RouteFamily family, int status, std::uint64_t nanos) {
  RequestMetrics& metrics = Requests();
  const auto f = static_cast<std::size_t>(family);
  metrics.requests.At({f, CodeIndex(status)}).Increment();
  metrics.duration.At({f, ClassIndex(status)}).Observe(nanos);
}

Result<Reply> HandleMetrics(RequestContext& c) {
  if (c.operation != "read") return MethodNotAllowed(c);
  const auto format = c.Query("format");
  const bool prometheus = format && *format == "prometheus";
  if (format && !format->empty() && !prometheus) {
    return InvalidArgument("invalid value for query parameter \"format\": use prometheus, or "
                           "leave it out for JSON");
  }
  if (c.vault->leases == nullptr) return Unavailable("the lease manager is not running");

  (void)Requests();  // registers the request families, which the first request would do
  std::vector<FamilySnapshot> families;
  AddServerFamilies(c, families);
  KW_ASSIGN_OR_RETURN(auto lease_stats, c.vault->leases->GetStats());
  AddLeaseFamilies(lease_stats, families);
  KW_RETURN_IF_ERROR(AddRoleFamilies(c, families));
  if (c.limits) AddRateLimitFamilies(c.limits->Stats(), families);
  for (FamilySnapshot& family : metrics::Registry::Global().Snapshot()) {
    families.push_back(std::move(family));
  }

  if (prometheus) {
    Reply reply(200, nullptr);
    reply.text = metrics::FormatPrometheus(families);
    reply.headers.emplace_back("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    return reply;
  }
  return Reply{200, metrics::FormatVaultJson(families, FormatRfc3339(c.core.clock().Now()))};
}

}  // namespace kw::api
