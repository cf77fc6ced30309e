#include "base/duration.hpp"

#include <cctype>
#include <cstdint>
#include <limits>

namespace kw {
namespace {

constexpr std::int64_t kMaxSeconds = std::numeric_limits<std::int64_t>::max() / 1000;

}  // namespace

std::optional<std::chrono::seconds> ParseDuration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  bool all_digits = true;
  for (char c : text) all_digits = all_digits && std::isdigit(static_cast<unsigned char>(c));

  std::int64_t total_ms = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    std::int64_t number = 0;
    const std::size_t start = i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      number = number * 10 + (text[i] - '0');
      if (number > kMaxSeconds) return std::nullopt;
      ++i;
    }
    if (i == start) return std::nullopt;
    if (all_digits) return std::chrono::seconds(number);

    std::int64_t unit_ms = 0;
    if (text.substr(i, 2) == "ms") {
      unit_ms = 1;
      i += 2;
    } else if (i < text.size() && text[i] == 'h') {
      unit_ms = 3600 * 1000;
      ++i;
    } else if (i < text.size() && text[i] == 'm') {
      unit_ms = 60 * 1000;
      ++i;
    } else if (i < text.size() && text[i] == 's') {
      unit_ms = 1000;
      ++i;
    } else {
      return std::nullopt;
    }
    if (number > kMaxSeconds / unit_ms) return std::nullopt;
    total_ms += number * unit_ms;
    if (total_ms > kMaxSeconds) return std::nullopt;
  }
  return std::chrono::seconds(total_ms / 1000);
}

std::string FormatDuration(std::chrono::seconds duration) {
  std::int64_t seconds = duration.count();
  if (seconds <= 0) return "0s";
  const std::int64_t hours = seconds / 3600;
  const std::int64_t minutes = (seconds % 3600) / 60;
  seconds %= 60;
  std::string out;
  if (hours > 0) out += std::to_string(hours) + "h";
  if (hours > 0 || minutes > 0) out += std::to_string(minutes) + "m";
  out += std::to_string(seconds) + "s";
  return out;
}

}  // namespace kw
