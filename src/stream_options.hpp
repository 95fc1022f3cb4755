// Checks of StreamOptions shared by the transport and the connecting functions.
#pragma once

#include <cstddef>
#include <cstdint>

#include "awith/stream.hpp"

namespace awith::detail {

// A size above PTRDIFF_MAX is a negative number converted to std::size_t (o.limit = -1): an
// unbounded buffer by accident, rejected like asyncio's ValueError for a limit <= 0.
inline const char* invalid_sizes(const StreamOptions& o) noexcept {
  constexpr auto max = static_cast<std::size_t>(PTRDIFF_MAX);
  if (o.limit == 0 || o.limit > max) return "StreamOptions::limit must be greater than zero";
  if (o.write_high_water > max || o.write_low_water > max)
    return "StreamOptions::write_high_water and write_low_water must not be negative";
  return nullptr;
}

}  // namespace awith::detail
