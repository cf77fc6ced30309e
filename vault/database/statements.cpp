#include "vault/database/statements.hpp"

#include <array>
#include <ctime>
#include <functional>
#include <optional>

namespace kw::vault::database {
namespace {

enum class Quoting { kBare, kIdentifier, kLiteral };

// A placeholder found in a template, and how it was written.
struct Placeholder {
  std::string_view name;  // "name", "username", "password" or "expiration"
  Quoting quoting;
};

using ReplaceFn = std::function<Result<std::string>(const Placeholder&)>;

constexpr std::array<std::string_view, 4> kPlaceholders = {"name", "username", "password",
                                                           "expiration"};

// Returns the placeholder name when `text` starts with "{{<known name>}}".
std::optional<std::string_view> PlaceholderAt(std::string_view text) {
  if (!text.starts_with("{{")) return std::nullopt;
  const std::size_t end = text.find("}}");
  if (end == std::string_view::npos) return std::nullopt;
  const std::string_view name = text.substr(2, end - 2);
  for (std::string_view known : kPlaceholders) {
    if (name == known) return known;
  }
  return std::nullopt;
}

// Returns the dollar-quote tag ("$$" or "$tag$") starting `text`, if any.
std::optional<std::string_view> DollarTag(std::string_view text) {
  if (!text.starts_with('$')) return std::nullopt;
  for (std::size_t i = 1; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '$') return text.substr(0, i + 1);
    const bool word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                      (i > 1 && c >= '0' && c <= '9');
    if (!word) return std::nullopt;
  }
  return std::nullopt;
}

// Walks `text` once, copying it to the output with every placeholder replaced by `replace`.
// Fails on unknown placeholders, placeholders inside quotes or comments, unbalanced quotes.
Result<std::string> Expand(std::string_view text, const ReplaceFn& replace) {
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::string_view rest = text.substr(i);
    const char c = text[i];

    // A placeholder written inside quotes of its own: "{{name}}" or '{{password}}'.
    if (c == '"' || c == '\'') {
      if (auto name = PlaceholderAt(rest.substr(1))) {
        const std::size_t length = name->size() + 4;
        if (rest.size() > length + 1 && rest[length + 1] == c) {
          const Quoting quoting = c == '"' ? Quoting::kIdentifier : Quoting::kLiteral;
          KW_ASSIGN_OR_RETURN(std::string value, replace({*name, quoting}));
          out += value;
          i += length + 2;
          continue;
        }
      }
    }
    if (rest.starts_with("{{")) {
      auto name = PlaceholderAt(rest);
      if (!name) {
        return InvalidArgument("unknown placeholder at byte " + std::to_string(i) +
                               ": use {{name}}, {{password}} or {{expiration}}");
      }
      KW_ASSIGN_OR_RETURN(std::string value, replace({*name, Quoting::kBare}));
      out += value;
      i += name->size() + 4;
      continue;
    }

    // Quoted strings and comments are copied as they are. A placeholder inside one is
    // rejected, because its value would be pasted into text that PostgreSQL parses again.
    std::string_view close;
    std::size_t open_length = 1;
    if (c == '\'') {
      close = "'";
    } else if (c == '"') {
      close = "\"";
    } else if (rest.starts_with("--")) {
      close = "\n";
      open_length = 2;
    } else if (rest.starts_with("/*")) {
      close = "*/";
      open_length = 2;
    } else if (auto tag = DollarTag(rest)) {
      close = *tag;
      open_length = tag->size();
    }
    if (close.empty()) {
      out.push_back(c);
      ++i;
      continue;
    }
    std::size_t end = text.find(close, i + open_length);
    // '' and "" inside a quoted string are escaped quotes, not its end.
    while ((close == "'" || close == "\"") && end != std::string_view::npos &&
           end + 1 < text.size() && text[end + 1] == close[0]) {
      end = text.find(close, end + 2);
    }
    if (end == std::string_view::npos) {
      if (close == "\n") end = text.size();
      else return InvalidArgument("unterminated quote or comment at byte " + std::to_string(i));
    } else {
      end += close.size();
    }
    const std::string_view quoted = text.substr(i, end - i);
    for (std::string_view known : kPlaceholders) {
      if (quoted.find("{{" + std::string(known) + "}}") != std::string_view::npos) {
        return InvalidArgument("placeholder {{" + std::string(known) +
                               "}} inside a quoted string or comment: write it on its own, "
                               "as {{" + std::string(known) + "}} or \"{{" +
                               std::string(known) + "}}\"");
      }
    }
    out += quoted;
    i = end;
  }
  return out;
}

}  // namespace

std::vector<std::string> SplitStatements(std::string_view text) {
  std::vector<std::string> statements;
  std::string current;
  auto flush = [&] {
    const std::size_t first = current.find_first_not_of(" \t\r\n");
    if (first != std::string::npos) {
      const std::size_t last = current.find_last_not_of(" \t\r\n");
      statements.push_back(current.substr(first, last - first + 1));
    }
    current.clear();
  };
  std::size_t i = 0;
  while (i < text.size()) {
    const std::string_view rest = text.substr(i);
    std::string_view close;
    std::size_t open_length = 1;
    if (rest[0] == '\'') close = "'";
    else if (rest[0] == '"') close = "\"";
    else if (rest.starts_with("--")) { close = "\n"; open_length = 2; }
    else if (rest.starts_with("/*")) { close = "*/"; open_length = 2; }
    else if (auto tag = DollarTag(rest)) { close = *tag; open_length = tag->size(); }

    if (close.empty()) {
      if (rest[0] == ';') flush();
      else current.push_back(rest[0]);
      ++i;
      continue;
    }
    std::size_t end = text.find(close, i + open_length);
    end = end == std::string_view::npos ? text.size() : end + close.size();
    current.append(text.substr(i, end - i));
    i = end;
  }
  flush();
  return statements;
}

std::vector<std::string> SplitStatements(const std::vector<std::string>& texts) {
  std::vector<std::string> statements;
  for (const std::string& text : texts) {
    for (std::string& statement : SplitStatements(text)) statements.push_back(std::move(statement));
  }
  return statements;
}

Status ValidateTemplate(std::string_view statement) {
  auto expanded = Expand(statement, [](const Placeholder&) -> Result<std::string> {
    return std::string("x");
  });
  if (!expanded) return tl::unexpected(expanded.error());
  return OkStatus();
}

Result<SecretBuffer> RenderTemplate(std::string_view statement, const TemplateValues& values,
                                    const PostgresConnection& connection) {
  auto replace = [&](const Placeholder& placeholder) -> Result<std::string> {
    std::string_view value;
    Quoting quoting = placeholder.quoting;
    if (placeholder.name == "name" || placeholder.name == "username") {
      value = values.name;
      if (quoting == Quoting::kBare) quoting = Quoting::kIdentifier;
    } else if (placeholder.name == "password") {
      value = values.password;
    } else {
      value = values.expiration;
    }
    if (value.empty()) {
      return InvalidArgument("placeholder {{" + std::string(placeholder.name) +
                             "}} has no value in this statement");
    }
    return quoting == Quoting::kIdentifier ? connection.QuoteIdentifier(value)
                                           : connection.QuoteLiteral(value);
  };
  KW_ASSIGN_OR_RETURN(std::string rendered, Expand(statement, replace));
  SecretBuffer secret = SecretBuffer::CopyFrom(rendered);
  WipeString(rendered);
  return secret;
}

std::string FormatExpiration(std::int64_t seconds) {
  const std::time_t time = static_cast<std::time_t>(seconds);
  std::tm utc{};
  gmtime_r(&time, &utc);
  char text[40];
  std::strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S+0000", &utc);
  return text;
}

}  // namespace kw::vault::database
