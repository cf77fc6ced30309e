#include "vault/policy/policy.hpp"

#include <doctest/doctest.h>

#include <string>

namespace {

namespace policy = kw::vault::policy;

std::string ParseError(std::string_view name, std::string_view document) {
  auto parsed = policy::ParsePolicy(name, document);
  REQUIRE_FALSE(parsed.has_value());
  CHECK(parsed.error().code() == kw::Code::kInvalidArgument);
  return parsed.error().message();
}

bool Contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_SUITE("vault/policy") {
  TEST_CASE("policy names normalised once") {
    auto name = policy::NormalizeName("  App-Readers_1.x \n");
    REQUIRE(name.has_value());
    CHECK(*name == "app-readers_1.x");
    auto root = policy::NormalizeName("ROOT");
    REQUIRE(root.has_value());
    CHECK(*root == "root");
  }

  TEST_CASE("policy names invalid") {
    for (std::string_view bad : {"", "   ", "a/b", "a b", "caf\xc3\xa9", ".", "..", "a\nb",
                                 "a%2Fb"}) {
      CAPTURE(bad);
      auto name = policy::NormalizeName(bad);
      REQUIRE_FALSE(name.has_value());
      CHECK(name.error().code() == kw::Code::kInvalidArgument);
    }
    CHECK(policy::NormalizeName(std::string(128, 'a')).has_value());
    CHECK_FALSE(policy::NormalizeName(std::string(129, 'a')).has_value());
  }

  TEST_CASE("policy json form") {
    auto parsed = policy::ParsePolicy("App", R"({"path": {
        "secret/data/app/*": {"capabilities": ["read", "list"]},
        "/sys/rotate": {"capabilities": ["update", "sudo"]}}})");
    REQUIRE(parsed.has_value());
    CHECK(parsed->name == "app");
    REQUIRE(parsed->rules.size() == 2);
    // nlohmann::json keeps object keys sorted as written: "/sys/rotate" comes first.
    CHECK(parsed->rules[0].pattern == "sys/rotate");
    CHECK(parsed->rules[0].capabilities == (policy::kUpdate | policy::kSudo));
    CHECK(parsed->rules[1].pattern == "secret/data/app/*");
    CHECK(parsed->rules[1].capabilities == (policy::kRead | policy::kList));
  }

  TEST_CASE("policy json path as list") {
    auto parsed = policy::ParsePolicy(
        "p", R"({"path": [{"a/*": {"capabilities": ["read"]}}, {"b": {"capabilities": []}}]})");
    REQUIRE(parsed.has_value());
    REQUIRE(parsed->rules.size() == 2);
    CHECK(parsed->rules[0].pattern == "a/*");
    CHECK(parsed->rules[1].capabilities == 0);
  }

  TEST_CASE("policy hcl form keeps document") {
    const std::string document = "path \"secret/*\" {\n  capabilities = [\"read\"]\n}\n";
    auto parsed = policy::ParsePolicy("reader", document);
    REQUIRE(parsed.has_value());
    CHECK(parsed->document == document);
    REQUIRE(parsed->rules.size() == 1);
    CHECK(parsed->rules[0].capabilities == policy::kRead);
  }

  TEST_CASE("policy json errors name the path") {
    CHECK(Contains(ParseError("p", R"({"path": {"a": {"capabilities": ["raed"]}}})"),
                   "path \"a\": unknown capability \"raed\""));
    CHECK(Contains(ParseError("p", R"({"path": {"a": {"capabilities": "read"}}})"),
                   "list of strings"));
    CHECK(Contains(ParseError("p", R"({"path": {"a": {"capabilities": [1]}}})"),
                   "list of strings"));
    CHECK(Contains(ParseError("p", R"({"path": {"a": {}}})"), "missing \"capabilities\""));
    CHECK(Contains(ParseError("p", R"({"path": {"a": []}})"), "must be an object"));
    CHECK(Contains(ParseError("p", R"({"path": ["a"]})"), "must be an object"));
    CHECK(Contains(
        ParseError("p", R"({"path": {"a": {"capabilities": [], "denied_parameters": {}}}})"),
        "\"denied_parameters\" is not supported"));
    CHECK(Contains(ParseError("p", R"({"path": {"a": {"capabilities": [], "x": 1}}})"),
                   "path \"a\": unknown key \"x\""));
    CHECK(Contains(ParseError("p", R"({"name": "x"})"), "unknown top-level key \"name\""));
    CHECK(Contains(ParseError("p", R"({"path": {"a/*/b": {"capabilities": []}}})"),
                   "only allowed as the last character"));
  }

  // A rule path with two leading slashes would match no request.
  TEST_CASE("policy doubled leading slash rejected") {
    CHECK(Contains(ParseError("p", "path \"//secret/data/a\" { capabilities = [\"read\"] }"),
                   "path \"/secret/data/a\" starts with '/'"));
    CHECK(Contains(ParseError("p", R"({"path": {"//secret/*": {"capabilities": ["read"]}}})"),
                   "remove the extra '/'"));
    CHECK_FALSE(policy::ValidatePattern("/secret/data/a").has_value());
    CHECK(policy::ParsePolicy("p", "path \"/secret/data/a\" { capabilities = [] }").has_value());
  }

  TEST_CASE("policy malformed json names line") {
    const std::string message = ParseError("p", "{\"path\": {\n\"a\": {\n\"capabilities\": [\n}}");
    CHECK(Contains(message, "malformed JSON at line 4"));
    CHECK(Contains(message, "invalid policy \"p\""));
  }

  TEST_CASE("policy json number overflow rejected") {
    const std::string message = ParseError("p", R"({"path": {"a": {"max_ttl": 1e999}}})");
    CHECK(Contains(message, "malformed JSON: a number is out of range"));
    CHECK_FALSE(Contains(message, "1e999"));
  }

  TEST_CASE("policy json duplicate key rejected") {
    // A second "path" would otherwise replace the first, dropping its deny rule unseen.
    const std::string message = ParseError(
        "p", R"({"path": {"a": {"capabilities": ["deny"]}}, "path": {"b": {"capabilities": ["read"]}}})");
    CHECK(Contains(message, "malformed JSON: duplicate key \"path\""));
    CHECK(Contains(ParseError("p", R"({"path": {"a": {"capabilities": [], "capabilities": ["read"]}}})"),
                   "duplicate key \"capabilities\""));
  }

  TEST_CASE("policy json deep nesting rejected") {
    const std::string deep = R"({"path": {"a": {"capabilities": )" + std::string(100000, '[') +
                             std::string(100000, ']') + "}}}";
    CHECK(Contains(ParseError("p", deep), "malformed JSON: nesting deeper than 16 levels"));
  }

  TEST_CASE("policy invalid name rejected") {
    CHECK(Contains(ParseError("a/b", "path \"x\" { capabilities = [] }"), "policy name"));
  }

  TEST_CASE("policy too large rejected") {
    std::string document;
    while (document.size() <= policy::kMaxDocumentBytes) {
      document += "path \"secret/data/x\" { capabilities = [\"read\"] }\n";
    }
    CHECK(Contains(ParseError("big", document), "larger than 1 MiB"));
  }

  TEST_CASE("policy capability names follow vault") {
    using Names = std::vector<std::string>;
    CHECK(policy::CapabilityNames(policy::kRead | policy::kList) == Names{"list", "read"});
    CHECK(policy::CapabilityNames(policy::kAllCapabilities) ==
          Names{"create", "delete", "list", "patch", "read", "sudo", "update"});
    CHECK(policy::CapabilityNames(0) == Names{"deny"});
    CHECK(policy::CapabilityNames(policy::kDeny | policy::kRead) == Names{"deny"});
    CHECK(policy::CapabilityNames(policy::kRoot | policy::kAllCapabilities) == Names{"root"});
  }

  TEST_CASE("policy capability parse round trip") {
    for (std::string_view name :
         {"create", "read", "update", "patch", "delete", "list", "sudo", "deny"}) {
      CAPTURE(name);
      auto bit = policy::ParseCapability(name);
      REQUIRE(bit.has_value());
      CHECK(policy::CapabilityNames(*bit) == std::vector<std::string>{std::string(name)});
    }
    auto root = policy::ParseCapability("root");
    REQUIRE_FALSE(root.has_value());
    CHECK(root.error().code() == kw::Code::kInvalidArgument);
  }

  TEST_CASE("default policy parses") {
    auto parsed = policy::ParsePolicy("default", policy::DefaultPolicyDocument());
    REQUIRE(parsed.has_value());
    CHECK(parsed->rules.size() == 10);
  }
}
