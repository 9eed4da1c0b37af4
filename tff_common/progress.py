"""Progress lines: printed and flushed at once (no TensorFlow here, so NumPy-only
modules can log without importing it)."""


def print_flushed(line: str):
  """Prints `line` and flushes, so progress shows as it happens when stdout is
  a pipe or a file."""
  print(line, flush=True)
