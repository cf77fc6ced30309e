#pragma once

#include <string>
#include <vector>

// The rows of the hostile request table (hostile_test.cpp): malformed and hostile requests,
// grouped by the route family they target, each with the status and error text the server must
// respond with. Rows are only ever rejected, so after every row the stored data must be
// unchanged.
namespace kw::e2e {

// Replaced by the root token in every header block and raw request.
inline constexpr std::string_view kTokenPlaceholder = "{token}";
// A value that hostile bodies carry and that no response may echo back.
inline constexpr std::string_view kPlantedValue = "hostile-planted-7f3a";

struct HostileCase {
  // The route family, as in api/router.cpp: "secret", "sys/seal", "auth/token", "framing" ...
  std::string family;
  std::string method;
  std::string target;
  // Extra header lines, each ending in \r\n. Rows with `authenticate` also get X-Vault-Token.
  std::string headers;
  std::string body;
  int status = 0;
  std::string error;  // a substring of the response body
  bool authenticate = true;
  // When not empty, sent byte for byte instead of a request built from the fields above.
  std::string raw;
};

// Returns every row, family by family.
std::vector<HostileCase> HostileCases();

// Returns a complete HTTP/1.1 request with Connection: close and, for POST, PUT and PATCH or a
// non-empty body, a Content-Length.
std::string BuildRawRequest(const std::string& method, const std::string& target,
                            const std::string& headers, const std::string& body);

// Returns a JSON body nested `depth` arrays deep inside {"<field>": ...}.
std::string NestedBody(const std::string& field, int depth);

}  // namespace kw::e2e
