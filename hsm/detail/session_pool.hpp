#pragma once

#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include <p11-kit/pkcs11.h>

#include "base/result.hpp"
#include "hsm/detail/module.hpp"

namespace kw::hsm::detail {

// Opens a serial read-write session on `slot`.
Result<CK_SESSION_HANDLE> OpenRwSession(CK_FUNCTION_LIST* functions, CK_SLOT_ID slot);

class SessionPool;

// One session checked out of a SessionPool for exclusive use. Returns the session to the pool
// when destroyed, or closes it when a call reported it lost. Move-only; the pool must outlive
// the lease.
class SessionLease {
 public:
  SessionLease(SessionLease&& other) noexcept;
  SessionLease& operator=(SessionLease&&) = delete;
  SessionLease(const SessionLease&) = delete;
  SessionLease& operator=(const SessionLease&) = delete;
  ~SessionLease();

  CK_SESSION_HANDLE handle() const { return handle_; }
  CK_FUNCTION_LIST* functions() const;

  // Converts the return value of `call`, made on this session, into a Status. A return value
  // that means the session is lost marks the session for replacement.
  Status Check(std::string_view call, CK_RV rv);

  // True when a call on this session reported it lost.
  bool lost() const { return lost_; }

  // Makes the pool close this session instead of reusing it, for a session that may still have
  // an operation active (PKCS#11 2.40 has no way to cancel one).
  void Discard() { discard_ = true; }

 private:
  friend class SessionPool;
  SessionLease(SessionPool* pool, CK_SESSION_HANDLE handle) : pool_(pool), handle_(handle) {}

  SessionPool* pool_;  // null once moved from
  CK_SESSION_HANDLE handle_;
  bool lost_ = false;
  bool discard_ = false;
};

// Up to `max_sessions` sessions on one token, each checked out by one caller at a time because
// PKCS#11 forbids concurrent use of a session. Sessions are opened on demand and reused.
// Thread-safe. Every lease must be destroyed before the pool.
class SessionPool {
 public:
  SessionPool(std::shared_ptr<Module> module, CK_SLOT_ID slot, std::size_t max_sessions);
  SessionPool(const SessionPool&) = delete;
  SessionPool& operator=(const SessionPool&) = delete;
  // Closes the idle sessions.
  ~SessionPool();

  // Returns an idle session, opens one while fewer than max_sessions are open, or else waits
  // for a lease to end.
  Result<SessionLease> Checkout();

  CK_FUNCTION_LIST* functions() const { return module_->functions(); }

 private:
  friend class SessionLease;
  // Puts `handle` back, or closes it and frees its place when `close` is true.
  void Return(CK_SESSION_HANDLE handle, bool close);

  std::shared_ptr<Module> module_;
  CK_SLOT_ID slot_;
  std::size_t max_sessions_;
  std::mutex mutex_;
  std::condition_variable session_returned_;
  std::vector<CK_SESSION_HANDLE> idle_;  // guarded by mutex_
  std::size_t open_count_ = 0;           // guarded by mutex_; idle and checked out
};

}  // namespace kw::hsm::detail
