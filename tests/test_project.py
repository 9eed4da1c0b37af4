"""The project as a whole: the lock is what is installed, the linter passes, and
the module structure ARCHITECTURE.md describes holds (no import cycle, the
trainers imported by binaries only, device and engine code free of TF)."""

import ast
import importlib.metadata
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ('tff_common', 'tff_credit', 'tff_rec', 'numpy_fl')
BINARIES = {'train', 'evaluate', 'recommend', 'demo', 'study', '__main__'}


def test_installed_versions_are_the_locked_ones():
  locked = {}
  for line in (ROOT / 'requirements-lock.txt').read_text().splitlines():
    line = line.split('#')[0].strip()
    if '==' in line:
      name, version = line.split('==')
      locked[name.lower().replace('_', '-')] = version
  for package in ('tensorflow', 'tensorflow-federated', 'jax', 'jaxlib', 'numpy', 'scipy', 'ruff'):
    assert importlib.metadata.version(package) == locked[package], package
  assert locked['tensorflow'] == '2.14.1' and locked['tensorflow-federated'] == '0.87.0'


def test_linter_passes():
  """ruff with the rules of pyproject.toml, over every Python file of the checkout."""
  result = subprocess.run([sys.executable, '-m', 'ruff', 'check', '--no-cache',
                           '--output-format=concise', str(ROOT)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
  assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def _module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(ROOT).with_suffix('').parts)
  if parts[-1] == '__init__':
    parts.pop()
  return '.'.join(parts)


def _imports() -> dict[str, set[str]]:
  """Project module -> the project modules it imports (anywhere in the file)."""
  modules = {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob('*.py')}
  graph = {}
  for name, path in modules.items():
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        candidates = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        candidates = [f'{node.module}.{alias.name}' for alias in node.names] + [node.module]
      else:
        continue
      for candidate in candidates:
        if candidate in modules:
          targets.add(candidate)
          break
    graph[name] = targets - {name}
  return graph


def test_no_import_cycle():
  graph = _imports()
  visiting, done = [], set()

  def visit(module):
    if module in done:
      return
    if module in visiting:
      cycle = visiting[visiting.index(module):] + [module]
      pytest.fail('import cycle: ' + ' -> '.join(cycle))
    visiting.append(module)
    for target in sorted(graph[module]):
      visit(target)
    visiting.pop()
    done.add(module)

  for module in sorted(graph):
    visit(module)


def test_only_binaries_import_a_trainer():
  for module, targets in _imports().items():
    if module.rsplit('.', 1)[-1] in BINARIES:
      continue
    trainers = {t for t in targets if t.endswith('.training')}
    assert not trainers, f'{module} imports {trainers}; only binaries may'


@pytest.mark.parametrize('modules,forbidden', [
    # On-device code: a device needs the released item parameters and its own ratings.
    (['tff_rec.reconstruction', 'tff_rec.personalization', 'tff_rec.topn', 'tff_rec.params', 'tff_rec.ranking'],
     ['tensorflow', 'tensorflow_federated', 'tff_rec.training', 'tff_rec.report',
      'tff_rec.clients', 'tff_rec.algorithms', 'tff_common.program', 'tff_common.runtime']),
    # The settings of a run are plain data.
    (['tff_rec.config', 'tff_credit.config', 'tff_common.run_dir', 'tff_common.progress'],
     ['tensorflow', 'tensorflow_federated']),
])
def test_modules_load_without(modules, forbidden):
  code = (f'import sys\nimport {", ".join(modules)}\n'
          f'print(sorted(m for m in {forbidden!r} if m in sys.modules))')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == '[]'
