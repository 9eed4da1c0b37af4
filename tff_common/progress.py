"""Progress lines: printed and flushed at once (no TensorFlow here, so NumPy-only
modules can log without importing it).

Progress is a courtesy, never a reason to stop: when the reader of stdout goes
away (`train ... | head -1`, a closed terminal), the lines are dropped and the
run goes on to finish and save its results.
"""

import os
import sys

_stdout_closed = False


def print_flushed(line: str):
  """Prints `line` and flushes, so progress shows as it happens when stdout is
  a pipe or a file; once stdout's reader is gone, does nothing."""
  global _stdout_closed
  if _stdout_closed:
    return
  try:
    print(line, flush=True)
  except BrokenPipeError:
    _stdout_closed = True
    _discard_stdout()


def _discard_stdout():
  """Points file descriptor 1 at /dev/null, so that the lines still in
  `sys.stdout`'s buffer, any later `print` and Python's flush at exit go
  nowhere instead of raising BrokenPipeError again ("Exception ignored ...")."""
  try:
    fd = sys.stdout.fileno()
  except (AttributeError, OSError, ValueError):
    return  # not a real file (a test's capture): nothing can break at exit
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, fd)
  finally:
    os.close(devnull)
