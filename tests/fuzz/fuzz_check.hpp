#pragma once

#include <cstdio>
#include <cstdlib>

// Aborts with the failed condition when a property of the code under test does not hold, so
// that libFuzzer reports the input as a crash. Unlike assert, it stays on in release builds.
#define KW_FUZZ_CHECK(condition)                                                       \
  do {                                                                                 \
    if (!(condition)) {                                                                \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                    \
    }                                                                                  \
  } while (false)
