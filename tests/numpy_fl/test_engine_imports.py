"""The NumPy engine imports no TensorFlow and none of the project's TFF packages."""

import json
import pathlib
import subprocess
import sys

ENGINE_MODULES = ('numpy_fl', 'numpy_fl.models', 'numpy_fl.client', 'numpy_fl.server',
                  'numpy_fl.algorithms', 'numpy_fl.asynchronous', 'numpy_fl.synthetic',
                  'numpy_fl.dp_sgd')
FORBIDDEN = ('tensorflow', 'tensorflow_federated', 'keras', 'tff_common', 'tff_credit', 'tff_rec')
REPO = pathlib.Path(__file__).resolve().parents[2]


def _loaded_forbidden(modules) -> list[str]:
  """The FORBIDDEN packages in `sys.modules` after importing `modules` in a fresh interpreter."""
  code = (f'import json, sys\n'
          f'for m in {list(modules)!r}: __import__(m)\n'
          f'print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {FORBIDDEN!r})))')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
  assert result.returncode == 0, result.stdout + result.stderr
  return json.loads(result.stdout)


def test_importing_the_engine_loads_no_tensorflow_and_no_tff_packages():
  assert _loaded_forbidden(ENGINE_MODULES) == []


def test_the_crosscheck_package_imports_nothing_eagerly():
  assert _loaded_forbidden(['numpy_fl.crosscheck']) == []
