// Signed notes and checkpoints: published vectors, strict parsing, and signing with real
// SoftHSM keys verified by OpenSSL.
#include "vault/audit/signed_note.hpp"

#include <doctest/doctest.h>
#include <openssl/evp.h>

#include <memory>
#include <string>
#include <vector>

#include "hsm/detail/pkcs11_token.hpp"
#include "hsm/token.hpp"
#include "tests/unit/fakes/softhsm_fixture.hpp"

namespace kw::vault::audit::note {
namespace {

using kw::testing::ErrorText;
using kw::testing::SoftHsmFixture;

// The example of the C2SP signed-note specification (github.com/C2SP/C2SP, signed-note.md,
// signed-note/v1.0.0).
constexpr std::string_view kExampleVkey =
    "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
constexpr std::string_view kExampleText = "This is an example message.\n";
constexpr std::string_view kExampleSignatureLine =
    "\xE2\x80\x94 example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72"
    "IneyaQM=\n";

// ECDSA (type 0x02) vectors: the Sigstore Rekor and Pixel 6 log keys and checkpoints that
// github.com/transparency-dev/formats note/note_verifier_test.go verifies with its ECDSA note
// verifier.
constexpr std::string_view kRekorVkey =
    "rekor.sigstore.dev+c0d23d6a+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNhtmPtrWm3U1eQXBogSMdGv"
    "XwBcK5AW5i0hrZLOC96l+smGNM7nwZ4QvFK/4sueRoVj//QP22Ni4Qt9DPfkWLc=";
constexpr std::string_view kRekorNote =
    "Rekor\n798034\nf+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0=\n\n"
    "\xE2\x80\x94 rekor.sigstore.dev "
    "wNI9ajBEAiARInWIWyCdyG27CO6LPnPekyw20qO0YJfoaPaowGp/XgIgc+qEHS3+GKVClgqq20uDLet7MCoT"
    "URUCRdxwWBHHufk=\n";
constexpr std::string_view kPixelVkey =
    "pixel6_transparency_log+91c16e30+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABN+4x0Jk1yTwvLFI"
    "9A4NDdGZcX0aiWVdWM5XJVy0M4VWD3AvyW5Q6Hs9A0mcDkpUoYgn+KKPNzFC0H3nN3q6JQ8=";
constexpr std::string_view kPixelNote =
    "DEFAULT\n10\nbsWRucJU5xJPHb5eBdOm6+DM+VelCZBuvtI3sHERJ9Y=\n\n"
    "\xE2\x80\x94 pixel6_transparency_log "
    "kcFuMDBFAiEAhqMAP8P6qf6QxtUJhzMhbN+MbZ9dwfUHzGQJmffJHtoCIGD0cNe47dHWBoPwYdgBCepB06/+"
    "g5O1FmYjXl06owL4\n";

constexpr std::string_view kEmptyRootBase64 = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
constexpr std::string_view kEmDash = "\xE2\x80\x94";

VerifierKey MustParseVkey(std::string_view vkey) {
  auto key = ParseVkey(vkey);
  REQUIRE_MESSAGE(key, ErrorText(key.error()));
  return *key;
}

std::string ExampleNote() {
  return std::string(kExampleText) + "\n" + std::string(kExampleSignatureLine);
}

// A signer with an Ed25519 key made by OpenSSL, standing for a key the verifier does not know
// (another log, or a witness).
class OpenSslEd25519Signer final : public NoteSigner {
 public:
  explicit OpenSslEd25519Signer(std::string name)
      : key_pair_(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"), EVP_PKEY_free) {
    REQUIRE(key_pair_);
    Bytes public_key(32);
    std::size_t size = public_key.size();
    REQUIRE(EVP_PKEY_get_raw_public_key(key_pair_.get(), public_key.data(), &size) == 1);
    key_.name = std::move(name);
    key_.type = KeyType::kEd25519;
    key_.public_key = public_key;
    key_.key_id = KeyId(key_.name, key_.type, key_.public_key);
  }

  const VerifierKey& key() const override { return key_; }
  VerifierKey& mutable_key() { return key_; }

  Result<Bytes> Sign(ByteSpan message) override {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(),
                                                                    EVP_MD_CTX_free);
    Bytes signature(64);
    std::size_t size = signature.size();
    REQUIRE(EVP_DigestSignInit(context.get(), nullptr, nullptr, nullptr, key_pair_.get()) == 1);
    REQUIRE(EVP_DigestSign(context.get(), signature.data(), &size, message.data(),
                           message.size()) == 1);
    return signature;
  }

 private:
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key_pair_;
  VerifierKey key_;
};

// Returns the signature lines of `note`: everything after its last empty line.
std::string SignatureLines(const std::string& note) {
  return note.substr(note.rfind("\n\n") + 2);
}

// Returns the decoded base64 of the first signature line of `note`: key ID ‖ signature.
Bytes FirstSignature(const std::string& note) {
  const std::string lines = SignatureLines(note);
  const std::string first = lines.substr(0, lines.find('\n'));
  auto decoded = FromBase64(first.substr(first.rfind(' ') + 1));
  REQUIRE(decoded);
  return *decoded;
}

// A SoftHSM token with an Ed25519 note key and an ECDSA P-256 note key.
class NoteKeys {
 public:
  NoteKeys() {
    auto token = hsm_.Open();
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    token_ = std::move(*token);
    auto ed25519 = token_->GenerateEd25519KeyPair("audit-note-ed25519");
    REQUIRE_MESSAGE(ed25519, ErrorText(ed25519.error()));
    auto ecdsa = token_->GenerateEcP256KeyPair("audit-note-ecdsa");
    REQUIRE_MESSAGE(ecdsa, ErrorText(ecdsa.error()));
  }

  hsm::Token& token() { return *token_; }

  std::unique_ptr<NoteSigner> Signer(KeyType type, std::string_view name = "keyward.test/audit") {
    const std::string_view label =
        type == KeyType::kEd25519 ? "audit-note-ed25519" : "audit-note-ecdsa";
    auto signer = OpenHsmNoteSigner(*token_, label, name, type);
    REQUIRE_MESSAGE(signer, ErrorText(signer.error()));
    return std::move(*signer);
  }

 private:
  SoftHsmFixture hsm_;
  std::unique_ptr<hsm::Token> token_;
};

std::string SampleCheckpointText() {
  Checkpoint checkpoint;
  checkpoint.origin = "keyward.test/audit";
  checkpoint.size = 42;
  for (std::size_t i = 0; i < checkpoint.root.size(); ++i) {
    checkpoint.root[i] = static_cast<std::uint8_t>(i * 7);
  }
  return FormatCheckpoint(checkpoint);
}

TEST_SUITE("vault/audit/signed_note") {
  TEST_CASE("vkey of the C2SP example") {
    VerifierKey key = MustParseVkey(kExampleVkey);
    CHECK(key.name == "example.com/foo");
    CHECK(key.key_id == 0x530d903au);
    CHECK(key.type == KeyType::kEd25519);
    CHECK(key.public_key.size() == 32);
    CHECK(KeyId(key.name, key.type, key.public_key) == 0x530d903au);
    CHECK(FormatVkey(key) == kExampleVkey);
  }

  TEST_CASE("C2SP example signature verifies") {
    const VerifierKey key = MustParseVkey(kExampleVkey);
    auto text = OpenNote(ExampleNote(), std::span(&key, 1));
    REQUIRE_MESSAGE(text, ErrorText(text.error()));
    CHECK(*text == kExampleText);

    // The same signature over other text fails.
    std::string altered = ExampleNote();
    altered.replace(0, 4, "That");
    auto rejected = OpenNote(altered, std::span(&key, 1));
    REQUIRE_FALSE(rejected);
    CHECK(rejected.error().code() == Code::kPermissionDenied);
  }

  TEST_CASE("ECDSA vectors of transparency-dev verify") {
    const VerifierKey rekor = MustParseVkey(kRekorVkey);
    CHECK(rekor.type == KeyType::kEcdsaP256);
    CHECK(rekor.key_id == 0xc0d23d6au);
    CHECK(rekor.public_key.size() == 91);
    CHECK(FormatVkey(rekor) == kRekorVkey);
    auto rekor_text = OpenNote(kRekorNote, std::span(&rekor, 1));
    REQUIRE_MESSAGE(rekor_text, ErrorText(rekor_text.error()));
    CHECK(*rekor_text == "Rekor\n798034\nf+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0=\n");

    const VerifierKey pixel = MustParseVkey(kPixelVkey);
    CHECK(pixel.key_id == 0x91c16e30u);
    auto pixel_text = OpenNote(kPixelNote, std::span(&pixel, 1));
    REQUIRE_MESSAGE(pixel_text, ErrorText(pixel_text.error()));

    // Each key rejects the other log's note as signed by an unknown key.
    auto crossed = OpenNote(kPixelNote, std::span(&rekor, 1));
    REQUIRE_FALSE(crossed);
    CHECK(crossed.error().code() == Code::kPermissionDenied);

    // A different key ID in the vkey does not match the SPKI.
    std::string wrong_id(kRekorVkey);
    wrong_id.replace(wrong_id.find("c0d23d6a"), 8, "00000000");
    auto mismatch = ParseVkey(wrong_id);
    REQUIRE_FALSE(mismatch);
    CHECK(mismatch.error().code() == Code::kInvalidArgument);
  }

  TEST_CASE("vkey: malformed inputs rejected") {
    const std::vector<std::string> malformed = {
        "",
        "example.com/foo",
        "example.com/foo+530d903a",
        "+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+530d903+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+530d903g+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2",
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k=",
        "example.com/foo+530d903a+",
        // Type 0x03 is reserved.
        "example.com/foo+530d903a+AykyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        // Ed25519 with a 31-byte key.
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3Q==",
        // A correct key under another name: the key ID no longer matches.
        "example.com/bar+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        // ECDSA type byte in front of an Ed25519 key, which is not a SubjectPublicKeyInfo.
        "example.com/foo+530d903a+AukyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
    };
    for (const std::string& vkey : malformed) {
      CAPTURE(vkey);
      auto parsed = ParseVkey(vkey);
      REQUIRE_FALSE(parsed);
      CHECK(parsed.error().code() == Code::kInvalidArgument);
    }
  }

  TEST_CASE("empty tree checkpoint root") {
    Checkpoint checkpoint;
    checkpoint.origin = "keyward.test/audit";
    checkpoint.size = 0;
    const Bytes empty_root = Sha256({});
    std::copy(empty_root.begin(), empty_root.end(), checkpoint.root.begin());
    const std::string text = FormatCheckpoint(checkpoint);
    CHECK(text == "keyward.test/audit\n0\n" + std::string(kEmptyRootBase64) + "\n");

    auto parsed = ParseCheckpoint(text);
    REQUIRE_MESSAGE(parsed, ErrorText(parsed.error()));
    CHECK(parsed->size == 0);
    CHECK(parsed->root == checkpoint.root);
  }

  TEST_CASE("checkpoint format and parse round trip") {
    Checkpoint checkpoint;
    checkpoint.origin = "keyward.test/audit";
    checkpoint.size = 20852163;
    checkpoint.root.fill(0xab);
    checkpoint.extensions = {"first extension", "second"};
    const std::string text = FormatCheckpoint(checkpoint);
    CHECK(text == "keyward.test/audit\n20852163\n" + ToBase64(checkpoint.root) +
                      "\nfirst extension\nsecond\n");

    auto parsed = ParseCheckpoint(text);
    REQUIRE_MESSAGE(parsed, ErrorText(parsed.error()));
    CHECK(parsed->origin == checkpoint.origin);
    CHECK(parsed->size == checkpoint.size);
    CHECK(parsed->root == checkpoint.root);
    CHECK(parsed->extensions == checkpoint.extensions);

    // The example of the C2SP tlog-checkpoint specification, without its signature.
    auto example = ParseCheckpoint(
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n");
    REQUIRE_MESSAGE(example, ErrorText(example.error()));
    CHECK(example->origin == "example.com/behind-the-sofa");
    CHECK(example->size == 20852163);
    CHECK(example->extensions.empty());

    auto largest = ParseCheckpoint("o\n18446744073709551615\n" + ToBase64(checkpoint.root) + "\n");
    REQUIRE_MESSAGE(largest, ErrorText(largest.error()));
    CHECK(largest->size == UINT64_MAX);
  }

  TEST_CASE("checkpoint: malformed inputs rejected") {
    const std::string root = std::string(kEmptyRootBase64);
    const std::vector<std::string> malformed = {
        "",
        "origin\n5\n" + root,                      // no final newline
        "origin\n5\n",                             // no root line
        "\n5\n" + root + "\n",                     // empty origin
        "origin\n05\n" + root + "\n",              // leading zero
        "origin\n00\n" + root + "\n",              // leading zero of an empty tree
        "origin\n\n" + root + "\n",                // empty size
        "origin\n+5\n" + root + "\n",              // sign
        "origin\n-1\n" + root + "\n",              // negative
        "origin\n 5\n" + root + "\n",              // space
        "origin\n18446744073709551616\n" + root + "\n",  // 2^64
        "origin\n5\n" + root.substr(0, 43) + "\n",       // padding missing
        "origin\n5\n" + root + "=\n",                    // extra padding
        "origin\n5\n!" + root.substr(1) + "\n",          // not base64
        "origin\n5\n" + ToBase64(Bytes(33, 1)) + "\n",   // 33-byte root
        "origin\n5\n" + ToBase64(Bytes(31, 1)) + "\n",   // 31-byte root
        "origin\n5\n" + root + "\n\n",                   // empty extension line
        "origin\n5\n" + root + "\next\n\nmore\n",        // empty line between extensions
        "ori\tgin\n5\n" + root + "\n",                   // control character
        "origin\r\n5\n" + root + "\n",                   // carriage return
        "ori\xffgin\n5\n" + root + "\n",                 // invalid UTF-8
        "ori\xc0\xafgin\n5\n" + root + "\n",             // overlong UTF-8
    };
    for (const std::string& text : malformed) {
      CAPTURE(text);
      auto parsed = ParseCheckpoint(text);
      REQUIRE_FALSE(parsed);
      CHECK(parsed.error().code() == Code::kInvalidArgument);
    }
  }

  TEST_CASE("HSM Ed25519 note opens with its vkey") {
    NoteKeys keys;
    auto signer = keys.Signer(KeyType::kEd25519);
    const VerifierKey& key = signer->key();
    CHECK(key.name == "keyward.test/audit");
    CHECK(key.type == KeyType::kEd25519);
    auto public_key = keys.token().GetEd25519PublicKey("audit-note-ed25519");
    REQUIRE(public_key);
    CHECK(key.public_key == *public_key);
    CHECK(key.key_id == KeyId(key.name, KeyType::kEd25519, key.public_key));

    const std::string text = SampleCheckpointText();
    auto note = SignNote(text, *signer);
    REQUIRE_MESSAGE(note, ErrorText(note.error()));
    CHECK(note->substr(0, text.size() + 1) == text + "\n");
    CHECK(SignatureLines(*note).starts_with(std::string(kEmDash) + " keyward.test/audit "));
    CHECK(FirstSignature(*note).size() == 4 + 64);

    // A verifier holding only the vkey string opens it.
    const VerifierKey parsed = MustParseVkey(FormatVkey(key));
    auto opened = OpenNote(*note, std::span(&parsed, 1));
    REQUIRE_MESSAGE(opened, ErrorText(opened.error()));
    CHECK(*opened == text);
    auto checkpoint = ParseCheckpoint(*opened);
    REQUIRE(checkpoint);
    CHECK(checkpoint->size == 42);
  }

  TEST_CASE("HSM ECDSA note opens with its vkey") {
    NoteKeys keys;
    auto signer = keys.Signer(KeyType::kEcdsaP256);
    const VerifierKey& key = signer->key();
    auto spki = keys.token().GetEcPublicKeySpki("audit-note-ecdsa");
    REQUIRE(spki);
    CHECK(key.public_key == *spki);
    const Bytes digest = Sha256(*spki);
    const std::uint32_t expected_id = (std::uint32_t{digest[0]} << 24) |
                                      (std::uint32_t{digest[1]} << 16) |
                                      (std::uint32_t{digest[2]} << 8) | digest[3];
    CHECK(key.key_id == expected_id);
    const std::string vkey = FormatVkey(key);
    CHECK(vkey.starts_with("keyward.test/audit+"));
    auto typed_key = FromBase64(vkey.substr(vkey.find('+', vkey.find('+') + 1) + 1));
    REQUIRE(typed_key);
    CHECK(typed_key->front() == 0x02);

    const std::string text = SampleCheckpointText();
    auto note = SignNote(text, *signer);
    REQUIRE_MESSAGE(note, ErrorText(note.error()));
    // The signature after the key ID is ASN.1 DER: a SEQUENCE of two INTEGERs.
    const Bytes encoded = FirstSignature(*note);
    REQUIRE(encoded.size() > 4 + 8);
    CHECK(encoded[4] == 0x30);
    CHECK(encoded[5] == encoded.size() - 6);

    const VerifierKey parsed = MustParseVkey(vkey);
    auto opened = OpenNote(*note, std::span(&parsed, 1));
    REQUIRE_MESSAGE(opened, ErrorText(opened.error()));
    CHECK(*opened == text);
  }

  TEST_CASE("flipped byte anywhere is rejected") {
    NoteKeys keys;
    for (KeyType type : {KeyType::kEd25519, KeyType::kEcdsaP256}) {
      auto signer = keys.Signer(type);
      const VerifierKey key = signer->key();
      auto note = SignNote(SampleCheckpointText(), *signer);
      REQUIRE(note);
      REQUIRE(OpenNote(*note, std::span(&key, 1)));
      for (std::size_t at = 0; at < note->size(); ++at) {
        for (std::uint8_t flip : {0x01, 0x20}) {
          std::string altered = *note;
          altered[at] = static_cast<char>(altered[at] ^ flip);
          CAPTURE(at);
          CAPTURE(static_cast<int>(flip));
          CHECK_FALSE(OpenNote(altered, std::span(&key, 1)));
        }
      }
    }
  }

  TEST_CASE("unknown key's extra signature is ignored") {
    NoteKeys keys;
    auto signer = keys.Signer(KeyType::kEd25519);
    const VerifierKey key = signer->key();
    const std::string text = SampleCheckpointText();
    auto note = SignNote(text, *signer);
    REQUIRE(note);

    OpenSslEd25519Signer witness("witness.test/w1");
    auto witness_note = SignNote(text, witness);
    REQUIRE(witness_note);
    const std::string witness_line = SignatureLines(*witness_note);

    // Unknown signature after and before the known one.
    auto after = OpenNote(*note + witness_line, std::span(&key, 1));
    REQUIRE_MESSAGE(after, ErrorText(after.error()));
    CHECK(*after == text);
    auto before = OpenNote(text + "\n" + witness_line + SignatureLines(*note), std::span(&key, 1));
    REQUIRE_MESSAGE(before, ErrorText(before.error()));

    // A key that shares only the name, or only the key ID, with the known key is unknown too,
    // even though its signature would not verify under the known key.
    OpenSslEd25519Signer same_name(key.name);
    auto same_name_note = SignNote(text, same_name);
    REQUIRE(same_name_note);
    auto with_same_name = OpenNote(*note + SignatureLines(*same_name_note), std::span(&key, 1));
    REQUIRE_MESSAGE(with_same_name, ErrorText(with_same_name.error()));
    OpenSslEd25519Signer same_id("other.test/log");
    same_id.mutable_key().key_id = key.key_id;
    auto same_id_note = SignNote(text, same_id);
    REQUIRE(same_id_note);
    auto with_same_id = OpenNote(*note + SignatureLines(*same_id_note), std::span(&key, 1));
    REQUIRE_MESSAGE(with_same_id, ErrorText(with_same_id.error()));

    // Both keys known: both signatures are checked and the note opens.
    const std::vector<VerifierKey> both = {key, witness.key()};
    auto with_both = OpenNote(*note + witness_line, both);
    REQUIRE_MESSAGE(with_both, ErrorText(with_both.error()));
  }

  TEST_CASE("note signed only by unknown key is denied") {
    OpenSslEd25519Signer stranger("keyward.test/audit");
    auto note = SignNote(SampleCheckpointText(), stranger);
    REQUIRE(note);
    const VerifierKey example = MustParseVkey(kExampleVkey);
    auto opened = OpenNote(*note, std::span(&example, 1));
    REQUIRE_FALSE(opened);
    CHECK(opened.error().code() == Code::kPermissionDenied);

    auto nobody = OpenNote(*note, std::span<const VerifierKey>());
    REQUIRE_FALSE(nobody);
    CHECK(nobody.error().code() == Code::kPermissionDenied);
  }

  TEST_CASE("failing known signature rejects the note") {
    // One known key verifies, another known key's signature does not: the note is rejected.
    OpenSslEd25519Signer log_key("keyward.test/audit");
    OpenSslEd25519Signer witness("witness.test/w1");
    const std::string text = SampleCheckpointText();
    auto note = SignNote(text, log_key);
    REQUIRE(note);
    auto witness_note = SignNote("other text\n", witness);
    REQUIRE(witness_note);
    const std::vector<VerifierKey> known = {log_key.key(), witness.key()};
    auto opened = OpenNote(*note + SignatureLines(*witness_note), known);
    REQUIRE_FALSE(opened);
    CHECK(opened.error().code() == Code::kPermissionDenied);
  }

  TEST_CASE("signature line count limits") {
    OpenSslEd25519Signer log_key("keyward.test/audit");
    const VerifierKey key = log_key.key();
    const std::string text = SampleCheckpointText();
    auto note = SignNote(text, log_key);
    REQUIRE(note);
    OpenSslEd25519Signer witness("witness.test/w1");
    auto witness_note = SignNote(text, witness);
    REQUIRE(witness_note);
    const std::string witness_line = SignatureLines(*witness_note);

    const auto note_with_lines = [&](std::size_t lines) {
      std::string built = *note;
      for (std::size_t i = 1; i < lines; ++i) built += witness_line;
      return built;
    };
    for (std::size_t lines : {16, 100}) {
      CAPTURE(lines);
      auto opened = OpenNote(note_with_lines(lines), std::span(&key, 1));
      CHECK_MESSAGE(opened, (opened ? "" : ErrorText(opened.error())));
    }
    auto too_many = OpenNote(note_with_lines(101), std::span(&key, 1));
    REQUIRE_FALSE(too_many);
    CHECK(too_many.error().code() == Code::kInvalidArgument);
  }

  TEST_CASE("note: malformed inputs rejected") {
    const VerifierKey key = MustParseVkey(kExampleVkey);
    const std::string text(kExampleText);
    const std::string line(kExampleSignatureLine);
    const std::string dash(kEmDash);
    const std::vector<std::string> malformed = {
        "",
        text,                                             // no signatures, no empty line
        text + "\n",                                      // empty line but no signatures
        text + line,                                      // no empty line
        text + "\n" + line.substr(0, line.size() - 1),    // no final newline
        text + "\n" + line + "\n",                        // empty line after the signatures
        text + "\n- example.com/foo AAAAAAA=\n",           // ASCII dash
        text + "\n" + dash + "example.com/foo AAAAAAA=\n",  // no space after the dash
        text + "\n" + dash + " example.com/foo\n",         // no signature
        text + "\n" + dash + " example.com/foo \n",        // empty signature
        text + "\n" + dash + " example.com/foo !!!!\n",    // not base64
        text + "\n" + dash + " example.com/foo AAAAAA==\n",  // 4 bytes: key ID only
        text + "\n" + dash + "  AAAAAAAA\n",                // empty name
        text + "\n" + dash + " a+b AAAAAAAA\n",              // '+' in the name
        text + "\n" + dash + " a\xc2\xa0" "b AAAAAAAA\n",    // no-break space in the name
        "This is\tan example message.\n\n" + line,          // control character
        "This is \xff example message.\n\n" + line,         // invalid UTF-8
        "This is \xed\xa0\x80 example message.\n\n" + line, // UTF-16 surrogate
        "\n" + line,                                        // empty text
    };
    for (const std::string& note : malformed) {
      CAPTURE(note);
      auto opened = OpenNote(note, std::span(&key, 1));
      REQUIRE_FALSE(opened);
      CHECK(opened.error().code() == Code::kInvalidArgument);
    }

    // Empty lines inside the text are allowed; the last one separates the signatures.
    OpenSslEd25519Signer signer("keyward.test/audit");
    const VerifierKey signer_key = signer.key();
    auto with_blank = SignNote("first\n\nsecond\n", signer);
    REQUIRE(with_blank);
    auto opened = OpenNote(*with_blank, std::span(&signer_key, 1));
    REQUIRE_MESSAGE(opened, ErrorText(opened.error()));
    CHECK(*opened == "first\n\nsecond\n");
  }

  TEST_CASE("SignNote rejects malformed text") {
    OpenSslEd25519Signer signer("keyward.test/audit");
    for (std::string_view text : {"", "no newline", "tab\there\n", "bad \xff byte\n"}) {
      CAPTURE(text);
      auto note = SignNote(text, signer);
      REQUIRE_FALSE(note);
      CHECK(note.error().code() == Code::kInvalidArgument);
    }
    OpenSslEd25519Signer spaced("keyward test");
    auto note = SignNote("text\n", spaced);
    REQUIRE_FALSE(note);
    CHECK(note.error().code() == Code::kInvalidArgument);
  }

  TEST_CASE("OpenHsmNoteSigner errors") {
    NoteKeys keys;
    auto bad_name = OpenHsmNoteSigner(keys.token(), "audit-note-ed25519", "has space",
                                      KeyType::kEd25519);
    REQUIRE_FALSE(bad_name);
    CHECK(bad_name.error().code() == Code::kInvalidArgument);

    auto missing = OpenHsmNoteSigner(keys.token(), "absent", "keyward.test/audit",
                                     KeyType::kEd25519);
    REQUIRE_FALSE(missing);
    CHECK(missing.error().code() == Code::kNotFound);

    // The label belongs to a key pair of the other type.
    auto wrong_type = OpenHsmNoteSigner(keys.token(), "audit-note-ed25519", "keyward.test/audit",
                                        KeyType::kEcdsaP256);
    REQUIRE_FALSE(wrong_type);
    CHECK(wrong_type.error().code() == Code::kFailedPrecondition);
    auto wrong_type_ec = OpenHsmNoteSigner(keys.token(), "audit-note-ecdsa",
                                           "keyward.test/audit", KeyType::kEd25519);
    REQUIRE_FALSE(wrong_type_ec);
    CHECK(wrong_type_ec.error().code() == Code::kFailedPrecondition);
  }

  TEST_CASE("OpenHsmNoteSigner rejects mismatched key halves") {
    // Two Ed25519 pairs whose halves carry crossed labels: the public key labelled "mixed"
    // belongs to one pair, the private key labelled "mixed" to the other.
    NoteKeys keys;
    auto& pkcs11 = dynamic_cast<hsm::detail::Pkcs11Token&>(keys.token());
    const auto generate = [&](std::string public_label, std::string private_label) {
      auto lease = pkcs11.CheckoutSession();
      REQUIRE(lease);
      const CK_BYTE params[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
      CK_KEY_TYPE key_type = CKK_EC_EDWARDS;
      CK_BBOOL yes = CK_TRUE;
      CK_ATTRIBUTE public_template[5] = {
          {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
          {CKA_EC_PARAMS, const_cast<CK_BYTE*>(params), sizeof(params)},
          {CKA_TOKEN, &yes, sizeof(yes)},
          {CKA_VERIFY, &yes, sizeof(yes)},
          {CKA_LABEL, public_label.data(), public_label.size()}};
      CK_ATTRIBUTE private_template[5] = {
          {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
          {CKA_TOKEN, &yes, sizeof(yes)},
          {CKA_SENSITIVE, &yes, sizeof(yes)},
          {CKA_SIGN, &yes, sizeof(yes)},
          {CKA_LABEL, private_label.data(), private_label.size()}};
      CK_MECHANISM mechanism{CKM_EC_EDWARDS_KEY_PAIR_GEN, nullptr, 0};
      CK_OBJECT_HANDLE public_handle = CK_INVALID_HANDLE;
      CK_OBJECT_HANDLE private_handle = CK_INVALID_HANDLE;
      REQUIRE(pkcs11.functions()->C_GenerateKeyPair(lease->handle(), &mechanism,
                                                    public_template, 5, private_template, 5,
                                                    &public_handle, &private_handle) == CKR_OK);
    };
    generate("mixed", "pair-1-private");
    generate("pair-2-public", "mixed");

    auto signer = OpenHsmNoteSigner(keys.token(), "mixed", "keyward.test/audit",
                                    KeyType::kEd25519);
    REQUIRE_FALSE(signer);
    CHECK(signer.error().code() == Code::kFailedPrecondition);
  }
}

}  // namespace
}  // namespace kw::vault::audit::note
