#pragma once

#include <string>
#include <string_view>
#include <utility>

#include <tl/expected.hpp>

namespace kw {

// Error categories shared by every module. The API maps them to HTTP statuses in one place
// (api/errors.cpp); callers branch on the code, never on the message.
enum class Code {
  kInvalidArgument,     // the caller's input is wrong; fix the request
  kNotFound,            // the named object does not exist
  kAlreadyExists,       // the object exists and may not be created again
  kPermissionDenied,    // the caller is known but lacks the right
  kUnauthenticated,     // no valid credential
  kFailedPrecondition,  // the state forbids the call; fix state first
  kAborted,             // a check-and-set lost a race; redo the check
  kUnavailable,         // retry later (sealed, HSM gone)
  kResourceExhausted,   // a limit or quota was reached
  kDataLoss,            // stored data is corrupt or fails authentication
  kInternal,            // a bug or an unexpected failure underneath
};

// Returns the lower-case name of `code`, such as "invalid_argument".
std::string_view CodeName(Code code);

// A failure: a code to branch on and a message for people. Messages start lower-case, end
// without a period, and never contain a secret.
class Error {
 public:
  Error(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  // Returns a copy whose message reads "<context>: <message>", keeping the code.
  Error WithContext(std::string_view context) const;

 private:
  Code code_;
  std::string message_;
};

template <typename T>
using Result = tl::expected<T, Error>;
using Status = tl::expected<void, Error>;

inline tl::unexpected<Error> MakeError(Code code, std::string message) {
  return tl::unexpected<Error>(Error(code, std::move(message)));
}
inline tl::unexpected<Error> InvalidArgument(std::string m) {
  return MakeError(Code::kInvalidArgument, std::move(m));
}
inline tl::unexpected<Error> NotFound(std::string m) {
  return MakeError(Code::kNotFound, std::move(m));
}
inline tl::unexpected<Error> AlreadyExists(std::string m) {
  return MakeError(Code::kAlreadyExists, std::move(m));
}
inline tl::unexpected<Error> PermissionDenied(std::string m) {
  return MakeError(Code::kPermissionDenied, std::move(m));
}
inline tl::unexpected<Error> Unauthenticated(std::string m) {
  return MakeError(Code::kUnauthenticated, std::move(m));
}
inline tl::unexpected<Error> FailedPrecondition(std::string m) {
  return MakeError(Code::kFailedPrecondition, std::move(m));
}
inline tl::unexpected<Error> Aborted(std::string m) {
  return MakeError(Code::kAborted, std::move(m));
}
inline tl::unexpected<Error> Unavailable(std::string m) {
  return MakeError(Code::kUnavailable, std::move(m));
}
inline tl::unexpected<Error> ResourceExhausted(std::string m) {
  return MakeError(Code::kResourceExhausted, std::move(m));
}
inline tl::unexpected<Error> DataLoss(std::string m) {
  return MakeError(Code::kDataLoss, std::move(m));
}
inline tl::unexpected<Error> Internal(std::string m) {
  return MakeError(Code::kInternal, std::move(m));
}

inline Status OkStatus() { return {}; }

// Logs `message` with the failed condition and aborts. For broken invariants only.
[[noreturn]] void CheckFailed(const char* condition, const char* file, int line,
                              std::string_view message);

}  // namespace kw

#define KW_CONCAT_INNER(a, b) a##b
#define KW_CONCAT(a, b) KW_CONCAT_INNER(a, b)

// Returns the error of `expr` (a Status or Result) from the enclosing function.
#define KW_RETURN_IF_ERROR(expr)                                    \
  do {                                                              \
    auto kw_status_ = (expr);                                       \
    if (!kw_status_) return tl::unexpected(std::move(kw_status_).error()); \
  } while (0)

// Evaluates `expr` (a Result<T>); on error returns it, otherwise moves the value into `lhs`.
#define KW_ASSIGN_OR_RETURN(lhs, expr) \
  KW_ASSIGN_OR_RETURN_IMPL(KW_CONCAT(kw_result_, __LINE__), lhs, expr)
#define KW_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr)                 \
  auto tmp = (expr);                                             \
  if (!tmp) return tl::unexpected(std::move(tmp).error());       \
  lhs = std::move(tmp).value()

// Aborts the process (after logging) when `cond` is false: a broken invariant, fail closed.
#define KW_CHECK(cond, message)                                      \
  do {                                                               \
    if (!(cond)) ::kw::CheckFailed(#cond, __FILE__, __LINE__, (message)); \
  } while (0)
