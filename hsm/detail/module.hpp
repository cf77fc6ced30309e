#pragma once

#include <memory>
#include <string>

#include <p11-kit/pkcs11.h>

#include "base/result.hpp"
#include "base/secret_buffer.hpp"

namespace kw::hsm::detail {

// One user's share of a PKCS#11 module. A process-wide registry, keyed by the module's canonical
// path, loads each module once (dlopen, C_GetFunctionList). It calls C_Initialize with
// CKF_OS_LOCKING_OK when the first user acquires the module and C_Finalize when the last user
// releases it, so sealing and unsealing again in one process work. A module that other code in the
// process initialised (CKR_CRYPTOKI_ALREADY_INITIALIZED) is used but never finalised here. The registry also counts user logins
// per slot, because PKCS#11 login state belongs to the whole process: only the last Logout
// calls C_Logout. Thread-safe. Every session opened through a Module must be closed before it
// is destroyed.
class Module {
 public:
  // Loads and initialises the module at `path`, or shares the already initialised one.
  // unavailable when dlopen, C_GetFunctionList or C_Initialize fails.
  static Result<std::shared_ptr<Module>> Acquire(const std::string& path);

  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  ~Module();

  CK_FUNCTION_LIST* functions() const { return functions_; }
  const std::string& path() const { return path_; }

  // Logs the normal user into the token in `slot` through `session`. When a user of this
  // process is already logged in there, checks `pin` against the PIN that user gave instead
  // of calling C_Login, because SoftHSM returns CKR_USER_ALREADY_LOGGED_IN without checking the
  // PIN. permission_denied for a wrong PIN.
  Status Login(CK_SESSION_HANDLE session, CK_SLOT_ID slot, const SecretBuffer& pin);

  // Ends one Login; the last one for `slot` calls C_Logout through `session`.
  void Logout(CK_SESSION_HANDLE session, CK_SLOT_ID slot);

 private:
  Module(std::string path, CK_FUNCTION_LIST* functions)
      : path_(std::move(path)), functions_(functions) {}

  std::string path_;  // canonical path, the registry key
  CK_FUNCTION_LIST* functions_;
};

}  // namespace kw::hsm::detail
