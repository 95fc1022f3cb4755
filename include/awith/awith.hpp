// Everything awith offers, in one include.
#pragma once

#include "awith/awaitable.hpp"
#include "awith/cancel_scope.hpp"
#include "awith/context.hpp"
#include "awith/errors.hpp"
#include "awith/exception_group.hpp"
#include "awith/exit_stack.hpp"
#include "awith/gather.hpp"
#include "awith/io_wait.hpp"
#include "awith/loop.hpp"
#include "awith/run.hpp"
#include "awith/runtime.hpp"
#include "awith/task.hpp"
#include "awith/task_group.hpp"
#include "awith/tasks.hpp"
#include "awith/thread.hpp"
#include "awith/timeout.hpp"
