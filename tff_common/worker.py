"""A TFF worker for an orchestrator on another machine, and its health check.

    python -m tff_common.worker --port=8000 [--max_concurrent_computation_calls=N] [--log=FILE]
    python -m tff_common.worker --check=HOST:8000[,HOST:8001...]

Serving (`--port`): runs TFF's C++ `worker_binary` on the port, on every
interface of this host, with plain (insecure) gRPC; prints `ready: ...` once it
answers a health check, then waits. Its output goes to `--log` or to this
process's stdout/stderr. SIGTERM or Ctrl-C stops it (exit 143 / 130); a worker
that exits on its own is one line, exit 2. The orchestrator connects with
`--workers=HOST:8000,...` (docs/DEPLOYMENT.md: where to run it, what crosses
the wire, how to keep it private).

Checking (`--check`): exits 0 when every listed worker answers a TFF request
within 10 s (one `HOST:PORT: ready` line each), else 2 with one line naming
the ones that do not.
"""

from absl import flags

from tff_common import checks
from tff_common import cli  # before TF: imports it quietly
from tff_common import errors
from tff_common import progress
from tff_common import runtime

flags.DEFINE_integer('port', None, 'Serve a TFF worker on this port (all interfaces).')
flags.DEFINE_integer('max_concurrent_computation_calls', -1,
                     'Client computations the worker runs at once (nonpositive: no bound).')
flags.DEFINE_string('log', None, "The worker's output goes to this file (default: stdout/stderr).")
flags.DEFINE_list('check', None, 'Instead of serving: health-check these host:port workers.')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  if (FLAGS.port is None) == (FLAGS.check is None):
    checks.fail('port', FLAGS.port, 'a port to serve on, or --check=HOST:PORT,... (not both)')
  if FLAGS.check is not None:
    failures = runtime.check_workers(FLAGS.check)
    for address in FLAGS.check:
      if not any(line.startswith(f'{address}: ') for line in failures):
        progress.print_flushed(f'{address}: ready')
    if failures:
      raise errors.InputError('not answering: ' + '; '.join(failures))
    return
  runtime.serve(port=FLAGS.port,
                max_concurrent_computation_calls=FLAGS.max_concurrent_computation_calls,
                log_path=FLAGS.log, log=progress.print_flushed)


if __name__ == '__main__':
  cli.run(main, federated=False)
