// C2SP signed notes (signed-note v1.0.0) and tlog checkpoints (tlog-checkpoint v1.0.0).
//
// The signed-note specification defines type 0x02 as ECDSA "as implemented by
// github.com/transparency-dev/witness", and this file follows that verifier
// (internal/note/note_verifier.go). Its vkey carries 0x02 ‖ DER SubjectPublicKeyInfo. The key ID
// is the first 4 bytes of SHA-256 over that DER alone, without name or type byte. The signature
// is ASN.1 DER over SHA-256 of the note text.
#include "vault/audit/signed_note.hpp"

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <memory>
#include <optional>
#include <utility>

namespace kw::vault::audit::note {
namespace {

// U+2014 EM DASH and a space: the start of every signature line.
constexpr std::string_view kSignaturePrefix = "\xE2\x80\x94 ";
// The signed-note specification requires accepting at least 16 signatures. Notes with more
// lines than this are rejected, which bounds the work a hostile note can cause.
constexpr std::size_t kMaxSignatureLines = 100;
constexpr std::size_t kKeyIdSize = 4;
constexpr std::size_t kEd25519KeySize = 32;
constexpr std::size_t kEd25519SignatureSize = 64;
constexpr std::size_t kP256CoordinateSize = 32;

using PkeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using MdContextPtr = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

// Decodes the UTF-8 sequence at text[at] into `code_point` and returns its length in bytes, or
// 0 when it is not valid UTF-8 (truncated, overlong, a surrogate or above U+10FFFF).
std::size_t DecodeUtf8(std::string_view text, std::size_t at, char32_t& code_point) {
  const auto lead = static_cast<unsigned char>(text[at]);
  std::size_t length = 0;
  char32_t minimum = 0;
  if (lead < 0x80) {
    code_point = lead;
    return 1;
  }
  if ((lead & 0xE0) == 0xC0) {
    length = 2;
    code_point = lead & 0x1F;
    minimum = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3;
    code_point = lead & 0x0F;
    minimum = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4;
    code_point = lead & 0x07;
    minimum = 0x10000;
  } else {
    return 0;
  }
  if (text.size() - at < length) return 0;
  for (std::size_t i = 1; i < length; ++i) {
    const auto next = static_cast<unsigned char>(text[at + i]);
    if ((next & 0xC0) != 0x80) return 0;
    code_point = (code_point << 6) | (next & 0x3F);
  }
  if (code_point < minimum || code_point > 0x10FFFF) return 0;
  if (code_point >= 0xD800 && code_point <= 0xDFFF) return 0;
  return length;
}

// The code points with the Unicode White_Space property, which key names must not contain.
bool IsUnicodeSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

std::string HexByte(unsigned value) {
  char buffer[8];
  std::snprintf(buffer, sizeof(buffer), "%02X", value & 0xFF);
  return buffer;
}

std::string KeyIdHex(std::uint32_t key_id) {
  char buffer[16];
  std::snprintf(buffer, sizeof(buffer), "%08x", key_id);
  return buffer;
}

// Checks the character rules of the signed-note format: valid UTF-8, and no ASCII control
// character other than the newline. `input_name` names the input in the message.
Status CheckNoteCharacters(std::string_view text, std::string_view input_name) {
  for (std::size_t at = 0; at < text.size();) {
    char32_t code_point = 0;
    const std::size_t length = DecodeUtf8(text, at, code_point);
    if (length == 0) {
      return InvalidArgument(std::string(input_name) + " is not valid UTF-8 at byte " +
                             std::to_string(at));
    }
    if (code_point < 0x20 && code_point != '\n') {
      return InvalidArgument(std::string(input_name) + " contains the control character 0x" +
                             HexByte(code_point) + " at byte " + std::to_string(at) +
                             "; only newlines are allowed");
    }
    at += length;
  }
  return OkStatus();
}

Status CheckKeyName(std::string_view name) {
  if (name.empty()) return InvalidArgument("key name is empty");
  for (std::size_t at = 0; at < name.size();) {
    char32_t code_point = 0;
    const std::size_t length = DecodeUtf8(name, at, code_point);
    if (length == 0) return InvalidArgument("key name is not valid UTF-8");
    if (code_point == '+' || code_point < 0x20 || IsUnicodeSpace(code_point)) {
      return InvalidArgument("key name \"" + std::string(name) +
                             "\" contains a space, a control character or '+'");
    }
    at += length;
  }
  return OkStatus();
}

// Returns the first 4 bytes of `bytes` as a big-endian number.
std::uint32_t BigEndian32(ByteSpan bytes) {
  return (std::uint32_t{bytes[0]} << 24) | (std::uint32_t{bytes[1]} << 16) |
         (std::uint32_t{bytes[2]} << 8) | std::uint32_t{bytes[3]};
}

std::optional<std::uint32_t> ParseKeyIdHex(std::string_view text) {
  if (text.size() != 2 * kKeyIdSize) return std::nullopt;
  std::optional<Bytes> bytes = FromHex(text);
  if (!bytes) return std::nullopt;
  return BigEndian32(*bytes);
}

// Parses a DER SubjectPublicKeyInfo that must hold a P-256 key and nothing after it.
Result<PkeyPtr> ParseP256Spki(ByteSpan spki) {
  const unsigned char* cursor = spki.data();
  PkeyPtr key(d2i_PUBKEY(nullptr, &cursor, static_cast<long>(spki.size())), EVP_PKEY_free);
  if (!key || cursor != spki.data() + spki.size()) {
    ERR_clear_error();
    return InvalidArgument("ECDSA public key is not a DER SubjectPublicKeyInfo");
  }
  char group[64] = {};
  std::size_t group_length = 0;
  if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_EC ||
      EVP_PKEY_get_group_name(key.get(), group, sizeof(group), &group_length) != 1 ||
      std::string_view(group, group_length) != "prime256v1") {
    return InvalidArgument("ECDSA public key is not on curve P-256");
  }
  return key;
}

Status CheckPublicKey(KeyType type, ByteSpan public_key) {
  switch (type) {
    case KeyType::kEd25519:
      if (public_key.size() != kEd25519KeySize) {
        return InvalidArgument("Ed25519 public key is " + std::to_string(public_key.size()) +
                               " bytes; expected 32");
      }
      return OkStatus();
    case KeyType::kEcdsaP256: {
      Result<PkeyPtr> parsed = ParseP256Spki(public_key);
      if (!parsed) return tl::unexpected(parsed.error());
      return OkStatus();
    }
  }
  return InvalidArgument("unknown signature type 0x" +
                         HexByte(static_cast<unsigned>(type)));
}

bool OpenSslVerifies(EVP_PKEY* key, const EVP_MD* digest, ByteSpan message, ByteSpan signature) {
  MdContextPtr context(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  const bool verified =
      context && EVP_DigestVerifyInit(context.get(), nullptr, digest, nullptr, key) == 1 &&
      EVP_DigestVerify(context.get(), signature.data(), signature.size(), message.data(),
                       message.size()) == 1;
  // A failed verification leaves entries on OpenSSL's per-thread error queue; later OpenSSL
  // callers on this thread must not see them.
  if (!verified) ERR_clear_error();
  return verified;
}

// Verifies `signature` (without the key ID) over `message` with `key`. permission_denied when
// it does not verify; invalid_argument when `key` itself is unusable.
Status VerifySignature(const VerifierKey& key, ByteSpan message, ByteSpan signature) {
  const std::string key_text = key.name + "+" + KeyIdHex(key.key_id);
  bool verified = false;
  switch (key.type) {
    case KeyType::kEd25519: {
      PkeyPtr pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                               key.public_key.data(), key.public_key.size()),
                   EVP_PKEY_free);
      if (!pkey) return InvalidArgument("key " + key_text + " is not an Ed25519 public key");
      // Ed25519 hashes internally, so OpenSSL takes no digest here.
      verified = signature.size() == kEd25519SignatureSize &&
                 OpenSslVerifies(pkey.get(), nullptr, message, signature);
      break;
    }
    case KeyType::kEcdsaP256: {
      Result<PkeyPtr> pkey = ParseP256Spki(key.public_key);
      if (!pkey) return tl::unexpected(pkey.error().WithContext("key " + key_text));
      verified = OpenSslVerifies(pkey->get(), EVP_sha256(), message, signature);
      break;
    }
    default:
      return InvalidArgument("key " + key_text + " has the unknown signature type 0x" +
                             HexByte(static_cast<unsigned>(key.type)));
  }
  if (!verified) return PermissionDenied("the signature by key " + key_text + " does not verify");
  return OkStatus();
}

// Converts the raw r ‖ s signature of a P-256 key into the ASN.1 DER form that notes carry.
Result<Bytes> RawEcdsaToDer(const Bytes& raw) {
  if (raw.size() != 2 * kP256CoordinateSize) {
    return Internal("ECDSA signature is " + std::to_string(raw.size()) +
                    " bytes; a raw P-256 signature is 64");
  }
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> signature(ECDSA_SIG_new(),
                                                                  ECDSA_SIG_free);
  BIGNUM* r = BN_bin2bn(raw.data(), kP256CoordinateSize, nullptr);
  BIGNUM* s = BN_bin2bn(raw.data() + kP256CoordinateSize, kP256CoordinateSize, nullptr);
  if (!signature || !r || !s || ECDSA_SIG_set0(signature.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return Internal("ECDSA signature: OpenSSL could not allocate the signature");
  }
  unsigned char* der = nullptr;
  const int der_size = i2d_ECDSA_SIG(signature.get(), &der);
  if (der_size <= 0) return Internal("ECDSA signature: DER encoding failed");
  Bytes out(der, der + der_size);
  OPENSSL_free(der);
  return out;
}

// Parses the tree size line: ASCII decimal without leading zeros, within 64 bits.
Result<std::uint64_t> ParseTreeSize(std::string_view line) {
  const auto invalid = [&](std::string_view reason) {
    return InvalidArgument("checkpoint line 2 (tree size) \"" + std::string(line) + "\" " +
                           std::string(reason));
  };
  if (line.empty()) return invalid("is empty");
  for (char c : line) {
    if (c < '0' || c > '9') return invalid("is not a decimal number");
  }
  if (line.size() > 1 && line[0] == '0') return invalid("has a leading zero");
  std::uint64_t size = 0;
  const auto [end, error] = std::from_chars(line.data(), line.data() + line.size(), size);
  if (error != std::errc() || end != line.data() + line.size()) {
    return invalid("does not fit in 64 bits");
  }
  return size;
}

// Returns `text` split at newlines, without them; `text` must end with a newline.
std::vector<std::string_view> SplitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const std::size_t end = text.find('\n');
    lines.push_back(text.substr(0, end));
    text.remove_prefix(end + 1);
  }
  return lines;
}

// One parsed signature line.
struct NoteSignature {
  std::string_view name;
  std::uint32_t key_id = 0;
  Bytes signature;  // without the key ID
};

// Parses signature line `number` (1-based, for messages): "— <name> <base64(key ID ‖ sig)>".
Result<NoteSignature> ParseSignatureLine(std::string_view line, std::size_t number) {
  const std::string where = "note signature line " + std::to_string(number);
  if (!line.starts_with(kSignaturePrefix)) {
    return InvalidArgument(where + " does not start with an em dash (U+2014) and a space");
  }
  line.remove_prefix(kSignaturePrefix.size());
  const std::size_t space = line.find(' ');
  if (space == std::string_view::npos) {
    return InvalidArgument(where + " has no space between the key name and the signature");
  }
  NoteSignature parsed;
  parsed.name = line.substr(0, space);
  Status name_status = CheckKeyName(parsed.name);
  if (!name_status) return tl::unexpected(name_status.error().WithContext(where));
  std::optional<Bytes> decoded = FromBase64(line.substr(space + 1));
  if (!decoded) return InvalidArgument(where + ": the signature is not valid base64");
  if (decoded->size() <= kKeyIdSize) {
    return InvalidArgument(where + ": the signature is " + std::to_string(decoded->size()) +
                           " bytes; it needs a 4-byte key ID and at least one signature byte");
  }
  parsed.key_id = BigEndian32(*decoded);
  parsed.signature.assign(decoded->begin() + kKeyIdSize, decoded->end());
  return parsed;
}

// A signer whose private key stays in the HSM. Thread-safe, because Token is and the signer
// never changes after OpenHsmNoteSigner. The token must outlive it.
class HsmNoteSigner final : public NoteSigner {
 public:
  HsmNoteSigner(hsm::Token& token, hsm::KeyHandle private_key, VerifierKey key)
      : token_(token), private_key_(private_key), key_(std::move(key)) {}

  const VerifierKey& key() const override { return key_; }

  Result<Bytes> Sign(ByteSpan message) override {
    if (key_.type == KeyType::kEd25519) return token_.SignEd25519(private_key_, message);
    // SoftHSM 2.6 has no CKM_ECDSA_SHA256, so the digest is computed here.
    KW_ASSIGN_OR_RETURN(Bytes raw, token_.SignEcdsa(private_key_, Sha256(message)));
    return RawEcdsaToDer(raw);
  }

 private:
  hsm::Token& token_;
  const hsm::KeyHandle private_key_;
  const VerifierKey key_;
};

}  // namespace

std::uint32_t KeyId(std::string_view name, KeyType type, ByteSpan public_key) {
  if (type == KeyType::kEcdsaP256) return BigEndian32(Sha256(public_key));
  Bytes input(name.begin(), name.end());
  input.push_back('\n');
  input.push_back(static_cast<std::uint8_t>(type));
  input.insert(input.end(), public_key.begin(), public_key.end());
  return BigEndian32(Sha256(input));
}

std::string FormatVkey(const VerifierKey& key) {
  Bytes typed_key{static_cast<std::uint8_t>(key.type)};
  typed_key.insert(typed_key.end(), key.public_key.begin(), key.public_key.end());
  return key.name + "+" + KeyIdHex(key.key_id) + "+" + ToBase64(typed_key);
}

Result<VerifierKey> ParseVkey(std::string_view vkey) {
  // The name and the key ID contain no '+', but the base64 key may.
  const std::size_t first_plus = vkey.find('+');
  const std::size_t second_plus =
      first_plus == std::string_view::npos ? first_plus : vkey.find('+', first_plus + 1);
  if (second_plus == std::string_view::npos) {
    return InvalidArgument("vkey is not of the form <name>+<8 hex key ID>+<base64 key>");
  }

  VerifierKey key;
  key.name = std::string(vkey.substr(0, first_plus));
  Status name_status = CheckKeyName(key.name);
  if (!name_status) return tl::unexpected(name_status.error().WithContext("vkey"));
  const std::string_view id_text = vkey.substr(first_plus + 1, second_plus - first_plus - 1);
  std::optional<std::uint32_t> key_id = ParseKeyIdHex(id_text);
  if (!key_id) {
    return InvalidArgument("vkey key ID \"" + std::string(id_text) + "\" is not 8 hex digits");
  }
  std::optional<Bytes> typed_key = FromBase64(vkey.substr(second_plus + 1));
  if (!typed_key || typed_key->empty()) {
    return InvalidArgument("vkey public key is not valid base64 or is empty");
  }

  key.type = static_cast<KeyType>((*typed_key)[0]);
  key.public_key.assign(typed_key->begin() + 1, typed_key->end());
  Status key_status = CheckPublicKey(key.type, key.public_key);
  if (!key_status) return tl::unexpected(key_status.error().WithContext("vkey"));
  key.key_id = KeyId(key.name, key.type, key.public_key);
  if (key.key_id != *key_id) {
    return InvalidArgument("vkey key ID " + std::string(id_text) +
                           " does not match the name and public key, which give " +
                           KeyIdHex(key.key_id));
  }
  return key;
}

std::string FormatCheckpoint(const Checkpoint& checkpoint) {
  std::string text = checkpoint.origin + "\n" + std::to_string(checkpoint.size) + "\n" +
                     ToBase64(checkpoint.root) + "\n";
  for (const std::string& extension : checkpoint.extensions) text += extension + "\n";
  return text;
}

Result<Checkpoint> ParseCheckpoint(std::string_view text) {
  KW_RETURN_IF_ERROR(CheckNoteCharacters(text, "checkpoint text"));
  if (text.empty() || text.back() != '\n') {
    return InvalidArgument("checkpoint text does not end with a newline");
  }
  const std::vector<std::string_view> lines = SplitLines(text);
  if (lines.size() < 3) {
    return InvalidArgument("checkpoint text has " + std::to_string(lines.size()) +
                           " lines; it needs origin, tree size and root hash");
  }

  Checkpoint checkpoint;
  if (lines[0].empty()) return InvalidArgument("checkpoint line 1 (origin) is empty");
  checkpoint.origin = std::string(lines[0]);
  KW_ASSIGN_OR_RETURN(checkpoint.size, ParseTreeSize(lines[1]));
  std::optional<Bytes> root = FromBase64(lines[2]);
  if (!root || root->size() != checkpoint.root.size()) {
    return InvalidArgument("checkpoint line 3 (root hash) \"" + std::string(lines[2]) +
                           "\" is not the padded base64 of 32 bytes");
  }
  std::copy(root->begin(), root->end(), checkpoint.root.begin());
  for (std::size_t i = 3; i < lines.size(); ++i) {
    if (lines[i].empty()) {
      return InvalidArgument("checkpoint line " + std::to_string(i + 1) +
                             " (extension) is empty");
    }
    checkpoint.extensions.emplace_back(lines[i]);
  }
  return checkpoint;
}

Result<std::unique_ptr<NoteSigner>> OpenHsmNoteSigner(hsm::Token& token, std::string_view label,
                                                       std::string_view name, KeyType type) {
  KW_RETURN_IF_ERROR(CheckKeyName(name));
  const std::string context = "note signing key \"" + std::string(label) + "\"";
  VerifierKey key;
  key.name = std::string(name);
  key.type = type;
  Result<Bytes> public_key = InvalidArgument("unknown signature type 0x" +
                                             HexByte(static_cast<unsigned>(type)));
  if (type == KeyType::kEd25519) public_key = token.GetEd25519PublicKey(label);
  if (type == KeyType::kEcdsaP256) public_key = token.GetEcPublicKeySpki(label);
  if (!public_key) return tl::unexpected(public_key.error().WithContext(context));
  key.public_key = std::move(*public_key);
  key.key_id = KeyId(key.name, key.type, key.public_key);
  Result<hsm::KeyHandle> private_key = token.FindPrivateKey(label);
  if (!private_key) return tl::unexpected(private_key.error().WithContext(context));

  // A public key object that does not belong to the private key would make every checkpoint
  // unverifiable, so one test signature checks the pair before the signer is used.
  auto signer = std::make_unique<HsmNoteSigner>(token, *private_key, std::move(key));
  const std::string_view probe = "keyward note signer self-test\n";
  Result<Bytes> signature = signer->Sign(AsBytes(probe));
  if (!signature) return tl::unexpected(signature.error().WithContext(context));
  if (!VerifySignature(signer->key(), AsBytes(probe), *signature)) {
    return FailedPrecondition(context + ": the public key on the token does not match the " +
                              "private key; regenerate the key pair");
  }
  return std::unique_ptr<NoteSigner>(std::move(signer));
}

Result<std::string> SignNote(std::string_view text, NoteSigner& signer) {
  KW_RETURN_IF_ERROR(CheckNoteCharacters(text, "note text"));
  if (text.empty() || text.back() != '\n') {
    return InvalidArgument("note text does not end with a newline");
  }
  const VerifierKey& key = signer.key();
  KW_RETURN_IF_ERROR(CheckKeyName(key.name));

  KW_ASSIGN_OR_RETURN(Bytes signature, signer.Sign(AsBytes(text)));
  Bytes encoded = {static_cast<std::uint8_t>(key.key_id >> 24),
                   static_cast<std::uint8_t>(key.key_id >> 16),
                   static_cast<std::uint8_t>(key.key_id >> 8),
                   static_cast<std::uint8_t>(key.key_id)};
  encoded.insert(encoded.end(), signature.begin(), signature.end());
  return std::string(text) + "\n" + std::string(kSignaturePrefix) + key.name + " " +
         ToBase64(encoded) + "\n";
}

Result<std::string> OpenNote(std::string_view note, std::span<const VerifierKey> known) {
  KW_RETURN_IF_ERROR(CheckNoteCharacters(note, "note"));
  if (note.empty() || note.back() != '\n') {
    return InvalidArgument("note does not end with a newline");
  }
  // The text may contain empty lines itself; the last empty line starts the signatures.
  const std::size_t blank = note.rfind("\n\n");
  if (blank == std::string_view::npos) {
    return InvalidArgument("note has no empty line between its text and its signatures");
  }
  const std::string_view text = note.substr(0, blank + 1);
  const std::vector<std::string_view> lines = SplitLines(note.substr(blank + 2));
  if (lines.empty()) return InvalidArgument("note has no signature lines");
  if (lines.size() > kMaxSignatureLines) {
    return InvalidArgument("note has " + std::to_string(lines.size()) +
                           " signature lines; at most " + std::to_string(kMaxSignatureLines) +
                           " are accepted");
  }

  // Every line is parsed before any is verified, so a malformed note is always
  // invalid_argument, whatever the order of its lines.
  std::vector<NoteSignature> signatures;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    KW_ASSIGN_OR_RETURN(NoteSignature parsed, ParseSignatureLine(lines[i], i + 1));
    signatures.push_back(std::move(parsed));
  }

  std::size_t verified = 0;
  for (const NoteSignature& signature : signatures) {
    // Only the (name, key ID) pair identifies a key; a match on one of them alone is an
    // unknown key, which the specification requires ignoring.
    const auto key = std::find_if(known.begin(), known.end(), [&](const VerifierKey& candidate) {
      return candidate.name == signature.name && candidate.key_id == signature.key_id;
    });
    if (key == known.end()) continue;
    KW_RETURN_IF_ERROR(VerifySignature(*key, AsBytes(text), signature.signature));
    ++verified;
  }
  if (verified == 0) {
    return PermissionDenied("no signature on the note is by a known key (" +
                            std::to_string(signatures.size()) + " signatures by unknown keys)");
  }
  return std::string(text);
}

}  // namespace kw::vault::audit::note
