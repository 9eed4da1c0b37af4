"""tff_common.progress: lines show at once, and a reader that goes away stops nothing."""

import pathlib
import subprocess
import sys

from tff_common import progress

ROOT = pathlib.Path(__file__).resolve().parents[2]

_PRINTER = '''
import sys
from tff_common import progress
progress.print_flushed('first')
sys.stdin.readline()  # the reader has gone once the test says so
for i in range(100):
  progress.print_flushed(f'line {i}')
print('a plain print after the pipe closed')
open(sys.argv[1], 'w').write('finished')
'''


def test_print_flushed_prints_a_line(capsys):
  progress.print_flushed('round 1/3  loss 0.5')
  assert capsys.readouterr().out == 'round 1/3  loss 0.5\n'


def test_a_closed_stdout_is_dropped_and_the_program_goes_on(tmp_path):
  marker = tmp_path / 'finished'
  process = subprocess.Popen([sys.executable, '-c', _PRINTER, str(marker)], cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
  assert process.stdout.readline() == b'first\n'
  process.stdout.close()  # `| head -1`
  process.stdin.close()
  stderr = process.stderr.read()
  assert process.wait(timeout=30) == 0, stderr.decode()
  assert stderr == b''  # no BrokenPipeError, not even Python's "Exception ignored" at exit
  assert marker.read_text() == 'finished'
