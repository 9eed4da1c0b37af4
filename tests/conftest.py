"""Shared fixtures: one TFF execution context (and worker) per test session."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest  # pylint: disable=g-import-not-at-top


@pytest.fixture(scope='session', autouse=True)
def tff_context():
  """Installs TFF's C++ context with an owned worker; stopped at session end.

  Autouse, so that no test can reach TFF's own default context, whose worker
  would outlive pytest and hold the CI log pipe open.
  """
  from tff_common import quiet  # pylint: disable=g-import-not-at-top
  quiet.import_tensorflow()
  from tff_common import runtime  # pylint: disable=g-import-not-at-top
  worker = runtime.install_execution_context()
  yield worker
  runtime.shutdown()
