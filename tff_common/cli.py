"""What every binary does around its `main`: quiet logs, one-line input errors.

Usage, at the bottom of a binary module:

    if __name__ == '__main__':
      cli.run(main)
"""

import sys

from absl import app

from tff_common import errors
from tff_common import quiet


def run(main):
  """`app.run(main)`, with TF quieted and `InputError` as one line + exit 2."""
  quiet.quiet_tensorflow_logs()

  def guarded(argv):
    try:
      return main(argv)
    except errors.InputError as e:
      print(f'error: {e}', file=sys.stderr, flush=True)
      sys.exit(2)

  app.run(guarded)
