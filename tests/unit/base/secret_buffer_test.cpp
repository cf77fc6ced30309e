#include "base/secret_buffer.hpp"

#include <doctest/doctest.h>

#include <cstring>

#include "base/bytes.hpp"

TEST_SUITE("base/secret_buffer") {
  TEST_CASE("copy holds the bytes") {
    kw::SecretBuffer buffer = kw::SecretBuffer::CopyFrom(std::string_view("hunter2"));
    CHECK(buffer.size() == 7);
    CHECK(buffer.RevealText() == "hunter2");
  }

  TEST_CASE("equals compares content") {
    kw::SecretBuffer buffer = kw::SecretBuffer::CopyFrom(std::string_view("abc"));
    CHECK(buffer.Equals(kw::AsBytes("abc")));
    CHECK_FALSE(buffer.Equals(kw::AsBytes("abd")));
    CHECK_FALSE(buffer.Equals(kw::AsBytes("ab")));
  }

  TEST_CASE("move leaves source empty") {
    kw::SecretBuffer a = kw::SecretBuffer::CopyFrom(std::string_view("secret"));
    kw::SecretBuffer b = std::move(a);
    CHECK(a.empty());
    CHECK(b.RevealText() == "secret");
  }

  TEST_CASE("truncate wipes the tail") {
    kw::SecretBuffer buffer = kw::SecretBuffer::CopyFrom(std::string_view("abcdef"));
    buffer.Truncate(2);
    CHECK(buffer.RevealText() == "ab");
  }

  TEST_CASE("wipe string clears it") {
    std::string text = "password";
    kw::WipeString(text);
    CHECK(text.empty());
  }
}
