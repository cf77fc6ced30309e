#include "base/secret_buffer.hpp"

#include <sodium.h>

#include <array>
#include <bit>
#include <cstring>
#include <mutex>
#include <utility>
#include <vector>

#include "base/result.hpp"

namespace kw {
namespace {

// Locked memory for small secrets, handed out in power-of-two chunks from slabs that
// sodium_malloc made (locked, with guard pages around each slab). sodium_malloc per buffer
// costs an mmap, three mprotect calls and an munmap, whose TLB shootdowns took more CPU than
// the HSM calls of a KV read. Freed chunks are wiped before they return to their free list.
// Larger buffers still get a sodium_malloc allocation of their own. Thread-safe.
class LockedPool {
 public:
  static constexpr std::size_t kMinChunk = 64;
  static constexpr std::size_t kMaxChunk = 64 * 1024;
  static constexpr std::size_t kSlabBytes = 256 * 1024;

  static LockedPool& Instance() {
    // Leaked on purpose: buffers in static objects may be freed after main returns.
    static LockedPool* pool = new LockedPool();
    return *pool;
  }

  // Returns a chunk of at least `size` bytes, or nullptr for sizes above kMaxChunk.
  std::uint8_t* Allocate(std::size_t size) {
    if (size > kMaxChunk) return nullptr;
    const std::size_t index = ClassIndex(size);
    std::lock_guard lock(mutex_);
    auto& free_list = free_lists_[index];
    if (free_list.empty()) Refill(index);
    std::uint8_t* chunk = free_list.back();
    free_list.pop_back();
    return chunk;
  }

  // Wipes and takes back a chunk that Allocate returned for `size` bytes.
  void Free(std::uint8_t* chunk, std::size_t size) {
    const std::size_t index = ClassIndex(size);
    sodium_memzero(chunk, ChunkSize(index));
    std::lock_guard lock(mutex_);
    free_lists_[index].push_back(chunk);
  }

 private:
  static constexpr std::size_t kClasses = 11;  // 64 B .. 64 KiB

  static std::size_t ClassIndex(std::size_t size) {
    const std::size_t rounded = std::bit_ceil(std::max(size, kMinChunk));
    return static_cast<std::size_t>(std::countr_zero(rounded) - std::countr_zero(kMinChunk));
  }
  static std::size_t ChunkSize(std::size_t index) { return kMinChunk << index; }

  // Carves a new slab into chunks of class `index`. Called with mutex_ held.
  void Refill(std::size_t index) {
    auto* slab = static_cast<std::uint8_t*>(sodium_malloc(kSlabBytes));
    KW_CHECK(slab != nullptr, "sodium_malloc failed: out of locked memory");
    sodium_memzero(slab, kSlabBytes);
    const std::size_t chunk = ChunkSize(index);
    for (std::size_t offset = 0; offset + chunk <= kSlabBytes; offset += chunk) {
      free_lists_[index].push_back(slab + offset);
    }
  }

  std::mutex mutex_;
  std::array<std::vector<std::uint8_t*>, kClasses> free_lists_;  // guarded by mutex_
};

}  // namespace

SecretBuffer::SecretBuffer(std::size_t size) : size_(size), capacity_(size == 0 ? 1 : size) {
  data_ = LockedPool::Instance().Allocate(capacity_);
  if (data_ == nullptr) {
    data_ = static_cast<std::uint8_t*>(sodium_malloc(capacity_));
    KW_CHECK(data_ != nullptr, "sodium_malloc failed: out of locked memory");
    sodium_memzero(data_, capacity_);
  }
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
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      capacity_(std::exchange(other.capacity_, 0)) {}

SecretBuffer& SecretBuffer::operator=(SecretBuffer&& other) noexcept {
  if (this != &other) {
    Release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    capacity_ = std::exchange(other.capacity_, 0);
  }
  return *this;
}

SecretBuffer::~SecretBuffer() { Release(); }

void SecretBuffer::Release() {
  if (data_ != nullptr) {
    if (capacity_ <= LockedPool::kMaxChunk) {
      LockedPool::Instance().Free(data_, capacity_);
    } else {
      sodium_free(data_);  // wipes the region before unmapping it
    }
  }
  data_ = nullptr;
  size_ = 0;
  capacity_ = 0;
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
