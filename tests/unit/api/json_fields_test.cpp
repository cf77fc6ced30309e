#include "api/json_fields.hpp"

#include <doctest/doctest.h>

TEST_SUITE("api/json_fields") {
  TEST_CASE("body must be an object") {
    CHECK(kw::api::ParseBody("").value().is_null());
    CHECK(kw::api::ParseBody(R"({"a":1})").has_value());
    auto array = kw::api::ParseBody("[1]");
    REQUIRE_FALSE(array.has_value());
    CHECK(array.error().code() == kw::Code::kInvalidArgument);
  }

  TEST_CASE("syntax errors never echo the input") {
    auto parsed = kw::api::ParseBody(R"({"password": "hunter2-secret)");
    REQUIRE_FALSE(parsed.has_value());
    CHECK(parsed.error().message().find("hunter2") == std::string::npos);
    CHECK(parsed.error().message().find("syntax error at byte") != std::string::npos);
  }

  TEST_CASE("deep nesting is rejected") {
    std::string deep(10000, '[');
    deep = R"({"a":)" + deep;
    auto parsed = kw::api::ParseBody(deep);
    REQUIRE_FALSE(parsed.has_value());
    CHECK(parsed.error().message().find("nesting deeper") != std::string::npos);
  }

  TEST_CASE("duplicate keys are rejected naming the key") {
    for (const char* body : {R"({"a":1,"a":2})", R"({"data":{"k":"x","k":"y"}})",
                             R"({"l":[{"k":1},{"k":2,"k":3}]})"}) {
      CAPTURE(body);
      auto parsed = kw::api::ParseBody(body);
      REQUIRE_FALSE(parsed.has_value());
      CHECK(parsed.error().code() == kw::Code::kInvalidArgument);
      CHECK(parsed.error().message().find("duplicate key") != std::string::npos);
    }
    CHECK(kw::api::ParseBody(R"({"a":1,"a":2})").error().message() ==
          "failed to parse JSON input: duplicate key \"a\"");
    // The same key in sibling objects is no duplicate.
    CHECK(kw::api::ParseBody(R"({"x":{"k":1},"y":{"k":2},"l":[{"k":1},{"k":2}]})").has_value());
  }

  TEST_CASE("numbers past the integer range") {
    CHECK(kw::api::ParseBody(R"({"a":1e400})").error().message().find("out of range") !=
          std::string::npos);
    const auto body = nlohmann::json::parse(
        R"({"max": 9223372036854775807, "past63": 9223372036854775808,
            "past64": 18446744073709551617, "top": 18446744073709551615})");
    CHECK(*kw::api::OptionalInt(body, "max").value() == INT64_MAX);
    CHECK_FALSE(kw::api::OptionalInt(body, "past63").has_value());
    CHECK_FALSE(kw::api::OptionalInt(body, "past64").has_value());
    CHECK_FALSE(kw::api::OptionalInt(body, "top").has_value());
    CHECK_FALSE(kw::api::IntList(body, "top").has_value());
    CHECK(kw::api::OptionalDuration(body, "top").error().message().find("maximum") !=
          std::string::npos);
  }

  TEST_CASE("typed fields accept vault forms") {
    const auto body = nlohmann::json::parse(
        R"({"n": 5, "s": "7", "b": "true", "d": "1h", "ds": 30, "m": {"k": "v"},
            "v": [1, "2"], "vs": "3,4"})");
    CHECK(*kw::api::OptionalInt(body, "n").value() == 5);
    CHECK(*kw::api::OptionalInt(body, "s").value() == 7);
    CHECK(*kw::api::OptionalBool(body, "b").value());
    CHECK(kw::api::OptionalDuration(body, "d").value()->count() == 3600);
    CHECK(kw::api::OptionalDuration(body, "ds").value()->count() == 30);
    CHECK(kw::api::OptionalStringMap(body, "m").value()->at("k") == "v");
    CHECK(kw::api::IntList(body, "v").value() == std::vector<std::int64_t>{1, 2});
    CHECK(kw::api::IntList(body, "vs").value() == std::vector<std::int64_t>{3, 4});
    CHECK_FALSE(kw::api::OptionalInt(body, "absent").value().has_value());
  }

  TEST_CASE("type errors name field not value") {
    const auto body = nlohmann::json::parse(R"({"max_versions": "secret-ish", "m": {"k": 1}})");
    auto number = kw::api::OptionalInt(body, "max_versions");
    REQUIRE_FALSE(number.has_value());
    CHECK(number.error().message() == "invalid type for field \"max_versions\": expected an integer");
    auto map = kw::api::OptionalStringMap(body, "m");
    REQUIRE_FALSE(map.has_value());
    CHECK(map.error().message().find("\"m\"") != std::string::npos);
    auto list = kw::api::IntList(nlohmann::json::parse(R"({"versions": [0]})"), "versions");
    CHECK_FALSE(list.has_value());
  }
}
