// Where a task was created, for debug reports. SourceLocation needs a compiler builtin that
// clang 14 lacks with libstdc++, so awith carries its own (the builtins below exist on both).
#pragma once

namespace awith {

struct SourceLocation {
  const char* file = "";
  unsigned line = 0;
  const char* function = "";
  static constexpr SourceLocation current(const char* file = __builtin_FILE(), unsigned line = __builtin_LINE(),
                                          const char* function = __builtin_FUNCTION()) noexcept {
    return SourceLocation{file, line, function};
  }
};

}  // namespace awith
