#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.hpp"

namespace kw::api {

// A request-target split into its validated, percent-decoded path below /v1/ and its query.
struct ParsedTarget {
  std::string path;            // "secret/data/app/db": no leading slash, no trailing slash
  bool trailing_slash = false;  // the target ended in '/', as LIST requests often do
  std::vector<std::pair<std::string, std::string>> query;
};

// Parses and validates `target`. The path is checked segment by segment after percent-
// decoding: empty, "." and ".." segments, encoded slashes and backslashes, NUL and other
// control characters, and invalid UTF-8 (overlong forms included) are rejected with
// invalid_argument naming the path. not_found when the target is not below /v1/.
Result<ParsedTarget> ParseTarget(std::string_view target);

// Returns whether `text` is well-formed UTF-8: no overlong forms, surrogates or code points
// above U+10FFFF.
bool IsValidUtf8(std::string_view text);

// Returns `text` fit for an error message: at most 256 bytes, control characters and bytes
// outside printable ASCII written as \xNN.
std::string Printable(std::string_view text);

}  // namespace kw::api
