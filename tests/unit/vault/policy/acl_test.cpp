#include "vault/policy/acl.hpp"

#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace {

using kw::vault::policy::Acl;
using kw::vault::policy::Policy;
namespace policy = kw::vault::policy;

// The policies the table refers to by name. "root" is not here: it builds the root ACL.
const std::map<std::string, std::string>& Documents() {
  static const std::map<std::string, std::string> documents = {
      {"kv", R"(
path "secret/data/app/db" { capabilities = ["read"] }
path "secret/data/team/*" { capabilities = ["read", "update", "create"] }
path "secret/metadata/team/" { capabilities = ["list"] }
path "secret/data/Mixed/Case" { capabilities = ["read"] }
path "secret/data/a b" { capabilities = ["read"] }
path "secret/data/x%2Fy" { capabilities = ["read"] }
)"},
      {"plus", R"(
path "secret/data/+/config" { capabilities = ["read"] }
path "secret/data/+/+/deep" { capabilities = ["update"] }
path "secret/data/svc/+/*" { capabilities = ["list", "read"] }
path "secret/metadata/+" { capabilities = ["list"] }
)"},
      {"lockdown", R"(
path "secret/metadata/*" { capabilities = ["list"] }
path "secret/metadata/private" { capabilities = ["deny"] }
path "secret/data/private/*" { capabilities = ["deny"] }
path "secret/data/*" { capabilities = ["read"] }
)"},
      {"precedence", R"(
# 1: the rule whose first wildcard comes earlier loses.
path "p1/+/app/key" { capabilities = ["read"] }
path "p1/data/+/key" { capabilities = ["update"] }
# 2: at the same first wildcard, the rule ending in '*' loses.
path "p2/a/+" { capabilities = ["read"] }
path "p2/a/*" { capabilities = ["update"] }
# 3: then the rule with more '+' segments loses.
path "p3/+/b/c" { capabilities = ["read"] }
path "p3/+/+/c" { capabilities = ["update"] }
# 4: then the shorter rule loses.
path "p4/+/ab*" { capabilities = ["read"] }
path "p4/+/a*" { capabilities = ["update"] }
# 5: then the lexicographically smaller rule loses ('+' sorts before 'a').
path "p5/+/a/+/*" { capabilities = ["read"] }
path "p5/+/+/b/*" { capabilities = ["update"] }
# An exact rule beats every pattern.
path "p6/*" { capabilities = ["deny"] }
path "p6/open" { capabilities = ["read"] }
)"},
      {"writer", R"(
path "secret/data/app/db" { capabilities = ["update", "patch"] }
path "secret/data/team/*" { capabilities = ["delete"] }
)"},
      {"denier", R"(
path "secret/data/team/*" { capabilities = ["deny"] }
)"},
      {"everything", R"(
path "*" { capabilities = ["read", "list"] }
path "sys/rotate" { capabilities = ["update", "sudo"] }
)"},
      {"default", std::string(policy::DefaultPolicyDocument())},
  };
  return documents;
}

Acl BuildAcl(const std::vector<std::string>& names) {
  std::vector<std::shared_ptr<const Policy>> policies;
  bool root = false;
  for (const auto& name : names) {
    if (name == "root") {
      root = true;
      continue;
    }
    auto parsed = policy::ParsePolicy(name, Documents().at(name));
    REQUIRE_MESSAGE(parsed.has_value(), name);
    policies.push_back(std::make_shared<const Policy>(std::move(*parsed)));
  }
  return Acl::FromPolicies(policies, root);
}

std::uint32_t BitFor(std::string_view operation) {
  if (operation == "read") return policy::kRead;
  if (operation == "list") return policy::kList;
  if (operation == "update") return policy::kUpdate;
  if (operation == "create") return policy::kCreate;
  if (operation == "delete") return policy::kDelete;
  if (operation == "patch") return policy::kPatch;
  if (operation == "sudo") return policy::kSudo;
  FAIL("unknown operation in table: " << operation);
  return 0;
}

struct AclCase {
  std::vector<std::string> policies;
  std::string operation;
  std::string path;
  bool allowed;
};

const std::vector<AclCase>& Cases() {
  static const std::vector<AclCase> cases = {
      // Exact rules match the whole path only.
      {{"kv"}, "read", "secret/data/app/db", true},
      {{"kv"}, "update", "secret/data/app/db", false},
      {{"kv"}, "read", "secret/data/app/db/extra", false},
      {{"kv"}, "read", "secret/data/app/dbx", false},
      {{"kv"}, "read", "secret/data/app", false},
      {{"kv"}, "list", "secret/data/app/db", false},
      {{"kv"}, "read", "secret/data/app/db/", true},  // trailing slash removed
      // A trailing '*' matches any suffix below the prefix.
      {{"kv"}, "read", "secret/data/team/x", true},
      {{"kv"}, "create", "secret/data/team/x/y/z", true},
      {{"kv"}, "delete", "secret/data/team/x", false},
      {{"kv"}, "read", "secret/data/team", false},
      {{"kv"}, "read", "secret/data/team/", false},
      {{"kv"}, "list", "secret/data/team", false},
      {{"kv"}, "read", "secret/data/teams/x", false},
      // A rule ending in '/' is for LIST of that folder.
      {{"kv"}, "list", "secret/metadata/team", true},
      {{"kv"}, "list", "secret/metadata/team/", true},
      {{"kv"}, "read", "secret/metadata/team", false},
      // Paths are case-sensitive.
      {{"kv"}, "read", "secret/data/Mixed/Case", true},
      {{"kv"}, "read", "secret/data/mixed/case", false},
      {{"kv"}, "read", "SECRET/data/app/db", false},
      {{"kv"}, "read", "secret/data/App/db", false},
      // Paths arrive percent-decoded, and a '%' in a rule is an ordinary character.
      {{"kv"}, "read", "secret/data/a b", true},
      {{"kv"}, "read", "secret/data/a%20b", false},
      {{"kv"}, "read", "secret/data/x/y", false},
      {{"kv"}, "read", "secret/data/x%2Fy", true},
      // '+' matches exactly one non-empty segment.
      {{"plus"}, "read", "secret/data/foo/config", true},
      {{"plus"}, "read", "secret/data/foo/bar/config", false},
      {{"plus"}, "read", "secret/data/config", false},
      {{"plus"}, "update", "secret/data/a/b/deep", true},
      {{"plus"}, "update", "secret/data/a/deep", false},
      {{"plus"}, "update", "secret/data/a/b/c/deep", false},
      // '+' with a trailing '*'.
      {{"plus"}, "read", "secret/data/svc/x/y", true},
      {{"plus"}, "read", "secret/data/svc/x/y/z", true},
      {{"plus"}, "read", "secret/data/svc/x", false},
      {{"plus"}, "list", "secret/data/svc/x", true},
      {{"plus"}, "list", "secret/data/other/x", false},
      // A '+' rule without '/' at the end also covers LIST of the folder it names.
      {{"plus"}, "list", "secret/metadata/app", true},
      {{"plus"}, "list", "secret/metadata", false},
      {{"plus"}, "list", "secret/metadata/app/sub", false},
      // Deny on a folder blocks LIST of that folder, not its siblings.
      {{"lockdown"}, "list", "secret/metadata", true},
      {{"lockdown"}, "list", "secret/metadata/public", true},
      {{"lockdown"}, "list", "secret/metadata/private", false},
      {{"lockdown"}, "list", "secret/metadata/private/", false},
      {{"lockdown"}, "list", "secret/metadata/private/sub", true},
      {{"lockdown"}, "read", "secret/data/public", true},
      {{"lockdown"}, "read", "secret/data/private/x", false},
      {{"lockdown"}, "read", "secret/data/private/x/y", false},
      // `private/*` does not cover `private` itself, so the broader rule applies there.
      {{"lockdown"}, "read", "secret/data/private", true},
      // Precedence, Vault's order.
      {{"precedence"}, "update", "p1/data/app/key", true},
      {{"precedence"}, "read", "p1/data/app/key", false},
      {{"precedence"}, "read", "p1/other/app/key", true},
      {{"precedence"}, "read", "p2/a/b", true},
      {{"precedence"}, "update", "p2/a/b", false},
      {{"precedence"}, "update", "p2/a/b/c", true},
      {{"precedence"}, "read", "p2/a/b/c", false},
      {{"precedence"}, "read", "p3/x/b/c", true},
      {{"precedence"}, "update", "p3/x/b/c", false},
      {{"precedence"}, "update", "p3/x/z/c", true},
      {{"precedence"}, "read", "p4/x/abc", true},
      {{"precedence"}, "update", "p4/x/abc", false},
      {{"precedence"}, "update", "p4/x/ac", true},
      {{"precedence"}, "read", "p4/x/ac", false},
      {{"precedence"}, "read", "p5/x/a/b/z", true},
      {{"precedence"}, "update", "p5/x/a/b/z", false},
      {{"precedence"}, "update", "p5/x/y/b/z", true},
      {{"precedence"}, "read", "p6/open", true},
      {{"precedence"}, "read", "p6/closed", false},
      // Policies merge: capabilities of the same pattern are unioned.
      {{"kv", "writer"}, "read", "secret/data/app/db", true},
      {{"kv", "writer"}, "update", "secret/data/app/db", true},
      {{"kv", "writer"}, "patch", "secret/data/app/db", true},
      {{"kv", "writer"}, "delete", "secret/data/team/x", true},
      {{"kv", "writer"}, "read", "secret/data/team/x", true},
      {{"writer"}, "read", "secret/data/app/db", false},
      // Deny in the merged rule wins over every other policy's grant.
      {{"kv", "denier"}, "read", "secret/data/team/x", false},
      {{"kv", "writer", "denier"}, "delete", "secret/data/team/x", false},
      {{"kv", "denier"}, "read", "secret/data/app/db", true},
      // A catch-all rule and a more specific one.
      {{"everything"}, "read", "anything/at/all", true},
      {{"everything"}, "list", "sys", true},
      {{"everything"}, "update", "anything", false},
      {{"everything"}, "sudo", "sys/rotate", true},
      {{"everything"}, "read", "sys/rotate", false},
      // Root grants everything, whatever else is there.
      {{"root"}, "sudo", "sys/rotate", true},
      {{"root"}, "delete", "secret/data/anything", true},
      {{"root", "denier"}, "read", "secret/data/team/x", true},
      // The built-in default policy.
      {{"default"}, "read", "auth/token/lookup-self", true},
      {{"default"}, "update", "auth/token/lookup-self", false},
      {{"default"}, "update", "auth/token/renew-self", true},
      {{"default"}, "update", "auth/token/revoke-self", true},
      {{"default"}, "update", "sys/capabilities-self", true},
      {{"default"}, "read", "sys/internal/ui/mounts/secret/app", true},
      {{"default"}, "read", "secret/data/app/db", false},
      {{"default"}, "update", "auth/token/create", false},
      {{"default", "kv"}, "read", "secret/data/app/db", true},
      // No policies grant nothing.
      {{}, "read", "auth/token/lookup-self", false},
  };
  return cases;
}

}  // namespace

TEST_SUITE("vault/policy/acl") {
  TEST_CASE("acl table") {
    REQUIRE(Cases().size() >= 70);
    for (const auto& test : Cases()) {
      std::string policies;
      for (const auto& name : test.policies) policies += name + " ";
      CAPTURE(policies);
      CAPTURE(test.operation);
      CAPTURE(test.path);
      const Acl acl = BuildAcl(test.policies);
      const std::uint32_t capabilities = acl.Capabilities(test.path, test.operation == "list");
      const bool allowed = (capabilities & policy::kDeny) == 0 &&
                           (capabilities & BitFor(test.operation)) != 0;
      CHECK(allowed == test.allowed);
    }
  }

  TEST_CASE("acl deny returns deny alone") {
    const Acl acl = BuildAcl({"kv", "writer", "denier"});
    CHECK(acl.Capabilities("secret/data/team/x", false) == policy::kDeny);
    CHECK(acl.Capabilities("nothing/here", false) == 0);
    CHECK(acl.Capabilities("secret/data/app/db", false) ==
          (policy::kRead | policy::kUpdate | policy::kPatch));
    CHECK_FALSE(acl.root());
  }

  TEST_CASE("acl root grants everything") {
    const Acl acl = BuildAcl({"root"});
    CHECK(acl.root());
    CHECK(acl.Capabilities("any/path", false) == (policy::kAllCapabilities | policy::kRoot));
    CHECK(acl.Capabilities("", true) == (policy::kAllCapabilities | policy::kRoot));
  }

  TEST_CASE("acl normalize path for list") {
    CHECK(policy::NormalizePath("a/b", true) == "a/b/");
    CHECK(policy::NormalizePath("a/b/", true) == "a/b/");
    CHECK(policy::NormalizePath("a/b//", false) == "a/b");
    CHECK(policy::NormalizePath("/a/b", false) == "a/b");
    CHECK(policy::NormalizePath("", true).empty());
  }

  TEST_CASE("acl matches pattern for bound paths") {
    CHECK(policy::MatchesPattern("secret/data/app/*", "secret/data/app/db", false));
    CHECK(policy::MatchesPattern("secret/data/app/*", "secret/data/app", true));
    CHECK_FALSE(policy::MatchesPattern("secret/data/app/*", "secret/data/app", false));
    CHECK(policy::MatchesPattern("secret/data/+/db", "secret/data/x/db", false));
    CHECK_FALSE(policy::MatchesPattern("secret/data/+/db", "secret/data/x/y/db", false));
    CHECK(policy::MatchesPattern("/secret/data/app", "secret/data/app", false));
    CHECK(policy::MatchesPattern("secret/data/app", "secret/data/app", true));
    CHECK_FALSE(policy::MatchesPattern("secret/data/app", "secret/data/App", false));
    CHECK(policy::MatchesPattern("*", "anything/below", false));
    // An invalid pattern matches nothing.
    CHECK_FALSE(policy::MatchesPattern("secret/*/app", "secret/x/app", false));
    CHECK_FALSE(policy::MatchesPattern("", "secret", false));
  }

  TEST_CASE("acl priority order is vault's") {
    struct Pair {
      std::string lower;
      std::string higher;
      std::string path;  // matched by both
    };
    const std::vector<Pair> pairs = {
        {"a/+/c", "a/b/+", "a/b/c"},                 // first wildcard earlier
        {"a/*", "a/+", "a/b"},                       // ends in '*'
        {"a/+/+", "a/+/c", "a/b/c"},                 // more '+' segments
        {"a/+/b*", "a/+/bc*", "a/x/bcd"},            // shorter
        {"a/+/+/d/*", "a/+/c/+/*", "a/b/c/d/e"},     // lexicographically smaller
    };
    for (const auto& pair : pairs) {
      CAPTURE(pair.lower);
      CAPTURE(pair.higher);
      // The result must not depend on the order in which the rules were written.
      for (int order = 0; order < 2; ++order) {
        Policy written{"p", "", {}};
        written.rules.push_back({pair.higher, policy::kRead});
        written.rules.push_back({pair.lower, policy::kUpdate});
        if (order == 1) std::swap(written.rules[0], written.rules[1]);
        const Acl acl = Acl::FromPolicies({std::make_shared<const Policy>(written)}, false);
        CHECK(acl.Capabilities(pair.path, false) == policy::kRead);
      }
    }
  }
}
