// keyward-bench-hsm: the raw rate of one PKCS#11 operation, called directly on the module.
//
// A KV read costs one AES-GCM decrypt on the HSM and an SVID issue one ECDSA P-256 signature,
// so these rates bound keyward's read and issue rates. The benchmark compares keyward with
// them. Keys are made with the attributes keyward uses (non-extractable, sensitive,
// unmodifiable), either as token objects or as session objects, because SoftHSM is much
// faster with session objects. The program uses no keyward code: it loads the module with
// dlopen and calls it directly. Prints one JSON line on stdout.
#include <dlfcn.h>
#include <p11-kit/pkcs11.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bench/bench_options.hpp"
#include "bench/timed_run.hpp"

namespace {

constexpr std::size_t kPlaintextSize = 1024;
constexpr std::size_t kIvSize = 12;
constexpr std::size_t kTagSize = 16;
constexpr std::size_t kAadSize = 16;
constexpr std::size_t kDigestSize = 32;
constexpr std::size_t kSignatureSize = 64;
constexpr CK_ULONG kAesKeySize = 32;
// CKA_EC_PARAMS for P-256: the DER encoding of OID 1.2.840.10045.3.1.7.
constexpr std::array<CK_BYTE, 10> kP256Params = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                                 0xce, 0x3d, 0x03, 0x01, 0x07};
constexpr CK_BBOOL kTrue = CK_TRUE;
constexpr CK_BBOOL kFalse = CK_FALSE;

constexpr const char* kUsage = R"(usage: keyward-bench-hsm --token-label LABEL --op OP [options]

Measures one PKCS#11 operation per call, on fresh keys that are destroyed on exit. Reads the
user PIN from the environment variable KEYWARD_BENCH_PIN. Prints one JSON line on stdout.

  --module PATH        PKCS#11 module (default /usr/lib/softhsm/libsofthsm2.so)
  --token-label LABEL  label of an initialised token with a user PIN
  --op OP              aes-gcm-decrypt: C_DecryptInit and C_Decrypt of 1 KiB (96-bit IV,
                         128-bit tag, 16 bytes of AAD)
                       ecdsa-p256-sign: C_SignInit and C_Sign of a 32-byte digest, CKM_ECDSA
  --key KIND           token: a token object (CKA_TOKEN true), as keyward stores its keys;
                       session: a session object (CKA_TOKEN false). Default token.
  --threads N          threads, each with its own session (default 1)
  --seconds S          measured time in seconds, after a 1 s warm-up (default 10)
)";

// Returns the CKR_ name of the return values a wrong setup causes, else the number.
std::string RvText(CK_RV rv) {
  static constexpr std::pair<CK_RV, const char*> kNames[] = {
      {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT"},
      {CKR_PIN_LOCKED, "CKR_PIN_LOCKED"},
      {CKR_USER_PIN_NOT_INITIALIZED, "CKR_USER_PIN_NOT_INITIALIZED"},
      {CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID"},
      {CKR_TEMPLATE_INCONSISTENT, "CKR_TEMPLATE_INCONSISTENT"},
      {CKR_ATTRIBUTE_VALUE_INVALID, "CKR_ATTRIBUTE_VALUE_INVALID"},
      {CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED"},
  };
  for (const auto& [value, name] : kNames) {
    if (value == rv) return name;
  }
  char text[32];
  std::snprintf(text, sizeof(text), "CK_RV 0x%08lx", static_cast<unsigned long>(rv));
  return text;
}

void Check(CK_RV rv, const char* call) {
  if (rv != CKR_OK) throw std::runtime_error(std::string(call) + " failed: " + RvText(rv));
}

CK_ATTRIBUTE Attribute(CK_ATTRIBUTE_TYPE type, const void* value, std::size_t size) {
  return CK_ATTRIBUTE{type, const_cast<void*>(value), static_cast<CK_ULONG>(size)};
}

CK_ATTRIBUTE Bool(CK_ATTRIBUTE_TYPE type, bool value) {
  return Attribute(type, value ? &kTrue : &kFalse, sizeof(CK_BBOOL));
}

// The loaded and initialised module, the logged-in setup session and the objects made in it.
// The destructor destroys the objects, logs out and finalises, in that order.
class Module {
 public:
  explicit Module(const std::string& path) {
    library_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (library_ == nullptr) throw std::runtime_error("cannot load " + path + ": " + dlerror());
    auto get_function_list =
        reinterpret_cast<CK_C_GetFunctionList>(dlsym(library_, "C_GetFunctionList"));
    if (get_function_list == nullptr) {
      throw std::runtime_error(path + " has no C_GetFunctionList symbol");
    }
    Check(get_function_list(&functions_), "C_GetFunctionList");
    CK_C_INITIALIZE_ARGS args{};
    args.flags = CKF_OS_LOCKING_OK;
    Check(functions_->C_Initialize(&args), "C_Initialize");
    initialized_ = true;
  }

  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  ~Module() {
    for (CK_OBJECT_HANDLE object : objects_) {
      CK_RV rv = functions_->C_DestroyObject(setup_session_, object);
      if (rv != CKR_OK)
        std::cerr << "keyward-bench-hsm: C_DestroyObject failed: " << RvText(rv)
                  << "; delete the keys labelled " << KeyLabel() << "\n";
    }
    for (CK_SESSION_HANDLE session : sessions_) functions_->C_CloseSession(session);
    if (setup_session_ != CK_INVALID_HANDLE) {
      functions_->C_Logout(setup_session_);
      functions_->C_CloseSession(setup_session_);
    }
    if (initialized_) functions_->C_Finalize(nullptr);
  }

  CK_FUNCTION_LIST* functions() const { return functions_; }
  CK_SESSION_HANDLE setup_session() const { return setup_session_; }

  // Opens a read-write session on the token labelled `label` and logs the user in.
  void LogIn(const std::string& label, const std::string& pin) {
    slot_ = FindSlot(label);
    Check(functions_->C_OpenSession(slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                                    &setup_session_),
          "C_OpenSession");
    CK_RV rv = functions_->C_Login(setup_session_, CKU_USER,
                                   reinterpret_cast<CK_UTF8CHAR*>(const_cast<char*>(pin.data())),
                                   pin.size());
    if (rv != CKR_USER_ALREADY_LOGGED_IN) Check(rv, "C_Login");
  }

  // Opens another session on the same token; the login applies to it too.
  CK_SESSION_HANDLE OpenSession() {
    CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
    Check(functions_->C_OpenSession(slot_, CKF_SERIAL_SESSION, nullptr, nullptr, &session),
          "C_OpenSession");
    sessions_.push_back(session);
    return session;
  }

  // Records an object to destroy on exit.
  void Own(CK_OBJECT_HANDLE object) { objects_.push_back(object); }

  // Returns the label of this run's keys, unique per process.
  static std::string KeyLabel() { return "keyward-bench-" + std::to_string(getpid()); }

 private:
  CK_SLOT_ID FindSlot(const std::string& label) {
    CK_ULONG count = 0;
    Check(functions_->C_GetSlotList(CK_TRUE, nullptr, &count), "C_GetSlotList");
    std::vector<CK_SLOT_ID> slots(count);
    Check(functions_->C_GetSlotList(CK_TRUE, slots.data(), &count), "C_GetSlotList");
    slots.resize(count);
    for (CK_SLOT_ID slot : slots) {
      CK_TOKEN_INFO info{};
      Check(functions_->C_GetTokenInfo(slot, &info), "C_GetTokenInfo");
      std::string token_label(reinterpret_cast<const char*>(info.label), sizeof(info.label));
      token_label.erase(token_label.find_last_not_of(' ') + 1);
      if (token_label == label) return slot;
    }
    throw std::runtime_error("no token is labelled \"" + label + "\"");
  }

  void* library_ = nullptr;  // never closed: SoftHSM's OpenSSL state may outlive C_Finalize
  CK_FUNCTION_LIST* functions_ = nullptr;
  bool initialized_ = false;
  CK_SLOT_ID slot_ = 0;
  CK_SESSION_HANDLE setup_session_ = CK_INVALID_HANDLE;
  std::vector<CK_SESSION_HANDLE> sessions_;
  std::vector<CK_OBJECT_HANDLE> objects_;
};

CK_GCM_PARAMS GcmParams(std::vector<CK_BYTE>& iv, std::vector<CK_BYTE>& aad) {
  CK_GCM_PARAMS params{};
  params.pIv = iv.data();
  params.ulIvLen = iv.size();
  params.ulIvBits = iv.size() * 8;  // SoftHSM 2.6 reads ulIvLen; other modules read ulIvBits
  params.pAAD = aad.data();
  params.ulAADLen = aad.size();
  params.ulTagBits = kTagSize * 8;
  return params;
}

// Test data shared read-only by all threads.
struct Inputs {
  std::vector<CK_BYTE> plaintext = std::vector<CK_BYTE>(kPlaintextSize);
  std::vector<CK_BYTE> iv = std::vector<CK_BYTE>(kIvSize);
  std::vector<CK_BYTE> aad = std::vector<CK_BYTE>(kAadSize);
  std::vector<CK_BYTE> ciphertext;  // ciphertext ‖ tag
  std::vector<CK_BYTE> digest = std::vector<CK_BYTE>(kDigestSize);
};

// Generates an AES-256 key with keyward's attributes and encrypts the plaintext with it.
CK_OBJECT_HANDLE MakeAesKey(Module& module, bool token, Inputs& inputs) {
  const CK_OBJECT_CLASS key_class = CKO_SECRET_KEY;
  const CK_KEY_TYPE key_type = CKK_AES;
  const std::string label = Module::KeyLabel();
  std::vector<CK_ATTRIBUTE> key_template = {
      Attribute(CKA_CLASS, &key_class, sizeof(key_class)),
      Attribute(CKA_KEY_TYPE, &key_type, sizeof(key_type)),
      Attribute(CKA_VALUE_LEN, &kAesKeySize, sizeof(kAesKeySize)),
      Bool(CKA_TOKEN, token),
      Bool(CKA_PRIVATE, true),
      Bool(CKA_SENSITIVE, true),
      Bool(CKA_EXTRACTABLE, false),
      Bool(CKA_MODIFIABLE, false),
      Bool(CKA_ENCRYPT, true),
      Bool(CKA_DECRYPT, true),
      Bool(CKA_SIGN, false),
      Bool(CKA_VERIFY, false),
      Bool(CKA_WRAP, false),
      Bool(CKA_UNWRAP, false),
      Bool(CKA_DERIVE, false),
      Attribute(CKA_LABEL, label.data(), label.size()),
      Attribute(CKA_ID, label.data(), label.size()),
  };

  CK_FUNCTION_LIST* f = module.functions();
  CK_SESSION_HANDLE session = module.setup_session();
  CK_MECHANISM generate{CKM_AES_KEY_GEN, nullptr, 0};
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  Check(f->C_GenerateKey(session, &generate, key_template.data(), key_template.size(), &key),
        "C_GenerateKey");
  module.Own(key);

  // The one ciphertext every operation decrypts.
  CK_GCM_PARAMS params = GcmParams(inputs.iv, inputs.aad);
  CK_MECHANISM mechanism{CKM_AES_GCM, &params, sizeof(params)};
  Check(f->C_EncryptInit(session, &mechanism, key), "C_EncryptInit");
  inputs.ciphertext.resize(kPlaintextSize + kTagSize);
  CK_ULONG size = inputs.ciphertext.size();
  Check(f->C_Encrypt(session, inputs.plaintext.data(), inputs.plaintext.size(),
                     inputs.ciphertext.data(), &size),
        "C_Encrypt");
  if (size != kPlaintextSize + kTagSize) throw std::runtime_error("C_Encrypt: unexpected size");
  return key;
}

// Generates a P-256 key pair with keyward's attributes; returns the private key.
CK_OBJECT_HANDLE MakeEcKey(Module& module, bool token) {
  const CK_OBJECT_CLASS public_class = CKO_PUBLIC_KEY;
  const CK_OBJECT_CLASS private_class = CKO_PRIVATE_KEY;
  const CK_KEY_TYPE key_type = CKK_EC;
  const std::string label = Module::KeyLabel();
  std::vector<CK_ATTRIBUTE> public_template = {
      Attribute(CKA_CLASS, &public_class, sizeof(public_class)),
      Attribute(CKA_KEY_TYPE, &key_type, sizeof(key_type)),
      Attribute(CKA_EC_PARAMS, kP256Params.data(), kP256Params.size()),
      Bool(CKA_TOKEN, token),
      Bool(CKA_PRIVATE, false),
      Bool(CKA_MODIFIABLE, false),
      Bool(CKA_VERIFY, true),
      Bool(CKA_ENCRYPT, false),
      Bool(CKA_WRAP, false),
      Bool(CKA_DERIVE, false),
      Attribute(CKA_LABEL, label.data(), label.size()),
      Attribute(CKA_ID, label.data(), label.size()),
  };

  std::vector<CK_ATTRIBUTE> private_template = {
      Attribute(CKA_CLASS, &private_class, sizeof(private_class)),
      Attribute(CKA_KEY_TYPE, &key_type, sizeof(key_type)),
      Bool(CKA_TOKEN, token),
      Bool(CKA_PRIVATE, true),
      Bool(CKA_SENSITIVE, true),
      Bool(CKA_EXTRACTABLE, false),
      Bool(CKA_MODIFIABLE, false),
      Bool(CKA_SIGN, true),
      Bool(CKA_DECRYPT, false),
      Bool(CKA_UNWRAP, false),
      Bool(CKA_DERIVE, false),
      Attribute(CKA_LABEL, label.data(), label.size()),
      Attribute(CKA_ID, label.data(), label.size()),
  };

  CK_MECHANISM generate{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
  CK_OBJECT_HANDLE public_key = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE private_key = CK_INVALID_HANDLE;
  CK_RV rv = module.functions()->C_GenerateKeyPair(
      module.setup_session(), &generate, public_template.data(), public_template.size(),
      private_template.data(), private_template.size(), &public_key, &private_key);
  Check(rv, "C_GenerateKeyPair");
  module.Own(public_key);
  module.Own(private_key);
  return private_key;
}

kw::bench::Operation MakeDecrypt(CK_FUNCTION_LIST* f, CK_SESSION_HANDLE session,
                                 CK_OBJECT_HANDLE key, Inputs& inputs) {
  return [f, session, key, &inputs,
          output = std::vector<CK_BYTE>(kPlaintextSize + kTagSize)]() mutable -> std::string {
    CK_GCM_PARAMS params = GcmParams(inputs.iv, inputs.aad);
    CK_MECHANISM mechanism{CKM_AES_GCM, &params, sizeof(params)};
    CK_RV rv = f->C_DecryptInit(session, &mechanism, key);
    if (rv != CKR_OK) return "C_DecryptInit failed: " + RvText(rv);
    CK_ULONG size = output.size();
    rv = f->C_Decrypt(session, inputs.ciphertext.data(), inputs.ciphertext.size(), output.data(),
                      &size);
    if (rv != CKR_OK) return "C_Decrypt failed: " + RvText(rv);
    if (size != kPlaintextSize) return "C_Decrypt returned " + std::to_string(size) + " bytes";
    return {};
  };
}

kw::bench::Operation MakeSign(CK_FUNCTION_LIST* f, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key,
                              Inputs& inputs) {
  return [f, session, key, &inputs]() -> std::string {
    CK_MECHANISM mechanism{CKM_ECDSA, nullptr, 0};
    CK_RV rv = f->C_SignInit(session, &mechanism, key);
    if (rv != CKR_OK) return "C_SignInit failed: " + RvText(rv);
    CK_BYTE signature[kSignatureSize];
    CK_ULONG size = sizeof(signature);
    rv = f->C_Sign(session, inputs.digest.data(), inputs.digest.size(), signature, &size);
    if (rv != CKR_OK) return "C_Sign failed: " + RvText(rv);
    if (size != kSignatureSize) return "C_Sign returned " + std::to_string(size) + " bytes";
    return {};
  };
}

int Run(const kw::bench::Options& options) {
  std::string module_path = options.Get("module", "/usr/lib/softhsm/libsofthsm2.so");
  std::string token_label = options.Get("token-label");
  if (token_label.empty()) throw std::invalid_argument("--token-label is required; see --help");
  std::string op = options.Get("op");
  if (op != "aes-gcm-decrypt" && op != "ecdsa-p256-sign") {
    throw std::invalid_argument("--op must be aes-gcm-decrypt or ecdsa-p256-sign; see --help");
  }
  std::string key_kind = options.Get("key", "token");
  if (key_kind != "token" && key_kind != "session") {
    throw std::invalid_argument("--key must be token or session, not \"" + key_kind + "\"");
  }
  auto threads = static_cast<unsigned>(options.GetCount("threads", 1, 1, 256));
  double seconds = options.GetNumber("seconds", 10, 0.1, 86400);
  const char* pin = std::getenv("KEYWARD_BENCH_PIN");
  if (pin == nullptr || *pin == '\0') {
    throw std::invalid_argument("set KEYWARD_BENCH_PIN to the token's user PIN");
  }

  Inputs inputs;
  std::mt19937 random(12345);
  for (auto* bytes : {&inputs.plaintext, &inputs.iv, &inputs.aad, &inputs.digest}) {
    for (CK_BYTE& byte : *bytes) byte = static_cast<CK_BYTE>(random());
  }

  kw::bench::TimedResult result;
  {
    Module module(module_path);
    module.LogIn(token_label, pin);
    bool token = key_kind == "token";
    CK_OBJECT_HANDLE key =
        op == "aes-gcm-decrypt" ? MakeAesKey(module, token, inputs) : MakeEcKey(module, token);
    std::vector<kw::bench::Operation> operations;
    for (unsigned i = 0; i < threads; ++i) {
      CK_SESSION_HANDLE session = module.OpenSession();
      operations.push_back(op == "aes-gcm-decrypt"
                               ? MakeDecrypt(module.functions(), session, key, inputs)
                               : MakeSign(module.functions(), session, key, inputs));
    }
    // One call before timing, so a wrong setup fails here with its own message.
    if (std::string error = operations[0](); !error.empty()) throw std::runtime_error(error);
    result = kw::bench::RunTimed(operations, 1.0, seconds);
  }
  if (!result.error.empty()) {
    std::cerr << "keyward-bench-hsm: " << result.error << "\n";
    return 1;
  }

  nlohmann::ordered_json line = {
      {"program", "hsm"},
      {"op", op},
      {"key", key_kind},
      {"threads", threads},
      {"seconds", std::round(result.seconds * 1000) / 1000},
      {"ops", result.ops},
      {"ops_per_sec", std::round(result.ops / result.seconds * 10) / 10},
  };
  std::cout << line.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    kw::bench::Options options(argc, argv,
                               {"module", "token-label", "op", "key", "threads", "seconds"});
    if (options.help()) {
      std::cout << kUsage;
      return 0;
    }
    kw::bench::CatchInterrupts();
    return Run(options);
  } catch (const std::exception& error) {
    std::cerr << "keyward-bench-hsm: " << error.what() << "\n";
    return 1;
  }
}
