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
