#pragma once

#include <string>
#include <string_view>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "api/http_server.hpp"

namespace kw::api::detail {

using BeastRequest = boost::beast::http::request<boost::beast::http::string_body>;
using BeastResponse = boost::beast::http::response<boost::beast::http::string_body>;

// Returns the listener's error body, {"errors":["<message>"]}.
std::string ErrorBody(std::string_view message);

// Returns a JSON error response of `status` with {"errors":["<message>"]} as its body.
HttpResponse MakeErrorResponse(int status, std::string_view message);

// Moves the parsed message into an HttpRequest: method and target as received, header names
// lower-cased, the body moved out (so `message` no longer contains it).
HttpRequest ToHttpRequest(BeastRequest& message);
// Copies the request line and headers of `message`, without the body.
HttpRequest ToHttpRequestHead(const BeastRequest& message);

// Builds the Beast response for `response`, moving its body out. Sets Content-Length, the
// default Content-Type application/json for a non-empty body, and Connection per `keep_alive`.
// For a HEAD request (`head_request`) the body is dropped and Content-Length keeps its size.
// Handler headers that would break framing (Content-Length, Transfer-Encoding, or any name
// or value containing CR, LF or NUL) are dropped. A handler "Connection: close" header clears
// `keep_alive`. An invalid status becomes 500.
BeastResponse ToBeastResponse(HttpResponse&& response, unsigned version, bool head_request,
                              bool& keep_alive);

}  // namespace kw::api::detail
