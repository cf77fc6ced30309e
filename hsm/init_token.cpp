// InitializeToken: token setup for development mode and tests.
#include <algorithm>

#include "base/log.hpp"
#include "hsm/detail/ck_error.hpp"
#include "hsm/detail/module.hpp"
#include "hsm/detail/session_pool.hpp"
#include "hsm/detail/slots.hpp"
#include "hsm/token.hpp"

namespace kw::hsm {
namespace {

CK_UTF8CHAR* PinPointer(const SecretBuffer& pin) {
  return const_cast<CK_UTF8CHAR*>(pin.Reveal().data());
}

// Logs in as security officer on `session`, sets the user PIN and logs out again.
Status SetUserPin(CK_FUNCTION_LIST* functions, CK_SESSION_HANDLE session,
                  const SecretBuffer& so_pin, const SecretBuffer& user_pin) {
  KW_RETURN_IF_ERROR(detail::CheckRv(
      "C_Login", functions->C_Login(session, CKU_SO, PinPointer(so_pin), so_pin.size())));
  Status init_pin = detail::CheckRv(
      "C_InitPIN", functions->C_InitPIN(session, PinPointer(user_pin), user_pin.size()));
  Status logout = detail::CheckRv("C_Logout", functions->C_Logout(session));
  KW_RETURN_IF_ERROR(init_pin);
  return logout;
}

Status InitializeInModule(detail::Module& module, std::string_view label,
                          const SecretBuffer& so_pin, const SecretBuffer& user_pin) {
  CK_FUNCTION_LIST* functions = module.functions();
  KW_ASSIGN_OR_RETURN(auto padded_label, detail::PadTokenLabel(label));
  KW_ASSIGN_OR_RETURN(std::vector<detail::SlotToken> tokens, detail::ListTokens(functions));

  auto same_label = [&](const detail::SlotToken& token) {
    return token.initialized && token.label == label;
  };
  if (std::any_of(tokens.begin(), tokens.end(), same_label)) {
    return AlreadyExists("a PKCS#11 token labelled \"" + std::string(label) + "\" exists");
  }
  auto free_slot = std::find_if(tokens.begin(), tokens.end(),
                                [](const detail::SlotToken& token) { return !token.initialized; });
  if (free_slot == tokens.end()) {
    return ResourceExhausted("no slot holds an uninitialised token; SoftHSM always offers one, "
                             "other modules need one made with their own tools");
  }

  KW_RETURN_IF_ERROR(detail::CheckRv(
      "C_InitToken", functions->C_InitToken(free_slot->slot, PinPointer(so_pin), so_pin.size(),
                                            padded_label.data())));

  // SoftHSM may list the new token under another slot id, so look it up again by label.
  KW_ASSIGN_OR_RETURN(CK_SLOT_ID slot, detail::FindSlotByLabel(functions, label));
  KW_ASSIGN_OR_RETURN(CK_SESSION_HANDLE session, detail::OpenRwSession(functions, slot));
  Status status = SetUserPin(functions, session, so_pin, user_pin);
  functions->C_CloseSession(session);
  return status;
}

}  // namespace

Status InitializeToken(const std::string& module_path, std::string_view label,
                       const SecretBuffer& so_pin, const SecretBuffer& user_pin) {
  if (so_pin.empty()) return InvalidArgument("the security officer PIN is empty");
  if (user_pin.empty()) return InvalidArgument("the user PIN is empty");
  KW_ASSIGN_OR_RETURN(std::shared_ptr<detail::Module> module,
                      detail::Module::Acquire(module_path));
  Status status = InitializeInModule(*module, label, so_pin, user_pin);
  if (!status) {
    return tl::unexpected(status.error().WithContext("initialize token \"" + std::string(label) +
                                                     "\""));
  }
  log::Info("PKCS#11 token initialised", {{log::kPath, module->path()}, {"token_label",
                                                                        std::string(label)}});
  return OkStatus();
}

}  // namespace kw::hsm
