// KV v2 at secret/ through the real binary: the Vault request and response shapes.
#include <doctest/doctest.h>

#include <algorithm>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

bool Contains(const json& array, const std::string& value) {
  return array.is_array() && std::find(array.begin(), array.end(), json(value)) != array.end();
}

std::string ErrorText(const httplib::Result& result) { return BodyOf(result).dump(); }

}  // namespace

TEST_SUITE("e2e/kv") {
  TEST_CASE("write then read") {
    DevServer server;
    REQUIRE(server.Start());
    auto client = server.Client();

    auto written = WriteSecret(*client, "app/db", {{"user", "admin"}, {"port", "5432"}});
    REQUIRE(StatusOf(written) == 200);
    const json write_data = BodyOf(written)["data"];
    CHECK(write_data["version"] == 1);
    CHECK(write_data["deletion_time"] == "");
    CHECK(write_data["destroyed"] == false);
    CHECK(write_data["created_time"].is_string());
    CHECK(write_data.contains("custom_metadata"));

    auto read = client->Get("/v1/secret/data/app/db");
    REQUIRE(StatusOf(read) == 200);
    const json body = BodyOf(read);
    CHECK(body["data"]["data"] == json({{"user", "admin"}, {"port", "5432"}}));
    CHECK(body["data"]["metadata"]["version"] == 1);
    CHECK(body["data"]["metadata"]["destroyed"] == false);
    CHECK(body.contains("request_id"));
    CHECK(body.contains("lease_id"));

    auto missing = client->Get("/v1/secret/data/app/nothing");
    CHECK(StatusOf(missing) == 404);
    CHECK(BodyOf(missing) == json({{"errors", json::array()}}));
  }

  TEST_CASE("versions and version query") {
    DevServer server;
    REQUIRE(server.Start());
    auto client = server.Client();
    for (int i = 1; i <= 3; ++i) {
      auto written = WriteSecret(*client, "multi", {{"n", std::to_string(i)}});
      REQUIRE(StatusOf(written) == 200);
      CHECK(BodyOf(written)["data"]["version"] == i);
    }

    CHECK(ReadSecretData(*client, "multi") == json({{"n", "3"}}));
    for (int i = 1; i <= 3; ++i) {
      auto read = client->Get(("/v1/secret/data/multi?version=" + std::to_string(i)).c_str());
      REQUIRE(StatusOf(read) == 200);
      CHECK(BodyOf(read)["data"]["data"]["n"] == std::to_string(i));
      CHECK(BodyOf(read)["data"]["metadata"]["version"] == i);
    }
    auto latest = client->Get("/v1/secret/data/multi?version=0");
    REQUIRE(StatusOf(latest) == 200);
    CHECK(BodyOf(latest)["data"]["metadata"]["version"] == 3);

    CHECK(StatusOf(client->Get("/v1/secret/data/multi?version=9")) == 404);
    auto bad = client->Get("/v1/secret/data/multi?version=two");
    CHECK(StatusOf(bad) == 400);
    CHECK(ErrorText(bad).find("version") != std::string::npos);
  }

  TEST_CASE("check-and-set conflict") {
    DevServer server;
    REQUIRE(server.Start());
    auto client = server.Client();

    // cas 0 creates only when the secret does not exist yet.
    auto created = PostJson(*client, "/v1/secret/data/cas",
                            {{"data", {{"v", "1"}}}, {"options", {{"cas", 0}}}});
    REQUIRE(StatusOf(created) == 200);
    auto again = PostJson(*client, "/v1/secret/data/cas",
                          {{"data", {{"v", "x"}}}, {"options", {{"cas", 0}}}});
    CHECK(StatusOf(again) == 400);
    CHECK(ErrorText(again).find("check-and-set parameter did not match the current version") !=
          std::string::npos);

    auto stale = PostJson(*client, "/v1/secret/data/cas",
                          {{"data", {{"v", "x"}}}, {"options", {{"cas", 5}}}});
    CHECK(StatusOf(stale) == 400);
    auto matched = PostJson(*client, "/v1/secret/data/cas",
                            {{"data", {{"v", "2"}}}, {"options", {{"cas", 1}}}});
    CHECK(StatusOf(matched) == 200);
    CHECK(BodyOf(matched)["data"]["version"] == 2);
    CHECK(ReadSecretData(*client, "cas") == json({{"v", "2"}}));

    // cas_required on the secret: a write without cas is rejected.
    REQUIRE(StatusOf(PostJson(*client, "/v1/secret/metadata/cas", {{"cas_required", true}})) ==
            204);
    auto without = WriteSecret(*client, "cas", {{"v", "3"}});
    CHECK(StatusOf(without) == 400);
    CHECK(ErrorText(without).find("check-and-set parameter required for this call") !=
          std::string::npos);
    CHECK(ReadSecretData(*client, "cas") == json({{"v", "2"}}));
  }

  TEST_CASE("patch merges into current version") {
    DevServer server;
    REQUIRE(server.Start());
    auto client = server.Client();
    REQUIRE(StatusOf(WriteSecret(*client, "patched", {{"a", "1"}, {"b", "2"}, {"c", "3"}})) == 200);

    const std::string patch = json({{"data", {{"b", "20"}, {"c", nullptr}, {"d", "4"}}}}).dump();
    auto wrong_type = Send(*client, "PATCH", "/v1/secret/data/patched", patch);
    CHECK(StatusOf(wrong_type) == 415);
    CHECK(ReadSecretData(*client, "patched") == json({{"a", "1"}, {"b", "2"}, {"c", "3"}}));

    auto patched = Send(*client, "PATCH", "/v1/secret/data/patched", patch, {},
                        "application/merge-patch+json");
    REQUIRE(StatusOf(patched) == 200);
    CHECK(BodyOf(patched)["data"]["version"] == 2);
    CHECK(ReadSecretData(*client, "patched") == json({{"a", "1"}, {"b", "20"}, {"d", "4"}}));

    auto missing = Send(*client, "PATCH", "/v1/secret/data/never-written", patch, {},
                        "application/merge-patch+json");
    CHECK(StatusOf(missing) == 404);
  }

  TEST_CASE("delete undelete destroy") {
    DevServer server;
    REQUIRE(server.Start());
    auto client = server.Client();
    REQUIRE(StatusOf(WriteSecret(*client, "life", {{"v", "1"}})) == 200);
    REQUIRE(StatusOf(WriteSecret(*client, "life", {{"v", "2"}})) == 200);

    REQUIRE(StatusOf(client->Delete("/v1/secret/data/life")) == 204);
    auto deleted = client->Get("/v1/secret/data/life");
    CHECK(StatusOf(deleted) == 404);
    json body = BodyOf(deleted);
    CHECK(body["data"]["data"].is_null());
    CHECK(body["data"]["metadata"]["version"] == 2);
    CHECK(body["data"]["metadata"]["deletion_time"] != "");
    CHECK(body["data"]["metadata"]["destroyed"] == false);
    CHECK(ReadSecretData(*client, "life?version=1") == json({{"v", "1"}}));

    REQUIRE(StatusOf(PostJson(*client, "/v1/secret/undelete/life", {{"versions", {2}}})) == 204);
    CHECK(ReadSecretData(*client, "life") == json({{"v", "2"}}));

    REQUIRE(StatusOf(PostJson(*client, "/v1/secret/delete/life", {{"versions", {1}}})) == 204);
    auto old = client->Get("/v1/secret/data/life?version=1");
    CHECK(StatusOf(old) == 404);
    CHECK(BodyOf(old)["data"]["metadata"]["deletion_time"] != "");

    REQUIRE(StatusOf(PostJson(*client, "/v1/secret/destroy/life", {{"versions", {2}}})) == 204);
    auto destroyed = client->Get("/v1/secret/data/life");
    CHECK(StatusOf(destroyed) == 404);
    body = BodyOf(destroyed);
    CHECK(body["data"]["data"].is_null());
    CHECK(body["data"]["metadata"]["destroyed"] == true);

    // A destroyed version cannot come back.
    REQUIRE(StatusOf(PostJson(*client, "/v1/secret/undelete/life", {{"versions", {2}}})) == 204);
    CHECK(StatusOf(client->Get("/v1/secret/data/life")) == 404);
  }

  TEST_CASE("list with LIST and list=true") {
    DevServer server;
    REQUIRE(server.Start());
    auto client = server.Client();
    for (const std::string path : {"app/one", "app/two", "app/sub/three", "app2/x", "apple"}) {
      REQUIRE(StatusOf(WriteSecret(*client, path, {{"k", "v"}})) == 200);
    }

    auto listed = Send(*client, "LIST", "/v1/secret/metadata/app");
    REQUIRE(StatusOf(listed) == 200);
    const json keys = BodyOf(listed)["data"]["keys"];
    CHECK(keys.size() == 3);
    CHECK(Contains(keys, "one"));
    CHECK(Contains(keys, "two"));
    CHECK(Contains(keys, "sub/"));
    CHECK_FALSE(Contains(keys, "x"));
    CHECK_FALSE(Contains(keys, "2/x"));
    CHECK_FALSE(Contains(keys, "le"));

    auto query = client->Get("/v1/secret/metadata/app/?list=true");
    REQUIRE(StatusOf(query) == 200);
    CHECK(BodyOf(query)["data"]["keys"] == keys);

    auto app2 = Send(*client, "LIST", "/v1/secret/metadata/app2/");
    REQUIRE(StatusOf(app2) == 200);
    CHECK(BodyOf(app2)["data"]["keys"] == json::array({"x"}));

    auto root = Send(*client, "LIST", "/v1/secret/metadata/");
    REQUIRE(StatusOf(root) == 200);
    const json root_keys = BodyOf(root)["data"]["keys"];
    CHECK(Contains(root_keys, "app/"));
    CHECK(Contains(root_keys, "app2/"));
    CHECK(Contains(root_keys, "apple"));

    CHECK(StatusOf(Send(*client, "LIST", "/v1/secret/metadata/nothing-here")) == 404);
  }

  TEST_CASE("metadata and max_versions pruning") {
    DevServer server;
    REQUIRE(server.Start());
    auto client = server.Client();
    REQUIRE(StatusOf(PostJson(*client, "/v1/secret/metadata/meta",
                              {{"max_versions", 2}, {"custom_metadata", {{"owner", "e2e"}}}})) ==
            204);
    for (int i = 1; i <= 3; ++i) {
      REQUIRE(StatusOf(WriteSecret(*client, "meta", {{"n", std::to_string(i)}})) == 200);
    }

    auto metadata = client->Get("/v1/secret/metadata/meta");
    REQUIRE(StatusOf(metadata) == 200);
    const json data = BodyOf(metadata)["data"];
    CHECK(data["current_version"] == 3);
    CHECK(data["oldest_version"] == 2);
    CHECK(data["max_versions"] == 2);
    CHECK(data["custom_metadata"] == json({{"owner", "e2e"}}));
    CHECK(data["versions"].size() == 2);
    CHECK_FALSE(data["versions"].contains("1"));
    CHECK(data["versions"].contains("3"));
    CHECK(StatusOf(client->Get("/v1/secret/data/meta?version=1")) == 404);
    CHECK(ReadSecretData(*client, "meta?version=2") == json({{"n", "2"}}));

    REQUIRE(StatusOf(client->Delete("/v1/secret/metadata/meta")) == 204);
    CHECK(StatusOf(client->Get("/v1/secret/metadata/meta")) == 404);
    CHECK(StatusOf(client->Get("/v1/secret/data/meta")) == 404);
    CHECK(StatusOf(client->Get("/v1/secret/data/meta?version=3")) == 404);
  }

  TEST_CASE("mount config") {
    DevServer server;
    REQUIRE(server.Start());
    auto client = server.Client();

    auto initial = client->Get("/v1/secret/config");
    REQUIRE(StatusOf(initial) == 200);
    CHECK(BodyOf(initial)["data"]["cas_required"] == false);
    CHECK(BodyOf(initial)["data"].contains("max_versions"));
    CHECK(BodyOf(initial)["data"].contains("delete_version_after"));

    REQUIRE(StatusOf(PostJson(*client, "/v1/secret/config",
                              {{"max_versions", 4}, {"cas_required", true}})) == 204);
    auto changed = client->Get("/v1/secret/config");
    REQUIRE(StatusOf(changed) == 200);
    CHECK(BodyOf(changed)["data"]["max_versions"] == 4);
    CHECK(BodyOf(changed)["data"]["cas_required"] == true);

    auto without_cas = WriteSecret(*client, "configured", {{"k", "v"}});
    CHECK(StatusOf(without_cas) == 400);
    CHECK(ErrorText(without_cas).find("check-and-set parameter required") != std::string::npos);
    auto with_cas = PostJson(*client, "/v1/secret/data/configured",
                             {{"data", {{"k", "v"}}}, {"options", {{"cas", 0}}}});
    CHECK(StatusOf(with_cas) == 200);
  }

  TEST_CASE("root token id and bearer header") {
    DevServer server("e2e-custom-root");
    REQUIRE(server.Start());
    CHECK(server.token() == "e2e-custom-root");

    auto client = MakeClient(server.port(), "e2e-custom-root");
    CHECK(StatusOf(WriteSecret(*client, "tok", {{"k", "v"}})) == 200);

    auto bearer = MakeClient(server.port(), "");
    bearer->set_default_headers({{"Authorization", "Bearer e2e-custom-root"}});
    CHECK(ReadSecretData(*bearer, "tok") == json({{"k", "v"}}));

    const json denied = {{"errors", {"permission denied"}}};
    auto anonymous = server.AnonymousClient()->Get("/v1/secret/data/tok");
    CHECK(StatusOf(anonymous) == 403);
    CHECK(BodyOf(anonymous) == denied);
    auto wrong = MakeClient(server.port(), "e2e-custom-root-not")->Get("/v1/secret/data/tok");
    CHECK(StatusOf(wrong) == 403);
    CHECK(BodyOf(wrong) == denied);
    auto basic = MakeClient(server.port(), "");
    basic->set_default_headers({{"Authorization", "Basic ZTJlLWN1c3RvbS1yb290"}});
    CHECK(StatusOf(basic->Get("/v1/secret/data/tok")) == 403);
  }
}  // TEST_SUITE

}  // namespace kw::e2e
