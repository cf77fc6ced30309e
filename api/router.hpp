#pragma once

#include <array>
#include <mutex>
#include <optional>
#include <string_view>

#include <pthread.h>

#include "api/http_server.hpp"
#include "api/rate_limit.hpp"
#include "vault/core.hpp"

namespace kw::api {

// Maximum body size the server reads before it has validated the request's token.
inline constexpr std::size_t kMaxUnauthenticatedBody = 64 * 1024;

// Turns HTTP requests into vault calls. It validates the target, serves the unauthenticated
// sys endpoints, applies the rate limits, authenticates the token and dispatches to the
// handler of the path. It then
// commits the handler's writes together with the request's audit record before the response
// leaves. This fails closed: a request whose record cannot be written gets 500, and its storage
// writes are not applied. Sealing runs only after its record commits. The exception is sys/rotate: its
// new HSM key exists before the commit, so a failed commit leaves it in place, logged.
// Thread-safe; the core must outlive the router.
class Router {
 public:
  explicit Router(vault::Core& core, const RateLimitConfig& limits = {})
      : core_(core), limits_(limits) {}

  HttpResponse Handle(HttpRequest& request);

  // Rejects, before its body is read, a request whose body may exceed kMaxUnauthenticatedBody
  // and whose token is not valid: 403 at the listener, without an audit record, so that
  // anonymous clients cannot make the server hold large bodies. Smaller requests go on to
  // Handle, which records them. For ServerOptions::head_check; fast and non-blocking.
  std::optional<HttpResponse> CheckHead(const HttpRequest& head);

 private:
  // Returns the lock that serialises writes to the object `path` names. Writers to one
  // secret then take turns instead of losing their commits to each other's Expect checks.
  // The Expect still guards against anything this lock does not cover.
  std::mutex& WriteLockFor(std::string_view path);

  // Handles `request` as Handle describes; Handle adds the request metrics around it.
  HttpResponse Serve(HttpRequest& request);

  // A reader-writer lock whose waiting writers go before new readers. Token creations share
  // it and every other token write takes it alone, so creations run side by side and a
  // stream of them cannot keep a revocation waiting.
  class TokenTreeLock {
   public:
    TokenTreeLock();
    ~TokenTreeLock();
    TokenTreeLock(const TokenTreeLock&) = delete;
    TokenTreeLock& operator=(const TokenTreeLock&) = delete;
    void lock() { pthread_rwlock_wrlock(&lock_); }
    void unlock() { pthread_rwlock_unlock(&lock_); }
    void lock_shared() { pthread_rwlock_rdlock(&lock_); }
    void unlock_shared() { pthread_rwlock_unlock(&lock_); }

   private:
    pthread_rwlock_t lock_;
  };

  vault::Core& core_;
  RateLimits limits_;
  std::array<std::mutex, 256> write_locks_;
  TokenTreeLock token_tree_lock_;
};

}  // namespace kw::api
