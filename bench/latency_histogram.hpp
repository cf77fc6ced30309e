// A log-linear latency histogram: exact below 128 ns, then 128 linear buckets per power of
// two, so each bucket is at most 1/128 (0.8%) of its value wide. Values are nanoseconds from
// 1 ns up to 2^36 ns (68.7 s); larger values count in the last bucket. The exact maximum is
// kept apart. Percentiles return the bucket midpoint. One per thread; Merge combines them.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

namespace kw::bench {

class LatencyHistogram {
 public:
  LatencyHistogram() : counts_(kBuckets, 0) {}

  void Record(std::uint64_t nanoseconds) {
    nanoseconds = std::clamp<std::uint64_t>(nanoseconds, 1, kLargest);
    ++counts_[BucketOf(nanoseconds)];
    ++total_;
    max_ = std::max(max_, nanoseconds);
  }

  void Merge(const LatencyHistogram& other) {
    for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    max_ = std::max(max_, other.max_);
  }

  std::uint64_t count() const { return total_; }
  std::uint64_t max() const { return max_; }

  // Returns the nearest-rank percentile: the smallest recorded value that at least `fraction`
  // of the values do not exceed, as its bucket's midpoint capped at the maximum; 0 when empty.
  std::uint64_t Percentile(double fraction) const {
    if (total_ == 0) return 0;
    auto rank = static_cast<std::uint64_t>(std::ceil(fraction * static_cast<double>(total_)));
    rank = std::clamp<std::uint64_t>(rank, 1, total_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(Midpoint(i), max_);
    }
    return max_;
  }

 private:
  static constexpr unsigned kSubBits = 7;  // 128 sub-buckets per power of two
  static constexpr std::uint64_t kSubCount = 1u << kSubBits;
  static constexpr unsigned kTopBit = 36;
  static constexpr std::uint64_t kLargest = (std::uint64_t{1} << kTopBit) - 1;
  static constexpr std::size_t kBuckets = kSubCount + (kTopBit - kSubBits) * kSubCount;

  static std::size_t BucketOf(std::uint64_t value) {
    if (value < kSubCount) return value;
    unsigned exponent = std::bit_width(value) - 1;  // 2^exponent <= value
    unsigned shift = exponent - kSubBits;
    return kSubCount + shift * kSubCount + ((value >> shift) - kSubCount);
  }

  static std::uint64_t Midpoint(std::size_t bucket) {
    if (bucket < kSubCount) return bucket;
    std::size_t shift = (bucket - kSubCount) / kSubCount;
    std::uint64_t sub = (bucket - kSubCount) % kSubCount;
    std::uint64_t low = (kSubCount + sub) << shift;
    return low + ((std::uint64_t{1} << shift) >> 1);
  }

  std::vector<std::uint64_t> counts_;
  std::uint64_t total_ = 0;
  std::uint64_t max_ = 0;
};

}  // namespace kw::bench
