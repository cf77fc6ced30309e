#include "hsm/detail/module.hpp"

#include <dlfcn.h>
#include <sodium.h>

#include <array>
#include <climits>
#include <cstdlib>
#include <map>
#include <mutex>

#include "base/bytes.hpp"
#include "base/log.hpp"
#include "hsm/detail/ck_error.hpp"

namespace kw::hsm::detail {
namespace {

using PinMac = std::array<unsigned char, crypto_generichash_BYTES>;

struct SlotLogin {
  std::size_t users = 0;
  PinMac pin_mac{};  // keyed BLAKE2b of the PIN, compared in constant time
};

struct ModuleEntry {
  void* library = nullptr;  // from dlopen; never closed, see Acquire
  CK_FUNCTION_LIST* functions = nullptr;
  std::size_t users = 0;
  // False when C_Initialize found the module initialised by other code in the process, which
  // then owns the C_Finalize.
  bool finalize_on_release = true;
  std::map<CK_SLOT_ID, SlotLogin> logins;
};

struct Registry {
  std::mutex mutex;
  std::map<std::string, ModuleEntry> entries;  // guarded by mutex
  std::array<unsigned char, crypto_generichash_KEYBYTES> mac_key{};  // guarded by mutex
  bool mac_key_set = false;                                          // guarded by mutex
};

Registry& GetRegistry() {
  static Registry* registry = new Registry();  // never destroyed: used from static destructors
  return *registry;
}

std::string CanonicalPath(const std::string& path) {
  char resolved[PATH_MAX];
  if (realpath(path.c_str(), resolved) == nullptr) return path;
  return resolved;
}

PinMac ComputePinMac(Registry& registry, const SecretBuffer& pin) {
  if (!registry.mac_key_set) {
    InitSodium();
    randombytes_buf(registry.mac_key.data(), registry.mac_key.size());
    registry.mac_key_set = true;
  }
  PinMac mac{};
  crypto_generichash(mac.data(), mac.size(), pin.Reveal().data(), pin.size(),
                     registry.mac_key.data(), registry.mac_key.size());
  return mac;
}

Status LoadLibrary(const std::string& path, ModuleEntry& entry) {
  void* library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    const char* reason = dlerror();
    return Unavailable("cannot load PKCS#11 module " + path + ": " +
                       (reason != nullptr ? reason : "dlopen failed"));
  }
  auto get_function_list =
      reinterpret_cast<CK_C_GetFunctionList>(dlsym(library, "C_GetFunctionList"));
  if (get_function_list == nullptr) {
    dlclose(library);
    return Unavailable("PKCS#11 module " + path + " has no C_GetFunctionList symbol");
  }
  CK_FUNCTION_LIST* functions = nullptr;
  CK_RV rv = get_function_list(&functions);
  if (rv != CKR_OK || functions == nullptr) {
    dlclose(library);
    return Unavailable("PKCS#11 module " + path + ": C_GetFunctionList failed: " + RvName(rv));
  }
  entry.library = library;
  entry.functions = functions;
  return OkStatus();
}

}  // namespace

Result<std::shared_ptr<Module>> Module::Acquire(const std::string& path) {
  Registry& registry = GetRegistry();
  std::string key = CanonicalPath(path);
  std::lock_guard<std::mutex> lock(registry.mutex);
  ModuleEntry& entry = registry.entries[key];

  // NOTE: the library stays mapped after the last C_Finalize. A later Acquire initialises the
  // same copy again instead of loading the module's global state (OpenSSL included) a second
  // time.
  if (entry.library == nullptr) KW_RETURN_IF_ERROR(LoadLibrary(key, entry));

  if (entry.users == 0) {
    // OS locking with no mutex callbacks: SoftHSM turns its internal locking off when given
    // neither, and rejects a partial set of callbacks.
    CK_C_INITIALIZE_ARGS args{};
    args.CreateMutex = nullptr;
    args.DestroyMutex = nullptr;
    args.LockMutex = nullptr;
    args.UnlockMutex = nullptr;
    args.flags = CKF_OS_LOCKING_OK;
    args.pReserved = nullptr;
    CK_RV rv = entry.functions->C_Initialize(&args);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
      return Unavailable("PKCS#11 module " + key + ": C_Initialize failed: " + RvName(rv));
    }
    entry.finalize_on_release = rv == CKR_OK;
    entry.logins.clear();
  }
  ++entry.users;
  return std::shared_ptr<Module>(new Module(key, entry.functions));
}

Module::~Module() {
  Registry& registry = GetRegistry();
  std::lock_guard<std::mutex> lock(registry.mutex);
  ModuleEntry& entry = registry.entries[path_];
  KW_CHECK(entry.users > 0, "PKCS#11 module released more often than acquired");
  if (--entry.users > 0 || !entry.finalize_on_release) return;
  CK_RV rv = entry.functions->C_Finalize(nullptr);
  if (rv != CKR_OK) {
    log::Error("C_Finalize failed", {{log::kPath, path_}, {log::kError, RvName(rv)}});
  }
}

Status Module::Login(CK_SESSION_HANDLE session, CK_SLOT_ID slot, const SecretBuffer& pin) {
  Registry& registry = GetRegistry();
  std::lock_guard<std::mutex> lock(registry.mutex);
  ModuleEntry& entry = registry.entries[path_];
  PinMac mac = ComputePinMac(registry, pin);

  auto existing = entry.logins.find(slot);
  if (existing != entry.logins.end()) {
    if (sodium_memcmp(existing->second.pin_mac.data(), mac.data(), mac.size()) != 0) {
      return PermissionDenied("wrong PIN: it differs from the PIN this process is logged in "
                              "with on the token");
    }
    ++existing->second.users;
    return OkStatus();
  }

  CK_RV rv = functions_->C_Login(session, CKU_USER, const_cast<CK_UTF8CHAR*>(pin.Reveal().data()),
                                 pin.size());
  // NOTE: CKR_USER_ALREADY_LOGGED_IN here means code outside this registry logged in, so the
  // PIN could not be checked. Only tests that call PKCS#11 directly do that.
  if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) return CheckRv("C_Login", rv);
  entry.logins[slot] = SlotLogin{1, mac};
  return OkStatus();
}

void Module::Logout(CK_SESSION_HANDLE session, CK_SLOT_ID slot) {
  Registry& registry = GetRegistry();
  std::lock_guard<std::mutex> lock(registry.mutex);
  ModuleEntry& entry = registry.entries[path_];
  auto existing = entry.logins.find(slot);
  if (existing == entry.logins.end()) return;
  if (--existing->second.users > 0) return;
  entry.logins.erase(existing);
  CK_RV rv = functions_->C_Logout(session);
  if (rv != CKR_OK && rv != CKR_USER_NOT_LOGGED_IN) {
    log::Warn("C_Logout failed", {{log::kPath, path_}, {log::kError, RvName(rv)}});
  }
}

}  // namespace kw::hsm::detail
