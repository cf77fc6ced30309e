#include "tests/unit/fakes/softhsm_fixture.hpp"

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <system_error>

namespace kw::testing {
namespace {

// The process-wide SoftHSM directory. Removed by the process that created it, at exit.
class SoftHsmDirectory {
 public:
  SoftHsmDirectory() : owner_pid_(getpid()) {
    std::string pattern = (std::filesystem::temp_directory_path() / "kw-softhsm-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      throw std::runtime_error("cannot create a SoftHSM test directory from " + pattern);
    }
    dir_ = pattern;
    std::filesystem::create_directory(std::filesystem::path(dir_) / "tokens");

    config_path_ = dir_ + "/softhsm2.conf";
    std::ofstream config(config_path_);
    config << "directories.tokendir = " << dir_ << "/tokens\n"
           << "objectstore.backend = file\n"
           << "log.level = ERROR\n"
           << "slots.removable = false\n"
           << "slots.mechanisms = ALL\n"
           << "library.reset_on_fork = true\n";
    config.close();
    if (!config) throw std::runtime_error("cannot write " + config_path_);

    // SoftHSM reads the variable at C_Initialize, so it must be set before any test opens a token.
    setenv("SOFTHSM2_CONF", config_path_.c_str(), 1);
  }

  ~SoftHsmDirectory() {
    if (getpid() != owner_pid_) return;
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  const std::string& dir() const { return dir_; }
  const std::string& config_path() const { return config_path_; }

 private:
  pid_t owner_pid_;
  std::string dir_;
  std::string config_path_;
};

const SoftHsmDirectory& SharedDirectory() {
  static SoftHsmDirectory directory;
  return directory;
}

std::string NextTokenLabel() {
  static std::atomic<int> counter{0};
  return "kw-test-" + std::to_string(++counter);
}

}  // namespace

SoftHsmFixture::SoftHsmFixture()
    : module_path_(kSoftHsmModulePath),
      label_(NextTokenLabel()),
      pin_(SecretBuffer::CopyFrom(std::string_view("user-pin-1234"))),
      so_pin_(SecretBuffer::CopyFrom(std::string_view("so-pin-5678"))) {
  const SoftHsmDirectory& directory = SharedDirectory();
  dir_ = directory.dir();
  config_path_ = directory.config_path();
  Status status = hsm::InitializeToken(module_path_, label_, so_pin_, pin_);
  if (!status) throw std::runtime_error("SoftHSM fixture: " + ErrorText(status.error()));
}

hsm::TokenConfig SoftHsmFixture::Config(std::size_t max_sessions) const {
  hsm::TokenConfig config;
  config.module_path = module_path_;
  config.token_label = label_;
  config.max_sessions = max_sessions;
  return config;
}

Result<std::unique_ptr<hsm::Token>> SoftHsmFixture::Open(std::size_t max_sessions) const {
  return hsm::Token::Open(Config(max_sessions), pin_);
}

std::string ErrorText(const Error& error) {
  return std::string(CodeName(error.code())) + ": " + error.message();
}

}  // namespace kw::testing
