"""The error for bad user input (a file, a row, a flag value)."""


class InputError(ValueError):
  """Raised with a message that names the file, line or column and what was expected.

  Binaries run through `tff_common.cli.run` print it as one line and exit 2,
  without a traceback.
  """
