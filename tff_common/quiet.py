"""Quiets TensorFlow's start-up log noise in binaries, without hiding errors.

`quiet_tensorflow_logs` must run before TensorFlow is imported, because the C++
log level is read once, at import. Level 2 drops INFO and WARNING lines from
TF's C++ core (TensorRT and CPU-feature screens); ERROR and FATAL still print.

TF 2.14 also prints three ERROR lines at import on every CPU-only machine
("Unable to register cuDNN/cuFFT/cuBLAS factory": the XLA plugins register
twice, a known TF 2.14 defect with no effect). Raising the level to 3 would hide
real errors, so instead `import_tensorflow` captures the stderr of the import
alone and passes through every line except exactly those.

TFF's secure sum (`--aggregator=secure`) builds `tf.debugging.assert_*` ops
in graphs that never run them, and TF's `tf_should_use` logs each one as an
ERROR ("Object was never used", a dozen lines with a stack). Those records
alone are dropped from the 'tensorflow' logger (`_NeverUsedFilter`).
"""

import logging
import os
import re
import sys
import tempfile
import warnings

_KNOWN_IMPORT_NOISE = re.compile(
    r'Unable to register (cuDNN|cuFFT|cuBLAS) factory: Attempting to register '
    r'factory for plugin \w+ when one has already been registered')


class _NeverUsedFilter(logging.Filter):
  """Drops TF's 'Object was never used' reports (see the module docstring)."""

  def filter(self, record: logging.LogRecord) -> bool:
    return 'Object was never used' not in str(record.msg)


_NEVER_USED = _NeverUsedFilter()


def quiet_tensorflow_logs():
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  warnings.filterwarnings('ignore', category=DeprecationWarning)
  warnings.filterwarnings('ignore', category=FutureWarning)
  tf_logger = logging.getLogger('tensorflow')
  tf_logger.setLevel(logging.ERROR)
  if _NEVER_USED not in tf_logger.filters:
    tf_logger.addFilter(_NEVER_USED)


def import_tensorflow():
  """Imports TF and TFF quietly; returns (tf, tff)."""
  quiet_tensorflow_logs()
  if 'tensorflow' in sys.modules:
    import tensorflow as tf
    import tensorflow_federated as tff
    return tf, tff
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      import tensorflow as tf
      import tensorflow_federated as tff
    finally:
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      for line in captured.read().decode('utf-8', 'replace').splitlines():
        if not _KNOWN_IMPORT_NOISE.search(line):
          print(line, file=sys.stderr)
  # TFF installs its own local context at import, holding a worker manager
  # whose __del__ fails when it only runs at interpreter exit (a traceback
  # after `--help` or a flag error). The project installs its runtime itself
  # (`tff_common.runtime`); until then, running a federated computation is an
  # error rather than a silent start of TFF's unowned worker.
  from tensorflow_federated.python.core.impl.context_stack import set_default_context
  set_default_context.set_no_default_context()
  from absl import logging as absl_logging
  absl_logging.set_verbosity(absl_logging.WARNING)
  tf.get_logger().setLevel(logging.ERROR)
  return tf, tff
