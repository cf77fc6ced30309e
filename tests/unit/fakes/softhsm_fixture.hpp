#pragma once

#include <memory>
#include <string>

#include "base/result.hpp"
#include "base/secret_buffer.hpp"
#include "hsm/token.hpp"

namespace kw::testing {

inline constexpr const char* kSoftHsmModulePath = "/usr/lib/softhsm/libsofthsm2.so";

// A fresh SoftHSM token for one test, with its own label and PINs.
//
// SoftHSM reads SOFTHSM2_CONF once, at C_Initialize, and the module is initialised once per
// process, so all fixtures of a process share one directory: the first fixture creates it
// under the system temporary directory, writes softhsm2.conf there (file object store, token
// directory <dir>/tokens, library.reset_on_fork = true) and sets SOFTHSM2_CONF. The directory
// is removed when the process exits normally; a forked child must leave with _exit, and then
// leaves it alone. Create a fixture before anything in the process loads the module.
//
// The constructor throws std::runtime_error when the directory or the token cannot be made,
// which doctest reports as a failure of the test case.
class SoftHsmFixture {
 public:
  SoftHsmFixture();
  SoftHsmFixture(const SoftHsmFixture&) = delete;
  SoftHsmFixture& operator=(const SoftHsmFixture&) = delete;
  ~SoftHsmFixture() = default;

  const std::string& module_path() const { return module_path_; }
  const std::string& label() const { return label_; }
  const SecretBuffer& pin() const { return pin_; }
  const SecretBuffer& so_pin() const { return so_pin_; }
  // The shared directory, which contains softhsm2.conf and tokens/.
  const std::string& dir() const { return dir_; }
  const std::string& config_path() const { return config_path_; }

  // Returns a config for this fixture's token with `max_sessions` pooled sessions.
  hsm::TokenConfig Config(std::size_t max_sessions = 16) const;

  // Opens this fixture's token with its user PIN.
  Result<std::unique_ptr<hsm::Token>> Open(std::size_t max_sessions = 16) const;

 private:
  std::string module_path_;
  std::string label_;
  SecretBuffer pin_;
  SecretBuffer so_pin_;
  std::string dir_;
  std::string config_path_;
};

// Returns "<code>: <message>" for test failure output.
std::string ErrorText(const Error& error);

}  // namespace kw::testing
