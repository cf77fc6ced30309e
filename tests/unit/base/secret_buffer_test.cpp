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

  TEST_CASE("reused chunk comes back wiped") {
    const std::uint8_t* first_address = nullptr;
    {
      kw::SecretBuffer first(100);
      std::memset(first.Reveal().data(), 0xab, first.size());
      first_address = first.Reveal().data();
    }
    kw::SecretBuffer second(100);
    // The pool hands out the most recently freed chunk first.
    CHECK(second.Reveal().data() == first_address);
    bool all_zero = true;
    for (std::uint8_t byte : second.Reveal()) all_zero = all_zero && byte == 0;
    CHECK(all_zero);
  }

  TEST_CASE("large buffer bypasses the pool") {
    kw::SecretBuffer large(200 * 1024);
    CHECK(large.size() == 200 * 1024);
    large.Reveal()[200 * 1024 - 1] = 7;
    kw::SecretBuffer moved = std::move(large);
    CHECK(moved.Reveal()[200 * 1024 - 1] == 7);
  }

  TEST_CASE("empty buffer is valid") {
    kw::SecretBuffer empty(0);
    CHECK(empty.empty());
    CHECK(empty.Equals(kw::ByteSpan()));
  }
}
