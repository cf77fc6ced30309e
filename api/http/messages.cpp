#include "api/http/messages.hpp"

#include <algorithm>
#include <cctype>
#include <utility>

#include <boost/beast/core/string.hpp>
#include <nlohmann/json.hpp>

#include "base/log.hpp"
#include "base/secret_buffer.hpp"

namespace kw::api::detail {

namespace http = boost::beast::http;

namespace {

std::string ToLower(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower;
}

bool HasControlBreak(std::string_view text) {
  return text.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

// Statuses whose responses never carry a body (RFC 9110, section 6.4.1).
bool StatusForbidsBody(int status) { return status < 200 || status == 204 || status == 304; }

}  // namespace

std::string ErrorBody(std::string_view message) {
  nlohmann::json body = {{"errors", nlohmann::json::array({std::string(message)})}};
  return body.dump();
}

HttpResponse MakeErrorResponse(int status, std::string_view message) {
  HttpResponse response;
  response.status = status;
  response.headers.emplace_back("Content-Type", "application/json");
  response.body = ErrorBody(message);
  return response;
}

HttpRequest ToHttpRequest(BeastRequest& message) {
  HttpRequest request;
  request.method = std::string(message.method_string());
  request.target = std::string(message.target());
  for (const auto& field : message) {
    request.headers.emplace_back(ToLower(field.name_string()), std::string(field.value()));
  }
  request.body = std::move(message.body());
  message.body().clear();
  return request;
}

HttpRequest ToHttpRequestHead(const BeastRequest& message) {
  HttpRequest request;
  request.method = std::string(message.method_string());
  request.target = std::string(message.target());
  for (const auto& field : message) {
    request.headers.emplace_back(ToLower(field.name_string()), std::string(field.value()));
  }
  return request;
}

BeastResponse ToBeastResponse(HttpResponse&& response, unsigned version, bool head_request,
                              bool& keep_alive) {
  BeastResponse message;
  message.version(version);

  int status = response.status;
  if (status < 100 || status > 999) {
    log::Error("request handler returned an invalid HTTP status", {{"status", status}});
    WipeString(response.body);
    response = MakeErrorResponse(500, "internal error");
    status = 500;
  }
  message.result(static_cast<unsigned>(status));

  bool has_content_type = false;
  for (const auto& [name, value] : response.headers) {
    if (name.empty() || HasControlBreak(name) || HasControlBreak(value)) {
      log::Warn("dropped a response header with an invalid name or value",
                {{"header", HasControlBreak(name) ? std::string("(invalid)") : name}});
      continue;
    }
    if (boost::beast::iequals(name, "content-length") ||
        boost::beast::iequals(name, "transfer-encoding")) {
      continue;
    }
    if (boost::beast::iequals(name, "connection")) {
      if (boost::beast::iequals(value, "close")) keep_alive = false;
      continue;
    }
    if (boost::beast::iequals(name, "content-type")) has_content_type = true;
    message.insert(name, value);
  }

  if (StatusForbidsBody(status)) {
    WipeString(response.body);
  }
  if (!response.body.empty() && !has_content_type) {
    message.set(http::field::content_type, "application/json");
  }

  if (head_request) {
    if (!StatusForbidsBody(status)) message.content_length(response.body.size());
    WipeString(response.body);
  } else {
    message.body() = std::move(response.body);
    response.body.clear();
    message.prepare_payload();
  }
  message.keep_alive(keep_alive);
  return message;
}

}  // namespace kw::api::detail
