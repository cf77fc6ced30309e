#include "vault/auth/spiffe_id.hpp"

namespace kw::vault::auth {
namespace {

constexpr std::string_view kScheme = "spiffe://";
// Messages quote at most this many bytes of the input.
constexpr std::size_t kMaxQuotedBytes = 128;

// Returns the error for `text`, quoting it (shortened when long).
tl::unexpected<Error> Invalid(std::string_view text, std::string_view reason) {
  std::string quoted(text.substr(0, kMaxQuotedBytes));
  if (text.size() > kMaxQuotedBytes) quoted += "...";
  return InvalidArgument("invalid SPIFFE ID \"" + quoted + "\": " + std::string(reason));
}

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// The character classes are spelled out: the standard's "[a-zA-Z0-9.-_]" read as a regex
// class would be the range '.'..'_', which admits '/', ':', '@' and upper-case letters.
bool IsTrustDomainChar(char c) { return IsLowerAlnum(c) || c == '.' || c == '-' || c == '_'; }

bool IsPathChar(char c) {
  return IsTrustDomainChar(c) || (c >= 'A' && c <= 'Z');
}

// Returns the reason `trust_domain` is invalid, or an empty view when it is valid.
std::string_view TrustDomainProblem(std::string_view trust_domain) {
  if (trust_domain.empty()) return "missing trust domain";
  if (trust_domain.size() > kMaxTrustDomainBytes) return "trust domain longer than 255 bytes";
  if (trust_domain.starts_with('[')) return "an IPv6 address is not a valid trust domain";
  for (const char c : trust_domain) {
    if (IsTrustDomainChar(c)) continue;
    if (c == '@') return "userinfo is not allowed in the trust domain";
    if (c == ':') return "a port is not allowed in the trust domain";
    if (c == '%') return "percent-encoding is not allowed in the trust domain";
    if (c >= 'A' && c <= 'Z') return "the trust domain must be lower-case";
    if (static_cast<unsigned char>(c) >= 0x80) return "non-ASCII character in the trust domain";
    return "invalid character in the trust domain: only a-z, 0-9, '.', '-' and '_' are allowed";
  }
  return {};
}

// Returns the reason `path` (empty or starting with '/') is invalid, or an empty view.
std::string_view PathProblem(std::string_view path) {
  if (path.empty()) return {};
  if (path.ends_with('/')) return "the path must not end with '/'";
  std::size_t start = 1;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view segment = path.substr(start, end - start);
    if (segment.empty()) return "empty path segment";
    if (segment == "." || segment == "..") return "'.' and '..' path segments are not allowed";
    for (const char c : segment) {
      if (IsPathChar(c)) continue;
      if (c == '%') return "percent-encoding is not allowed in the path";
      if (static_cast<unsigned char>(c) >= 0x80) return "non-ASCII character in the path";
      return "invalid character in the path: only a-z, A-Z, 0-9, '.', '-' and '_' are allowed";
    }
    start = end + 1;
  }
  return {};
}

}  // namespace

Result<SpiffeId> ParseSpiffeId(std::string_view text) {
  if (text.empty()) return InvalidArgument("invalid SPIFFE ID: empty");
  if (!text.starts_with(kScheme)) return Invalid(text, "the scheme must be \"spiffe://\"");
  if (text.find('#') != std::string_view::npos) return Invalid(text, "a fragment is not allowed");
  if (text.find('?') != std::string_view::npos) return Invalid(text, "a query is not allowed");

  const std::string_view rest = text.substr(kScheme.size());
  const std::size_t slash = rest.find('/');
  const std::string_view trust_domain = rest.substr(0, slash);
  if (const auto problem = TrustDomainProblem(trust_domain); !problem.empty()) {
    return Invalid(text, problem);
  }
  const std::string_view path =
      slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  if (const auto problem = PathProblem(path); !problem.empty()) return Invalid(text, problem);
  return SpiffeId{std::string(trust_domain), std::string(path)};
}

Status ValidateSpiffeIdPattern(std::string_view pattern) {
  if (pattern.ends_with("/*")) {
    return ParseSpiffeId(pattern.substr(0, pattern.size() - 2)).map([](const SpiffeId&) {});
  }
  return ParseSpiffeId(pattern).map([](const SpiffeId&) {});
}

bool SpiffeIdMatches(std::string_view pattern, const SpiffeId& id) {
  if (!ValidateSpiffeIdPattern(pattern)) return false;
  const std::string text = id.str();
  if (!pattern.ends_with("/*")) return text == pattern;
  // Keep the '/': the ID must continue after it with at least one more segment.
  const std::string_view prefix = pattern.substr(0, pattern.size() - 1);
  return text.size() > prefix.size() && std::string_view(text).starts_with(prefix);
}

}  // namespace kw::vault::auth
