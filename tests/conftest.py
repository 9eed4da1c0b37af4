"""Shared fixtures: one TFF execution context (and worker) per test session."""

from tff_common import quiet

# Before any test module is collected: collection imports TFF, and TF's import
# noise can only be filtered by the first import.
quiet.import_tensorflow()

import pytest


@pytest.fixture(scope='session', autouse=True)
def tff_context():
  """Installs TFF's C++ context with an owned worker; stopped at session end.

  Autouse, so that no test can reach TFF's own default context, whose worker
  would outlive pytest and hold the CI log pipe open. (The runtime rule: one
  install per process; here, for the tests.)
  """
  from tff_common import runtime
  worker = runtime.install_execution_context()
  yield worker
  runtime.shutdown()
