// The HCL subset of Vault policy documents:
//
//   # comment, // comment, /* comment */
//   path "secret/data/app/*" {
//     capabilities = ["read", "list"]
//   }
//
// Heredocs, numbers and nested objects are not part of it: no supported key takes them.
#include <string>
#include <utility>

#include "vault/policy/policy.hpp"
#include "vault/policy/rule_keys.hpp"

namespace kw::vault::policy {
namespace {

enum class TokenKind { kIdentifier, kString, kLeftBrace, kRightBrace, kLeftBracket,
                       kRightBracket, kEquals, kComma, kEnd };

struct Token {
  TokenKind kind;
  std::string text;  // identifier, or the string with escapes resolved
  int line;
};

std::string Where(int line) { return "line " + std::to_string(line); }

bool IsIdentifierCharacter(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         ch == '_' || ch == '-' || ch == '.';
}

// Splits the document into tokens, skipping whitespace and comments.
class Lexer {
 public:
  explicit Lexer(std::string_view text) : text_(text) {}

  Result<Token> Next() {
    KW_RETURN_IF_ERROR(SkipSpaceAndComments());
    if (pos_ >= text_.size()) return Token{TokenKind::kEnd, "", line_};
    const char ch = text_[pos_];
    switch (ch) {
      case '{': return Single(TokenKind::kLeftBrace);
      case '}': return Single(TokenKind::kRightBrace);
      case '[': return Single(TokenKind::kLeftBracket);
      case ']': return Single(TokenKind::kRightBracket);
      case '=': return Single(TokenKind::kEquals);
      case ',': return Single(TokenKind::kComma);
      case '"': return ReadString();
      default: break;
    }
    if (IsIdentifierCharacter(ch)) {
      const std::size_t start = pos_;
      while (pos_ < text_.size() && IsIdentifierCharacter(text_[pos_])) ++pos_;
      return Token{TokenKind::kIdentifier, std::string(text_.substr(start, pos_ - start)), line_};
    }
    if (text_.substr(pos_).starts_with("<<")) {
      return InvalidArgument(Where(line_) + ": heredoc strings are not supported");
    }
    return InvalidArgument(Where(line_) + ": unexpected character '" +
                           (static_cast<unsigned char>(ch) >= 0x20 && ch != 0x7f
                                ? std::string(1, ch)
                                : std::string("?")) +
                           "'");
  }

 private:
  Token Single(TokenKind kind) {
    ++pos_;
    return Token{kind, "", line_};
  }

  Status SkipSpaceAndComments() {
    while (pos_ < text_.size()) {
      const char ch = text_[pos_];
      if (ch == '\n') {
        ++line_;
        ++pos_;
      } else if (ch == ' ' || ch == '\t' || ch == '\r') {
        ++pos_;
      } else if (ch == '#' || text_.substr(pos_).starts_with("//")) {
        while (pos_ < text_.size() && text_[pos_] != '\n') ++pos_;
      } else if (text_.substr(pos_).starts_with("/*")) {
        const int start_line = line_;
        const std::size_t end = text_.find("*/", pos_ + 2);
        if (end == std::string_view::npos) {
          return InvalidArgument(Where(start_line) + ": comment not closed: add \"*/\"");
        }
        for (std::size_t i = pos_; i < end; ++i) line_ += text_[i] == '\n' ? 1 : 0;
        pos_ = end + 2;
      } else {
        break;
      }
    }
    return OkStatus();
  }

  Result<Token> ReadString() {
    const int start_line = line_;
    ++pos_;  // the opening quote
    std::string value;
    while (pos_ < text_.size()) {
      const char ch = text_[pos_++];
      if (ch == '"') return Token{TokenKind::kString, std::move(value), start_line};
      if (ch == '\n') break;
      if (ch != '\\') {
        value.push_back(ch);
        continue;
      }
      if (pos_ >= text_.size()) break;
      const char escaped = text_[pos_++];
      switch (escaped) {
        case '"': value.push_back('"'); break;
        case '\\': value.push_back('\\'); break;
        case '/': value.push_back('/'); break;
        case 'n': value.push_back('\n'); break;
        case 't': value.push_back('\t'); break;
        case 'r': value.push_back('\r'); break;
        default:
          return InvalidArgument(Where(line_) + ": unsupported escape sequence in a string");
      }
    }
    return InvalidArgument(Where(start_line) + ": string not closed: add '\"' on the same line");
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  int line_ = 1;
};

std::string Describe(const Token& token) {
  switch (token.kind) {
    case TokenKind::kIdentifier: return "\"" + token.text.substr(0, 64) + "\"";
    case TokenKind::kString: return "a string";
    case TokenKind::kLeftBrace: return "'{'";
    case TokenKind::kRightBrace: return "'}'";
    case TokenKind::kLeftBracket: return "'['";
    case TokenKind::kRightBracket: return "']'";
    case TokenKind::kEquals: return "'='";
    case TokenKind::kComma: return "','";
    case TokenKind::kEnd: return "the end of the document";
  }
  return "a token";
}

// Reads `path "<pattern>" { ... }` blocks, one token of lookahead.
class Parser {
 public:
  explicit Parser(std::string_view text) : lexer_(text) {}

  Result<std::vector<PathRule>> Parse() {
    std::vector<PathRule> rules;
    KW_RETURN_IF_ERROR(Advance());
    while (current_.kind != TokenKind::kEnd) {
      if (current_.kind != TokenKind::kIdentifier || current_.text != "path") {
        return InvalidArgument(Where(current_.line) + ": expected a path block, found " +
                               Describe(current_) + "; a policy contains only path rules");
      }
      KW_ASSIGN_OR_RETURN(PathRule rule, ParseBlock());
      rules.push_back(std::move(rule));
    }
    return rules;
  }

 private:
  Status Advance() {
    KW_ASSIGN_OR_RETURN(current_, lexer_.Next());
    return OkStatus();
  }

  Status Expect(TokenKind kind, std::string_view what, std::string_view where) {
    if (current_.kind != kind) {
      return InvalidArgument(std::string(where) + ": expected " + std::string(what) +
                             ", found " + Describe(current_));
    }
    return Advance();
  }

  Result<PathRule> ParseBlock() {
    const int block_line = current_.line;
    KW_RETURN_IF_ERROR(Advance());  // "path"
    if (current_.kind != TokenKind::kString) {
      return InvalidArgument(Where(current_.line) + ": expected the quoted path after \"path\"");
    }
    std::string_view pattern = current_.text;
    if (pattern.starts_with('/')) pattern.remove_prefix(1);
    if (auto valid = ValidatePattern(pattern); !valid) {
      return tl::unexpected(valid.error().WithContext(Where(current_.line)));
    }
    PathRule rule{std::string(pattern), 0};
    const std::string where_path = "path \"" + rule.pattern + "\"";
    KW_RETURN_IF_ERROR(Advance());
    if (current_.kind == TokenKind::kEquals) KW_RETURN_IF_ERROR(Advance());
    KW_RETURN_IF_ERROR(Expect(TokenKind::kLeftBrace, "'{'", Where(current_.line)));

    bool has_capabilities = false;
    while (current_.kind != TokenKind::kRightBrace) {
      const std::string where = Where(current_.line) + ": " + where_path;
      if (current_.kind != TokenKind::kIdentifier && current_.kind != TokenKind::kString) {
        return InvalidArgument(where + ": expected \"capabilities\" or '}', found " +
                               Describe(current_));
      }
      KW_RETURN_IF_ERROR(detail::CheckRuleKey(current_.text, where));
      if (has_capabilities) return InvalidArgument(where + ": \"capabilities\" given twice");
      KW_RETURN_IF_ERROR(Advance());
      KW_RETURN_IF_ERROR(Expect(TokenKind::kEquals, "'='", where));
      KW_ASSIGN_OR_RETURN(rule.capabilities, ParseCapabilityList(where));
      has_capabilities = true;
      if (current_.kind == TokenKind::kComma) KW_RETURN_IF_ERROR(Advance());
    }
    if (!has_capabilities) {
      return InvalidArgument(Where(block_line) + ": " + where_path + ": missing \"capabilities\"");
    }
    KW_RETURN_IF_ERROR(Advance());  // '}'
    return rule;
  }

  Result<std::uint32_t> ParseCapabilityList(const std::string& where) {
    KW_RETURN_IF_ERROR(Expect(TokenKind::kLeftBracket, "a list such as [\"read\"]", where));
    std::uint32_t capabilities = 0;
    while (current_.kind != TokenKind::kRightBracket) {
      if (current_.kind != TokenKind::kString) {
        return InvalidArgument(Where(current_.line) + ": expected a quoted capability, found " +
                               Describe(current_));
      }
      auto bit = ParseCapability(current_.text);
      if (!bit) return tl::unexpected(bit.error().WithContext(Where(current_.line)));
      capabilities |= *bit;
      KW_RETURN_IF_ERROR(Advance());
      if (current_.kind == TokenKind::kComma) {
        KW_RETURN_IF_ERROR(Advance());
      } else if (current_.kind != TokenKind::kRightBracket) {
        return InvalidArgument(Where(current_.line) + ": expected ',' or ']', found " +
                               Describe(current_));
      }
    }
    KW_RETURN_IF_ERROR(Advance());  // ']'
    return capabilities;
  }

  Lexer lexer_;
  Token current_{TokenKind::kEnd, "", 1};
};

}  // namespace

Result<std::vector<PathRule>> ParseHclRules(std::string_view document) {
  return Parser(document).Parse();
}

}  // namespace kw::vault::policy
