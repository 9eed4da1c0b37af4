"""What a cross-check leaves behind: CSV text, PNG plots, summary lines and files.

Runs on the Python orchestrator after the rounds. In an output directory:
  compare.csv, compare.png  the lockstep rows (`lockstep.RoundRow`): both losses, max |dw|, times
  async.csv, async.png      the sync vs async race (`numpy_fl.asynchronous.SyncAsyncRace`)
  summary.json              the run's configuration, timing, max |dw| and race summary
Every file is written atomically (`tff_common.files`).
"""

import csv
import dataclasses
import io
import os
from collections.abc import Sequence

from numpy_fl import asynchronous
from tff_common import files


def write_lockstep(rows: Sequence, output_dir: str, *, title: str):
  """compare.csv and compare.png."""
  files.write_text(os.path.join(output_dir, 'compare.csv'), rows_csv(rows))
  plot_losses(rows, os.path.join(output_dir, 'compare.png'), title=title)


def write_race(race: asynchronous.SyncAsyncRace, output_dir: str, *, title: str):
  """async.csv and async.png."""
  files.write_text(os.path.join(output_dir, 'async.csv'), race_csv(race))
  plot_race(race, os.path.join(output_dir, 'async.png'), title=title)


def write_summary(summary: dict, output_dir: str):
  files.write_json(os.path.join(output_dir, 'summary.json'), summary)


def rows_csv(rows: Sequence) -> str:
  """The lockstep rows (`lockstep.RoundRow`), one per round, with a header of their fields."""
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  fields = [f.name for f in dataclasses.fields(rows[0])]
  writer.writerow(fields)
  for row in rows:
    writer.writerow([_cell(getattr(row, f)) for f in fields])
  return out.getvalue()


def _cell(value) -> str:
  return f'{value:.9g}' if isinstance(value, float) else str(value)


def plot_losses(rows: Sequence, path: str, *, title: str):
  """The two loss curves on one axis (they should lie on top of each other)."""
  plt = _pyplot()
  fig, (ax_loss, ax_diff) = plt.subplots(1, 2, figsize=(11, 4))
  rounds = [r.round_num for r in rows]
  ax_loss.plot(rounds, [r.numpy_loss for r in rows], 'o-', ms=3, label='NumPy')
  ax_loss.plot(rounds, [r.tff_loss for r in rows], 'x--', ms=5, label='TFF')
  ax_loss.set_xlabel('round')
  ax_loss.set_ylabel('training loss (all clients)')
  ax_loss.set_title(title)
  ax_loss.legend()
  # Round 0 is an exact copy (difference 0), which a log axis cannot show.
  diffs = [(r.round_num, r.max_abs_diff) for r in rows if r.max_abs_diff > 0]
  if diffs:
    ax_diff.semilogy(*zip(*diffs), '.-')
  ax_diff.set_xlabel('round')
  ax_diff.set_ylabel('max |w_numpy - w_tff|')
  ax_diff.set_title('parameter difference')
  fig.tight_layout()
  files.save_figure(fig, path, dpi=120)
  plt.close(fig)


def race_csv(race: asynchronous.SyncAsyncRace) -> str:
  """Both protocols' loss after every server step, against simulated time."""
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  writer.writerow(['protocol', 'time', 'server_steps', 'client_updates', 'loss'])
  for trace in (race.sync, race.asynchronous):
    writer.writerow([trace.protocol, 0, 0, 0, _cell(trace.initial_loss)])
    for p in trace.points:
      writer.writerow([trace.protocol, _cell(p.time), p.server_steps, p.client_updates,
                       _cell(p.loss)])
  return out.getvalue()


def plot_race(race: asynchronous.SyncAsyncRace, path: str, *, title: str):
  """Loss against simulated wall-clock time, sync vs async, with the target."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(7, 4))
  for trace, style in ((race.sync, 'o-'), (race.asynchronous, '.-')):
    times = [0.0] + [p.time for p in trace.points]
    losses = [trace.initial_loss] + [p.loss for p in trace.points]
    ax.plot(times, losses, style, ms=3, label=trace.protocol)
  ax.axhline(race.target_loss, color='gray', ls=':', label='target loss')
  ax.set_yscale('log')
  ax.set_xlabel('simulated wall-clock time')
  ax.set_ylabel('training loss (all clients)')
  ax.set_title(title)
  ax.legend()
  fig.tight_layout()
  files.save_figure(fig, path, dpi=120)
  plt.close(fig)


def race_summary_lines(summary: dict) -> list[str]:
  """`SyncAsyncRace.summary()` as lines: when each protocol reached the target."""
  lines = [f'target loss {summary["target_loss"]:.6f}']
  for protocol in ('sync', 'async'):
    s = summary[protocol]
    if s['time_to_target'] is None:
      reached = f'not reached by time {s["final_time"]:.2f} (final loss {s["final_loss"]:.6f})'
    else:
      reached = (f'reached at simulated time {s["time_to_target"]:.2f} after '
                 f'{s["server_steps_to_target"]} server steps, '
                 f'{s["client_updates_to_target"]} client updates')
    lines.append(f'{protocol:>5}: {reached}')
  if summary['speedup'] is not None:
    lines.append(f'async reaches the target {summary["speedup"]:.2f}x sooner in simulated time')
  return lines


def _pyplot():
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  return plt
