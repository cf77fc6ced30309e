#pragma once

#include "base/metrics.hpp"

namespace kw::storage::sqlite::detail {

// The writer's metric families in the process-wide registry, for sys/metrics.
struct WriterMetrics {
  // Returns the families, registering them on the first call.
  static WriterMetrics& Global();

  // Per batch: from Commit's call until its group's transaction ended, queueing included.
  metrics::HistogramFamily commit_duration;
  // Per committed transaction: BEGIN IMMEDIATE until COMMIT returned (durable).
  metrics::HistogramFamily transaction_duration;
  // Per committed transaction: the batches it applied (its group size).
  metrics::HistogramFamily transaction_batches;
  // Batches not applied, by reason: "aborted" (an Expect failed) or "error".
  metrics::CounterFamily batches_rejected;

 private:
  WriterMetrics();
};

}  // namespace kw::storage::sqlite::detail
