#include "base/duration.hpp"

#include <doctest/doctest.h>

TEST_SUITE("base/duration") {
  TEST_CASE("parses seconds and units") {
    CHECK(kw::ParseDuration("3600") == std::chrono::seconds(3600));
    CHECK(kw::ParseDuration("1h30m") == std::chrono::seconds(5400));
    CHECK(kw::ParseDuration("90s") == std::chrono::seconds(90));
    CHECK(kw::ParseDuration("0s") == std::chrono::seconds(0));
    CHECK(kw::ParseDuration("1500ms") == std::chrono::seconds(1));
  }

  TEST_CASE("rejects malformed durations") {
    CHECK_FALSE(kw::ParseDuration("").has_value());
    CHECK_FALSE(kw::ParseDuration("-5s").has_value());
    CHECK_FALSE(kw::ParseDuration("5d").has_value());
    CHECK_FALSE(kw::ParseDuration("h").has_value());
    CHECK_FALSE(kw::ParseDuration("99999999999999999999").has_value());
  }

  TEST_CASE("formats go style") {
    CHECK(kw::FormatDuration(std::chrono::seconds(0)) == "0s");
    CHECK(kw::FormatDuration(std::chrono::seconds(45)) == "45s");
    CHECK(kw::FormatDuration(std::chrono::seconds(5400)) == "1h30m0s");
  }
}
