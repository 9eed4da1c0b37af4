"""A poisoning bank, in simulation only: what it sends and how the process lets it.

One bank of the federation (`TrainConfig.attack_bank`) attacks every round it
is sampled in; the other banks are honest. Two kinds of attack:

  label_flip  data poisoning: the bank trains honestly on its own rows with
              every label flipped (bad <-> good); the process is unchanged.
  scale       model poisoning: the bank multiplies its update (FedAvg/FedProx
              model delta, FedSGD gradient) by `attack_scale` (default 100)
              before it leaves the bank: the "boosting" attack of Bhagoji et
              al. 2019 and Bagdasaryan et al. 2020.
  sign_flip   model poisoning: the bank sends its update negated, times
              `attack_scale` if given (default 1). The plain -1 is the
              sign-flipping attack of the Byzantine-robustness literature
              (e.g. Li et al. 2019, RSA; Karimireddy et al. 2021); a larger
              magnitude (RSA's -4, or -100) is the same attack boosted, so
              `--attack_scale` sets it rather than hiding it in a default.

Model poisoning needs the client computation to behave differently on one
client, yet a TFF computation does not know which client it runs on: the
factor reaches each bank through its own data. `build_poisoned_client_work`
wraps any client work whose client data is `D` into one whose client data is
`<data=D, factor=float32*>`: the factor is a one-element dataset, because
TFF's templates accept only (structures of) sequences as client data
(`ClientWorkProcess` and `compose_learning_process` check it). An honest bank
gets factor 1, the attacker its factor; the update is multiplied on the
client, before the aggregator's client part (encoding, clipping) sees it.
The composed process is `tff_credit.algorithms.build_process(...,
poisoned_updates=True)`.
"""

import collections
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_common import checks
from tff_credit import config as config_lib

ATTACKS = config_lib.ATTACKS
# The attacks that change what the bank sends (the process must carry a factor).
MODEL_POISONING = ('scale', 'sign_flip')
DEFAULT_SCALE = {'scale': 100.0, 'sign_flip': 1.0}


def check_bank(train: config_lib.TrainConfig, bank_names: list[str]):
  """Refuses an `attack_bank` that is not one of the federation's banks."""
  if train.attack_bank is not None:
    checks.one_of('attack_bank', train.attack_bank, bank_names)


def is_model_poisoning(train: config_lib.TrainConfig) -> bool:
  """Whether the run's process must carry a per-bank update factor."""
  return train.attack in MODEL_POISONING


def factor(train: config_lib.TrainConfig) -> float:
  """The factor the attacker multiplies its update by (1.0 without model poisoning)."""
  if not is_model_poisoning(train):
    return 1.0
  magnitude = DEFAULT_SCALE[train.attack] if train.attack_scale is None else train.attack_scale
  return -float(magnitude) if train.attack == 'sign_flip' else float(magnitude)


def describe(train: config_lib.TrainConfig) -> Optional[str]:
  """One line naming the attack, e.g. 'bank_1 sent 100x-scaled updates' (None: no attack)."""
  if train.attack_bank is None:
    return None
  if train.attack == 'label_flip':
    return f'{train.attack_bank} trained on flipped labels (bad <-> good)'
  value = factor(train)
  if train.attack == 'scale':
    return f'{train.attack_bank} sent {value:g}x-scaled updates'
  if value == -1.0:
    return f'{train.attack_bank} sent sign-flipped updates'
  return f'{train.attack_bank} sent sign-flipped updates scaled {-value:g}x'


def flip_labels(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """The same `(x, y)` rows with y in {0, 1} replaced by 1 - y."""
  return dataset.map(lambda x, y: (x, 1.0 - y))


def client_data(dataset: tf.data.Dataset, update_factor: float) -> collections.OrderedDict:
  """One bank's client data for a process built with `poisoned_updates=True`."""
  return collections.OrderedDict(
      data=dataset, factor=tf.data.Dataset.from_tensors(np.float32(update_factor)))


def build_poisoned_client_work(
    inner: tff.learning.templates.ClientWorkProcess) -> tff.learning.templates.ClientWorkProcess:
  """`inner`, with each client's update multiplied by a factor from its data.

  With `inner.next` of federated type

    (<S@SERVER, W@CLIENTS, D@CLIENTS> -> <state=S@SERVER,
      result=ClientResult(U, float32)@CLIENTS, measurements=M@SERVER>)

  the returned process's `next` is

    (<S@SERVER, W@CLIENTS, <data=D, factor=float32*>@CLIENTS> -> (the same))

  On each client, `inner` runs on `data` (so its training, weighting and
  metrics are exactly `inner`'s), then every tensor of the update U is
  multiplied by the product of the `factor` dataset's elements (1 if it is
  empty); the update's weight is left as it is (an attacker reports its
  honest example count). State, measurements and hyperparameters are
  `inner`'s, so the composed learning process's state has the same structure
  as without the wrapper.
  """
  parameter = inner.next.type_signature.parameter
  state_type, weights_type, data_type = parameter[0], parameter[1], parameter[2]
  result_type = inner.next.type_signature.result.result.member
  factor_type = tff.SequenceType(tff.TensorType(np.float32))
  poisoned_data_type = tff.FederatedType(
      tff.StructWithPythonType([('data', data_type.member), ('factor', factor_type)],
                               collections.OrderedDict), tff.CLIENTS)

  @tff.tensorflow.computation(result_type, factor_type)
  def scale_update(result, factors):
    # A product, so an empty dataset means "honest" rather than a zero update.
    value = factors.reduce(tf.constant(1.0, tf.float32), lambda product, f: product * f)
    update = tf.nest.map_structure(lambda u: u * tf.cast(value, u.dtype), result.update)
    return tff.learning.templates.ClientResult(update=update, update_weight=result.update_weight)

  @tff.federated_computation(state_type, weights_type, poisoned_data_type)
  def next_fn(state, weights, client_data_value):
    output = inner.next(state, weights, client_data_value.data)
    result = tff.federated_map(scale_update, (output.result, client_data_value.factor))
    return tff.templates.MeasuredProcessOutput(
        state=output.state, result=result, measurements=output.measurements)

  return tff.learning.templates.ClientWorkProcess(
      inner.initialize, next_fn, get_hparams_fn=inner.get_hparams,
      set_hparams_fn=inner.set_hparams)
