#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace kw {

// Parses a duration as Vault accepts it: a whole number of seconds ("3600") or a Go-style
// sequence of numbers with units h, m, s, ms ("1h30m", "90s", "0s"). Returns nullopt for
// anything else, negative values included.
std::optional<std::chrono::seconds> ParseDuration(std::string_view text);

// Formats `duration` Go-style, as Vault prints durations: "0s", "1h30m0s", "45s".
std::string FormatDuration(std::chrono::seconds duration);

}  // namespace kw
