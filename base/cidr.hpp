#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"

namespace kw {

// An IPv4 or IPv6 network in CIDR notation. A bare address is a /32 or /128 network.
struct Cidr {
  bool v6 = false;
  std::array<std::uint8_t, 16> address{};  // network address; IPv4 uses the first 4 bytes
  int prefix_length = 0;

  std::string str() const;
};

// Parses "10.0.0.0/8", "2001:db8::/32" or a bare address. invalid_argument names the text's
// problem; host bits below the prefix are refused, as a likely typo.
Result<Cidr> ParseCidr(std::string_view text);

// Parses each entry of `list`; the first bad entry's error.
Result<std::vector<Cidr>> ParseCidrList(const std::vector<std::string>& list);

// Returns whether `address` (the client address as the listener reports it, IPv4, IPv6 or
// IPv4-mapped IPv6) lies in `network`. An address that does not parse lies in no network.
bool CidrContains(const Cidr& network, std::string_view address);

// Returns whether `address` lies in any of `networks`; true when `networks` is empty.
bool AddressAllowed(const std::vector<Cidr>& networks, std::string_view address);

}  // namespace kw
