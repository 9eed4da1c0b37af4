"""Where progress lines go by default: stdout, flushed line by line (pipes, files, CI)."""


def log_line(line: str):
  print(line, flush=True)
