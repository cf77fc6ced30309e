#include "api/server_config.hpp"

#include <doctest/doctest.h>

TEST_SUITE("api/server_config") {
  TEST_CASE("full config parses") {
    auto config = kw::api::ParseServerConfig(R"({
      "listener": {"address": "127.0.0.1:8300", "max_request_size": 1048576,
                   "request_timeout": "10s"},
      "storage": {"path": "/var/lib/keyward/keyward.db"},
      "hsm": {"module": "/usr/lib/softhsm/libsofthsm2.so", "token_label": "prod",
              "pin_env": "KEYWARD_HSM_PIN"},
      "log_level": "warn"})");
    REQUIRE(config.has_value());
    CHECK(config->listener.host == "127.0.0.1");
    CHECK(config->listener.port == 8300);
    CHECK(config->listener.max_body_bytes == 1048576);
    CHECK(config->listener.request_timeout == std::chrono::seconds(10));
    CHECK(config->storage_path == "/var/lib/keyward/keyward.db");
    CHECK(config->core.token.token_label == "prod");
    CHECK(config->core.pin_source.pin_env == "KEYWARD_HSM_PIN");
  }

  TEST_CASE("unknown key is named") {
    auto config = kw::api::ParseServerConfig(
        R"({"storage": {"path": "x", "pth": "y"}, "hsm": {"token_label": "t"}})");
    REQUIRE_FALSE(config.has_value());
    CHECK(config.error().message().find("\"storage.pth\"") != std::string::npos);
  }

  TEST_CASE("wrong type names the key without the pin") {
    auto config = kw::api::ParseServerConfig(
        R"({"storage": {"path": "x"}, "hsm": {"token_label": "t", "pin": 123456}})");
    REQUIRE_FALSE(config.has_value());
    CHECK(config.error().message().find("hsm.pin") != std::string::npos);
    CHECK(config.error().message().find("123456") == std::string::npos);
  }

  TEST_CASE("missing sections are reported") {
    CHECK_FALSE(kw::api::ParseServerConfig(R"({"hsm": {"token_label": "t"}})").has_value());
    CHECK_FALSE(kw::api::ParseServerConfig(R"({"storage": {"path": "x"}})").has_value());
    CHECK_FALSE(kw::api::ParseServerConfig("not json").has_value());
  }

  TEST_CASE("listen address forms") {
    kw::api::ServerOptions options;
    REQUIRE(kw::api::ParseListenAddress("[::1]:8200", options).has_value());
    CHECK(options.host == "::1");
    CHECK_FALSE(kw::api::ParseListenAddress("localhost", options).has_value());
    CHECK_FALSE(kw::api::ParseListenAddress("h:99999", options).has_value());
    CHECK_FALSE(kw::api::ParseListenAddress(":80", options).has_value());
  }
}
