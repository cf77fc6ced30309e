#include "base/secret_buffer.hpp"

#include <sodium.h>

#include <cstring>
#include <utility>

#include "base/result.hpp"

namespace kw {

SecretBuffer::SecretBuffer(std::size_t size) : size_(size) {
  // sodium_malloc(0) still returns a guarded allocation, which keeps data_ non-null.
  data_ = static_cast<std::uint8_t*>(sodium_malloc(size == 0 ? 1 : size));
  KW_CHECK(data_ != nullptr, "sodium_malloc failed: out of locked memory");
  sodium_memzero(data_, size == 0 ? 1 : size);
}

SecretBuffer SecretBuffer::CopyFrom(std::span<const std::uint8_t> bytes) {
  SecretBuffer buffer(bytes.size());
  if (!bytes.empty()) std::memcpy(buffer.data_, bytes.data(), bytes.size());
  return buffer;
}

SecretBuffer SecretBuffer::CopyFrom(std::string_view text) {
  return CopyFrom(std::span<const std::uint8_t>(
      reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

SecretBuffer::SecretBuffer(SecretBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

SecretBuffer& SecretBuffer::operator=(SecretBuffer&& other) noexcept {
  if (this != &other) {
    Release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

SecretBuffer::~SecretBuffer() { Release(); }

void SecretBuffer::Release() {
  // sodium_free wipes the region before unmapping it.
  if (data_ != nullptr) sodium_free(data_);
  data_ = nullptr;
  size_ = 0;
}

void SecretBuffer::Truncate(std::size_t size) {
  if (size >= size_) return;
  sodium_memzero(data_ + size, size_ - size);
  size_ = size;
}

bool SecretBuffer::Equals(std::span<const std::uint8_t> other) const {
  if (other.size() != size_) return false;
  if (size_ == 0) return true;
  return sodium_memcmp(data_, other.data(), size_) == 0;
}

void WipeString(std::string& text) {
  if (!text.empty()) sodium_memzero(text.data(), text.size());
  text.clear();
}

}  // namespace kw
