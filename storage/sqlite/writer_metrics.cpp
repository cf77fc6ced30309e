#include "storage/sqlite/writer_metrics.hpp"

#include <array>
#include <cstdint>

namespace kw::storage::sqlite::detail {
namespace {

// Group sizes in powers of two, past the default max_batches_per_commit (256).
constexpr std::array<std::uint64_t, 11> kBatchBounds = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512,
                                                        1024};

}  // namespace

WriterMetrics& WriterMetrics::Global() {
  static WriterMetrics metrics;
  return metrics;
}

WriterMetrics::WriterMetrics()
    : commit_duration(metrics::Registry::Global(), "keyward_storage_commit_duration_seconds",
                      "Time a write batch spends in Commit: waiting for the writer thread and "
                      "its group's transaction.",
                      metrics::kLatencyBoundsNanos, metrics::kNanosPerSecond),
      transaction_duration(metrics::Registry::Global(),
                           "keyward_storage_transaction_duration_seconds",
                           "Time of one committed group-commit transaction, from BEGIN "
                           "IMMEDIATE until COMMIT returned (synchronous=FULL: durable).",
                           metrics::kLatencyBoundsNanos, metrics::kNanosPerSecond),
      transaction_batches(metrics::Registry::Global(), "keyward_storage_transaction_batches",
                          "Write batches (one per request or internal write) applied by one "
                          "committed transaction.",
                          kBatchBounds, 1.0),
      batches_rejected(metrics::Registry::Global(), "keyward_storage_batches_rejected_total",
                       "Write batches not applied: aborted when an expected value had "
                       "changed, error for any other failure.",
                       metrics::LabelGrid{{{"reason", {"aborted", "error"}}}}) {}

}  // namespace kw::storage::sqlite::detail
