#include <doctest/doctest.h>

#include <string>

#include "vault/policy/policy.hpp"

namespace {

namespace policy = kw::vault::policy;

// Parses `document` as HCL and returns the error message; fails the test when it parses.
std::string HclError(std::string_view document) {
  auto rules = policy::ParseHclRules(document);
  REQUIRE_FALSE(rules.has_value());
  CHECK(rules.error().code() == kw::Code::kInvalidArgument);
  return rules.error().message();
}

bool Contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_SUITE("vault/policy/hcl") {
  TEST_CASE("hcl parses path blocks") {
    auto rules = policy::ParseHclRules(R"(
# A comment.
// Another comment.
/* A block
   comment. */
path "secret/data/app/*" {
  capabilities = ["read", "list"]
}

path "/secret/metadata/app" { capabilities = ["list",] }
path "sys/rotate" = {
  "capabilities" = ["update", "sudo"],
}
path "secret/data/closed" { capabilities = ["deny"] }
path "secret/data/empty" { capabilities = [] }
)");
    REQUIRE(rules.has_value());
    REQUIRE(rules->size() == 5);
    CHECK((*rules)[0].pattern == "secret/data/app/*");
    CHECK((*rules)[0].capabilities == (policy::kRead | policy::kList));
    CHECK((*rules)[1].pattern == "secret/metadata/app");  // leading '/' removed
    CHECK((*rules)[1].capabilities == policy::kList);
    CHECK((*rules)[2].pattern == "sys/rotate");
    CHECK((*rules)[2].capabilities == (policy::kUpdate | policy::kSudo));
    CHECK((*rules)[3].capabilities == policy::kDeny);
    CHECK((*rules)[4].capabilities == 0);
  }

  TEST_CASE("hcl reads every capability name") {
    auto rules = policy::ParseHclRules(
        R"(path "x" { capabilities = ["create", "read", "update", "patch", "delete", "list", )"
        R"("sudo", "deny"] })");
    REQUIRE(rules.has_value());
    REQUIRE(rules->size() == 1);
    CHECK((*rules)[0].capabilities == (policy::kAllCapabilities | policy::kDeny));
  }

  TEST_CASE("hcl empty document has no rules") {
    auto rules = policy::ParseHclRules("  # only a comment\n");
    REQUIRE(rules.has_value());
    CHECK(rules->empty());
  }

  TEST_CASE("hcl string escapes") {
    auto rules = policy::ParseHclRules(R"(path "secret/data/a\"b\\c" { capabilities = ["read"] })");
    REQUIRE(rules.has_value());
    REQUIRE(rules->size() == 1);
    CHECK((*rules)[0].pattern == "secret/data/a\"b\\c");
  }

  TEST_CASE("hcl unknown capability names line") {
    const std::string message =
        HclError("path \"a\" {\n  capabilities = [\"read\"]\n}\npath \"b\" {\n"
                 "  capabilities = [\"raed\"]\n}\n");
    CHECK(Contains(message, "line 5"));
    CHECK(Contains(message, "unknown capability \"raed\""));
  }

  TEST_CASE("hcl capability names are case-sensitive") {
    CHECK(Contains(HclError(R"(path "a" { capabilities = ["READ"] })"), "\"READ\""));
  }

  TEST_CASE("hcl unsupported parameters rejected") {
    const std::string message = HclError(
        "path \"secret/data/app\" {\n  capabilities = [\"update\"]\n"
        "  allowed_parameters = {\n    \"key\" = []\n  }\n}\n");
    CHECK(Contains(message, "line 3"));
    CHECK(Contains(message, "path \"secret/data/app\""));
    CHECK(Contains(message, "\"allowed_parameters\" is not supported"));
    CHECK(Contains(HclError(R"(path "a" { min_wrapping_ttl = "1s" })"), "not supported"));
    CHECK(Contains(HclError(R"(path "a" { policy = "read" })"), "not supported"));
  }

  TEST_CASE("hcl unknown key rejected") {
    const std::string message = HclError(R"(path "a" { capabilites = ["read"] })");
    CHECK(Contains(message, "unknown key \"capabilites\""));
    CHECK(Contains(HclError("name = \"x\"\n"), "expected a path block"));
  }

  TEST_CASE("hcl malformed documents rejected") {
    CHECK(Contains(HclError("path \"a\" {\n  capabilities = [\"read\"]\n"), "end of the document"));
    CHECK(Contains(HclError("path \"a\" {\n  capabilities = [\"read\"\n}\n"), "line 3"));
    CHECK(Contains(HclError("path a { capabilities = [\"read\"] }"), "quoted path"));
    CHECK(Contains(HclError("path \"a { capabilities = [] }\n"), "string not closed"));
    CHECK(Contains(HclError("path \"a\" { capabilities = \"read\" }"), "list"));
    CHECK(Contains(HclError("path \"a\" { capabilities = [read] }"), "quoted capability"));
    CHECK(Contains(HclError("path \"a\" { capabilities [\"read\"] }"), "'='"));
    CHECK(Contains(HclError("path \"a\" { }"), "missing \"capabilities\""));
    CHECK(Contains(HclError("path \"a\" { capabilities = [] capabilities = [] }"), "twice"));
    CHECK(Contains(HclError("/* never closed\npath \"a\" { capabilities = [] }"), "line 1"));
    CHECK(Contains(HclError("path \"a\" { capabilities = <<EOT\nread\nEOT\n}"), "heredoc"));
    CHECK(Contains(HclError("path \"a\" { capabilities = [\"read\"] } ;"), "';'"));
    CHECK(Contains(HclError("path \"a\\q\" { capabilities = [] }"), "escape"));
  }

  TEST_CASE("hcl bad patterns rejected") {
    CHECK(Contains(HclError(R"(path "secret/*/app" { capabilities = ["read"] })"),
                   "only allowed as the last character"));
    CHECK(Contains(HclError(R"(path "" { capabilities = ["read"] })"), "empty path"));
    CHECK(Contains(HclError(R"(path "secret/+*" { capabilities = ["read"] })"), "ambiguous"));
    CHECK(Contains(HclError("path \"a\tb\" { capabilities = [\"read\"] }"), "control character"));
  }
}
