#include "vault/auth/spiffe_id.hpp"

#include <doctest/doctest.h>

#include <string>

namespace kw::vault::auth {
namespace {

TEST_SUITE("vault/auth/spiffe_id") {
  TEST_CASE("valid IDs parse") {
    const char* valid[] = {
        "spiffe://example.org",
        "spiffe://example.org/service",
        "spiffe://staging.example.com/payments/mysql",
        "spiffe://k8s-west.example.com/ns/staging/sa/default",
        "spiffe://example.com/9eebccd2-12bf-40a6-b262-65fe0487d453",
        "spiffe://trust_domain.example.com/Upper/Case_Path-1.2",
        "spiffe://td/.path",
        "spiffe://td/..path",
        "spiffe://td/...",
        "spiffe://192.168.0.1/db",
        "spiffe://a/b/c/d/e",
    };
    for (const char* text : valid) {
      CAPTURE(text);
      auto id = ParseSpiffeId(text);
      REQUIRE(id.has_value());
      CHECK(id->str() == text);
    }
  }

  TEST_CASE("parts of a parsed ID") {
    auto id = ParseSpiffeId("spiffe://staging.example.com/payments/mysql");
    REQUIRE(id.has_value());
    CHECK(id->trust_domain == "staging.example.com");
    CHECK(id->path == "/payments/mysql");
    CHECK_FALSE(id->root());
    auto root = ParseSpiffeId("spiffe://example.org");
    REQUIRE(root.has_value());
    CHECK(root->path.empty());
    CHECK(root->root());
  }

  TEST_CASE("invalid IDs are rejected with the rule") {
    struct Case {
      std::string text;
      std::string reason;  // a fragment of the expected message
    };
    const Case cases[] = {
        {"", "empty"},
        {"Spiffe://example.org/x", "scheme"},
        {"SPIFFE://example.org/x", "scheme"},
        {"https://example.org/x", "scheme"},
        {"spiffe:/example.org/x", "scheme"},
        {"spiffe:example.org/x", "scheme"},
        {"spiffe://", "missing trust domain"},
        {"spiffe:///", "missing trust domain"},
        {"spiffe:///x", "missing trust domain"},
        {"spiffe://Example.org/x", "lower-case"},
        {"spiffe://example.org:8443/x", "port"},
        {"spiffe://user@example.org/x", "userinfo"},
        {"spiffe://[::1]/x", "IPv6"},
        {"spiffe://%65xample.org/x", "percent-encoding"},
        {"spiffe://ex$mple.org/x", "invalid character in the trust domain"},
        {"spiffe://example.org/", "must not end with '/'"},
        {"spiffe://example.org/x/", "must not end with '/'"},
        {"spiffe://example.org//x", "empty path segment"},
        {"spiffe://example.org/./x", "'.' and '..'"},
        {"spiffe://example.org/x/..", "'.' and '..'"},
        {"spiffe://example.org/..", "'.' and '..'"},
        {"spiffe://example.org/x?y=1", "query"},
        {"spiffe://example.org/x#frag", "fragment"},
        {"spiffe://example.org/%41", "percent-encoding"},
        {"spiffe://example.org/a b", "invalid character in the path"},
        {"spiffe://example.org/a~b", "invalid character in the path"},
        {"spiffe://example.org/a:b", "invalid character in the path"},
        {"spiffe://example.org/a@b", "invalid character in the path"},
        {"spiffe://example.org/a;b", "invalid character in the path"},
        {"spiffe://example.org/a=b", "invalid character in the path"},
        {"spiffe://example.org/a^b", "invalid character in the path"},
        {"spiffe://example.org/a\\b", "invalid character in the path"},
        {"spiffe://example.org/caf\xc3\xa9", "non-ASCII"},
    };
    for (const Case& c : cases) {
      CAPTURE(c.text);
      auto id = ParseSpiffeId(c.text);
      REQUIRE_FALSE(id.has_value());
      CHECK(id.error().code() == Code::kInvalidArgument);
      CHECK(id.error().message().find(c.reason) != std::string::npos);
    }
  }

  TEST_CASE("characters between '.' and '_' are not a range") {
    // A literal regex class [a-zA-Z0-9.-_] would admit these.
    for (const char c : std::string("/:;<=>?@[\\]^")) {
      const std::string text = std::string("spiffe://example.org/a") + c + "b";
      CAPTURE(text);
      if (c == '/') {
        CHECK(ParseSpiffeId(text).has_value());  // a segment separator, not a character
      } else {
        CHECK_FALSE(ParseSpiffeId(text).has_value());
      }
    }
    CHECK_FALSE(ParseSpiffeId("spiffe://EXAMPLE.org").has_value());
  }

  TEST_CASE("length limits") {
    const std::string prefix = "spiffe://example.org/";
    const std::string at_limit = prefix + std::string(kMaxSpiffeIdBytes - prefix.size(), 'a');
    REQUIRE(at_limit.size() == 2048);
    CHECK(ParseSpiffeId(at_limit).has_value());

    const std::string td_255 = "spiffe://" + std::string(255, 'a') + "/x";
    const std::string td_256 = "spiffe://" + std::string(256, 'a') + "/x";
    CHECK(ParseSpiffeId(td_255).has_value());
    auto too_long = ParseSpiffeId(td_256);
    REQUIRE_FALSE(too_long.has_value());
    CHECK(too_long.error().message().find("255 bytes") != std::string::npos);
  }

  TEST_CASE("long invalid input is shortened in the message") {
    const std::string text = "spiffe://example.org/" + std::string(4000, 'a') + "%";
    auto id = ParseSpiffeId(text);
    REQUIRE_FALSE(id.has_value());
    CHECK(id.error().message().size() < 400);
  }

  TEST_CASE("pattern validation") {
    CHECK(ValidateSpiffeIdPattern("spiffe://example.org/web").has_value());
    CHECK(ValidateSpiffeIdPattern("spiffe://example.org/ns/*").has_value());
    CHECK(ValidateSpiffeIdPattern("spiffe://example.org/*").has_value());
    CHECK_FALSE(ValidateSpiffeIdPattern("spiffe://example.org/ns*").has_value());
    CHECK_FALSE(ValidateSpiffeIdPattern("spiffe://example.org/*/x").has_value());
    CHECK_FALSE(ValidateSpiffeIdPattern("*").has_value());
    CHECK_FALSE(ValidateSpiffeIdPattern("spiffe://Example.org/*").has_value());
    CHECK_FALSE(ValidateSpiffeIdPattern("spiffe://example.org/ns/").has_value());
  }

  TEST_CASE("exact pattern matches byte for byte") {
    auto id = ParseSpiffeId("spiffe://example.org/web");
    REQUIRE(id.has_value());
    CHECK(SpiffeIdMatches("spiffe://example.org/web", *id));
    CHECK_FALSE(SpiffeIdMatches("spiffe://example.org/Web", *id));
    CHECK_FALSE(SpiffeIdMatches("spiffe://example.org/%77eb", *id));
    CHECK_FALSE(SpiffeIdMatches("spiffe://EXAMPLE.org/web", *id));
    CHECK_FALSE(SpiffeIdMatches("spiffe://example.org/web/", *id));
    CHECK_FALSE(SpiffeIdMatches("spiffe://example.org", *id));
  }

  TEST_CASE("wildcard pattern matches below the prefix only") {
    const std::string pattern = "spiffe://example.org/ns/*";
    const auto matches = [&](const char* text) {
      auto id = ParseSpiffeId(text);
      REQUIRE(id.has_value());
      return SpiffeIdMatches(pattern, *id);
    };
    CHECK(matches("spiffe://example.org/ns/a"));
    CHECK(matches("spiffe://example.org/ns/a/b"));
    CHECK_FALSE(matches("spiffe://example.org/ns"));
    CHECK_FALSE(matches("spiffe://example.org/nsx"));
    CHECK_FALSE(matches("spiffe://example.org/nsx/a"));
    CHECK_FALSE(matches("spiffe://example.org/NS/a"));
    CHECK_FALSE(matches("spiffe://other.org/ns/a"));
    CHECK_FALSE(matches("spiffe://example.org.evil/ns/a"));
  }

  TEST_CASE("trust domain wildcard needs a path") {
    auto root = ParseSpiffeId("spiffe://example.org");
    auto workload = ParseSpiffeId("spiffe://example.org/w");
    REQUIRE(root.has_value());
    REQUIRE(workload.has_value());
    CHECK_FALSE(SpiffeIdMatches("spiffe://example.org/*", *root));
    CHECK(SpiffeIdMatches("spiffe://example.org/*", *workload));
  }

  TEST_CASE("invalid pattern matches nothing") {
    auto id = ParseSpiffeId("spiffe://example.org/a");
    REQUIRE(id.has_value());
    CHECK_FALSE(SpiffeIdMatches("spiffe://example.org/a/", *id));
    CHECK_FALSE(SpiffeIdMatches("spiffe://example.org*", *id));
    CHECK_FALSE(SpiffeIdMatches("", *id));
  }
}

}  // namespace
}  // namespace kw::vault::auth
