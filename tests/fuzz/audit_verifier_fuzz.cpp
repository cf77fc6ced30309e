// Fuzzes the offline audit verifier, as `keyward audit verify -log` runs it over an exported
// JSON-lines file: records, {"checkpoint": "<signed note>"} lines, and the verifier key that
// checkpoints must be signed with.
//
// Input: a vkey line ("name+<key id>+<base64 key>"), then the lines of an exported stream.
// A first line that is not a valid vkey leaves the verifier without keys, so every checkpoint
// fails its signature check.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/fuzz_check.hpp"
#include "vault/audit/log_verifier.hpp"
#include "vault/audit/signed_note.hpp"

namespace {

namespace audit = kw::vault::audit;
namespace note = kw::vault::audit::note;

// Checks that a parsed key prints as a vkey that parses to the same key.
void CheckVkeyRoundTrip(const note::VerifierKey& key) {
  auto again = note::ParseVkey(note::FormatVkey(key));
  KW_FUZZ_CHECK(again.has_value());
  KW_FUZZ_CHECK(again->name == key.name);
  KW_FUZZ_CHECK(again->key_id == key.key_id);
  KW_FUZZ_CHECK(again->type == key.type);
  KW_FUZZ_CHECK(again->public_key == key.public_key);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t first_newline = input.find('\n');
  const std::string_view vkey = input.substr(0, first_newline);
  input = first_newline == std::string_view::npos ? std::string_view()
                                                  : input.substr(first_newline + 1);

  std::vector<note::VerifierKey> keys;
  if (auto key = note::ParseVkey(vkey)) {
    CheckVkeyRoundTrip(*key);
    keys.push_back(std::move(*key));
  }
  auto verifier = audit::LogVerifier::Create(keys);
  KW_FUZZ_CHECK(verifier.has_value());

  // Lines as the CLI reads them with std::getline: split at '\n', the newline not included.
  std::uint64_t lines = 0;
  while (!input.empty() && verifier->ok()) {
    const std::size_t newline = input.find('\n');
    verifier->AddLine(input.substr(0, newline), "fuzz input");
    ++lines;
    input = newline == std::string_view::npos ? std::string_view() : input.substr(newline + 1);
  }
  verifier->Finish();

  if (verifier->ok()) {
    KW_FUZZ_CHECK(verifier->records_checked() == verifier->tree_size());
    KW_FUZZ_CHECK(verifier->records_checked() + verifier->checkpoints_verified() <= lines);
    KW_FUZZ_CHECK(verifier->covered_size() <= verifier->tree_size());
  } else {
    KW_FUZZ_CHECK(!verifier->problem()->reason.empty());
  }
  return 0;
}
