// Proof that keys keyward generates never leave the token: direct PKCS#11 reads and wraps fail,
// and pkcs11-tool, an independent client, reports them as never extractable.
#include <doctest/doctest.h>

#include <stdio.h>
#include <sys/wait.h>

#include <array>
#include <string>

#include "hsm/detail/ck_error.hpp"
#include "hsm/token.hpp"
#include "tests/unit/fakes/softhsm_fixture.hpp"
#include "tests/unit/hsm/pkcs11_test_util.hpp"

namespace kw::hsm {
namespace {

using kw::testing::ErrorText;
using kw::testing::SoftHsmFixture;

struct CommandOutput {
  std::string text;  // stdout and stderr together
  int exit_status = -1;
};

// Runs `command` through the shell and collects its output; the child inherits SOFTHSM2_CONF.
CommandOutput RunCommand(const std::string& command) {
  CommandOutput output;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return output;
  std::array<char, 4096> buffer;
  std::size_t read = 0;
  while ((read = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) {
    output.text.append(buffer.data(), read);
  }
  int status = pclose(pipe);
  output.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return output;
}

TEST_SUITE("hsm/extractability") {
  TEST_CASE("reading CKA_VALUE of a generated key fails") {
    SoftHsmFixture softhsm;
    auto token = softhsm.Open();
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    detail::Pkcs11Token& pkcs11 = testing::AsPkcs11(**token);
    auto aes = (*token)->GenerateAesKey("aes");
    REQUIRE_MESSAGE(aes, ErrorText(aes.error()));
    auto hmac = (*token)->GenerateHmacKey("hmac");
    REQUIRE_MESSAGE(hmac, ErrorText(hmac.error()));

    for (KeyHandle key : {*aes, *hmac}) {
      CHECK(detail::RvName(testing::ReadKeyValue(pkcs11, key.value)) ==
            "CKR_ATTRIBUTE_SENSITIVE");
    }
  }

  TEST_CASE("session copy of a protected key stays protected") {
    // Generated keys are unmodifiable, which SoftHSM will not copy; a protected key that allows
    // modification is copied into a session object by FindKey.
    SoftHsmFixture softhsm;
    auto token = softhsm.Open();
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    detail::Pkcs11Token& pkcs11 = testing::AsPkcs11(**token);
    Bytes value(32, 0x17);
    testing::ImportedKey imported;
    imported.value = value;
    imported.label = "protected-modifiable";
    imported.extractable = false;
    auto created = testing::ImportSecretKey(pkcs11, imported);
    REQUIRE_MESSAGE(created, ErrorText(created.error()));
    auto wrapping_key = testing::GenerateWrappingKey(pkcs11);
    REQUIRE_MESSAGE(wrapping_key, ErrorText(wrapping_key.error()));

    auto copy = (*token)->FindKey("protected-modifiable");
    REQUIRE_MESSAGE(copy, ErrorText(copy.error()));
    CHECK(copy->value != *created);
    CHECK(pkcs11.TokenObjectOf(*copy) == *created);
    CHECK(detail::RvName(testing::ReadKeyValue(pkcs11, copy->value)) ==
          "CKR_ATTRIBUTE_SENSITIVE");
    CHECK(detail::RvName(testing::WrapKey(pkcs11, *wrapping_key, copy->value)) ==
          "CKR_KEY_UNEXTRACTABLE");

    auto sealed = (*token)->EncryptGcm(*copy, AsBytes("value"), AsBytes("aad"));
    REQUIRE_MESSAGE(sealed, ErrorText(sealed.error()));
    auto opened = (*token)->DecryptGcm(KeyHandle{*created}, *sealed, AsBytes("aad"));
    REQUIRE_MESSAGE(opened, ErrorText(opened.error()));
    CHECK(opened->RevealText() == "value");
  }

  TEST_CASE("generated keys are used through unmodifiable session copies") {
    // SoftHSM serves session objects about twice as fast; the copy must be as protected as
    // the token object, and must not outlive the process.
    SoftHsmFixture softhsm;
    auto token = softhsm.Open();
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    detail::Pkcs11Token& pkcs11 = testing::AsPkcs11(**token);
    auto aes = (*token)->GenerateAesKey("aes-copied");
    REQUIRE_MESSAGE(aes, ErrorText(aes.error()));
    auto hmac = (*token)->GenerateHmacKey("hmac-copied");
    REQUIRE_MESSAGE(hmac, ErrorText(hmac.error()));
    auto wrapping_key = testing::GenerateWrappingKey(pkcs11);
    REQUIRE_MESSAGE(wrapping_key, ErrorText(wrapping_key.error()));

    for (KeyHandle key : {*aes, *hmac}) {
      const CK_OBJECT_HANDLE original = pkcs11.TokenObjectOf(key);
      CHECK(original != key.value);
      auto lease = pkcs11.CheckoutSession();
      REQUIRE(lease);
      CK_BBOOL values[4] = {CK_TRUE, CK_TRUE, CK_FALSE, CK_TRUE};
      CK_ATTRIBUTE read[4] = {{CKA_TOKEN, &values[0], 1},
                              {CKA_MODIFIABLE, &values[1], 1},
                              {CKA_SENSITIVE, &values[2], 1},
                              {CKA_EXTRACTABLE, &values[3], 1}};
      REQUIRE(pkcs11.functions()->C_GetAttributeValue(lease->handle(), key.value, read, 4) ==
              CKR_OK);
      CHECK(values[0] == CK_FALSE);
      CHECK(values[1] == CK_FALSE);
      CHECK(values[2] == CK_TRUE);
      CHECK(values[3] == CK_FALSE);
      CHECK(detail::RvName(testing::ReadKeyValue(pkcs11, key.value)) ==
            "CKR_ATTRIBUTE_SENSITIVE");
      CHECK(detail::RvName(testing::WrapKey(pkcs11, *wrapping_key, key.value)) ==
            "CKR_KEY_UNEXTRACTABLE");
      // No attribute of the copy can be changed, not even its label.
      const std::string label = "renamed";
      CK_ATTRIBUTE rename{CKA_LABEL, const_cast<char*>(label.data()), label.size()};
      CHECK(pkcs11.functions()->C_SetAttributeValue(lease->handle(), key.value, &rename, 1) !=
            CKR_OK);
    }

    // A second process finds the token keys, and gets copies of its own.
    auto reopened = softhsm.Open();
    REQUIRE_MESSAGE(reopened, ErrorText(reopened.error()));
    auto found = (*reopened)->FindKey("aes-copied");
    REQUIRE_MESSAGE(found, ErrorText(found.error()));
    detail::Pkcs11Token& second = testing::AsPkcs11(**reopened);
    CHECK(second.TokenObjectOf(*found) != found->value);
    auto sealed = (*token)->EncryptGcm(*aes, AsBytes("value"), AsBytes("aad"));
    REQUIRE_MESSAGE(sealed, ErrorText(sealed.error()));
    auto opened = (*reopened)->DecryptGcm(*found, *sealed, AsBytes("aad"));
    REQUIRE_MESSAGE(opened, ErrorText(opened.error()));
    CHECK(opened->RevealText() == "value");
  }

  TEST_CASE("reading CKA_VALUE of an extractable key succeeds") {
    // Control for the test above: the same read works when the key allows it.
    SoftHsmFixture softhsm;
    auto token = softhsm.Open();
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    detail::Pkcs11Token& pkcs11 = testing::AsPkcs11(**token);
    Bytes value(32, 0x42);
    testing::ImportedKey imported;
    imported.value = value;
    imported.label = "extractable";
    auto created = testing::ImportSecretKey(pkcs11, imported);
    REQUIRE_MESSAGE(created, ErrorText(created.error()));
    CHECK(detail::RvName(testing::ReadKeyValue(pkcs11, *created)) == "CKR_OK");
  }

  TEST_CASE("wrapping a generated key fails with CKR_KEY_UNEXTRACTABLE") {
    SoftHsmFixture softhsm;
    auto token = softhsm.Open();
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    detail::Pkcs11Token& pkcs11 = testing::AsPkcs11(**token);
    auto wrapping_key = testing::GenerateWrappingKey(pkcs11);
    REQUIRE_MESSAGE(wrapping_key, ErrorText(wrapping_key.error()));
    auto aes = (*token)->GenerateAesKey("aes");
    REQUIRE_MESSAGE(aes, ErrorText(aes.error()));

    CHECK(detail::RvName(testing::WrapKey(pkcs11, *wrapping_key, aes->value)) ==
          "CKR_KEY_UNEXTRACTABLE");

    // Control: the same wrapping key wraps an extractable key.
    Bytes value(32, 0x24);
    testing::ImportedKey imported;
    imported.value = value;
    imported.label = "extractable";
    imported.on_token = false;
    auto extractable = testing::ImportSecretKey(pkcs11, imported);
    REQUIRE_MESSAGE(extractable, ErrorText(extractable.error()));
    CHECK(detail::RvName(testing::WrapKey(pkcs11, *wrapping_key, *extractable)) == "CKR_OK");
  }

  TEST_CASE("pkcs11-tool lists a generated key as never extractable") {
    SoftHsmFixture softhsm;
    auto token = softhsm.Open();
    REQUIRE_MESSAGE(token, ErrorText(token.error()));
    REQUIRE((*token)->GenerateAesKey("listed-aes-key"));

    // The fixture's label and PIN contain no shell metacharacters.
    std::string command = std::string("pkcs11-tool --module ") + softhsm.module_path() +
                          " --token-label " + softhsm.label() + " --login --pin " +
                          std::string(softhsm.pin().RevealText()) + " --list-objects";
    CommandOutput output = RunCommand(command);
    INFO(output.text);
    REQUIRE(output.exit_status == 0);
    std::size_t key_start = output.text.find("listed-aes-key");
    REQUIRE(key_start != std::string::npos);
    CHECK(output.text.find("never extractable", key_start) != std::string::npos);
    CHECK(output.text.find("always sensitive", key_start) != std::string::npos);
    CHECK(output.text.find("Usage:      encrypt, decrypt", key_start) != std::string::npos);
    CHECK(output.text.find("VALUE:") == std::string::npos);
  }
}

}  // namespace
}  // namespace kw::hsm
