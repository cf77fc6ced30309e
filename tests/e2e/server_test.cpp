// Server lifecycle through the real binary: restarts, seal and unseal, health codes, the
// -config mode with its init flow and concurrent writers. crash_test.cpp covers kill -9.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kSoftHsmModule = "/usr/lib/softhsm/libsofthsm2.so";

ExitResult RunStatus(std::uint16_t port) {
  return RunToExit({"status", "-address=http://127.0.0.1:" + std::to_string(port)}, {});
}

// The server rejects a config or PIN file that other users can read.
void WriteText(const fs::path& path, const std::string& text) { WriteTextFile(path, text, 0600); }

// A SoftHSM token in its own directory and a -config file for it, as an operator would set
// them up. The server itself starts uninitialised.
struct ConfigSetup {
  TempDir dir;
  fs::path softhsm_conf = dir.path() / "softhsm2.conf";
  fs::path config_path = dir.path() / "keyward.json";
  std::string softhsm_env = "SOFTHSM2_CONF=" + softhsm_conf.string();

  // Creates the token; returns false (printing the tool's output) when softhsm2-util fails.
  bool CreateToken() {
    fs::create_directories(dir.path() / "tokens");
    WriteText(softhsm_conf, "directories.tokendir = " + (dir.path() / "tokens").string() +
                                "\nobjectstore.backend = file\nlog.level = ERROR\n");
    WriteText(dir.path() / "pin", "e2e-user-pin-1234");
    const ExitResult token_init =
        RunProgram("/usr/bin/softhsm2-util",
                   {"--init-token", "--free", "--label", "e2e-config", "--pin", "e2e-user-pin-1234",
                    "--so-pin", "e2e-so-pin-5678"},
                   {softhsm_env});
    if (token_init.exit_code != 0) {
      std::cerr << "softhsm2-util failed: " << token_init.out << token_init.err << "\n";
    }
    return token_init.exit_code == 0;
  }

  json Config() const {
    return {{"listener", {{"address", "127.0.0.1:0"}}},
            {"storage", {{"path", (dir.path() / "keyward.db").string()}}},
            {"hsm",
             {{"module", std::string(kSoftHsmModule)},
              {"token_label", "e2e-config"},
              {"pin_file", (dir.path() / "pin").string()}}}};
  }
};

}  // namespace

TEST_SUITE("e2e/server") {
  TEST_CASE("server disables core dumps") {
    DevServer server;
    REQUIRE(server.Start());
    std::ifstream limits("/proc/" + std::to_string(server.process().pid()) + "/limits");
    REQUIRE(limits.good());
    std::string line;
    std::string core_line;
    while (std::getline(limits, line)) {
      if (line.starts_with("Max core file size")) core_line = line;
    }
    REQUIRE(!core_line.empty());
    // "Max core file size        0        0        bytes": the soft and the hard limit.
    std::istringstream fields(core_line.substr(std::string("Max core file size").size()));
    std::string soft;
    std::string hard;
    fields >> soft >> hard;
    CHECK(soft == "0");
    CHECK(hard == "0");
    // NOTE: PR_SET_DUMPABLE 0 is not checked here. A non-dumpable process's /proc files belong
    // to root, which a test running as root cannot tell apart.
  }

  TEST_CASE("restart keeps data and resets root token") {
    DevServer server;
    REQUIRE(server.Start());
    {
      auto client = server.Client();
      for (int i = 0; i < 5; ++i) {
        REQUIRE(StatusOf(WriteSecret(*client, "keep/" + std::to_string(i), {{"i", i}})) == 200);
      }
    }
    CHECK(server.Stop() == 0);

    REQUIRE(server.Restart(std::string(kRootToken)));
    {
      auto client = server.Client();
      for (int i = 0; i < 5; ++i)
        CHECK(ReadSecretData(*client, "keep/" + std::to_string(i)) == json({{"i", i}}));
    }

    REQUIRE(server.Restart(std::string("e2e-second-root")));
    CHECK(server.token() == "e2e-second-root");
    CHECK(StatusOf(
              MakeClient(server.port(), std::string(kRootToken))->Get("/v1/secret/data/keep/0")) ==
          403);
    CHECK(ReadSecretData(*server.Client(), "keep/0") == json({{"i", 0}}));

    // Without -dev-root-token-id the server generates a token and prints it.
    REQUIRE(server.Restart(std::nullopt));
    const std::string generated = server.token();
    CHECK_FALSE(generated.empty());
    CHECK(generated != "e2e-second-root");
    CHECK(StatusOf(MakeClient(server.port(), "e2e-second-root")->Get("/v1/secret/data/keep/0")) ==
          403);
    CHECK(ReadSecretData(*server.Client(), "keep/4") == json({{"i", 4}}));
    CHECK(server.Stop() == 0);

    // Every line the server wrote to stderr over four runs is one JSON object.
    std::istringstream log(server.process().ReadStderr());
    int lines = 0;
    for (std::string line; std::getline(log, line);) {
      CAPTURE(line);
      CHECK(json::parse(line, nullptr, /*allow_exceptions=*/false).is_object());
      ++lines;
    }
    CHECK(lines >= 8);
  }

  TEST_CASE("rotate keeps old secrets readable") {
    DevServer server;
    REQUIRE(server.Start());
    auto client = server.Client();
    REQUIRE(StatusOf(WriteSecret(*client, "rotated/old", {{"k", "before"}})) == 200);
    auto before = client->Get("/v1/sys/key-status");
    REQUIRE(StatusOf(before) == 200);
    const json term = BodyOf(before)["data"]["term"];
    REQUIRE(term.is_number_integer());

    CHECK(StatusOf(server.AnonymousClient()->Put("/v1/sys/rotate", "", "application/json")) == 403);
    REQUIRE(StatusOf(client->Put("/v1/sys/rotate", "", "application/json")) / 100 == 2);
    auto after = client->Get("/v1/sys/key-status");
    REQUIRE(StatusOf(after) == 200);
    CHECK(BodyOf(after)["data"]["term"] == term.get<int>() + 1);
    REQUIRE(StatusOf(WriteSecret(*client, "rotated/new", {{"k", "after"}})) == 200);
    CHECK(ReadSecretData(*client, "rotated/old") == json({{"k", "before"}}));

    REQUIRE(server.Restart(std::string(kRootToken)));
    auto restarted = server.Client();
    CHECK(ReadSecretData(*restarted, "rotated/old") == json({{"k", "before"}}));
    CHECK(ReadSecretData(*restarted, "rotated/new") == json({{"k", "after"}}));
    CHECK(BodyOf(restarted->Get("/v1/sys/key-status"))["data"]["term"] == term.get<int>() + 1);
  }

  TEST_CASE("seal then unseal") {
    DevServer server;
    REQUIRE(server.Start());
    auto client = server.Client();
    REQUIRE(StatusOf(WriteSecret(*client, "sealed/one", {{"k", "v"}})) == 200);
    CHECK(RunStatus(server.port()).exit_code == 0);

    CHECK(StatusOf(server.AnonymousClient()->Put("/v1/sys/seal", "", "application/json")) == 403);
    REQUIRE(StatusOf(client->Put("/v1/sys/seal", "", "application/json")) == 204);

    const json sealed_error = {{"errors", {"Vault is sealed"}}};
    auto read = client->Get("/v1/secret/data/sealed/one");
    CHECK(StatusOf(read) == 503);
    CHECK(BodyOf(read) == sealed_error);
    auto write = WriteSecret(*client, "sealed/two", {{"k", "v"}});
    CHECK(StatusOf(write) == 503);
    CHECK(StatusOf(client->Get("/v1/sys/audit/verify")) == 503);
    CHECK(StatusOf(client->Get("/v1/sys/health")) == 503);
    CHECK(StatusOf(client->Get("/v1/sys/health?sealedcode=299")) == 299);
    auto status = client->Get("/v1/sys/seal-status");
    REQUIRE(StatusOf(status) == 200);
    CHECK(BodyOf(status)["sealed"] == true);
    CHECK(BodyOf(status)["initialized"] == true);
    CHECK(RunStatus(server.port()).exit_code == 2);

    // After an operator's seal, the configured PIN alone does not unseal: the caller must
    // know the PIN.
    auto anonymous = server.AnonymousClient()->Put("/v1/sys/unseal", "", "application/json");
    CHECK(StatusOf(anonymous) == 400);
    auto wrong_pin = server.AnonymousClient()->Put("/v1/sys/unseal", R"({"key":"0000"})",
                                                   "application/json");
    CHECK(StatusOf(wrong_pin) == 400);
    CHECK(StatusOf(client->Get("/v1/sys/health")) == 503);

    std::ifstream pin_file(server.data_dir() / "hsm-pin");
    std::string pin;
    std::getline(pin_file, pin);
    REQUIRE_FALSE(pin.empty());
    const std::string unseal_body = json({{"key", pin}}).dump();
    auto unsealed = server.AnonymousClient()->Put("/v1/sys/unseal", unseal_body, "application/json");
    REQUIRE(StatusOf(unsealed) == 200);
    CHECK(BodyOf(unsealed)["sealed"] == false);
    CHECK(ReadSecretData(*client, "sealed/one") == json({{"k", "v"}}));
    CHECK(StatusOf(client->Get("/v1/sys/health")) == 200);
    CHECK(RunStatus(server.port()).exit_code == 0);
  }

  TEST_CASE("health status codes") {
    DevServer server;
    REQUIRE(server.Start());
    auto anonymous = server.AnonymousClient();

    auto health = anonymous->Get("/v1/sys/health");
    REQUIRE(StatusOf(health) == 200);
    CHECK(BodyOf(health)["initialized"] == true);
    CHECK(BodyOf(health)["sealed"] == false);
    CHECK(BodyOf(health)["standby"] == false);
    auto head = anonymous->Head("/v1/sys/health");
    CHECK(StatusOf(head) == 200);
    CHECK(StatusOf(anonymous->Get("/v1/sys/health?activecode=203")) == 203);
    CHECK(StatusOf(anonymous->Get("/v1/sys/health?sealedcode=299")) == 200);

    auto init = anonymous->Get("/v1/sys/init");
    REQUIRE(StatusOf(init) == 200);
    CHECK(BodyOf(init)["initialized"] == true);
    auto seal_status = anonymous->Get("/v1/sys/seal-status");
    REQUIRE(StatusOf(seal_status) == 200);
    CHECK(BodyOf(seal_status)["sealed"] == false);
    CHECK(StatusOf(anonymous->Post("/v1/sys/health", "{}", "application/json")) == 405);
  }

  TEST_CASE("config mode init flow") {
    ConfigSetup setup;
    REQUIRE(setup.CreateToken());
    WriteText(setup.config_path, setup.Config().dump(2));
    ServerProcess server({"server", "-config", setup.config_path.string()}, {setup.softhsm_env},
                         setup.dir.path());
    REQUIRE(server.Start());
    CHECK(server.root_token().empty());
    auto anonymous = MakeClient(server.port(), "");

    CHECK(StatusOf(anonymous->Get("/v1/sys/health")) == 501);
    CHECK(StatusOf(anonymous->Get("/v1/sys/health?uninitcode=298")) == 298);
    auto before = anonymous->Get("/v1/sys/init");
    REQUIRE(StatusOf(before) == 200);
    CHECK(BodyOf(before)["initialized"] == false);
    CHECK(StatusOf(anonymous->Get("/v1/secret/data/x")) == 503);

    auto init = anonymous->Put("/v1/sys/init", "{}", "application/json");
    REQUIRE(StatusOf(init) == 200);
    const json body = BodyOf(init);
    CHECK(body["keys"] == json::array());
    CHECK(body["keys_base64"] == json::array());
    REQUIRE(body["root_token"].is_string());
    const std::string root = body["root_token"];
    CHECK_FALSE(root.empty());
    CHECK(StatusOf(anonymous->Put("/v1/sys/init", "{}", "application/json")) == 400);

    CHECK(StatusOf(anonymous->Get("/v1/sys/health")) == 200);
    auto client = MakeClient(server.port(), root);
    REQUIRE(StatusOf(WriteSecret(*client, "configured", {{"k", "v"}})) == 200);
    CHECK(ReadSecretData(*client, "configured") == json({{"k", "v"}}));

    // A restart unseals with the PIN file and keeps the root token.
    CHECK(server.Stop() == 0);
    REQUIRE(server.Start());
    CHECK(StatusOf(MakeClient(server.port(), "")->Get("/v1/sys/health")) == 200);
    CHECK(ReadSecretData(*MakeClient(server.port(), root), "configured") == json({{"k", "v"}}));
    CHECK(server.Stop() == 0);
  }

  TEST_CASE("unknown config key rejected") {
    ConfigSetup setup;
    struct Case {
      std::string key;
      json config;
    };
    json top = setup.Config();
    top["storage_backend"] = "sqlite";
    json nested = setup.Config();
    nested["hsm"]["pinfile"] = "/tmp/none";
    for (const Case& item : {Case{"storage_backend", top}, Case{"hsm.pinfile", nested}}) {
      CAPTURE(item.key);
      WriteText(setup.config_path, item.config.dump());
      const ExitResult run = RunToExit({"server", "-config", setup.config_path.string()},
                                       {setup.softhsm_env}, std::chrono::seconds(20));
      CHECK(run.exited);
      CHECK(run.exit_code != 0);
      CHECK(run.err.find(item.key) != std::string::npos);
      CHECK(run.out.find("Listening on:") == std::string::npos);
    }
  }

  TEST_CASE("concurrent writers to one path") {
    DevServer server;
    REQUIRE(server.Start());
    constexpr int kThreads = 8;
    constexpr int kWritesPerThread = 25;
    std::mutex mutex;
    std::vector<int> statuses;  // guarded by mutex
    std::vector<int> versions;  // guarded by mutex
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        auto client = server.Client();
        for (int i = 0; i < kWritesPerThread; ++i) {
          auto result = WriteSecret(*client, "contended", {{"writer", t}, {"i", i}});
          const json body = BodyOf(result);
          std::lock_guard<std::mutex> lock(mutex);
          statuses.push_back(StatusOf(result));
          if (StatusOf(result) == 200) versions.push_back(body["data"]["version"].get<int>());
        }
      });
    }
    for (auto& thread : threads) thread.join();

    const auto ok = std::count(statuses.begin(), statuses.end(), 200);
    CHECK(ok == kThreads * kWritesPerThread);
    std::map<int, int> by_status;
    for (int status : statuses) ++by_status[status];
    for (const auto& [status, times] : by_status) MESSAGE(times << " writes answered " << status);
    std::sort(versions.begin(), versions.end());
    std::vector<int> expected(versions.size());
    for (std::size_t i = 0; i < expected.size(); ++i) expected[i] = static_cast<int>(i) + 1;
    CHECK(versions == expected);
    auto metadata = server.Client()->Get("/v1/secret/metadata/contended");
    REQUIRE(StatusOf(metadata) == 200);
    CHECK(BodyOf(metadata)["data"]["current_version"] == static_cast<int>(versions.size()));
  }
}  // TEST_SUITE

}  // namespace kw::e2e
