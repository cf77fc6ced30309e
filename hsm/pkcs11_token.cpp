#include "hsm/detail/pkcs11_token.hpp"

#include <algorithm>
#include <optional>
#include <utility>

#include "base/log.hpp"
#include "hsm/detail/ck_error.hpp"
#include "hsm/detail/slots.hpp"

namespace kw::hsm::detail {
namespace {

constexpr CK_BBOOL kTrue = CK_TRUE;
constexpr CK_BBOOL kFalse = CK_FALSE;
constexpr CK_OBJECT_CLASS kSecretKeyClass = CKO_SECRET_KEY;
// Both key types are 256 bits: AES-256, and the HMAC-SHA256 key size that SoftHSM requires.
constexpr CK_ULONG kKeySize = 32;

// C_FindObjects batch size, and a bound on the objects one search returns.
constexpr CK_ULONG kFindBatchSize = 64;
constexpr std::size_t kMaxFoundObjects = 100000;

CK_ATTRIBUTE Attribute(CK_ATTRIBUTE_TYPE type, const void* value, std::size_t size) {
  return CK_ATTRIBUTE{type, const_cast<void*>(value), static_cast<CK_ULONG>(size)};
}

CK_ATTRIBUTE BoolAttribute(CK_ATTRIBUTE_TYPE type, bool value) {
  return Attribute(type, value ? &kTrue : &kFalse, sizeof(CK_BBOOL));
}

// Returns the template for a non-extractable secret token key. `key_type` and `label` must
// outlive the template. `for_encryption` allows ENCRYPT and DECRYPT, else SIGN and VERIFY.
std::vector<CK_ATTRIBUTE> SecretKeyTemplate(const CK_KEY_TYPE& key_type, std::string_view label,
                                            bool for_encryption) {
  // Every attribute is set, because defaults differ between tokens.
  return {
      Attribute(CKA_CLASS, &kSecretKeyClass, sizeof(kSecretKeyClass)),
      Attribute(CKA_KEY_TYPE, &key_type, sizeof(key_type)),
      Attribute(CKA_VALUE_LEN, &kKeySize, sizeof(kKeySize)),
      BoolAttribute(CKA_TOKEN, true),
      BoolAttribute(CKA_PRIVATE, true),
      BoolAttribute(CKA_SENSITIVE, true),
      BoolAttribute(CKA_EXTRACTABLE, false),
      // Modifiable so that SoftHSM copies it into a session object (see SessionCopyOf).
      BoolAttribute(CKA_MODIFIABLE, true),
      BoolAttribute(CKA_ENCRYPT, for_encryption),
      BoolAttribute(CKA_DECRYPT, for_encryption),
      BoolAttribute(CKA_SIGN, !for_encryption),
      BoolAttribute(CKA_VERIFY, !for_encryption),
      BoolAttribute(CKA_WRAP, false),
      BoolAttribute(CKA_UNWRAP, false),
      BoolAttribute(CKA_DERIVE, false),
      Attribute(CKA_LABEL, label.data(), label.size()),
      Attribute(CKA_ID, label.data(), label.size()),
  };
}

Result<std::vector<CK_OBJECT_HANDLE>> FindObjects(SessionLease& lease,
                                                  std::vector<CK_ATTRIBUTE>& search) {
  CK_FUNCTION_LIST* functions = lease.functions();
  KW_RETURN_IF_ERROR(lease.Check("C_FindObjectsInit",
                                 functions->C_FindObjectsInit(lease.handle(), search.data(),
                                                              search.size())));
  std::vector<CK_OBJECT_HANDLE> found;
  Status status = OkStatus();
  while (true) {
    if (found.size() >= kMaxFoundObjects) {
      status = ResourceExhausted("more than " + std::to_string(kMaxFoundObjects) +
                                 " objects match on the token");
      break;
    }
    CK_OBJECT_HANDLE batch[kFindBatchSize];
    CK_ULONG count = 0;
    status = lease.Check("C_FindObjects",
                         functions->C_FindObjects(lease.handle(), batch, kFindBatchSize, &count));
    if (!status || count == 0) break;
    found.insert(found.end(), batch, batch + count);
  }
  Status final_status =
      lease.Check("C_FindObjectsFinal", functions->C_FindObjectsFinal(lease.handle()));
  KW_RETURN_IF_ERROR(status);
  KW_RETURN_IF_ERROR(final_status);
  return found;
}

// Reads CKA_LABEL of `object`; nullopt when the object is gone or has no readable label.
Result<std::optional<std::string>> ReadLabel(SessionLease& lease, CK_OBJECT_HANDLE object) {
  CK_FUNCTION_LIST* functions = lease.functions();
  CK_ATTRIBUTE attribute = Attribute(CKA_LABEL, nullptr, 0);
  CK_RV rv = functions->C_GetAttributeValue(lease.handle(), object, &attribute, 1);
  if (rv == CKR_OBJECT_HANDLE_INVALID || attribute.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
    return std::nullopt;
  }
  KW_RETURN_IF_ERROR(lease.Check("C_GetAttributeValue", rv));
  std::string label(attribute.ulValueLen, '\0');
  attribute.pValue = label.data();
  rv = functions->C_GetAttributeValue(lease.handle(), object, &attribute, 1);
  if (rv == CKR_OBJECT_HANDLE_INVALID) return std::nullopt;
  KW_RETURN_IF_ERROR(lease.Check("C_GetAttributeValue", rv));
  label.resize(attribute.ulValueLen);
  return label;
}

}  // namespace

Result<std::unique_ptr<Pkcs11Token>> Pkcs11Token::Open(const TokenConfig& config,
                                                       const SecretBuffer& pin) {
  if (config.max_sessions == 0) {
    return InvalidArgument("max_sessions is 0; allow at least 1 PKCS#11 session");
  }
  KW_RETURN_IF_ERROR(PadTokenLabel(config.token_label));
  if (pin.empty()) return InvalidArgument("the token PIN is empty");

  KW_ASSIGN_OR_RETURN(std::shared_ptr<Module> module, Module::Acquire(config.module_path));
  CK_FUNCTION_LIST* functions = module->functions();
  KW_ASSIGN_OR_RETURN(CK_SLOT_ID slot, FindSlotByLabel(functions, config.token_label));
  std::string context = "open token \"" + config.token_label + "\"";

  Result<CK_SESSION_HANDLE> session = OpenRwSession(functions, slot);
  if (!session) return tl::unexpected(session.error().WithContext(context));
  Status login = module->Login(*session, slot, pin);
  if (!login) {
    functions->C_CloseSession(*session);
    return tl::unexpected(login.error().WithContext(context));
  }
  log::Info("PKCS#11 token opened", {{log::kPath, module->path()}, {"token_label", config.token_label}});
  return std::unique_ptr<Pkcs11Token>(
      new Pkcs11Token(std::move(module), slot, *session, config.max_sessions));
}

Pkcs11Token::Pkcs11Token(std::shared_ptr<Module> module, CK_SLOT_ID slot,
                         CK_SESSION_HANDLE object_session, std::size_t max_sessions)
    : module_(std::move(module)),
      slot_(slot),
      pool_(std::make_unique<SessionPool>(module_, slot, max_sessions)),
      object_session_(object_session) {}

Pkcs11Token::~Pkcs11Token() {
  pool_.reset();
  module_->Logout(object_session_, slot_);
  // Closing the object session also destroys the session copies.
  CK_RV rv = functions()->C_CloseSession(object_session_);
  if (rv != CKR_OK && !IsSessionLost(rv)) {
    log::Warn("C_CloseSession failed", {{log::kError, RvName(rv)}});
  }
}

Result<std::vector<CK_OBJECT_HANDLE>> Pkcs11Token::FindTokenObjects(SessionLease& lease,
                                                                    CK_OBJECT_CLASS object_class,
                                                                    std::string_view label) {
  std::vector<CK_ATTRIBUTE> search = {
      Attribute(CKA_CLASS, &object_class, sizeof(object_class)),
      BoolAttribute(CKA_TOKEN, true),
      Attribute(CKA_LABEL, label.data(), label.size()),
  };
  return FindObjects(lease, search);
}

Result<std::vector<CK_OBJECT_HANDLE>> Pkcs11Token::FindTokenKeys(SessionLease& lease,
                                                                 std::string_view label) {
  return FindTokenObjects(lease, kSecretKeyClass, label);
}

Result<KeyHandle> Pkcs11Token::SessionCopyOf(CK_OBJECT_HANDLE original) {
  std::lock_guard<std::mutex> lock(object_session_mutex_);
  auto existing = copy_of_original_.find(original);
  if (existing != copy_of_original_.end()) return KeyHandle{existing->second};

  // The copy lives in this process only and cannot be modified. SoftHSM refuses a copy that
  // weakens CKA_SENSITIVE or CKA_EXTRACTABLE.
  CK_ATTRIBUTE copy_template[] = {BoolAttribute(CKA_TOKEN, false),
                                  BoolAttribute(CKA_MODIFIABLE, false)};
  CK_OBJECT_HANDLE copy = CK_INVALID_HANDLE;
  CK_RV rv = functions()->C_CopyObject(object_session_, original, copy_template, 2, &copy);
  if (rv == CKR_ATTRIBUTE_READ_ONLY || rv == CKR_ACTION_PROHIBITED) {
    // NOTE: SoftHSM 2.6.1 refuses to change any attribute of a CKA_MODIFIABLE = false object,
    // CKA_TOKEN in a copy included. Keys that keyward generated before it made them modifiable
    // are therefore used as token objects, which SoftHSM serves at about half the rate.
    log::Debug("HSM key used as a token object; the token refused a session copy",
               {{log::kError, RvName(rv)}});
    copy_of_original_[original] = original;
    return KeyHandle{original};
  }
  KW_RETURN_IF_ERROR(CheckRv("C_CopyObject", rv));
  copy_of_original_[original] = copy;
  original_of_copy_[copy] = original;
  return KeyHandle{copy};
}

CK_OBJECT_HANDLE Pkcs11Token::TokenObjectOf(KeyHandle key) {
  std::lock_guard<std::mutex> lock(object_session_mutex_);
  auto original = original_of_copy_.find(key.value);
  return original == original_of_copy_.end() ? key.value : original->second;
}

Result<KeyHandle> Pkcs11Token::FindKey(std::string_view label) {
  if (label.empty()) return InvalidArgument("key label is empty");
  KW_ASSIGN_OR_RETURN(std::vector<CK_OBJECT_HANDLE> found,
                      WithSession(true, [&](SessionLease& lease) {
                        return FindTokenKeys(lease, label);
                      }));
  if (found.empty()) {
    return NotFound("no key is labelled \"" + std::string(label) + "\" on the token");
  }
  if (found.size() > 1) {
    return FailedPrecondition(std::to_string(found.size()) + " keys are labelled \"" +
                              std::string(label) + "\" on the token; delete the extra ones");
  }
  return SessionCopyOf(found.front());
}

Result<std::vector<std::string>> Pkcs11Token::ListKeyLabels(std::string_view prefix) {
  return WithSession(true, [&](SessionLease& lease) -> Result<std::vector<std::string>> {
    std::vector<CK_ATTRIBUTE> search = {
        Attribute(CKA_CLASS, &kSecretKeyClass, sizeof(kSecretKeyClass)),
        BoolAttribute(CKA_TOKEN, true),
    };
    KW_ASSIGN_OR_RETURN(std::vector<CK_OBJECT_HANDLE> objects, FindObjects(lease, search));
    std::vector<std::string> labels;
    for (CK_OBJECT_HANDLE object : objects) {
      KW_ASSIGN_OR_RETURN(std::optional<std::string> label, ReadLabel(lease, object));
      if (label && label->starts_with(prefix)) labels.push_back(std::move(*label));
    }
    std::sort(labels.begin(), labels.end());
    return labels;
  });
}

Result<KeyHandle> Pkcs11Token::GenerateKey(std::string_view label, CK_MECHANISM_TYPE mechanism,
                                           std::vector<CK_ATTRIBUTE>& key_template) {
  if (label.empty()) return InvalidArgument("key label is empty");
  std::lock_guard<std::mutex> lock(generate_mutex_);
  KW_ASSIGN_OR_RETURN(std::vector<CK_OBJECT_HANDLE> existing,
                      WithSession(true, [&](SessionLease& lease) {
                        return FindTokenKeys(lease, label);
                      }));
  if (!existing.empty()) {
    return AlreadyExists("a key labelled \"" + std::string(label) + "\" already exists");
  }

  // Not retried: a lost session leaves unknown whether the key was made.
  KW_ASSIGN_OR_RETURN(
      CK_OBJECT_HANDLE key, WithSession(false, [&](SessionLease& lease) -> Result<CK_OBJECT_HANDLE> {
        CK_MECHANISM generate{mechanism, nullptr, 0};
        CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
        KW_RETURN_IF_ERROR(lease.Check(
            "C_GenerateKey", lease.functions()->C_GenerateKey(lease.handle(), &generate,
                                                              key_template.data(),
                                                              key_template.size(), &handle)));
        return handle;
      }));
  log::Info("HSM key generated", {{"key_label", std::string(label)}});
  return SessionCopyOf(key);
}

Result<KeyHandle> Pkcs11Token::GenerateAesKey(std::string_view label) {
  const CK_KEY_TYPE key_type = CKK_AES;
  std::vector<CK_ATTRIBUTE> key_template = SecretKeyTemplate(key_type, label, true);
  return GenerateKey(label, CKM_AES_KEY_GEN, key_template);
}

Result<KeyHandle> Pkcs11Token::GenerateHmacKey(std::string_view label) {
  const CK_KEY_TYPE key_type = CKK_GENERIC_SECRET;
  std::vector<CK_ATTRIBUTE> key_template = SecretKeyTemplate(key_type, label, false);
  return GenerateKey(label, CKM_GENERIC_SECRET_KEY_GEN, key_template);
}

Result<KeyAttributes> Pkcs11Token::GetKeyAttributes(KeyHandle key) {
  if (key.value == CK_INVALID_HANDLE) return InvalidArgument("key handle is empty");
  CK_OBJECT_HANDLE object = TokenObjectOf(key);
  return WithSession(true, [&](SessionLease& lease) -> Result<KeyAttributes> {
    CK_BBOOL values[7] = {};
    CK_ATTRIBUTE read[7] = {
        Attribute(CKA_TOKEN, &values[0], 1),       Attribute(CKA_PRIVATE, &values[1], 1),
        Attribute(CKA_SENSITIVE, &values[2], 1),   Attribute(CKA_EXTRACTABLE, &values[3], 1),
        Attribute(CKA_ALWAYS_SENSITIVE, &values[4], 1),
        Attribute(CKA_NEVER_EXTRACTABLE, &values[5], 1),
        Attribute(CKA_LOCAL, &values[6], 1),
    };
    KW_RETURN_IF_ERROR(lease.Check("C_GetAttributeValue",
                                   lease.functions()->C_GetAttributeValue(lease.handle(), object,
                                                                          read, 7)));
    KeyAttributes attributes;
    attributes.token = values[0] == CK_TRUE;
    attributes.is_private = values[1] == CK_TRUE;
    attributes.sensitive = values[2] == CK_TRUE;
    attributes.extractable = values[3] == CK_TRUE;
    attributes.always_sensitive = values[4] == CK_TRUE;
    attributes.never_extractable = values[5] == CK_TRUE;
    attributes.local = values[6] == CK_TRUE;
    return attributes;
  });
}

}  // namespace kw::hsm::detail

namespace kw::hsm {

Result<std::unique_ptr<Token>> Token::Open(const TokenConfig& config, const SecretBuffer& pin) {
  KW_ASSIGN_OR_RETURN(std::unique_ptr<detail::Pkcs11Token> token,
                      detail::Pkcs11Token::Open(config, pin));
  return std::unique_ptr<Token>(std::move(token));
}

}  // namespace kw::hsm
