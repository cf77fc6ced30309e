#include "api/lease_handlers.hpp"

#include <chrono>

#include "api/json_fields.hpp"
#include "vault/lease/lease_manager.hpp"

namespace kw::api {
namespace {

using vault::lease::Lease;
using vault::lease::LeaseManager;

constexpr std::string_view kLeasesPrefix = "sys/leases/";
constexpr std::string_view kSysPrefix = "sys/";
// A synchronous revoke-prefix revokes at most this many leases inside the request, with one
// engine call each and one commit. A larger prefix goes to the background job and gets 202.
constexpr std::size_t kMaxSyncPrefixLeases = vault::lease::kWorkBatchSize;

bool IsWrite(const RequestContext& c) { return c.method == "POST" || c.method == "PUT"; }

std::string TimeText(std::int64_t seconds) {
  return FormatRfc3339(TimePoint(std::chrono::seconds(seconds)));
}

std::int64_t NowSeconds(const RequestContext& c) {
  return std::chrono::duration_cast<std::chrono::seconds>(
             c.core.clock().Now().time_since_epoch())
      .count();
}

const nlohmann::json& Fields(const RequestContext& c) {
  static const nlohmann::json kEmpty = nlohmann::json::object();
  return c.body.is_object() ? c.body : kEmpty;
}

// Returns the lease id from the body's lease_id, else from the path (`from_path`), as Vault
// reads lease_id before url_lease_id.
Result<std::string> LeaseIdFrom(const RequestContext& c, std::string_view from_path) {
  KW_ASSIGN_OR_RETURN(auto field, OptionalString(Fields(c), "lease_id"));
  if (field && !field->empty()) return *field;
  if (!from_path.empty()) return std::string(from_path);
  return InvalidArgument("missing lease_id: name the lease in the body as {\"lease_id\": ...}");
}

// Maps not_found to Vault's 400 "invalid lease".
tl::unexpected<Error> InvalidLeaseFor(const Error& error) {
  if (error.code() == Code::kNotFound) return InvalidArgument("invalid lease");
  return tl::unexpected(error);
}

// Queues work for the worker and wakes it once the request has committed.
void WakeAfterCommit(RequestContext& c) {
  c.after_commit = [state = c.vault] { state->leases->Wake(); };
}

Reply Accepted(const RequestContext& c, std::string warning) {
  nlohmann::json body = Envelope(c, nullptr);
  body["warnings"] = nlohmann::json::array({std::move(warning)});
  return Reply{202, std::move(body)};
}

nlohmann::json LookupData(const Lease& lease, std::int64_t now) {
  nlohmann::json data = {
      {"id", lease.id},
      {"issue_time", TimeText(lease.issue_time)},
      {"expire_time", TimeText(lease.expire_time)},
      {"renewable", lease.renewable && !lease.revoking},
      {"ttl", lease.revoking ? 0 : std::max<std::int64_t>(0, lease.expire_time - now)}};
  // Vault's documentation names the field last_renewal_time; its server sends last_renewal.
  const nlohmann::json renewal =
      lease.last_renewal > 0 ? nlohmann::json(TimeText(lease.last_renewal)) : nlohmann::json();
  data["last_renewal"] = renewal;
  data["last_renewal_time"] = renewal;
  if (lease.revoking) {
    data["revoking"] = true;
    data["revocation_attempts"] = lease.attempts;
    data["last_error"] = lease.last_error;
    data["next_attempt_time"] = TimeText(lease.next_attempt);
  }
  return data;
}

Result<Reply> Lookup(RequestContext& c, LeaseManager& leases, std::string_view argument) {
  if (c.operation == "list") {
    KW_ASSIGN_OR_RETURN(auto keys, leases.List(argument));
    if (keys.empty()) return ErrorReply(404, {});
    return Reply{200, Envelope(c, {{"keys", std::move(keys)}})};
  }
  if (!IsWrite(c)) return MethodNotAllowed(c);
  KW_ASSIGN_OR_RETURN(std::string id, LeaseIdFrom(c, argument));
  auto lease = leases.Lookup(id);
  if (!lease) return InvalidLeaseFor(lease.error());
  return Reply{200, Envelope(c, LookupData(*lease, NowSeconds(c)))};
}

Result<Reply> Renew(RequestContext& c, LeaseManager& leases, std::string_view argument) {
  if (!IsWrite(c)) return MethodNotAllowed(c);
  KW_ASSIGN_OR_RETURN(std::string id, LeaseIdFrom(c, argument));
  KW_ASSIGN_OR_RETURN(auto increment, OptionalDuration(Fields(c), "increment"));
  auto renewed = leases.Renew(id, increment ? increment->count() : 0, c.batch);
  if (!renewed) return InvalidLeaseFor(renewed.error());
  nlohmann::json body = Envelope(c, nullptr);
  body["lease_id"] = renewed->id;
  body["renewable"] = renewed->renewable;
  body["lease_duration"] = std::max<std::int64_t>(0, renewed->expire_time - NowSeconds(c));
  return Reply{200, std::move(body)};
}

Result<Reply> Revoke(RequestContext& c, LeaseManager& leases, std::string_view argument) {
  if (!IsWrite(c)) return MethodNotAllowed(c);
  KW_ASSIGN_OR_RETURN(std::string id, LeaseIdFrom(c, argument));
  KW_ASSIGN_OR_RETURN(auto sync, OptionalBool(Fields(c), "sync"));
  if (sync.value_or(true)) {
    KW_RETURN_IF_ERROR(leases.RevokeSync(id, c.batch));
    return Reply{204, nullptr};
  }
  KW_RETURN_IF_ERROR(leases.StageRevokeQueued(id, c.batch));
  WakeAfterCommit(c);
  return Accepted(c, "lease revocation queued; sys/leases/lookup shows its progress");
}

Result<Reply> RevokePrefix(RequestContext& c, LeaseManager& leases, std::string_view prefix,
                           bool force) {
  if (!IsWrite(c)) return MethodNotAllowed(c);
  KW_ASSIGN_OR_RETURN(auto sync, OptionalBool(Fields(c), "sync"));
  std::string background = "revoke-prefix started in the background";
  if (!force && sync.value_or(true)) {
    // As in Vault, sync (the default) revokes every credential before the 204, which clients
    // such as node-vault rely on: they treat 202 as a failure.
    KW_ASSIGN_OR_RETURN(auto ids, leases.IdsUnderPrefix(prefix, kMaxSyncPrefixLeases));
    if (ids.size() <= kMaxSyncPrefixLeases) {
      // The first failure returns 503 and drops the removals staged so far. A retry revokes
      // those credentials again, which the engines accept.
      for (const std::string& id : ids) KW_RETURN_IF_ERROR(leases.RevokeSync(id, c.batch));
      return Reply{204, nullptr};
    }
    background = "more than " + std::to_string(kMaxSyncPrefixLeases) +
                 " leases under the prefix: revoke-prefix started in the background";
  }
  KW_RETURN_IF_ERROR(leases.StagePrefixJob(prefix, force, c.batch));
  WakeAfterCommit(c);
  return Accepted(c, force ? "revoke-force started in the background: leases under the prefix "
                             "are removed even when their credentials cannot be revoked"
                           : background);
}

Result<Reply> Tidy(RequestContext& c, LeaseManager& leases) {
  if (!IsWrite(c)) return MethodNotAllowed(c);
  KW_ASSIGN_OR_RETURN(std::size_t removed, leases.Tidy(c.batch));
  return Accepted(c, "tidy removed " + std::to_string(removed) +
                         " index entries that pointed to no lease, and recounted the leases");
}

}  // namespace

Result<Reply> HandleLeases(RequestContext& c) {
  LeaseManager* leases = c.vault->leases.get();
  if (leases == nullptr) return Unavailable("the lease manager is not running");
  const std::string_view path = c.path;
  const std::string_view rest = path.starts_with(kLeasesPrefix) ? path.substr(kLeasesPrefix.size())
                                                                : path.substr(kSysPrefix.size());
  const std::size_t slash = rest.find('/');
  const std::string_view action = rest.substr(0, slash);
  const std::string_view argument =
      slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  const bool current_api = path.starts_with(kLeasesPrefix);

  if (action == "lookup" && current_api) return Lookup(c, *leases, argument);
  if (action == "renew") return Renew(c, *leases, argument);
  if (action == "revoke") return Revoke(c, *leases, argument);
  if (action == "revoke-prefix") return RevokePrefix(c, *leases, argument, /*force=*/false);
  if (action == "revoke-force") return RevokePrefix(c, *leases, argument, /*force=*/true);
  if (action == "tidy" && current_api && argument.empty()) return Tidy(c, *leases);
  return ErrorReply(404, {"no handler for route \"" + c.path + "\""});
}

}  // namespace kw::api
