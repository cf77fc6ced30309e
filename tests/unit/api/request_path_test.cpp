#include "api/request_path.hpp"

#include <doctest/doctest.h>

TEST_SUITE("api/request_path") {
  TEST_CASE("plain path parses") {
    auto parsed = kw::api::ParseTarget("/v1/secret/data/app/db?version=2&list=true");
    REQUIRE(parsed.has_value());
    CHECK(parsed->path == "secret/data/app/db");
    CHECK_FALSE(parsed->trailing_slash);
    REQUIRE(parsed->query.size() == 2);
    CHECK(parsed->query[0].first == "version");
    CHECK(parsed->query[0].second == "2");
  }

  TEST_CASE("trailing slash is kept apart") {
    auto parsed = kw::api::ParseTarget("/v1/secret/metadata/");
    REQUIRE(parsed.has_value());
    CHECK(parsed->path == "secret/metadata");
    CHECK(parsed->trailing_slash);
  }

  TEST_CASE("percent encoding decodes") {
    auto parsed = kw::api::ParseTarget("/v1/secret/data/a%20b?x=%41+b");
    REQUIRE(parsed.has_value());
    CHECK(parsed->path == "secret/data/a b");
    CHECK(parsed->query[0].second == "A b");
  }

  TEST_CASE("hostile paths are rejected") {
    const char* hostile[] = {
        "/v1/secret/../sys/seal",    "/v1/secret/%2e%2e/x",     "/v1/secret/./x",
        "/v1/secret//x",             "/v1/secret/a%2fb",        "/v1/secret/a%00b",
        "/v1/secret/%ff",            "/v1/secret/%c0%af",       "/v1/secret/a%5cb",
        "/v1/secret/a\\b",           "/v1/secret/%0a",          "/v1/secret/%zz",
        "/v1/secret/%4",             "/v1/secret/%ed%a0%80",    "/v1/secret/%2E",
        "/v1/secret/data/x//",
    };
    for (const char* target : hostile) {
      CAPTURE(target);
      auto parsed = kw::api::ParseTarget(target);
      REQUIRE_FALSE(parsed.has_value());
      CHECK(parsed.error().code() == kw::Code::kInvalidArgument);
      CHECK(parsed.error().message().find("invalid request path") != std::string::npos);
    }
  }

  TEST_CASE("outside v1 is not found") {
    auto parsed = kw::api::ParseTarget("/v2/secret");
    REQUIRE_FALSE(parsed.has_value());
    CHECK(parsed.error().code() == kw::Code::kNotFound);
  }

  TEST_CASE("utf8 validation") {
    CHECK(kw::api::IsValidUtf8("plain"));
    CHECK(kw::api::IsValidUtf8("caf\xc3\xa9"));
    CHECK(kw::api::IsValidUtf8("\xf0\x9f\x94\x91"));
    CHECK_FALSE(kw::api::IsValidUtf8("\xc0\xaf"));
    CHECK_FALSE(kw::api::IsValidUtf8("\xe0\x80\xaf"));
    CHECK_FALSE(kw::api::IsValidUtf8("\xed\xa0\x80"));
    CHECK_FALSE(kw::api::IsValidUtf8("\xf4\x90\x80\x80"));
    CHECK_FALSE(kw::api::IsValidUtf8("\xc3"));
  }

  TEST_CASE("printable escapes control bytes") {
    CHECK(kw::api::Printable("a\nb") == "a\\x0ab");
    CHECK(kw::api::Printable(std::string(300, 'x')).size() == 259);
  }
}
