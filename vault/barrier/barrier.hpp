#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>

#include "base/bytes.hpp"
#include "base/result.hpp"
#include "base/secret_buffer.hpp"
#include "hsm/token.hpp"

namespace kw::vault {

// Label prefix of the AES-256 data keys in the HSM: "keyward-data-v1", "keyward-data-v2", ...
inline constexpr std::string_view kDataKeyLabelPrefix = "keyward-data-v";

// Encrypts and decrypts stored records through the HSM. A sealed record is
//   key version (4 bytes, big-endian) ‖ 96-bit IV ‖ AES-256-GCM ciphertext ‖ 128-bit tag
// with additional authenticated data naming where the record belongs, so a record copied to
// another key or version fails to decrypt. The newest data key version encrypts; every
// version decrypts. Thread-safe. The token must outlive the barrier.
class Barrier {
 public:
  // Finds every data key version on `token`. failed_precondition when there is none (the
  // vault is not initialised).
  static Result<std::unique_ptr<Barrier>> Load(hsm::Token& token);

  // Generates data key version 1 on `token`, for initialisation. already_exists when a
  // data key exists.
  static Status CreateFirstKey(hsm::Token& token);

  Result<Bytes> Encrypt(ByteSpan plaintext, std::string_view aad);

  // data_loss when the record does not authenticate (tampered, moved, wrong AAD) or names an
  // unknown key version.
  Result<SecretBuffer> Decrypt(ByteSpan sealed, std::string_view aad);

  // Generates the next data key version and makes it the one that encrypts.
  Result<std::uint32_t> Rotate();

  std::uint32_t current_version() const;

 private:
  explicit Barrier(hsm::Token& token) : token_(token) {}

  hsm::Token& token_;
  mutable std::shared_mutex mutex_;
  std::map<std::uint32_t, hsm::KeyHandle> keys_;  // guarded by mutex_; never empty after Load
};

}  // namespace kw::vault
