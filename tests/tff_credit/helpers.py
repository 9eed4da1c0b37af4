"""Small synthetic loan tables and a 3-bank training run, shared by the tff_credit tests."""

import numpy as np

from tff_credit import config
from tff_credit import data


def write_loans_csv(path, rows=600, seed=0, extra_lines=()):
  """A CSV with an id, two numeric columns (income with missing values), a
  categorical column and a 'default'/'paid' label that depends on them."""
  rng = np.random.default_rng(seed)
  income = rng.lognormal(5, 0.5, rows)
  age = rng.integers(20, 70, rows)
  region = rng.choice(['north', 'south', 'east'], rows)
  logit = -1.0 - 1.2 * (np.log(income) - 5) / 0.5 + 0.8 * (region == 'south') - 0.02 * (age - 45)
  bad = rng.random(rows) < 1 / (1 + np.exp(-logit))
  lines = ['id,income,age,region,outcome']
  for i in range(rows):
    income_text = '' if i % 17 == 0 else f'{income[i]:.2f}'  # some missing values
    lines.append(f'{i},{income_text},{age[i]},{region[i]},{"default" if bad[i] else "paid"}')
  lines.extend(extra_lines)
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return path


def load(path, **kwargs):
  return data.load_table(data=str(path), label_column='outcome', positive_label='default',
                         drop_columns=['id'], **kwargs)


# The flags and configs of the small training run several tests share.
CSV_FLAGS = ['--label_column=outcome', '--positive_label=default', '--drop_columns=id']
ALGORITHM = config.AlgorithmConfig(client_lr=0.2)


def data_config(path, **overrides) -> config.DataConfig:
  return config.DataConfig(**{**dict(data=str(path), label_column='outcome',
                                     positive_label='default', drop_columns=['id'], banks=3,
                                     partition='iid', seed=1), **overrides})


def train_config(rounds) -> config.TrainConfig:
  return config.TrainConfig(rounds=rounds, batch_size=32, seed=1)


def train(path, output_dir, rounds):
  from tff_credit import training
  return training.train(data=data_config(path), algorithm=ALGORITHM,
                        train_config=train_config(rounds), output_dir=str(output_dir),
                        log=lambda line: None)
