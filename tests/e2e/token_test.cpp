// Tokens over HTTP through the real binary: delegation, revocation of trees, policies,
// bound paths, use counts, roles, and the delegation chain in lookups and audit records.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

struct Issued {
  std::string token;
  std::string accessor;
  json auth;
};

// Creates a token with `client`'s token as parent; REQUIREs success.
Issued CreateToken(httplib::Client& client, const json& body,
                   const std::string& path = "/v1/auth/token/create") {
  auto created = PostJson(client, path, body);
  REQUIRE_MESSAGE(StatusOf(created) == 200, BodyOf(created).dump());
  const json auth = BodyOf(created)["auth"];
  return Issued{auth["client_token"].get<std::string>(), auth["accessor"].get<std::string>(),
                auth};
}

int LookupSelfStatus(const DevServer& server, const std::string& token) {
  auto client = MakeClient(server.port(), token);
  return StatusOf(client->Get("/v1/auth/token/lookup-self"));
}

void WritePolicy(httplib::Client& root, const std::string& name, const std::string& document) {
  auto written = PostJson(root, "/v1/sys/policies/acl/" + name, {{"policy", document}});
  REQUIRE_MESSAGE(StatusOf(written) == 204, BodyOf(written).dump());
}

}  // namespace

TEST_SUITE("e2e/token") {
  TEST_CASE("create returns Vault's auth block and lookup-self shows the token") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    const Issued issued = CreateToken(
        *root, {{"policies", {"app"}}, {"ttl", "1h"}, {"meta", {{"team", "payments"}}},
                {"display_name", "ci"}});
    CHECK(issued.token.starts_with("kw."));
    CHECK(issued.auth["policies"] == json({"app", "default"}));
    CHECK(issued.auth["token_policies"] == json({"app", "default"}));
    CHECK(issued.auth["lease_duration"] == 3600);
    CHECK(issued.auth["renewable"] == true);
    CHECK(issued.auth["orphan"] == false);
    CHECK(issued.auth["token_type"] == "service");
    CHECK(issued.auth["metadata"] == json({{"team", "payments"}}));

    auto client = MakeClient(server.port(), issued.token);
    auto looked = client->Get("/v1/auth/token/lookup-self");
    REQUIRE(StatusOf(looked) == 200);
    const json data = BodyOf(looked)["data"];
    CHECK(data["id"] == issued.token);
    CHECK(data["accessor"] == issued.accessor);
    CHECK(data["display_name"] == "token-ci");
    CHECK(data["ttl"] == 3600);
    CHECK(data["expire_time"].is_string());
    CHECK(data["delegation_chain"].size() == 2);
    CHECK(data["delegation_chain"][1] == issued.accessor);

    auto by_accessor = PostJson(*root, "/v1/auth/token/lookup-accessor",
                                {{"accessor", issued.accessor}});
    REQUIRE(StatusOf(by_accessor) == 200);
    CHECK(BodyOf(by_accessor)["data"]["id"] == "");
    CHECK(BodyOf(by_accessor)["data"]["policies"] == json({"app", "default"}));
  }

  TEST_CASE("revoking a parent revokes children and grandchildren, not orphans") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    WritePolicy(*root, "delegate", R"(path "auth/token/create" { capabilities = ["update"] })");
    const Issued parent = CreateToken(*root, {{"policies", {"delegate"}}});
    auto parent_client = MakeClient(server.port(), parent.token);
    const Issued child = CreateToken(*parent_client, {{"policies", {"delegate"}}});
    auto child_client = MakeClient(server.port(), child.token);
    const Issued grandchild = CreateToken(*child_client, {{"policies", {"delegate"}}});
    const Issued orphan =
        CreateToken(*root, {{"policies", {"delegate"}}}, "/v1/auth/token/create-orphan");
    CHECK(orphan.auth["orphan"] == true);

    auto grandchild_client = MakeClient(server.port(), grandchild.token);
    auto chain = BodyOf(grandchild_client->Get("/v1/auth/token/lookup-self"))["data"];
    CHECK(chain["delegation_chain"].size() == 4);
    CHECK(chain["delegation_chain"][1] == parent.accessor);
    CHECK(chain["delegation_chain"][2] == child.accessor);

    auto revoked = PostJson(*root, "/v1/auth/token/revoke", {{"token", parent.token}});
    CHECK(StatusOf(revoked) == 204);
    CHECK(LookupSelfStatus(server, parent.token) == 403);
    CHECK(LookupSelfStatus(server, child.token) == 403);
    CHECK(LookupSelfStatus(server, grandchild.token) == 403);
    CHECK(LookupSelfStatus(server, orphan.token) == 200);
    auto gone = PostJson(*root, "/v1/auth/token/lookup-accessor", {{"accessor", child.accessor}});
    CHECK(StatusOf(gone) == 400);
    CHECK(BodyOf(gone).dump().find("invalid accessor") != std::string::npos);
  }

  TEST_CASE("no child survives a revocation that races its creation") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    WritePolicy(*root, "delegate", R"(path "auth/token/create" { capabilities = ["update"] })");
    for (int trial = 0; trial < 3; ++trial) {
      const Issued parent = CreateToken(*root, {{"policies", {"delegate"}}});
      std::atomic<bool> stop{false};
      std::atomic<int> created_before_revoke{0};
      std::mutex mutex;
      std::vector<std::string> children;
      std::vector<std::thread> threads;
      for (int t = 0; t < 6; ++t) {
        threads.emplace_back([&] {
          auto client = MakeClient(server.port(), parent.token);
          for (int i = 0; i < 200 && !stop; ++i) {
            auto created = PostJson(*client, "/v1/auth/token/create", {{"policies", {"delegate"}}});
            if (StatusOf(created) != 200) continue;
            std::lock_guard lock(mutex);
            children.push_back(BodyOf(created)["auth"]["client_token"].get<std::string>());
            ++created_before_revoke;
          }
        });
      }
      for (int wait = 0; wait < 500 && created_before_revoke < 10; ++wait) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      auto revoked = PostJson(*root, "/v1/auth/token/revoke", {{"token", parent.token}});
      CHECK(StatusOf(revoked) == 204);
      stop = true;
      for (auto& thread : threads) thread.join();
      REQUIRE(children.size() >= 10);
      int survivors = 0;
      for (const auto& child : children) {
        if (LookupSelfStatus(server, child) != 403) ++survivors;
      }
      CHECK(survivors == 0);
    }
  }

  TEST_CASE("a child cannot get a policy or a lifetime its parent lacks") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    WritePolicy(*root, "delegate", R"(path "auth/token/create" { capabilities = ["update"] })");
    const Issued parent = CreateToken(*root, {{"policies", {"delegate"}}, {"ttl", "10m"}});
    auto parent_client = MakeClient(server.port(), parent.token);

    auto wider = PostJson(*parent_client, "/v1/auth/token/create",
                          {{"policies", {"delegate", "admin"}}});
    CHECK(StatusOf(wider) == 403);
    CHECK(BodyOf(wider).dump().find("admin") != std::string::npos);
    auto root_policy = PostJson(*parent_client, "/v1/auth/token/create", {{"policies", {"Root"}}});
    CHECK(StatusOf(root_policy) == 403);
    auto root_by_root = PostJson(*root, "/v1/auth/token/create", {{"policies", {"root"}}});
    CHECK(StatusOf(root_by_root) == 403);

    const Issued child = CreateToken(*parent_client, {{"policies", {"delegate"}}, {"ttl", "24h"}});
    CHECK(child.auth["lease_duration"].get<int>() <= 600);
    auto orphan = PostJson(*parent_client, "/v1/auth/token/create-orphan", {{"policies", {"delegate"}}});
    CHECK(StatusOf(orphan) == 403);
    auto no_parent = PostJson(*parent_client, "/v1/auth/token/create", {{"no_parent", true}});
    CHECK(StatusOf(no_parent) == 403);
  }

  TEST_CASE("policies decide access, with the same 403 for denied and unknown paths") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    REQUIRE(StatusOf(WriteSecret(*root, "app/db", {{"password", "s3cret"}})) == 200);
    REQUIRE(StatusOf(WriteSecret(*root, "other/db", {{"password", "x"}})) == 200);
    WritePolicy(*root, "app-read", R"({"path": {"secret/data/app/*": {"capabilities": ["read"]}}})");
    const Issued reader = CreateToken(*root, {{"policies", {"app-read"}}});
    auto client = MakeClient(server.port(), reader.token);

    CHECK(ReadSecretData(*client, "app/db") == json({{"password", "s3cret"}}));
    auto denied = client->Get("/v1/secret/data/other/db");
    auto unknown = client->Get("/v1/secret/data/nothing/here");
    auto no_route = client->Get("/v1/no/such/mount");
    CHECK(StatusOf(denied) == 403);
    CHECK(StatusOf(unknown) == 403);
    CHECK(StatusOf(no_route) == 403);
    CHECK(BodyOf(denied) == json({{"errors", {"permission denied"}}}));
    CHECK(BodyOf(unknown) == BodyOf(denied));
    CHECK(BodyOf(no_route) == BodyOf(denied));
    auto write = WriteSecret(*client, "app/db", {{"password", "overwritten"}});
    CHECK(StatusOf(write) == 403);
    CHECK(ReadSecretData(*root, "app/db") == json({{"password", "s3cret"}}));

    auto caps = PostJson(*client, "/v1/sys/capabilities-self", {{"paths", {"secret/data/app/x"}}});
    REQUIRE(StatusOf(caps) == 200);
    CHECK(BodyOf(caps)["data"]["secret/data/app/x"] == json({"read"}));
  }

  TEST_CASE("create needs create on a new secret and update on an existing one") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    REQUIRE(StatusOf(WriteSecret(*root, "exists", {{"v", "1"}})) == 200);
    WritePolicy(*root, "create-only", R"(path "secret/data/*" { capabilities = ["create"] })");
    const Issued token = CreateToken(*root, {{"policies", {"create-only"}}});
    auto client = MakeClient(server.port(), token.token);
    CHECK(StatusOf(WriteSecret(*client, "fresh", {{"v", "1"}})) == 200);
    CHECK(StatusOf(WriteSecret(*client, "exists", {{"v", "2"}})) == 403);
    CHECK(ReadSecretData(*root, "exists") == json({{"v", "1"}}));
  }

  TEST_CASE("bound paths narrow a child below its policies") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    REQUIRE(StatusOf(WriteSecret(*root, "app/one", {{"v", "1"}})) == 200);
    REQUIRE(StatusOf(WriteSecret(*root, "app/two", {{"v", "2"}})) == 200);
    WritePolicy(*root, "app",
                R"(path "secret/data/app/*" { capabilities = ["read"] }
path "auth/token/create" { capabilities = ["update"] })");
    const Issued agent = CreateToken(*root, {{"policies", {"app"}}});
    auto agent_client = MakeClient(server.port(), agent.token);
    const Issued sub = CreateToken(*agent_client,
                                   {{"policies", {"app"}}, {"bound_paths", {"secret/data/app/one"}}});
    auto sub_client = MakeClient(server.port(), sub.token);
    CHECK(ReadSecretData(*sub_client, "app/one") == json({{"v", "1"}}));
    CHECK(StatusOf(sub_client->Get("/v1/secret/data/app/two")) == 403);
    // Self-management still works.
    CHECK(StatusOf(sub_client->Get("/v1/auth/token/lookup-self")) == 200);
    // A grandchild cannot widen the bound: it carries its parent's as well.
    auto wide = PostJson(*sub_client, "/v1/auth/token/create",
                         {{"policies", {"app"}}, {"bound_paths", {"secret/data/app/*"}}});
    CHECK(StatusOf(wide) == 403);  // the sub token may not touch auth/token/create
  }

  TEST_CASE("num_uses limits requests and the audit log names the delegation chain") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    WritePolicy(*root, "delegate", R"(path "auth/token/create" { capabilities = ["update"] })");
    const Issued parent = CreateToken(*root, {{"policies", {"delegate"}}});
    auto parent_client = MakeClient(server.port(), parent.token);
    const Issued limited = CreateToken(*parent_client, {{"policies", {"delegate"}}, {"num_uses", 2}});
    CHECK(LookupSelfStatus(server, limited.token) == 200);
    CHECK(LookupSelfStatus(server, limited.token) == 200);
    CHECK(LookupSelfStatus(server, limited.token) == 403);

    Database db(server.db_path());
    const auto records = AuditRecords(db);
    bool found = false;
    for (const auto& record : records) {
      if (record["accessor"] == limited.accessor) {
        found = true;
        REQUIRE(record["delegation_chain"].size() == 3);
        CHECK(record["delegation_chain"][1] == parent.accessor);
        CHECK(record["delegation_chain"][2] == limited.accessor);
      }
      CHECK(record.dump().find(limited.token) == std::string::npos);
    }
    CHECK(found);
  }

  TEST_CASE("renew-self, revoke-self, revoke-accessor and revoke-orphan") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    WritePolicy(*root, "delegate", R"(path "auth/token/create" { capabilities = ["update"] })");
    const Issued token = CreateToken(*root, {{"policies", {"delegate"}}, {"ttl", "10m"},
                                             {"explicit_max_ttl", "1h"}});
    auto client = MakeClient(server.port(), token.token);
    auto renewed = PostJson(*client, "/v1/auth/token/renew-self", {{"increment", "30m"}});
    REQUIRE(StatusOf(renewed) == 200);
    CHECK(BodyOf(renewed)["auth"]["lease_duration"] == 1800);
    auto capped = PostJson(*client, "/v1/auth/token/renew-self", {{"increment", "5h"}});
    REQUIRE(StatusOf(capped) == 200);
    CHECK(BodyOf(capped)["auth"]["lease_duration"].get<int>() <= 3600);

    const Issued child = CreateToken(*client, {{"policies", {"delegate"}}});
    auto orphaned = PostJson(*root, "/v1/auth/token/revoke-orphan", {{"token", token.token}});
    CHECK(StatusOf(orphaned) == 204);
    CHECK(LookupSelfStatus(server, token.token) == 403);
    auto child_client = MakeClient(server.port(), child.token);
    auto child_lookup = child_client->Get("/v1/auth/token/lookup-self");
    REQUIRE(StatusOf(child_lookup) == 200);
    CHECK(BodyOf(child_lookup)["data"]["orphan"] == true);

    CHECK(StatusOf(PostJson(*child_client, "/v1/auth/token/revoke-self", json::object())) == 204);
    CHECK(LookupSelfStatus(server, child.token) == 403);

    const Issued other = CreateToken(*root, {{"policies", {"delegate"}}});
    CHECK(StatusOf(PostJson(*root, "/v1/auth/token/revoke-accessor",
                            {{"accessor", other.accessor}})) == 204);
    CHECK(LookupSelfStatus(server, other.token) == 403);
  }

  TEST_CASE("token roles bound the policies of the tokens created against them") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    auto role = PostJson(*root, "/v1/auth/token/roles/ci",
                         {{"allowed_policies", {"ci", "deploy"}}, {"token_ttl", "15m"},
                          {"renewable", false}});
    REQUIRE(StatusOf(role) == 204);
    auto read = root->Get("/v1/auth/token/roles/ci");
    REQUIRE(StatusOf(read) == 200);
    CHECK(BodyOf(read)["data"]["allowed_policies"] == json({"ci", "deploy"}));
    const Issued issued = CreateToken(*root, {{"policies", {"ci"}}}, "/v1/auth/token/create/ci");
    CHECK(issued.auth["lease_duration"] == 900);
    CHECK(issued.auth["renewable"] == false);
    auto outside = PostJson(*root, "/v1/auth/token/create/ci", {{"policies", {"admin"}}});
    CHECK(StatusOf(outside) == 403);
    auto roles = Send(*root, "LIST", "/v1/auth/token/roles");
    REQUIRE(StatusOf(roles) == 200);
    CHECK(BodyOf(roles)["data"]["keys"] == json({"ci"}));
    CHECK(StatusOf(Send(*root, "DELETE", "/v1/auth/token/roles/ci")) == 204);
    CHECK(StatusOf(root->Get("/v1/auth/token/roles/ci")) == 404);
  }

  TEST_CASE("missing, malformed and revoked tokens all get the same 403") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    const Issued token = CreateToken(*root, {{"policies", {"x"}}});
    REQUIRE(StatusOf(PostJson(*root, "/v1/auth/token/revoke", {{"token", token.token}})) == 204);
    std::string bad_checksum = token.token;
    bad_checksum.back() = bad_checksum.back() == 'a' ? 'b' : 'a';
    for (const std::string& presented : {std::string(), std::string("garbage"), bad_checksum,
                                         token.token}) {
      auto client = MakeClient(server.port(), presented);
      auto reply = client->Get("/v1/secret/data/anything");
      CHECK(StatusOf(reply) == 403);
      CHECK(BodyOf(reply) == json({{"errors", {"permission denied"}}}));
    }
  }
}

}  // namespace kw::e2e
