#include "base/bytes.hpp"

#include <doctest/doctest.h>

TEST_SUITE("base/bytes") {
  TEST_CASE("hex round trip") {
    const kw::Bytes bytes = {0x00, 0xab, 0xff};
    CHECK(kw::ToHex(bytes) == "00abff");
    REQUIRE(kw::FromHex("00abff").has_value());
    CHECK(*kw::FromHex("00abff") == bytes);
  }

  TEST_CASE("empty hex is empty bytes") {
    const std::optional<kw::Bytes> bytes = kw::FromHex("");
    REQUIRE(bytes.has_value());
    CHECK(bytes->empty());
    CHECK(kw::ToHex(kw::Bytes{}).empty());
  }

  TEST_CASE("hex rejects bad input") {
    CHECK_FALSE(kw::FromHex("abc").has_value());
    CHECK_FALSE(kw::FromHex("zz").has_value());
  }

  TEST_CASE("base64 round trip") {
    CHECK(kw::ToBase64(kw::AsBytes("hello")) == "aGVsbG8=");
    REQUIRE(kw::FromBase64("aGVsbG8=").has_value());
    CHECK(kw::AsText(*kw::FromBase64("aGVsbG8=")) == "hello");
    CHECK_FALSE(kw::FromBase64("a*b=").has_value());
  }

  TEST_CASE("sha256 known answer") {
    CHECK(kw::ToHex(kw::Sha256(kw::AsBytes("abc"))) ==
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  }

  TEST_CASE("uuid has version 4 form") {
    const std::string uuid = kw::RandomUuid();
    CHECK(uuid.size() == 36);
    CHECK(uuid[14] == '4');
  }
}
