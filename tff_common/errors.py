"""The errors a user sees as one line (no traceback), and the exit codes they get.

Exit codes of every binary run through `tff_common.cli.run`: 0 done; 1 an
internal error (a bug: its traceback is kept); 2 bad input or a flag
(`InputError`, `TrainingFailed`); 130 / 143 interrupted by SIGINT / SIGTERM
(`Interrupted`).
"""


class InputError(ValueError):
  """Raised with a message that names the file, line or column and what was expected.

  Binaries run through `tff_common.cli.run` print it as one line and exit 2,
  without a traceback.
  """


class TrainingFailed(InputError):
  """A round whose result cannot be trusted (a non-finite update or model),
  refused before it is checkpointed; the message names the round and what to
  change. An `InputError` because the cure is in the user's data or flags."""


class Interrupted(SystemExit):
  """SIGINT or SIGTERM: `message` is the one line to print, `exit_code` 130 or 143.

  A `SystemExit` (with `code` = `exit_code`), not an `Exception`, on purpose:
  `except Exception` blocks do not swallow it, `finally` blocks and `atexit`
  (which stops the TFF worker) run, and a library caller that does not catch
  it exits with the code and no traceback, as a `SystemExit` would.
  `tff_common.cli.run` prints `message` first.
  """

  def __init__(self, message: str, exit_code: int):
    super().__init__(exit_code)
    self.message = message
    self.exit_code = exit_code

  def __str__(self):
    return self.message
