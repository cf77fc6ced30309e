// The ACL over HTTP: one table of (policy, method, path, allowed) cases against the real
// binary, each token holding exactly one policy. An allowed request may still fail for other
// reasons (404 for a missing secret), but never with 403; a refused one gets 403 "permission
// denied" and changes nothing.
#include <doctest/doctest.h>

#include <map>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

enum Outcome { kDenied, kAllowed, kRejected };  // kRejected: 400, an invalid path

struct AclCase {
  const char* policy;
  const char* method;
  const char* path;  // below /v1/, as sent (may contain percent-encoding)
  Outcome outcome;
};

// Policies, in HCL and JSON, as users paste them.
const std::map<std::string, std::string>& Policies() {
  static const std::map<std::string, std::string> policies = {
      {"exact", R"(path "secret/data/app/db" { capabilities = ["read"] })"},
      {"prefix", R"(path "secret/data/app/*" { capabilities = ["read", "update", "create"] })"},
      {"plus", R"(path "secret/data/+/config" { capabilities = ["read"] })"},
      {"plus-star", R"(path "secret/data/+/team/*" { capabilities = ["read"] })"},
      {"deny-folder", R"(
path "secret/metadata/*" { capabilities = ["list", "read"] }
path "secret/metadata/private/*" { capabilities = ["deny"] }
path "secret/data/*" { capabilities = ["read"] }
path "secret/data/private/*" { capabilities = ["deny"] })"},
      {"list-exact", R"(path "secret/metadata/app" { capabilities = ["list"] })"},
      {"precedence", R"(
path "secret/data/*" { capabilities = ["deny"] }
path "secret/data/public/*" { capabilities = ["read"] }
path "secret/data/public/locked" { capabilities = ["deny"] })"},
      {"json", R"({"path": {"secret/data/json/*": {"capabilities": ["read"]},
                            "secret/data/json/secret": {"capabilities": ["deny"]}}})"},
      {"sudo-less", R"(path "sys/rotate" { capabilities = ["update"] }
path "sys/audit-hash/*" { capabilities = ["update"] })"},
      {"sudo", R"(path "sys/audit-hash/*" { capabilities = ["update", "sudo"] })"},
      {"meta-delete", R"(path "secret/metadata/app/*" { capabilities = ["delete"] }
path "secret/delete/app/*" { capabilities = ["update"] })"},
      {"patch", R"(path "secret/data/app/*" { capabilities = ["patch", "read"] })"},
      {"policy-admin", R"(path "sys/policies/acl/*" { capabilities = ["read", "list"] }
path "sys/policies/acl" { capabilities = ["list"] })"},
  };
  return policies;
}

const AclCase kCases[] = {
    // Exact rules match that path and nothing else.
    {"exact", "GET", "secret/data/app/db", kAllowed},
    {"exact", "GET", "secret/data/app/db/", kAllowed},  // trailing slash normalised
    {"exact", "GET", "secret/data/app/db2", kDenied},
    {"exact", "GET", "secret/data/app", kDenied},
    {"exact", "GET", "secret/data/app/db/x", kDenied},
    {"exact", "GET", "secret/data/APP/db", kDenied},  // paths are case-sensitive
    {"exact", "GET", "secret/data/app%2Fdb", kRejected},  // encoded slashes are refused
    {"exact", "GET", "secret/data/app/%64b", kAllowed},  // decoded before matching
    {"exact", "POST", "secret/data/app/db", kDenied},
    {"exact", "DELETE", "secret/data/app/db", kDenied},
    // A trailing '*' matches any suffix.
    {"prefix", "GET", "secret/data/app/db", kAllowed},
    {"prefix", "GET", "secret/data/app/a/b/c", kAllowed},
    {"prefix", "GET", "secret/data/application", kDenied},
    {"prefix", "GET", "secret/data/ap", kDenied},
    {"prefix", "POST", "secret/data/app/new", kAllowed},
    {"prefix", "DELETE", "secret/data/app/db", kDenied},
    {"prefix", "LIST", "secret/metadata/app", kDenied},
    {"prefix", "GET", "secret/data/app/../other", kRejected},
    {"prefix", "GET", "secret/data/app/%2e%2e/other", kRejected},
    // '+' matches exactly one segment.
    {"plus", "GET", "secret/data/web/config", kAllowed},
    {"plus", "GET", "secret/data/api/config", kAllowed},
    {"plus", "GET", "secret/data/config", kDenied},
    {"plus", "GET", "secret/data/a/b/config", kDenied},
    {"plus", "GET", "secret/data/web/config/x", kDenied},
    {"plus-star", "GET", "secret/data/web/team/a", kAllowed},
    {"plus-star", "GET", "secret/data/web/team/a/b", kAllowed},
    {"plus-star", "GET", "secret/data/web/other/a", kDenied},
    {"plus-star", "GET", "secret/data/team/a", kDenied},
    // A deny on a folder wins over the broader grant, for reads and for LIST.
    {"deny-folder", "GET", "secret/data/public/x", kAllowed},
    {"deny-folder", "GET", "secret/data/private/x", kDenied},
    {"deny-folder", "LIST", "secret/metadata/private", kDenied},
    {"deny-folder", "GET", "secret/metadata/private?list=true", kDenied},
    {"deny-folder", "LIST", "secret/metadata/private/", kDenied},
    {"deny-folder", "LIST", "secret/metadata/public", kAllowed},
    {"deny-folder", "LIST", "secret/metadata", kAllowed},
    {"deny-folder", "GET", "secret/data/PRIVATE/x", kAllowed},  // another path, case-sensitive
    // An exact rule also covers a LIST of that folder.
    {"list-exact", "LIST", "secret/metadata/app", kAllowed},
    {"list-exact", "LIST", "secret/metadata/app/", kAllowed},
    {"list-exact", "GET", "secret/metadata/app", kDenied},
    {"list-exact", "LIST", "secret/metadata/app/sub", kDenied},
    // The most specific rule decides.
    {"precedence", "GET", "secret/data/public/a", kAllowed},
    {"precedence", "GET", "secret/data/public/locked", kDenied},
    {"precedence", "GET", "secret/data/other", kDenied},
    {"precedence", "GET", "secret/data/public", kDenied},
    // The JSON form.
    {"json", "GET", "secret/data/json/a", kAllowed},
    {"json", "GET", "secret/data/json/secret", kDenied},
    {"json", "GET", "secret/data/jsonx", kDenied},
    // sudo paths need sudo as well.
    {"sudo-less", "POST", "sys/rotate", kDenied},
    {"sudo-less", "POST", "sys/audit-hash/database", kDenied},
    {"sudo", "POST", "sys/audit-hash/database", kAllowed},
    // Delete of metadata versus soft delete.
    {"meta-delete", "DELETE", "secret/metadata/app/x", kAllowed},
    {"meta-delete", "POST", "secret/delete/app/x", kAllowed},
    {"meta-delete", "DELETE", "secret/data/app/x", kDenied},
    // patch is its own capability.
    {"patch", "PATCH", "secret/data/app/db", kAllowed},
    {"patch", "POST", "secret/data/app/db", kDenied},
    // Policy administration and the default policy.
    {"policy-admin", "GET", "sys/policies/acl/exact", kAllowed},
    {"policy-admin", "LIST", "sys/policies/acl", kAllowed},
    {"policy-admin", "POST", "sys/policies/acl/exact", kDenied},
    {"policy-admin", "DELETE", "sys/policies/acl/exact", kDenied},
    {"exact", "GET", "auth/token/lookup-self", kAllowed},
    {"exact", "POST", "auth/token/renew-self", kAllowed},
    {"exact", "POST", "auth/token/create", kDenied},
    {"exact", "GET", "sys/mounts", kDenied},
    {"exact", "POST", "sys/seal", kDenied},
    {"exact", "POST", "sys/policies/acl/exact", kDenied},
};

}  // namespace

TEST_SUITE("e2e/acl") {
  TEST_CASE("policy table over HTTP") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    REQUIRE(StatusOf(WriteSecret(*root, "app/db", {{"v", "1"}})) == 200);
    REQUIRE(StatusOf(WriteSecret(*root, "private/x", {{"v", "1"}})) == 200);
    REQUIRE(StatusOf(WriteSecret(*root, "public/x", {{"v", "1"}})) == 200);

    std::map<std::string, std::string> tokens;
    // Named references, not a structured binding: clang 14 cannot capture one in CHECK macros.
    for (const auto& policy : Policies()) {
      const std::string& name = policy.first;
      const std::string& document = policy.second;
      auto written = PostJson(*root, "/v1/sys/policies/acl/" + name, {{"policy", document}});
      REQUIRE_MESSAGE(StatusOf(written) == 204, name, BodyOf(written).dump());
      auto created = PostJson(*root, "/v1/auth/token/create", {{"policies", {name}}});
      REQUIRE(StatusOf(created) == 200);
      tokens[name] = BodyOf(created)["auth"]["client_token"].get<std::string>();
    }

    CHECK(std::size(kCases) >= 60);
    for (const AclCase& test : kCases) {
      auto client = MakeClient(server.port(), tokens.at(test.policy));
      const std::string body =
          std::string(test.method) == "POST" || std::string(test.method) == "PATCH"
              ? R"({"data": {"v": "2"}})"
              : "";
      const std::string content_type = std::string(test.method) == "PATCH"
                                           ? "application/merge-patch+json"
                                           : "application/json";
      auto reply = Send(*client, test.method, std::string("/v1/") + test.path, body, {},
                        content_type);
      const int status = StatusOf(reply);
      INFO(test.policy, " ", test.method, " ", test.path, " -> ", status, " ",
           BodyOf(reply).dump());
      REQUIRE(status != 0);
      if (test.outcome == kAllowed) {
        CHECK(status != 403);
      } else if (test.outcome == kRejected) {
        CHECK(status == 400);
      } else {
        CHECK(status == 403);
        CHECK(BodyOf(reply) == json({{"errors", {"permission denied"}}}));
      }
    }
    // Nothing refused changed the secrets.
    CHECK(ReadSecretData(*root, "private/x") == json({{"v", "1"}}));
  }
}

}  // namespace kw::e2e
