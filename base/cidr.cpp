#include "base/cidr.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace kw {
namespace {

struct Address {
  bool v6 = false;
  std::array<std::uint8_t, 16> bytes{};
};

bool ParseAddress(std::string_view text, Address& out) {
  std::string copy(text);
  // Listeners may report IPv6 addresses in brackets.
  if (copy.size() > 2 && copy.front() == '[' && copy.back() == ']') {
    copy = copy.substr(1, copy.size() - 2);
  }
  in_addr v4{};
  if (inet_pton(AF_INET, copy.c_str(), &v4) == 1) {
    out.v6 = false;
    std::memcpy(out.bytes.data(), &v4, 4);
    return true;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, copy.c_str(), &v6) == 1) {
    out.v6 = true;
    std::memcpy(out.bytes.data(), &v6, 16);
    // An IPv4-mapped address (::ffff:a.b.c.d) is the IPv4 address it maps.
    static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(out.bytes.data(), kMapped, 12) == 0) {
      out.v6 = false;
      std::memmove(out.bytes.data(), out.bytes.data() + 12, 4);
      std::memset(out.bytes.data() + 4, 0, 12);
    }
    return true;
  }
  return false;
}

bool PrefixMatches(const std::array<std::uint8_t, 16>& a, const std::array<std::uint8_t, 16>& b,
                   int bits) {
  int full = bits / 8;
  if (std::memcmp(a.data(), b.data(), static_cast<std::size_t>(full)) != 0) return false;
  int rest = bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (a[static_cast<std::size_t>(full)] & mask) == (b[static_cast<std::size_t>(full)] & mask);
}

}  // namespace

std::string Cidr::str() const {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(v6 ? AF_INET6 : AF_INET, address.data(), text, sizeof(text));
  return std::string(text) + "/" + std::to_string(prefix_length);
}

Result<Cidr> ParseCidr(std::string_view text) {
  const std::size_t slash = text.find('/');
  const std::string_view host = text.substr(0, slash);
  Address parsed;
  if (host.empty() || host.find_first_of("[]") != std::string_view::npos ||
      !ParseAddress(host, parsed)) {
    return InvalidArgument("\"" + std::string(text.substr(0, 64)) +
                           "\" is not an IP address or CIDR block, like 10.0.0.0/8");
  }
  Cidr cidr;
  cidr.v6 = parsed.v6;
  cidr.address = parsed.bytes;
  const int max_bits = parsed.v6 ? 128 : 32;
  cidr.prefix_length = max_bits;
  if (slash != std::string_view::npos) {
    const std::string_view bits = text.substr(slash + 1);
    int value = -1;
    auto [end, error] = std::from_chars(bits.data(), bits.data() + bits.size(), value);
    if (bits.empty() || error != std::errc() || end != bits.data() + bits.size() || value < 0 ||
        value > max_bits) {
      return InvalidArgument("\"" + std::string(text.substr(0, 64)) +
                             "\" has an invalid prefix length; use 0 to " +
                             std::to_string(max_bits));
    }
    cidr.prefix_length = value;
  }
  Cidr masked = cidr;
  for (int bit = cidr.prefix_length; bit < max_bits; ++bit) {
    masked.address[static_cast<std::size_t>(bit / 8)] &=
        static_cast<std::uint8_t>(~(0x80 >> (bit % 8)));
  }
  if (masked.address != cidr.address) {
    return InvalidArgument("\"" + std::string(text.substr(0, 64)) +
                           "\" has host bits set below its prefix; did you mean " + masked.str() +
                           "?");
  }
  return cidr;
}

Result<std::vector<Cidr>> ParseCidrList(const std::vector<std::string>& list) {
  std::vector<Cidr> networks;
  networks.reserve(list.size());
  for (const auto& entry : list) {
    KW_ASSIGN_OR_RETURN(Cidr cidr, ParseCidr(entry));
    networks.push_back(cidr);
  }
  return networks;
}

bool CidrContains(const Cidr& network, std::string_view address) {
  Address parsed;
  if (!ParseAddress(address, parsed) || parsed.v6 != network.v6) return false;
  return PrefixMatches(parsed.bytes, network.address, network.prefix_length);
}

bool AddressAllowed(const std::vector<Cidr>& networks, std::string_view address) {
  if (networks.empty()) return true;
  for (const auto& network : networks) {
    if (CidrContains(network, address)) return true;
  }
  return false;
}

}  // namespace kw
