#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/http_server.hpp"
#include "api/rate_limit.hpp"
#include "base/result.hpp"
#include "storage/storage.hpp"
#include "vault/auth/token_store.hpp"
#include "vault/core.hpp"

namespace kw::api {

// A handler's response: a status and a JSON body (null: no body, as for 204).
struct Reply {
  Reply() = default;
  Reply(int reply_status, nlohmann::json reply_body)
      : status(reply_status), body(std::move(reply_body)) {}

  int status = 200;
  nlohmann::json body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers, like Retry-After
  // A body that is not JSON (Prometheus metrics), sent as is when not empty in place of
  // `body`; its Content-Type goes into `headers`. Never a secret: it is not wiped.
  std::string text;
};

// One authenticated request on its way through a handler. Handlers add their writes to
// `batch`; the router commits it together with the audit record. One thread.
struct RequestContext {
  RequestContext(const HttpRequest& http_request, vault::Core& vault_core,
                 std::shared_ptr<vault::UnsealedState> state)
      : http(http_request), core(vault_core), vault(std::move(state)) {}

  const HttpRequest& http;
  vault::Core& core;
  std::shared_ptr<vault::UnsealedState> vault;
  std::string request_id;
  std::string method;     // as received
  std::string operation;  // read, list, create, update, patch, delete
  std::string path;       // below /v1/, validated, without trailing slash
  bool trailing_slash = false;
  std::vector<std::pair<std::string, std::string>> query;
  nlohmann::json body;  // the parsed request body, null when empty
  vault::auth::Identity identity;
  storage::WriteBatch batch;
  // Runs after the request and its audit record are committed, for actions outside storage
  // (sealing) that must not happen unrecorded.
  std::function<void()> after_commit;
  // The server's rate limits and login lockout; null where a caller runs without them.
  RateLimits* limits = nullptr;
  // Set by the router on an AppRole login: the handler calls it once the credentials matched,
  // which ends the attempt for the login lockout before the token is made and committed.
  std::function<void()> login_verified;

  // Returns the first value of query parameter `name`, as Go's url.Values.Get does.
  std::optional<std::string_view> Query(std::string_view name) const {
    for (const auto& [key, value] : query) {
      if (key == name) return value;
    }
    return std::nullopt;
  }
};

// Wraps `data` in Vault's response envelope.
nlohmann::json Envelope(const RequestContext& context, nlohmann::json data);

// Returns Reply{status, {"errors": [messages]}}.
Reply ErrorReply(int status, std::vector<std::string> messages);

// Maps an error code to its HTTP status: the one place that does so.
int HttpStatusFor(Code code);

// Turns `error` into a reply with its status and message. unauthenticated and
// permission_denied become Vault's 403 "permission denied".
Reply ReplyForError(const Error& error);

// 405 for a method a path does not support.
Reply MethodNotAllowed(const RequestContext& context);

}  // namespace kw::api
