#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace kw {

// Plaintext secret bytes (secret values, tokens, PINs) in locked memory from sodium_malloc,
// wiped by the destructor. Buffers up to 64 KiB share guarded slabs from a pool; larger ones
// get guard pages of their own. Move-only,
// with no conversion to std::string and no stream operator, so every read goes through
// Reveal() and is a call site to review. Not thread-safe.
class SecretBuffer {
 public:
  SecretBuffer() = default;
  // Allocates `size` zeroed bytes. Aborts when locked memory cannot be had (fail closed).
  explicit SecretBuffer(std::size_t size);
  // Copies `bytes` into locked memory. The caller wipes its own copy.
  static SecretBuffer CopyFrom(std::span<const std::uint8_t> bytes);
  static SecretBuffer CopyFrom(std::string_view text);

  SecretBuffer(SecretBuffer&& other) noexcept;
  SecretBuffer& operator=(SecretBuffer&& other) noexcept;
  SecretBuffer(const SecretBuffer&) = delete;
  SecretBuffer& operator=(const SecretBuffer&) = delete;
  ~SecretBuffer();

  std::span<std::uint8_t> Reveal() { return {data_, size_}; }
  std::span<const std::uint8_t> Reveal() const { return {data_, size_}; }
  std::string_view RevealText() const {
    return {reinterpret_cast<const char*>(data_), size_};
  }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // Shrinks the visible size to `size` (at most the current size); the tail is wiped.
  void Truncate(std::size_t size);

  // Compares in constant time for equal sizes.
  bool Equals(std::span<const std::uint8_t> other) const;

 private:
  void Release();

  std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;  // bytes allocated; Truncate shrinks size_ only
};

// Wipes a std::string's bytes (for parser copies and temporaries) and clears it.
void WipeString(std::string& text);

}  // namespace kw
