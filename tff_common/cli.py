"""What every binary does around its `main`: quiet logs, one-line input errors.

Import this module first in a binary, before anything that imports TensorFlow:
importing it imports TF and TFF quietly (`quiet.import_tensorflow`), which only
works before TF's C++ core has started logging. Then, at the bottom:

    if __name__ == '__main__':
      cli.run(main)
"""

import sys

from tff_common import quiet

quiet.import_tensorflow()

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import logging  # pylint: disable=g-import-not-at-top,wrong-import-position

from tff_common import errors  # pylint: disable=g-import-not-at-top,wrong-import-position


def run(main):
  """`app.run(main)`, with absl INFO lines off and `InputError` as one line + exit 2."""

  def guarded(argv):
    # absl turns on INFO logging after parsing flags; keep warnings and errors
    # unless the user asked for more with --verbosity.
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)
    try:
      return main(argv)
    except errors.InputError as e:
      print(f'error: {e}', file=sys.stderr, flush=True)
      sys.exit(2)

  app.run(guarded)
