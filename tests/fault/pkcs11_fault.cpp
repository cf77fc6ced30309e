// A fault injector around the real SoftHSM module, not a mock: every PKCS#11 call goes to the
// real module, which keeps the real token, keys and sessions. While the control file exists,
// the calls it names fail with the CKR_ code it names instead of reaching the module.
//
// Environment:
//   PKCS11_FAULT_MODULE        the real module (default /usr/lib/softhsm/libsofthsm2.so)
//   PKCS11_FAULT_CONTROL_FILE  the control file; no fault is injected when unset
//
// The control file contains whitespace-separated words: first the return value (CKR_DEVICE_ERROR,
// CKR_DEVICE_REMOVED, CKR_SESSION_HANDLE_INVALID, CKR_GENERAL_ERROR, CKR_TOKEN_NOT_PRESENT or a
// decimal or 0x number), then the functions to fail (C_Encrypt C_Decrypt ...). Without function
// names every function that can fail does. An unreadable or unparsable file fails calls with
// CKR_GENERAL_ERROR. C_Initialize, C_Finalize, C_GetInfo, C_GetFunctionList and C_CloseSession
// always reach the module, so that the caller can still load, unload and clean up. An injected
// failure never reaches the module, so an operation that C_EncryptInit started stays active in
// the real session after an injected C_Encrypt failure, unlike what PKCS#11 asks of a module.
// Each injected failure appends a line to $PKCS11_FAULT_CONTROL_FILE.log when that is writable.
#include <dlfcn.h>
#include <p11-kit/pkcs11.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

namespace {

constexpr const char* kDefaultModule = "/usr/lib/softhsm/libsofthsm2.so";

std::mutex g_load_mutex;
CK_FUNCTION_LIST* g_real = nullptr;
CK_FUNCTION_LIST g_shim{};

CK_RV ParseReturnValue(const std::string& word) {
  struct Named {
    const char* name;
    CK_RV rv;
  };
  static constexpr Named kNames[] = {
      {"CKR_DEVICE_ERROR", CKR_DEVICE_ERROR},
      {"CKR_DEVICE_REMOVED", CKR_DEVICE_REMOVED},
      {"CKR_DEVICE_MEMORY", CKR_DEVICE_MEMORY},
      {"CKR_SESSION_HANDLE_INVALID", CKR_SESSION_HANDLE_INVALID},
      {"CKR_SESSION_CLOSED", CKR_SESSION_CLOSED},
      {"CKR_GENERAL_ERROR", CKR_GENERAL_ERROR},
      {"CKR_TOKEN_NOT_PRESENT", CKR_TOKEN_NOT_PRESENT},
      {"CKR_FUNCTION_FAILED", CKR_FUNCTION_FAILED},
  };
  for (const Named& named : kNames) {
    if (word == named.name) return named.rv;
  }
  char* end = nullptr;
  const unsigned long value = std::strtoul(word.c_str(), &end, 0);
  if (word.empty() || end == nullptr || *end != '\0' || value == CKR_OK) return CKR_GENERAL_ERROR;
  return value;
}

void RecordFault(const char* control, const char* function, CK_RV rv) {
  const std::string log_path = std::string(control) + ".log";
  if (FILE* log = std::fopen(log_path.c_str(), "a"); log != nullptr) {
    std::fprintf(log, "%s 0x%lx\n", function, static_cast<unsigned long>(rv));
    std::fclose(log);
  }
}

// Returns the value that `function` must fail with now, or CKR_OK to forward the call.
CK_RV InjectedFault(const char* function) {
  const char* control = std::getenv("PKCS11_FAULT_CONTROL_FILE");
  if (control == nullptr || *control == '\0') return CKR_OK;
  std::ifstream file(control);
  if (!file.is_open()) return CKR_OK;  // no control file: no fault

  std::stringstream text;
  text << file.rdbuf();
  std::vector<std::string> words;
  for (std::string word; text >> word;) words.push_back(word);
  const CK_RV rv = words.empty() ? CKR_GENERAL_ERROR : ParseReturnValue(words.front());
  bool selected = words.size() <= 1;
  for (std::size_t i = 1; i < words.size() && !selected; ++i) selected = words[i] == function;
  if (!selected) return CKR_OK;
  RecordFault(control, function, rv);
  return rv;
}

}  // namespace

// One forwarding function per PKCS#11 call that may fail: the injected fault, else the real
// module's result.
#define KW_FAULT_FORWARD(name, params, args)                                            \
  static CK_RV Fault_##name params {                                                    \
    if (const CK_RV injected = InjectedFault(#name); injected != CKR_OK) return injected; \
    return g_real->name args;                                                           \
  }

KW_FAULT_FORWARD(C_GetSlotList, (CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count),
                 (present, list, count))
KW_FAULT_FORWARD(C_GetSlotInfo, (CK_SLOT_ID slot, CK_SLOT_INFO_PTR info), (slot, info))
KW_FAULT_FORWARD(C_GetTokenInfo, (CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info), (slot, info))
KW_FAULT_FORWARD(C_GetMechanismList,
                 (CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count),
                 (slot, list, count))
KW_FAULT_FORWARD(C_GetMechanismInfo,
                 (CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info),
                 (slot, type, info))
KW_FAULT_FORWARD(C_InitToken,
                 (CK_SLOT_ID slot, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len, CK_UTF8CHAR_PTR label),
                 (slot, pin, pin_len, label))
KW_FAULT_FORWARD(C_InitPIN, (CK_SESSION_HANDLE session, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len),
                 (session, pin, pin_len))
KW_FAULT_FORWARD(C_SetPIN,
                 (CK_SESSION_HANDLE session, CK_UTF8CHAR_PTR old_pin, CK_ULONG old_len,
                  CK_UTF8CHAR_PTR new_pin, CK_ULONG new_len),
                 (session, old_pin, old_len, new_pin, new_len))
KW_FAULT_FORWARD(C_OpenSession,
                 (CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR application, CK_NOTIFY notify,
                  CK_SESSION_HANDLE_PTR session),
                 (slot, flags, application, notify, session))
KW_FAULT_FORWARD(C_GetSessionInfo, (CK_SESSION_HANDLE session, CK_SESSION_INFO_PTR info),
                 (session, info))
KW_FAULT_FORWARD(C_Login,
                 (CK_SESSION_HANDLE session, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin,
                  CK_ULONG pin_len),
                 (session, user, pin, pin_len))
KW_FAULT_FORWARD(C_Logout, (CK_SESSION_HANDLE session), (session))
KW_FAULT_FORWARD(C_CreateObject,
                 (CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count,
                  CK_OBJECT_HANDLE_PTR object),
                 (session, templ, count, object))
KW_FAULT_FORWARD(C_DestroyObject, (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object),
                 (session, object))
KW_FAULT_FORWARD(C_GetAttributeValue,
                 (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ,
                  CK_ULONG count),
                 (session, object, templ, count))
KW_FAULT_FORWARD(C_SetAttributeValue,
                 (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ,
                  CK_ULONG count),
                 (session, object, templ, count))
KW_FAULT_FORWARD(C_FindObjectsInit,
                 (CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count),
                 (session, templ, count))
KW_FAULT_FORWARD(C_FindObjects,
                 (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE_PTR objects, CK_ULONG max_count,
                  CK_ULONG_PTR count),
                 (session, objects, max_count, count))
KW_FAULT_FORWARD(C_FindObjectsFinal, (CK_SESSION_HANDLE session), (session))
KW_FAULT_FORWARD(C_EncryptInit,
                 (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key),
                 (session, mechanism, key))
KW_FAULT_FORWARD(C_Encrypt,
                 (CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len,
                  CK_BYTE_PTR out, CK_ULONG_PTR out_len),
                 (session, data, data_len, out, out_len))
KW_FAULT_FORWARD(C_DecryptInit,
                 (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key),
                 (session, mechanism, key))
KW_FAULT_FORWARD(C_Decrypt,
                 (CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len,
                  CK_BYTE_PTR out, CK_ULONG_PTR out_len),
                 (session, data, data_len, out, out_len))
KW_FAULT_FORWARD(C_SignInit,
                 (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key),
                 (session, mechanism, key))
KW_FAULT_FORWARD(C_Sign,
                 (CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len,
                  CK_BYTE_PTR signature, CK_ULONG_PTR signature_len),
                 (session, data, data_len, signature, signature_len))
KW_FAULT_FORWARD(C_VerifyInit,
                 (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key),
                 (session, mechanism, key))
KW_FAULT_FORWARD(C_Verify,
                 (CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len,
                  CK_BYTE_PTR signature, CK_ULONG signature_len),
                 (session, data, data_len, signature, signature_len))
KW_FAULT_FORWARD(C_GenerateKey,
                 (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_ATTRIBUTE_PTR templ,
                  CK_ULONG count, CK_OBJECT_HANDLE_PTR key),
                 (session, mechanism, templ, count, key))
KW_FAULT_FORWARD(C_GenerateKeyPair,
                 (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism,
                  CK_ATTRIBUTE_PTR public_templ, CK_ULONG public_count,
                  CK_ATTRIBUTE_PTR private_templ, CK_ULONG private_count,
                  CK_OBJECT_HANDLE_PTR public_key, CK_OBJECT_HANDLE_PTR private_key),
                 (session, mechanism, public_templ, public_count, private_templ, private_count,
                  public_key, private_key))
KW_FAULT_FORWARD(C_GenerateRandom,
                 (CK_SESSION_HANDLE session, CK_BYTE_PTR random, CK_ULONG random_len),
                 (session, random, random_len))

#undef KW_FAULT_FORWARD

// Loads the real module once and builds the shim's table: the real table with the functions
// above replaced, so that every other call goes straight to the real module.
extern "C" CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
  if (list == nullptr) return CKR_ARGUMENTS_BAD;
  std::lock_guard<std::mutex> lock(g_load_mutex);
  if (g_real == nullptr) {
    const char* path = std::getenv("PKCS11_FAULT_MODULE");
    if (path == nullptr || *path == '\0') path = kDefaultModule;
    void* library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) return CKR_GENERAL_ERROR;
    auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(library, "C_GetFunctionList"));
    CK_FUNCTION_LIST* real = nullptr;
    if (get_list == nullptr || get_list(&real) != CKR_OK || real == nullptr) {
      return CKR_GENERAL_ERROR;
    }
    g_real = real;
    g_shim = *real;
    g_shim.C_GetFunctionList = &C_GetFunctionList;
#define KW_FAULT_REPLACE(name) g_shim.name = &Fault_##name;
    KW_FAULT_REPLACE(C_GetSlotList)
    KW_FAULT_REPLACE(C_GetSlotInfo)
    KW_FAULT_REPLACE(C_GetTokenInfo)
    KW_FAULT_REPLACE(C_GetMechanismList)
    KW_FAULT_REPLACE(C_GetMechanismInfo)
    KW_FAULT_REPLACE(C_InitToken)
    KW_FAULT_REPLACE(C_InitPIN)
    KW_FAULT_REPLACE(C_SetPIN)
    KW_FAULT_REPLACE(C_OpenSession)
    KW_FAULT_REPLACE(C_GetSessionInfo)
    KW_FAULT_REPLACE(C_Login)
    KW_FAULT_REPLACE(C_Logout)
    KW_FAULT_REPLACE(C_CreateObject)
    KW_FAULT_REPLACE(C_DestroyObject)
    KW_FAULT_REPLACE(C_GetAttributeValue)
    KW_FAULT_REPLACE(C_SetAttributeValue)
    KW_FAULT_REPLACE(C_FindObjectsInit)
    KW_FAULT_REPLACE(C_FindObjects)
    KW_FAULT_REPLACE(C_FindObjectsFinal)
    KW_FAULT_REPLACE(C_EncryptInit)
    KW_FAULT_REPLACE(C_Encrypt)
    KW_FAULT_REPLACE(C_DecryptInit)
    KW_FAULT_REPLACE(C_Decrypt)
    KW_FAULT_REPLACE(C_SignInit)
    KW_FAULT_REPLACE(C_Sign)
    KW_FAULT_REPLACE(C_VerifyInit)
    KW_FAULT_REPLACE(C_Verify)
    KW_FAULT_REPLACE(C_GenerateKey)
    KW_FAULT_REPLACE(C_GenerateKeyPair)
    KW_FAULT_REPLACE(C_GenerateRandom)
#undef KW_FAULT_REPLACE
  }
  *list = &g_shim;
  return CKR_OK;
}
