// AppRole login through the real binary: Vault's request and response shapes, use counts
// under concurrent logins, and CIDR bounds.
#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

constexpr std::string_view kInvalidLogin = "invalid role ID or secret ID";

// Creates role `name` with `settings` and returns its role_id.
std::string CreateRole(httplib::Client& client, const std::string& name, const json& settings) {
  auto created = PostJson(client, "/v1/auth/approle/role/" + name, settings);
  REQUIRE(StatusOf(created) == 204);
  auto read = client.Get(("/v1/auth/approle/role/" + name + "/role-id").c_str());
  REQUIRE(StatusOf(read) == 200);
  return BodyOf(read)["data"]["role_id"].get<std::string>();
}

// Generates a secret ID for role `name` and returns the response's data.
json GenerateSecretId(httplib::Client& client, const std::string& name, const json& request) {
  auto generated = PostJson(client, "/v1/auth/approle/role/" + name + "/secret-id", request);
  REQUIRE(StatusOf(generated) == 200);
  return BodyOf(generated)["data"];
}

httplib::Result Login(httplib::Client& client, const std::string& role_id,
                      const std::string& secret_id) {
  return PostJson(client, "/v1/auth/approle/login",
                  {{"role_id", role_id}, {"secret_id", secret_id}});
}

}  // namespace

TEST_SUITE("e2e/approle") {
  TEST_CASE("login and use the token") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    const std::string role_id =
        CreateRole(*root, "Web", {{"token_policies", "default"}, {"token_ttl", "1h"}});

    auto role = root->Get("/v1/auth/approle/role/web");
    REQUIRE(StatusOf(role) == 200);
    CHECK(BodyOf(role)["data"]["token_ttl"] == 3600);
    CHECK(BodyOf(role)["data"]["bind_secret_id"] == true);
    auto roles = Send(*root, "LIST", "/v1/auth/approle/role");
    REQUIRE(StatusOf(roles) == 200);
    CHECK(BodyOf(roles)["data"]["keys"] == json::array({"web"}));

    const json secret = GenerateSecretId(*root, "web", {{"metadata", R"({"host":"web-1"})"}});
    const std::string secret_id = secret["secret_id"].get<std::string>();
    CHECK(secret_id.size() == 64);
    CHECK(secret["secret_id_accessor"].is_string());
    CHECK(secret["secret_id_num_uses"] == 0);

    auto anonymous = server.AnonymousClient();
    auto login = Login(*anonymous, role_id, secret_id);
    REQUIRE(StatusOf(login) == 200);
    const json auth = BodyOf(login)["auth"];
    REQUIRE(auth["client_token"].is_string());
    CHECK(auth["metadata"]["role_name"] == "web");
    CHECK(auth["metadata"]["host"] == "web-1");
    CHECK(auth["lease_duration"] == 3600);

    auto as_app = MakeClient(server.port(), auth["client_token"].get<std::string>());
    auto self = as_app->Get("/v1/auth/token/lookup-self");
    REQUIRE(StatusOf(self) == 200);
    CHECK(BodyOf(self)["data"]["accessor"] == auth["accessor"]);

    auto lookup = PostJson(*root, "/v1/auth/approle/role/web/secret-id-accessor/lookup",
                           {{"secret_id_accessor", secret["secret_id_accessor"]}});
    REQUIRE(StatusOf(lookup) == 200);
    CHECK(BodyOf(lookup)["data"]["metadata"]["host"] == "web-1");
    CHECK_FALSE(BodyOf(lookup)["data"].contains("secret_id"));

    // Neither the server log nor the database contains the secret ID.
    CHECK(server.process().ReadStderr().find(secret_id) == std::string::npos);
    CHECK(server.process().ReadStdout().find(secret_id) == std::string::npos);
    CHECK_FALSE(FileContains(server.db_path(), secret_id));
  }

  TEST_CASE("secret id lookup destroy and tidy") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    CreateRole(*root, "web", json::object());
    const json secret = GenerateSecretId(*root, "web", json::object());
    const std::string secret_id = secret["secret_id"].get<std::string>();

    auto lookup = PostJson(*root, "/v1/auth/approle/role/web/secret-id/lookup",
                           {{"secret_id", secret_id}});
    REQUIRE(StatusOf(lookup) == 200);
    CHECK(BodyOf(lookup)["data"]["secret_id_accessor"] == secret["secret_id_accessor"]);
    CHECK(BodyOf(lookup)["data"]["expiration_time"] == "0001-01-01T00:00:00Z");
    CHECK(BodyOf(lookup).dump().find(secret_id) == std::string::npos);
    auto listed = Send(*root, "LIST", "/v1/auth/approle/role/web/secret-id");
    REQUIRE(StatusOf(listed) == 200);
    CHECK(BodyOf(listed)["data"]["keys"] == json::array({secret["secret_id_accessor"]}));

    auto destroyed = PostJson(*root, "/v1/auth/approle/role/web/secret-id/destroy",
                              {{"secret_id", secret_id}});
    CHECK(StatusOf(destroyed) == 204);
    auto after = PostJson(*root, "/v1/auth/approle/role/web/secret-id/lookup",
                          {{"secret_id", secret_id}});
    CHECK(StatusOf(after) == 204);
    auto by_accessor = PostJson(*root, "/v1/auth/approle/role/web/secret-id-accessor/lookup",
                                {{"secret_id_accessor", secret["secret_id_accessor"]}});
    CHECK(StatusOf(by_accessor) == 404);
    CHECK(StatusOf(Send(*root, "LIST", "/v1/auth/approle/role/web/secret-id")) == 404);

    auto tidy = PostJson(*root, "/v1/auth/approle/tidy/secret-id", json::object());
    REQUIRE(StatusOf(tidy) == 200);
    CHECK(BodyOf(tidy)["data"]["secret_ids_deleted"] == 0);

    CHECK(StatusOf(Send(*root, "DELETE", "/v1/auth/approle/role/web")) == 204);
    CHECK(StatusOf(root->Get("/v1/auth/approle/role/web")) == 404);
    auto no_role = PostJson(*root, "/v1/auth/approle/role/web/secret-id", json::object());
    CHECK(StatusOf(no_role) == 400);
    CHECK(BodyOf(no_role) == json({{"errors", {"role \"web\" does not exist"}}}));
    CHECK(StatusOf(root->Get("/v1/auth/approle/role/bad%20name")) == 400);
  }

  TEST_CASE("unknown role id and wrong secret id get the same reply") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    const std::string role_id = CreateRole(*root, "web", json::object());
    const json secret = GenerateSecretId(*root, "web", json::object());
    auto anonymous = server.AnonymousClient();

    auto unknown = Login(*anonymous, "no-such-role-id", secret["secret_id"].get<std::string>());
    auto wrong = Login(*anonymous, role_id, std::string(64, '0'));
    CHECK(StatusOf(unknown) == 400);
    CHECK(StatusOf(wrong) == 400);
    CHECK(BodyOf(unknown) == json({{"errors", {kInvalidLogin}}}));
    CHECK(BodyOf(wrong) == BodyOf(unknown));
  }

  TEST_CASE("concurrent logins share the use count") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    const std::string role_id = CreateRole(*root, "batch", {{"secret_id_num_uses", 5}});
    const std::string secret_id =
        GenerateSecretId(*root, "batch", json::object())["secret_id"].get<std::string>();

    constexpr int kThreads = 16;
    std::atomic<int> succeeded{0};
    std::atomic<int> refused{0};
    std::atomic<int> other{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&] {
        auto client = MakeClient(server.port(), "");
        auto login = Login(*client, role_id, secret_id);
        if (StatusOf(login) == 200) {
          ++succeeded;
        } else if (StatusOf(login) == 400 &&
                   BodyOf(login) == json({{"errors", {kInvalidLogin}}})) {
          ++refused;
        } else if (StatusOf(login) == 429 && login->has_header("Retry-After")) {
          // After five failures the login lockout refuses the rest (Vault's default
          // lockout_threshold).
          ++refused;
        } else {
          ++other;
        }
      });
    }
    for (auto& thread : threads) thread.join();
    CHECK(succeeded.load() == 5);
    CHECK(refused.load() == kThreads - 5);
    CHECK(other.load() == 0);
  }

  TEST_CASE("cidr-bound secret id rejected elsewhere") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = server.Client();
    const std::string role_id = CreateRole(*root, "edge", json::object());
    const std::string far =
        GenerateSecretId(*root, "edge", {{"cidr_list", "10.0.0.0/8"}})["secret_id"];
    const std::string near =
        GenerateSecretId(*root, "edge", {{"cidr_list", json::array({"127.0.0.0/8"})}})["secret_id"];
    auto anonymous = server.AnonymousClient();

    auto refused = Login(*anonymous, role_id, far);
    CHECK(StatusOf(refused) == 400);
    CHECK(BodyOf(refused).dump().find("127.0.0.1") != std::string::npos);
    CHECK(StatusOf(Login(*anonymous, role_id, near)) == 200);

    auto invalid = PostJson(*root, "/v1/auth/approle/role/edge/secret-id",
                            {{"cidr_list", "10.0.0.0/40"}});
    CHECK(StatusOf(invalid) == 400);
  }
}

}  // namespace kw::e2e
