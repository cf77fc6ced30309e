#include "hsm/detail/session_pool.hpp"

#include <utility>

#include "base/log.hpp"
#include "hsm/detail/ck_error.hpp"

namespace kw::hsm::detail {

Result<CK_SESSION_HANDLE> OpenRwSession(CK_FUNCTION_LIST* functions, CK_SLOT_ID slot) {
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  KW_RETURN_IF_ERROR(CheckRv("C_OpenSession",
                             functions->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                                      nullptr, nullptr, &session)));
  return session;
}

SessionLease::SessionLease(SessionLease&& other) noexcept
    : pool_(std::exchange(other.pool_, nullptr)),
      handle_(other.handle_),
      lost_(other.lost_),
      discard_(other.discard_) {}

SessionLease::~SessionLease() {
  if (pool_ != nullptr) pool_->Return(handle_, lost_ || discard_);
}

CK_FUNCTION_LIST* SessionLease::functions() const { return pool_->functions(); }

Status SessionLease::Check(std::string_view call, CK_RV rv) {
  if (rv == CKR_OK) return OkStatus();
  if (IsSessionLost(rv)) lost_ = true;
  // The operation stays active after CKR_BUFFER_TOO_SMALL. After a device or general error the
  // session's state is unknown: a module may keep the failed operation active, which would
  // fail every later call on this session with CKR_OPERATION_ACTIVE. Such sessions are closed.
  if (rv == CKR_BUFFER_TOO_SMALL || rv == CKR_OPERATION_ACTIVE || rv == CKR_DEVICE_ERROR ||
      rv == CKR_GENERAL_ERROR || rv == CKR_FUNCTION_FAILED || rv == CKR_DEVICE_MEMORY) {
    discard_ = true;
  }
  return tl::unexpected(RvError(call, rv));
}

SessionPool::SessionPool(std::shared_ptr<Module> module, CK_SLOT_ID slot,
                         std::size_t max_sessions)
    : module_(std::move(module)), slot_(slot), max_sessions_(max_sessions) {}

SessionPool::~SessionPool() {
  std::lock_guard<std::mutex> lock(mutex_);
  KW_CHECK(idle_.size() == open_count_, "session pool destroyed while a lease is checked out");
  for (CK_SESSION_HANDLE session : idle_) {
    CK_RV rv = functions()->C_CloseSession(session);
    if (rv != CKR_OK && !IsSessionLost(rv)) {
      log::Warn("C_CloseSession failed", {{log::kError, RvName(rv)}});
    }
  }
}

Result<SessionLease> SessionPool::Checkout() {
  std::unique_lock<std::mutex> lock(mutex_);
  session_returned_.wait(lock, [this] { return !idle_.empty() || open_count_ < max_sessions_; });
  if (!idle_.empty()) {
    CK_SESSION_HANDLE session = idle_.back();
    idle_.pop_back();
    return SessionLease(this, session);
  }

  // Open outside the lock; the slot is reserved by counting it first.
  ++open_count_;
  lock.unlock();
  Result<CK_SESSION_HANDLE> session = OpenRwSession(functions(), slot_);
  if (!session) {
    lock.lock();
    --open_count_;
    lock.unlock();
    session_returned_.notify_one();
    return tl::unexpected(session.error());
  }
  return SessionLease(this, *session);
}

void SessionPool::Return(CK_SESSION_HANDLE handle, bool close) {
  if (close) {
    // A lost session normally fails to close too; the call only frees what the module kept.
    CK_RV rv = functions()->C_CloseSession(handle);
    log::Warn("PKCS#11 session closed for replacement",
              {{log::kPath, module_->path()}, {log::kError, RvName(rv)}});
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (close) {
      --open_count_;
    } else {
      idle_.push_back(handle);
    }
  }
  session_returned_.notify_one();
}

}  // namespace kw::hsm::detail
