#include "api/request_path.hpp"

#include <cstdint>
#include <cstdio>

namespace kw::api {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes `text`; '+' becomes a space when `plus_is_space` (query strings).
Result<std::string> PercentDecode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%') {
      if (i + 2 >= text.size()) {
        return InvalidArgument("truncated percent-encoding");
      }
      const int high = HexValue(text[i + 1]);
      const int low = HexValue(text[i + 2]);
      if (high < 0 || low < 0) return InvalidArgument("invalid percent-encoding");
      out.push_back(static_cast<char>(high * 16 + low));
      i += 2;
    } else if (plus_is_space && text[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

Status ValidateSegment(std::string_view raw, std::string_view decoded) {
  if (decoded.empty()) return InvalidArgument("empty path segment (doubled slash)");
  if (decoded == "." || decoded == "..") return InvalidArgument("\".\" and \"..\" segments are not allowed");
  if (raw.find('%') != std::string_view::npos &&
      (decoded.find('/') != std::string_view::npos)) {
    return InvalidArgument("encoded slashes are not allowed");
  }
  for (unsigned char c : decoded) {
    if (c == 0) return InvalidArgument("NUL bytes are not allowed");
    if (c < 0x20 || c == 0x7f) return InvalidArgument("control characters are not allowed");
    if (c == '\\') return InvalidArgument("backslashes are not allowed");
  }
  if (!IsValidUtf8(decoded)) return InvalidArgument("path is not valid UTF-8");
  return OkStatus();
}

Result<std::vector<std::pair<std::string, std::string>>> ParseQuery(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const std::size_t eq = pair.find('=');
    auto key = PercentDecode(pair.substr(0, eq), true);
    auto value = PercentDecode(eq == std::string_view::npos ? "" : pair.substr(eq + 1), true);
    if (!key || !value) return InvalidArgument("invalid query string: bad percent-encoding");
    out.emplace_back(std::move(*key), std::move(*value));
  }
  return out;
}

}  // namespace

bool IsValidUtf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t length = 0;
    std::uint32_t code = 0;
    if ((c & 0xe0) == 0xc0) {
      length = 2;
      code = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      length = 3;
      code = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      length = 4;
      code = c & 0x07;
    } else {
      return false;
    }
    if (i + length > text.size()) return false;
    for (std::size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      code = (code << 6) | (next & 0x3f);
    }
    // The smallest code point each length may encode; anything below is an overlong form.
    std::uint32_t minimum = 0x10000;
    if (length == 2) minimum = 0x80;
    if (length == 3) minimum = 0x800;
    if (code < minimum || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return false;
    i += length;
  }
  return true;
}

std::string Printable(std::string_view text) {
  std::string out;
  for (unsigned char c : text.substr(0, 256)) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\x%02x", c);
      out += buffer;
    }
  }
  if (text.size() > 256) out += "...";
  return out;
}

Result<ParsedTarget> ParseTarget(std::string_view target) {
  const std::size_t question = target.find('?');
  const std::string_view raw_path = target.substr(0, question);
  const std::string_view raw_query =
      question == std::string_view::npos ? std::string_view() : target.substr(question + 1);

  constexpr std::string_view kPrefix = "/v1/";
  if (!raw_path.starts_with(kPrefix)) {
    return NotFound("no handler for route \"" + Printable(raw_path) + "\": paths start with /v1/");
  }
  std::string_view rest = raw_path.substr(kPrefix.size());

  ParsedTarget parsed;
  if (rest.ends_with('/')) {
    parsed.trailing_slash = true;
    rest.remove_suffix(1);
  }
  while (!rest.empty() || parsed.path.empty()) {
    const std::size_t slash = rest.find('/');
    const std::string_view raw_segment = rest.substr(0, slash);
    auto decoded = PercentDecode(raw_segment, false);
    Status valid = decoded ? ValidateSegment(raw_segment, *decoded)
                           : Status(tl::unexpected(decoded.error()));
    if (!valid) {
      return InvalidArgument("invalid request path \"" + Printable(raw_path) +
                             "\": " + valid.error().message());
    }
    if (!parsed.path.empty()) parsed.path.push_back('/');
    parsed.path += *decoded;
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
    if (rest.empty()) {
      return InvalidArgument("invalid request path \"" + Printable(raw_path) +
                             "\": empty path segment (doubled slash)");
    }
  }

  KW_ASSIGN_OR_RETURN(parsed.query, ParseQuery(raw_query));
  return parsed;
}

}  // namespace kw::api
