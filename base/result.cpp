#include "base/result.hpp"

#include <cstdlib>

#include "base/log.hpp"

namespace kw {

std::string_view CodeName(Code code) {
  switch (code) {
    case Code::kInvalidArgument: return "invalid_argument";
    case Code::kNotFound: return "not_found";
    case Code::kAlreadyExists: return "already_exists";
    case Code::kPermissionDenied: return "permission_denied";
    case Code::kUnauthenticated: return "unauthenticated";
    case Code::kFailedPrecondition: return "failed_precondition";
    case Code::kAborted: return "aborted";
    case Code::kUnavailable: return "unavailable";
    case Code::kResourceExhausted: return "resource_exhausted";
    case Code::kDataLoss: return "data_loss";
    case Code::kInternal: return "internal";
  }
  return "unknown";
}

Error Error::WithContext(std::string_view context) const {
  std::string message(context);
  message += ": ";
  message += message_;
  return Error(code_, std::move(message));
}

void CheckFailed(const char* condition, const char* file, int line, std::string_view message) {
  log::Error("invariant violated, aborting",
             {{"condition", condition}, {"file", file}, {"line", line},
              {"error", std::string(message)}});
  std::abort();
}

}  // namespace kw
