// Async context managers, everything in one include:
//   async_with.hpp         the protocol (aenter/aexit) and async_with;
//   generator_manager.hpp  AsyncContextManager, generator-based managers (@asynccontextmanager);
//   contextlib.hpp         nullcontext, aclosing, suppress, raise_from, try_finally.
// AsyncExitStack is in exit_stack.hpp.
#pragma once

#include "awith/async_with.hpp"
#include "awith/contextlib.hpp"
#include "awith/generator_manager.hpp"
