// Reads one KV secret and prints one of its fields.
//
//   KEYWARD_ADDR=http://127.0.0.1:8200 KEYWARD_TOKEN=... read_secret app/db password
//
// The field's value goes to stdout alone (for scripts); a summary line goes to stderr. Exits
// 1 when the secret or the field is missing or the server cannot be reached, 2 on bad usage.
#include <charconv>
#include <iostream>
#include <string>
#include <string_view>

#include "keyward/client.hpp"

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    std::cerr << "usage: read_secret PATH FIELD [VERSION]\n"
                 "  reads PATH from the KV mount (secret/) and prints FIELD\n";
    return 2;
  }
  const std::string path = argv[1];
  const std::string field = argv[2];
  std::int64_t version = 0;
  if (argc == 4) {
    const std::string_view text = argv[3];
    auto [end, failure] = std::from_chars(text.data(), text.data() + text.size(), version);
    if (failure != std::errc() || end != text.data() + text.size() || version < 0) {
      std::cerr << "read_secret: invalid VERSION: expected a non-negative integer\n";
      return 2;
    }
  }

  auto config = keyward::ClientConfig::FromEnvironment();
  if (!config.ok()) {
    std::cerr << "read_secret: " << config.error().message() << "\n";
    return 2;
  }
  auto client = keyward::Client::Create(std::move(config).value());
  if (!client.ok()) {
    std::cerr << "read_secret: " << client.error().message() << "\n";
    return 2;
  }

  auto secret = client.value()->KvGet(path, version);
  if (!secret.ok()) {
    std::cerr << "read_secret: read failed: " << secret.error().message() << "\n";
    return 1;
  }
  const keyward::Json& data = secret->data.Reveal();
  auto found = data.find(field);
  if (found == data.end()) {
    std::cerr << "read_secret: field \"" << field << "\" not found in " << path << " (version "
              << secret->version << ")\n";
    return 1;
  }
  std::cout << (found->is_string() ? found->get<std::string>() : found->dump()) << "\n";
  std::cerr << "read_secret: read field \"" << field << "\" of " << path << " version "
            << secret->version << "\n";
  return 0;
}
