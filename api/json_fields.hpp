#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.hpp"

// Typed reads of request fields. Errors name the field and the expected type and never
// contain the value, which may be a secret. Like Vault, numbers and booleans given as strings
// ("5", "true") are accepted.
namespace kw::api {

// Maximum nesting depth of a request body.
inline constexpr int kMaxJsonDepth = 64;
// Maximum number of values (objects, arrays, strings, numbers, ...) in a request body, so that
// a body within the size limit cannot expand into gigabytes of parsed objects.
inline constexpr std::size_t kMaxJsonValues = 100'000;
// Maximum duration a field accepts: 100 years, far from where time arithmetic overflows.
inline constexpr std::chrono::seconds kMaxDuration{100LL * 365 * 24 * 3600};

// Parses a request body. Empty text gives null. invalid_argument for malformed JSON (naming
// the byte offset, never the content), nesting deeper than kMaxJsonDepth, more than
// kMaxJsonValues values, or a top level that is not an object.
Result<nlohmann::json> ParseBody(std::string_view text);

Result<std::optional<std::int64_t>> OptionalInt(const nlohmann::json& object,
                                                std::string_view field);
Result<std::optional<bool>> OptionalBool(const nlohmann::json& object, std::string_view field);
Result<std::optional<std::string>> OptionalString(const nlohmann::json& object,
                                                  std::string_view field);
// A duration as a number of seconds or a string such as "1h30m", at most kMaxDuration.
Result<std::optional<std::chrono::seconds>> OptionalDuration(const nlohmann::json& object,
                                                             std::string_view field);
// An object whose values are all strings.
Result<std::optional<std::map<std::string, std::string>>> OptionalStringMap(
    const nlohmann::json& object, std::string_view field);
// A list of strings, as an array or a comma-separated string (items trimmed, empties dropped).
Result<std::optional<std::vector<std::string>>> OptionalStringList(const nlohmann::json& object,
                                                                  std::string_view field);
// A list of positive integers, as an array or a comma-separated string.
Result<std::vector<std::int64_t>> IntList(const nlohmann::json& object, std::string_view field);

// Parses a non-negative integer from text; nullopt when it is not one.
std::optional<std::int64_t> ParseNonNegative(std::string_view text);

}  // namespace kw::api
