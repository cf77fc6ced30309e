#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "base/bytes.hpp"
#include "base/result.hpp"

namespace doctest {
template <>
struct StringMaker<kw::Error> {
  static String convert(const kw::Error& error) {
    std::string text = std::string(kw::CodeName(error.code())) + ": " + error.message();
    return String(text.c_str());
  }
};
}  // namespace doctest

int main(int argc, char** argv) {
  kw::InitSodium();
  doctest::Context context;
  context.applyCommandLine(argc, argv);
  return context.run();
}
