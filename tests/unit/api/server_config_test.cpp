#include "api/server_config.hpp"

#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

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

  TEST_CASE("listener timeouts parse") {
    const std::string rest =
        R"("storage": {"path": "x"}, "hsm": {"token_label": "t"}})";
    auto defaults = kw::api::ParseServerConfig("{" + rest);
    REQUIRE(defaults.has_value());
    CHECK(defaults->listener.handshake_timeout == std::chrono::seconds(10));

    auto set = kw::api::ParseServerConfig(
        R"({"listener": {"idle_timeout": "5s", "tls_handshake_timeout": "3s"},)" + rest);
    REQUIRE(set.has_value());
    CHECK(set->listener.idle_timeout == std::chrono::seconds(5));
    CHECK(set->listener.handshake_timeout == std::chrono::seconds(3));

    auto zero = kw::api::ParseServerConfig(R"({"listener": {"tls_handshake_timeout": "0s"},)" +
                                           rest);
    REQUIRE_FALSE(zero.has_value());
    CHECK(zero.error().message().find("listener.tls_handshake_timeout") != std::string::npos);
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

  TEST_CASE("audit section parses") {
    auto config = kw::api::ParseServerConfig(R"({
      "storage": {"path": "x"}, "hsm": {"token_label": "t"},
      "audit": {"sinks": [{"name": "file1", "type": "file", "path": "/var/log/keyward/audit.log"},
                          {"name": "sys", "type": "syslog", "required": false,
                           "facility": "local4", "tag": "kw"}],
                "checkpoint_interval": "30s", "origin": "example.com/keyward",
                "checkpoint_key_type": "ecdsa-p256", "retention": "720h",
                "archive_dir": "/var/lib/keyward/archive"}})");
    REQUIRE_MESSAGE(config.has_value(), config.error().message());
    const auto& audit = config->core.audit;
    REQUIRE(audit.sinks.size() == 2);
    CHECK(audit.sinks[0].name == "file1");
    CHECK(audit.sinks[0].type == "file");
    CHECK(audit.sinks[0].path == "/var/log/keyward/audit.log");
    CHECK(audit.sinks[0].required);
    CHECK(audit.sinks[1].path == "/dev/log");
    CHECK_FALSE(audit.sinks[1].required);
    CHECK(audit.sinks[1].facility == "local4");
    CHECK(audit.sinks[1].tag == "kw");
    CHECK(audit.checkpoint_interval == std::chrono::seconds(30));
    CHECK(audit.origin == "example.com/keyward");
    CHECK(audit.checkpoint_key_type == "ecdsa-p256");
    CHECK(audit.retention == std::chrono::hours(720));
    CHECK(audit.archive_dir == "/var/lib/keyward/archive");
  }

  TEST_CASE("audit errors name the key") {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {R"({"sinks": [{"name": "a", "type": "file", "path": "/a", "mode": 1}]})",
         "\"audit.sinks[0].mode\""},
        {R"({"sinks": [{"name": "a", "type": "file", "path": "a.log"}]})",
         "\"audit.sinks[0].path\""},
        {R"({"sinks": [{"name": "a", "type": "kafka"}]})", "\"audit.sinks[0].type\""},
        {R"({"sinks": [{"name": "a b", "type": "syslog"}]})", "\"audit.sinks[0].name\""},
        {R"({"sinks": [{"name": "database", "type": "syslog"}]})", "\"audit.sinks[0].name\""},
        {R"({"sinks": [{"name": "a", "type": "syslog"}, {"name": "a", "type": "syslog"}]})",
         "\"audit.sinks[1].name\""},
        {R"({"sinks": [{"name": "a", "type": "syslog", "facility": "local8"}]})",
         "\"audit.sinks[0].facility\""},
        {R"({"sinks": [{"name": "a", "type": "file", "path": "/a", "tag": "x"}]})",
         "\"audit.sinks[0].tag\""},
        {R"({"sinks": [{"name": "a", "type": "syslog", "required": "maybe"}]})",
         "\"audit.sinks[0].required\""},
        {R"({"sinks": {}})", "\"audit.sinks\""},
        {R"({"checkpoint_interval": "0s"})", "\"audit.checkpoint_interval\""},
        {R"({"checkpoint_interval": "soon"})", "\"audit.checkpoint_interval\""},
        {R"({"checkpoint_key_type": "rsa"})", "\"audit.checkpoint_key_type\""},
        {R"({"origin": "has space"})", "\"audit.origin\""},
        {R"({"retention": "24h"})", "\"audit.retention\""},
        {R"({"retention": "24h", "archive_dir": "archive"})", "\"audit.archive_dir\""},
        {R"({"retension": "24h"})", "\"audit.retension\""},
    };
    // Plain references, not a structured binding, because clang 14 cannot capture a binding in the
    // lambda that CAPTURE expands to.
    for (const auto& entry : cases) {
      const std::string& audit = entry.first;
      const auto& key = entry.second;
      CAPTURE(audit);
      auto config = kw::api::ParseServerConfig(
          R"({"storage": {"path": "x"}, "hsm": {"token_label": "t"}, "audit": )" + audit + "}");
      REQUIRE_FALSE(config.has_value());
      CHECK(config.error().code() == kw::Code::kInvalidArgument);
      CHECK(config.error().message().find(key) != std::string::npos);
    }
  }
}
