#include "api/request_context.hpp"

namespace kw::api {

nlohmann::json Envelope(const RequestContext& context, nlohmann::json data) {
  return {{"request_id", context.request_id},
          {"lease_id", ""},
          {"renewable", false},
          {"lease_duration", 0},
          {"data", std::move(data)},
          {"wrap_info", nullptr},
          {"warnings", nullptr},
          {"auth", nullptr}};
}

Reply ErrorReply(int status, std::vector<std::string> messages) {
  return Reply{status, {{"errors", std::move(messages)}}};
}

int HttpStatusFor(Code code) {
  switch (code) {
    case Code::kInvalidArgument: return 400;
    case Code::kNotFound: return 404;
    case Code::kAlreadyExists: return 400;
    case Code::kPermissionDenied: return 403;
    case Code::kUnauthenticated: return 403;
    case Code::kFailedPrecondition: return 400;
    case Code::kAborted: return 409;
    case Code::kUnavailable: return 503;
    case Code::kResourceExhausted: return 429;
    case Code::kDataLoss: return 500;
    case Code::kInternal: return 500;
  }
  return 500;
}

Reply ReplyForError(const Error& error) {
  if (error.code() == Code::kUnauthenticated || error.code() == Code::kPermissionDenied) {
    return ErrorReply(403, {"permission denied"});
  }
  return ErrorReply(HttpStatusFor(error.code()), {error.message()});
}

Reply MethodNotAllowed(const RequestContext& context) {
  return ErrorReply(405, {"unsupported operation: " + context.method + " is not allowed on " +
                          context.path});
}

}  // namespace kw::api
