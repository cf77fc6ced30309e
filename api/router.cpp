#include "api/router.hpp"

#include <shared_mutex>

#include "api/access_check.hpp"
#include "api/json_fields.hpp"
#include "api/kv_handlers.hpp"
#include "api/request_context.hpp"
#include "api/request_path.hpp"
#include "api/sys_handlers.hpp"
#include "api/token_handlers.hpp"
#include "api/approle_handlers.hpp"
#include "api/cert_handlers.hpp"
#include "api/policy_handlers.hpp"
#include "api/database_handlers.hpp"
#include "api/lease_handlers.hpp"
#include "api/metrics_handlers.hpp"
#include "api/pki_handlers.hpp"
#include "api/audit_handlers.hpp"
// [wiring: includes]
#include "base/bytes.hpp"
#include "base/log.hpp"
#include "base/metrics.hpp"
#include "vault/auth/x509_svid.hpp"

namespace kw::api {
namespace {

// A commit aborted by a concurrent writer to the same secret is rerun this many times.
constexpr int kMaxAttempts = 8;

HttpResponse ToHttp(const Reply& reply) {
  HttpResponse response;
  response.status = reply.status;
  response.headers.emplace_back("Cache-Control", "no-store");
  for (const auto& header : reply.headers) response.headers.push_back(header);
  if (!reply.text.empty()) {
    response.body = reply.text;
  } else if (!reply.body.is_null()) {
    response.headers.emplace_back("Content-Type", "application/json");
    // 'replace' keeps a response printable even if stored data contains invalid UTF-8.
    response.body = reply.body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    response.body.push_back('\n');
  }
  return response;
}

std::string OperationFor(const std::string& method, const ParsedTarget& target) {
  if (method == "LIST") return "list";
  if (method == "GET" || method == "HEAD") {
    for (const auto& [key, value] : target.query) {
      if (key != "list") continue;
      // The first value counts, as Go's url.Values.Get reads it, and the forms Go's
      // strconv.ParseBool accepts as true, as Vault reads them.
      const bool list = value == "1" || value == "t" || value == "T" || value == "true" ||
                        value == "TRUE" || value == "True";
      return list ? "list" : "read";
    }
    return "read";
  }
  if (method == "POST" || method == "PUT") return "update";
  if (method == "PATCH") return "patch";
  if (method == "DELETE") return "delete";
  return "unknown";
}

std::string_view TokenFrom(const HttpRequest& request) {
  if (auto token = request.Header("x-vault-token")) return *token;
  if (auto authorization = request.Header("authorization")) {
    constexpr std::string_view kBearer = "Bearer ";
    if (authorization->starts_with(kBearer)) return authorization->substr(kBearer.size());
  }
  return {};
}

Result<Reply> Dispatch(RequestContext& c) {
  if (c.path == "secret" || c.path.starts_with("secret/")) return HandleKv(c);
  if (c.path.starts_with("auth/token/")) return HandleToken(c, TokenFrom(c.http));
  if (c.path.starts_with("auth/approle/")) return HandleAppRole(c);
  if (c.path.starts_with("auth/cert/")) return HandleCert(c);
  if (c.path == "sys/policy" || c.path.starts_with("sys/policy/") ||
      c.path.starts_with("sys/policies/")) return HandlePolicies(c);
  if (c.path.starts_with("sys/capabilities")) return HandleCapabilities(c);
  if (c.path.starts_with("sys/leases/") || c.path == "sys/revoke" ||
      c.path.starts_with("sys/revoke/") || c.path.starts_with("sys/revoke-prefix/") ||
      c.path.starts_with("sys/revoke-force/") || c.path == "sys/renew" ||
      c.path.starts_with("sys/renew/")) return HandleLeases(c);
  if (c.path == "sys/metrics") return HandleMetrics(c);
  if (c.path.starts_with("sys/audit/") && c.path != "sys/audit/verify") return HandleAuditLog(c);
  if (c.path.starts_with("sys/")) return HandleSys(c);
  if (c.path == "database" || c.path.starts_with("database/")) return HandleDatabase(c);
  if (c.path == "pki" || c.path.starts_with("pki/")) return HandlePki(c);
  // [wiring: routes] one line per handler family.
  return ErrorReply(404, {"no handler for route \"" + c.path + "\""});
}

// Runs the handler; any error becomes its reply and drops the handler's writes.
Reply RunHandler(RequestContext& c) {
  Result<Reply> reply = Dispatch(c);
  if (reply && reply->status < 400) return std::move(*reply);
  c.batch = storage::WriteBatch();
  c.after_commit = nullptr;
  if (!reply) return ReplyForError(reply.error());
  return std::move(*reply);
}

// Returns the object a path writes: the secret's path for every KV action (data, metadata,
// delete, undelete and destroy all change the same metadata record), one object for all of
// auth/token/, else the path itself.
std::string_view WrittenObject(std::string_view path) {
  constexpr std::string_view kKvMount = "secret/";
  if (!path.starts_with(kKvMount)) return path;
  const std::string_view rest = path.substr(kKvMount.size());
  const std::size_t slash = rest.find('/');
  return slash == std::string_view::npos ? rest : rest.substr(slash + 1);
}

// Logs a 5xx reply: the operator needs to see decrypt and storage failures, which the
// client only sees as a message.
void LogServerError(const RequestContext& c, const Reply& reply) {
  nlohmann::json errors = reply.body.is_object() ? reply.body.value("errors", nlohmann::json())
                                                 : nlohmann::json();
  log::Error("request failed", {{log::kRequestId, c.request_id},
                                {log::kAccessor, c.identity.accessor},
                                {log::kPath, c.path},
                                {"status", reply.status},
                                {log::kError, errors}});
}

// Returns the SPIFFE ID of the client's verified TLS certificate; empty without one or when
// the certificate contains no valid SPIFFE ID.
std::string ClientSpiffeId(const HttpRequest& request) {
  if (!request.client_certificate_der) return {};
  auto certificate = vault::auth::ParseDerCertificate(*request.client_certificate_der);
  if (!certificate) return {};
  auto id = vault::auth::CheckX509SvidLeaf(certificate->get());
  return id ? id->str() : std::string();
}

// Returns the error messages of `reply` joined by "; "; empty when it carries none.
std::string ErrorText(const Reply& reply) {
  if (!reply.body.is_object()) return {};
  const auto errors = reply.body.find("errors");
  if (errors == reply.body.end() || !errors->is_array()) return {};
  std::string text;
  for (const auto& message : *errors) {
    if (!message.is_string()) continue;
    if (!text.empty()) text += "; ";
    text += message.get<std::string>();
  }
  return text;
}

// Returns the 503 for a failed required audit sink. It names the sinks but not their errors,
// which can name files and go to any caller; the server log has them.
Reply SinkFailureReply(const vault::audit::SinkSet& sinks) {
  std::vector<std::string> failed;
  for (const vault::audit::SinkStatus& sink : sinks.Health()) {
    if (!sink.healthy && sink.required) failed.push_back("\"" + sink.name + "\"");
  }
  std::string subject = "a required audit sink";
  if (failed.size() == 1) subject = "audit sink " + failed.front();
  if (failed.size() > 1) {
    subject = "audit sinks " + failed.front();
    for (std::size_t i = 1; i < failed.size(); ++i) subject += ", " + failed[i];
  }
  const std::string until = failed.size() > 1 ? "they recover" : "it recovers";
  return ErrorReply(503, {subject + " failed; requests are refused until " + until +
                          " (the server log has the cause)"});
}

// Returns the 429 for a request refused by a rate limit or the login lockout. `reason` names
// the limited key (an address or accessor, never a token).
HttpResponse TooManyRequests(const std::string& reason, std::chrono::seconds retry_after) {
  const std::string seconds = std::to_string(retry_after.count());
  Reply reply = ErrorReply(429, {reason + "; retry in " + seconds + " s"});
  reply.headers.emplace_back("Retry-After", seconds);
  return ToHttp(reply);
}

// Checks the limits keyed by client address: every request, and logins also against their own
// limit. Each limited key is logged once per run of refusals.
std::optional<HttpResponse> CheckAddressLimits(RateLimits& limits, const std::string& address,
                                               bool login) {
  const RateDecision general = limits.TakeAddress(address);
  if (!general.allowed) {
    if (general.first_rejection) {
      log::Warn("rate limit exceeded", {{"limit", "per_address"}, {log::kAddress, address}});
    }
    return TooManyRequests("rate limit exceeded: too many requests from client address " +
                               address,
                           general.retry_after);
  }
  if (!login) return std::nullopt;
  const RateDecision logins = limits.TakeLogin(address);
  if (!logins.allowed) {
    if (logins.first_rejection) {
      log::Warn("rate limit exceeded",
                {{"limit", "login_per_address"}, {log::kAddress, address}});
    }
    return TooManyRequests("rate limit exceeded: too many login requests from client address " +
                               address,
                           logins.retry_after);
  }
  return std::nullopt;
}

std::optional<HttpResponse> CheckAccessorLimit(RateLimits& limits, const std::string& accessor) {
  const RateDecision decision = limits.TakeAccessor(accessor);
  if (decision.allowed) return std::nullopt;
  if (decision.first_rejection) {
    log::Warn("rate limit exceeded", {{"limit", "per_accessor"}, {log::kAccessor, accessor}});
  }
  return TooManyRequests("rate limit exceeded: too many requests with token accessor " +
                             accessor,
                         decision.retry_after);
}

// Rejects an AppRole login whose role_id is locked out from this address. It reads nothing
// from storage, so the response is the same whether the role_id exists or not.
// One AppRole login attempt admitted by the lockout. Its outcome is recorded once, after the
// request's commit succeeds, so a retried commit counts once. An attempt that ends any other
// way is abandoned and frees its place.
class AppRoleAttempt {
 public:
  AppRoleAttempt(RateLimits& limits, std::string role_id, std::string address)
      : limits_(limits), role_id_(std::move(role_id)), address_(std::move(address)) {}
  AppRoleAttempt(const AppRoleAttempt&) = delete;
  AppRoleAttempt& operator=(const AppRoleAttempt&) = delete;
  ~AppRoleAttempt() {
    if (!finished_) limits_.AppRoleAbandoned(role_id_, address_);
  }

  // A 2xx is a successful login. A 400 is a rejected role_id, secret_id or source address,
  // for an unknown role_id as for a known one (see AppRole::Login). Anything else, such as a
  // storage or HSM failure, counts neither way.
  // Counts the login as successful once its credentials matched, before the commit, so that
  // its place under the lockout's bound is free for the next attempt.
  void Verified() {
    if (finished_) return;
    finished_ = true;
    limits_.AppRoleSucceeded(role_id_, address_);
  }

  void Finish(int status) {
    if (finished_) return;
    finished_ = true;
    if (status >= 200 && status < 300) {
      limits_.AppRoleSucceeded(role_id_, address_);
    } else if (status == 400) {
      if (limits_.AppRoleFailed(role_id_, address_)) {
        log::Warn("approle login locked out after repeated failures",
                  {{log::kAddress, address_}, {log::kPath, "auth/approle/login"}});
      }
    } else {
      limits_.AppRoleAbandoned(role_id_, address_);
    }
  }

 private:
  RateLimits& limits_;
  std::string role_id_;
  std::string address_;
  bool finished_ = false;
};

// Admits an AppRole login into `attempt`, or returns the 429 for a locked-out pair. A body
// without a string role_id is not counted: the handler rejects it before any lookup.
std::optional<HttpResponse> BeginAppRoleLogin(RateLimits& limits, const nlohmann::json& body,
                                              const std::string& address,
                                              std::optional<AppRoleAttempt>& attempt) {
  if (!limits.lockout_enabled() || !body.is_object()) return std::nullopt;
  const auto role_id = body.find("role_id");
  if (role_id == body.end() || !role_id->is_string()) return std::nullopt;
  const std::string& id = role_id->get_ref<const std::string&>();
  const auto locked = limits.AppRoleBegin(id, address);
  if (!locked) {
    attempt.emplace(limits, id, address);
    return std::nullopt;
  }
  return TooManyRequests("login locked out: too many failed logins for this role ID from "
                         "client address " + address,
                         *locked);
}

bool IsAuditVerify(const RequestContext& c) {
  return c.path == "sys/audit/verify" && c.operation == "read" && c.identity.root;
}

}  // namespace

std::optional<HttpResponse> Router::CheckHead(const HttpRequest& head) {
  const auto length = head.Header("content-length");
  const bool chunked = head.Header("transfer-encoding").has_value();
  const auto declared = length ? ParseNonNegative(*length) : std::optional<std::int64_t>(0);
  const bool large = chunked || !declared ||
                     static_cast<std::uint64_t>(*declared) > kMaxUnauthenticatedBody;
  if (!large) return std::nullopt;
  auto target = ParseTarget(head.target);
  // The endpoints that need no token (health, seal status, init, unseal) take a few bytes
  // at most: a large body there is refused before it is read, as it is from any anonymous
  // caller below.
  if (target && IsUnauthenticatedPath(target->path)) {
    return ToHttp(ErrorReply(413, {"request body too large for " + target->path +
                                   ": send at most " + std::to_string(kMaxUnauthenticatedBody) +
                                   " bytes, with Content-Length"}));
  }
  // Login bodies are small; a large one is refused like any anonymous large body.
  auto vault = core_.Acquire();
  // The same reply that Handle sends while the vault is sealed.
  if (!vault) return ToHttp(ErrorReply(503, {"Vault is sealed"}));
  if ((*vault)->tokens->Authenticate(TokenFrom(head), head.remote_address, nullptr)) {
    return std::nullopt;
  }
  return ToHttp(ErrorReply(403, {"permission denied"}));
}

Router::TokenTreeLock::TokenTreeLock() {
  pthread_rwlockattr_t attributes;
  pthread_rwlockattr_init(&attributes);
  pthread_rwlockattr_setkind_np(&attributes, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&lock_, &attributes);
  pthread_rwlockattr_destroy(&attributes);
}

Router::TokenTreeLock::~TokenTreeLock() { pthread_rwlock_destroy(&lock_); }

std::mutex& Router::WriteLockFor(std::string_view path) {
  return write_locks_[std::hash<std::string_view>{}(WrittenObject(path)) % write_locks_.size()];
}

HttpResponse Router::Handle(HttpRequest& request) {
  // Metrics: the family is taken from the target before Serve runs.
  const RouteFamily family = RouteFamilyOf(request.target);
  const auto started = std::chrono::steady_clock::now();
  HttpResponse response = Serve(request);
  ObserveRequest(family, response.status, metrics::NanosSince(started));
  return response;
}

HttpResponse Router::Serve(HttpRequest& request) {
  // The JWT-SVID keys at the well-known JWKS location, for verifiers that look there.
  constexpr std::string_view kWellKnownJwks = "/.well-known/jwks.json";
  const std::string_view raw_path = std::string_view(request.target).substr(
      0, std::min(request.target.find('?'), request.target.size()));
  auto target = ParseTarget(raw_path == kWellKnownJwks ? std::string("/v1/pki/jwks")
                                                       : request.target);
  if (target && IsUnauthenticatedPath(target->path)) {
    return ToHttp(HandleUnauthenticatedSys(core_, request, *target));
  }
  // The address limits run before any storage or HSM work. No request rejected by a limit
  // gets an audit record, so that a flood of them costs little and cannot fill the database.
  const bool login_path = target && IsLoginPath(target->path);
  if (auto refused = CheckAddressLimits(limits_, request.remote_address, login_path)) {
    return std::move(*refused);
  }
  auto vault = core_.Acquire();
  if (!vault) return ToHttp(ErrorReply(503, {"Vault is sealed"}));
  // While a required audit sink is failed, no handler runs; the refusal is still recorded in
  // the database.
  vault::audit::SinkSet* const sinks = core_.audit_sinks();
  const Status sinks_ready = sinks ? sinks->CheckRequired() : OkStatus();

  RequestContext c(request, core_, *vault);
  c.request_id = RandomUuid();
  c.method = request.method;
  if (target) {
    c.path = target->path;
    c.trailing_slash = target->trailing_slash;
    c.query = target->query;
    c.operation = OperationFor(c.method, *target);
  } else {
    c.path = Printable(request.target.substr(0, request.target.find('?')));
    c.operation = "unknown";
  }

  // Authenticate before parsing: a caller without a valid token gets 403 without the server
  // spending memory on its body, which the audit record then leaves out. Login endpoints
  // take no token: their body is the credential.
  // NOTE: the parsed body and reply trees keep secret values in ordinary heap memory, which
  // is not wiped. Only the raw request and response bodies are wiped.
  const bool login =
      target && (IsLoginPath(target->path) || IsPublicPkiPath(request.method, target->path));
  const std::string_view token = TokenFrom(request);
  // A token sent along with a login (some clients always send one) is ignored, as in Vault.
  Result<vault::auth::Identity> identity = vault::auth::Identity{};
  if (!login) identity = c.vault->tokens->Authenticate(token, request.remote_address, nullptr);
  if (identity) c.identity = *identity;
  if (identity && identity->entry) {
    if (auto refused = CheckAccessorLimit(limits_, identity->accessor)) return std::move(*refused);
  }
  Result<nlohmann::json> body = nlohmann::json(nullptr);
  if (identity) body = ParseBody(request.body);
  if (body) c.body = std::move(*body);
  std::optional<AppRoleAttempt> approle_attempt;
  if (body && c.path == "auth/approle/login" && c.operation == "update") {
    if (auto refused = BeginAppRoleLogin(limits_, c.body, request.remote_address,
                                         approle_attempt)) {
      return std::move(*refused);
    }
  }
  c.limits = &limits_;
  if (approle_attempt) c.login_verified = [&approle_attempt] { approle_attempt->Verified(); };
  // A token with limited uses pays one use per request, taken in the request's own batch.
  const bool counts_uses = identity && identity->entry && identity->entry->num_uses > 0;

  // Writers to one object take turns instead of losing their commits to each other's Expect
  // checks, which still guard whatever the turns do not cover.
  std::unique_lock<std::mutex> write_lock;
  std::shared_lock<TokenTreeLock> token_creation;
  std::unique_lock<TokenTreeLock> token_change;
  // Credential issue is a read that writes: requests for one role take turns, so that they
  // do not exhaust their retries on the role's lease counter.
  const bool issues_credential = c.path.starts_with("database/creds/");
  // SVID issuance writes only keys of its own (a new serial) and needs no turn.
  const bool issues_svid = c.path.starts_with("pki/issue/") || c.path.starts_with("pki/sign/") ||
                           c.path.starts_with("pki/jwt/");
  if (target && identity && !issues_svid &&
      ((c.operation != "read" && c.operation != "list") || issues_credential)) {
    if (c.path.starts_with("auth/token/create") && !counts_uses) {
      // create, create-orphan and create/:role add tokens and only read the parent, unless it
      // pays a use. They share the token tree. Revocations and other token writes change it.
      token_creation = std::shared_lock<TokenTreeLock>(token_tree_lock_);
    } else if (c.path.starts_with("auth/token/")) {
      token_change = std::unique_lock<TokenTreeLock>(token_tree_lock_);
    } else if (login_path) {
      // Logins make tokens of their own and take no turn. Two that spend the last uses of one
      // secret ID conflict on its record, and the one that loses is rerun below.
    } else {
      write_lock = std::unique_lock<std::mutex>(WriteLockFor(c.path));
    }
  }

  for (int attempt = 1;; ++attempt) {
    Reply reply;
    c.after_commit = nullptr;
    c.batch = storage::WriteBatch();
    if (counts_uses) {
      identity = c.vault->tokens->Authenticate(token, request.remote_address, &c.batch);
      if (identity) c.identity = *identity;
    }
    if (!identity) {
      reply = ReplyForError(identity.error());
    } else if (!sinks_ready) {
      reply = SinkFailureReply(*sinks);
    } else if (!target) {
      reply = ReplyForError(target.error());
    } else if (!body) {
      reply = ReplyForError(body.error());
    } else if (request.Header("x-vault-wrap-ttl")) {
      // A client that asks for a wrapped response must not get the secret in clear.
      reply = ErrorReply(400, {"response wrapping is not supported: send the request without "
                               "X-Vault-Wrap-TTL"});
    } else if (auto allowed = login && !identity->entry ? Status() : CheckAccess(c); !allowed) {
      reply = ReplyForError(allowed.error());
    } else {
      reply = RunHandler(c);
    }
    if (counts_uses && reply.status >= 400) {
      // A refused request still used the token: keep the use, drop the handler's writes.
      c.batch = storage::WriteBatch();
      identity = c.vault->tokens->Authenticate(token, request.remote_address, &c.batch);
    }

    vault::audit::AuditEntry entry;
    entry.request_id = c.request_id;
    entry.time = core_.clock().Now();
    entry.client_address = request.remote_address;
    entry.client_spiffe_id = ClientSpiffeId(request);
    entry.accessor = c.identity.accessor;
    if (c.identity.entry) entry.delegation_chain = c.identity.entry->chain;
    entry.operation = c.operation;
    entry.method = c.method;
    entry.path = c.path;
    entry.mount = vault::audit::MountOf(c.path);
    entry.status = reply.status;
    entry.error = ErrorText(reply);
    entry.request_body = c.body;
    entry.response_body = reply.body;
    storage::WriteBatch batch = std::move(c.batch);
    c.batch = storage::WriteBatch();
    std::shared_ptr<vault::audit::AppendedRecord> appended;
    if (auto attached = c.vault->audit->Attach(entry, batch, appended); !attached) {
      // A damaged log rejects every append (fail closed). The operator must still see what
      // is damaged, so the root token's verify request gets its response without a record.
      if (attached.error().code() == Code::kDataLoss && IsAuditVerify(c)) {
        log::Error("audit log damaged; verify response sent without an audit record",
                   {{log::kRequestId, c.request_id}, {log::kError, attached.error().message()}});
        return ToHttp(reply);
      }
      log::Error("audit record could not be prepared; request rejected",
                 {{log::kRequestId, c.request_id}, {log::kError, attached.error().message()}});
      return ToHttp(ErrorReply(500, {"internal error: the audit log cannot record this request"}));
    }
    auto committed = core_.storage().Commit(std::move(batch));
    if (committed) {
      if (approle_attempt) approle_attempt->Finish(reply.status);
      if (reply.status >= 500) LogServerError(c, reply);
      const Status delivered = sinks && appended
                                   ? sinks->Deliver(appended->sequence, appended->canonical)
                                   : OkStatus();
      if (c.after_commit) c.after_commit();
      // As in Vault when the response entry fails: the change is committed, but the client
      // gets 503 because a required sink lacks its record.
      if (!delivered && sinks_ready) {
        log::Error("audit sink failed after the request committed; responded with 503",
                   {{log::kRequestId, c.request_id}, {log::kError, delivered.error().message()}});
        return ToHttp(SinkFailureReply(*sinks));
      }
      return ToHttp(reply);
    }
    if (committed.error().code() == Code::kAborted && attempt < kMaxAttempts) continue;
    if (committed.error().code() == Code::kDataLoss && IsAuditVerify(c)) {
      log::Error("audit log damaged; verify response sent without an audit record",
                 {{log::kRequestId, c.request_id}, {log::kError, committed.error().message()}});
      return ToHttp(reply);
    }
    log::Error("request not committed",
               {{log::kRequestId, c.request_id}, {log::kError, committed.error().message()}});
    if (committed.error().code() == Code::kAborted) {
      return ToHttp(ErrorReply(409, {"too many concurrent writes to this path; retry the request"}));
    }
    // A full disk or a read-only database: the message names the cause (storage messages of
    // this code contain no keys or values) and the server takes writes again once it is fixed.
    if (committed.error().code() == Code::kUnavailable) {
      return ToHttp(ErrorReply(503, {"storage unavailable, the request was not recorded: " +
                                     committed.error().message()}));
    }
    // After a failed commit the storage cannot tell whether the transaction reached the disk.
    return ToHttp(ErrorReply(500, {"internal error: storage failed while recording this request, "
                                   "so its outcome is unknown; see the server log"}));
  }
}

}  // namespace kw::api
