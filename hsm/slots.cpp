#include "hsm/detail/slots.hpp"

#include <algorithm>

#include "hsm/detail/ck_error.hpp"

namespace kw::hsm::detail {
namespace {

// A token may appear between the two C_GetSlotList calls; try again a few times.
constexpr int kSlotListAttempts = 4;

Result<std::vector<CK_SLOT_ID>> ListSlotsWithToken(CK_FUNCTION_LIST* functions) {
  for (int attempt = 0; attempt < kSlotListAttempts; ++attempt) {
    CK_ULONG count = 0;
    KW_RETURN_IF_ERROR(CheckRv("C_GetSlotList", functions->C_GetSlotList(CK_TRUE, nullptr,
                                                                         &count)));
    std::vector<CK_SLOT_ID> slots(count);
    CK_RV rv = functions->C_GetSlotList(CK_TRUE, slots.data(), &count);
    if (rv == CKR_BUFFER_TOO_SMALL) continue;
    KW_RETURN_IF_ERROR(CheckRv("C_GetSlotList", rv));
    slots.resize(count);
    return slots;
  }
  return Unavailable("C_GetSlotList failed: the slot list kept changing");
}

std::string TrimPadding(const CK_UTF8CHAR* field, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(field), size);
  std::size_t end = text.find_last_not_of(' ');
  text.resize(end == std::string::npos ? 0 : end + 1);
  return text;
}

}  // namespace

Result<std::vector<SlotToken>> ListTokens(CK_FUNCTION_LIST* functions) {
  KW_ASSIGN_OR_RETURN(std::vector<CK_SLOT_ID> slots, ListSlotsWithToken(functions));
  std::vector<SlotToken> tokens;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info{};
    CK_RV rv = functions->C_GetTokenInfo(slot, &info);
    // The token may have been removed since C_GetSlotList.
    if (rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_SLOT_ID_INVALID) continue;
    KW_RETURN_IF_ERROR(CheckRv("C_GetTokenInfo", rv));
    tokens.push_back(SlotToken{slot, TrimPadding(info.label, sizeof(info.label)),
                               (info.flags & CKF_TOKEN_INITIALIZED) != 0});
  }
  return tokens;
}

Result<CK_SLOT_ID> FindSlotByLabel(CK_FUNCTION_LIST* functions, std::string_view label) {
  KW_ASSIGN_OR_RETURN(std::vector<SlotToken> tokens, ListTokens(functions));
  std::vector<CK_SLOT_ID> matches;
  for (const SlotToken& token : tokens) {
    if (token.initialized && token.label == label) matches.push_back(token.slot);
  }
  if (matches.empty()) {
    return NotFound("no initialised PKCS#11 token is labelled \"" + std::string(label) + "\"");
  }
  if (matches.size() > 1) {
    return FailedPrecondition(std::to_string(matches.size()) + " PKCS#11 tokens are labelled \"" +
                              std::string(label) + "\"; give each token a unique label");
  }
  return matches.front();
}

Result<std::array<CK_UTF8CHAR, kTokenLabelSize>> PadTokenLabel(std::string_view label) {
  if (label.empty()) return InvalidArgument("token label is empty");
  if (label.size() > kTokenLabelSize) {
    return InvalidArgument("token label \"" + std::string(label) + "\" is longer than " +
                           std::to_string(kTokenLabelSize) + " bytes");
  }
  std::array<CK_UTF8CHAR, kTokenLabelSize> padded;
  padded.fill(' ');
  std::copy(label.begin(), label.end(), padded.begin());
  return padded;
}

}  // namespace kw::hsm::detail
