#pragma once

#include <string>
#include <string_view>

#include "base/secret_buffer.hpp"

namespace kw::vault::auth {

// Service token text: "kw." + base62 body (256 random bits) + 6 base62 characters of the
// body's CRC32, so a secret scanner can recognise a keyward token offline without false
// positives on random text.
inline constexpr std::string_view kTokenPrefix = "kw.";

// Generates a new random token.
SecretBuffer GenerateToken();

// Returns whether `token` has the keyward form with a valid checksum. Tokens chosen by an
// operator (dev mode's -dev-root-token-id) need not have it.
bool HasValidChecksum(std::string_view token);

// Returns a random accessor: 24 base62 characters, not secret, safe for logs and audit.
std::string GenerateAccessor();

// Returns the lower-case hex SHA-256 of `token`, the only form in which tokens are stored.
std::string HashToken(std::string_view token);

}  // namespace kw::vault::auth
