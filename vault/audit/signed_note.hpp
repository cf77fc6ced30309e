#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.hpp"
#include "base/result.hpp"
#include "hsm/token.hpp"
#include "vault/audit/merkle.hpp"

// Checkpoints of the audit tree in the C2SP tlog-checkpoint text format, signed as C2SP signed
// notes. Signing goes through NoteSigner (the HSM); verification uses OpenSSL only, so the
// offline verifier needs neither a server nor an HSM.
namespace kw::vault::audit::note {

// The signature algorithms of signed-note keys that keyward signs and verifies.
enum class KeyType : std::uint8_t {
  kEd25519 = 0x01,    // RFC 8032 Ed25519 over the note text
  kEcdsaP256 = 0x02,  // ECDSA P-256 with SHA-256
};

// A verifier key: what the vkey string `name+<8 hex key ID>+base64(type ‖ public key)` holds.
struct VerifierKey {
  std::string name;
  std::uint32_t key_id = 0;
  KeyType type = KeyType::kEd25519;
  Bytes public_key;  // Ed25519: the 32-byte key; ECDSA: the DER SubjectPublicKeyInfo
};

// Returns the 4-byte key ID of a key, as the signed-note specification derives it for `type`.
std::uint32_t KeyId(std::string_view name, KeyType type, ByteSpan public_key);

// Formats `key` as a vkey string.
std::string FormatVkey(const VerifierKey& key);

// Parses a vkey string. invalid_argument when malformed, of an unknown type, or when the key ID
// does not match the name and key.
Result<VerifierKey> ParseVkey(std::string_view vkey);

// The body of a checkpoint: origin, tree size and root, and optional extension lines.
struct Checkpoint {
  std::string origin;
  std::uint64_t size = 0;
  merkle::Hash root{};
  std::vector<std::string> extensions;
};

// Returns the checkpoint text: "<origin>\n<size>\n<base64 root>\n" followed by one line per
// extension.
std::string FormatCheckpoint(const Checkpoint& checkpoint);

// Parses checkpoint text (the note text, without signatures). invalid_argument naming the line
// when it is not in the tlog-checkpoint form.
Result<Checkpoint> ParseCheckpoint(std::string_view text);

// Signs notes with a private key that stays elsewhere (the HSM).
class NoteSigner {
 public:
  virtual ~NoteSigner() = default;
  virtual const VerifierKey& key() const = 0;
  // Returns the signature of `message` in the form the note carries for key().type.
  virtual Result<Bytes> Sign(ByteSpan message) = 0;
};

// Returns a signer whose private key is the HSM key pair labelled `label` (created with
// Token::GenerateEd25519KeyPair or GenerateEcP256KeyPair, according to `type`), named `name`.
Result<std::unique_ptr<NoteSigner>> OpenHsmNoteSigner(hsm::Token& token, std::string_view label,
                                                       std::string_view name, KeyType type);

// Returns the signed note: `text` (which must end with a newline), an empty line, and one
// signature line "— <name> <base64(key ID ‖ signature)>".
Result<std::string> SignNote(std::string_view text, NoteSigner& signer);

// Checks `note` and returns its text when at least one signature by a key in `known` verifies.
// Signatures by unknown (name, key ID) pairs are ignored. invalid_argument when the note is
// malformed; permission_denied when no known key signed it or a known key's signature fails.
Result<std::string> OpenNote(std::string_view note, std::span<const VerifierKey> known);

}  // namespace kw::vault::audit::note
