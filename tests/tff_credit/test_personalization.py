"""tff_credit.personalization: fine-tuning and the mixture, chosen on a bank's validation rows."""

import numpy as np
import pytest

from tff_common import errors
from tff_credit import metrics
from tff_credit import model as model_lib
from tff_credit import personalization

FEATURES = 4
# The federated model scores on feature 0; the bank's own relation is on feature 1.
GLOBAL = [np.array([[2.0], [0.0], [0.0], [0.0]], np.float32), np.array([0.0], np.float32)]
LOCAL = [np.array([[0.0], [2.0], [0.0], [0.0]], np.float32), np.array([0.0], np.float32)]


def rows(n, *, on, seed):
  """n rows whose label follows a logistic relation on feature `on`."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, FEATURES)).astype(np.float32)
  y = (rng.random(n) < 1 / (1 + np.exp(-3 * x[:, on]))).astype(np.float32)
  return x, y


def tune(val, *, max_epochs=3, seed=0, weights=GLOBAL):
  x, y = rows(300, on=1, seed=1)
  return personalization.finetune(weights=weights, model='logreg', x_train=x, y_train=y,
                                  x_val=val[0], y_val=val[1], max_epochs=max_epochs,
                                  learning_rate=0.1, batch_size=32, seed=seed)


def test_finetune_improves_a_bank_whose_relation_differs():
  val = rows(200, on=1, seed=2)
  tuned = tune(val)
  global_auc = metrics.auc(val[1], model_lib.predict(model='logreg', weights=GLOBAL,
                                                     features=val[0]))
  assert global_auc < 0.6  # the federated model misses this bank's relation
  assert tuned.epochs >= 1 and tuned.fallback is None
  assert tuned.val_auc == pytest.approx(metrics.auc(val[1], tuned.predict(val[0])))
  assert tuned.val_auc > global_auc + 0.2
  assert tuned.describe().startswith(f'epochs {tuned.epochs} (val AUC {tuned.val_auc:.4f}')
  # Deterministic for a seed.
  np.testing.assert_array_equal(tune(val).weights[0], tuned.weights[0])


def test_finetune_epochs_are_chosen_on_validation():
  # The same training rows (the bank's relation); validation rows that follow
  # the federated model's relation: fine-tuning only hurts there, so 0 epochs.
  kept = tune(rows(200, on=0, seed=3))
  assert kept.epochs == 0 and kept.fallback is None
  for got, want in zip(kept.weights, GLOBAL):
    np.testing.assert_array_equal(got, want)
  # A federated model that already has the bank's relation: no epoch beats it
  # on AUC by more than ties, and ties keep the fewer epochs.
  assert tune(rows(200, on=1, seed=2), weights=LOCAL).epochs <= 1


def test_mixture_end_points_are_the_two_models_exactly():
  x, _ = rows(50, on=0, seed=4)
  def mixed(a):
    return personalization.Mixture(model='logreg', global_weights=GLOBAL, local_weights=LOCAL,
                                   a=a)
  np.testing.assert_array_equal(mixed(1.0).predict(x),
                                model_lib.predict(model='logreg', weights=GLOBAL, features=x))
  np.testing.assert_array_equal(mixed(0.0).predict(x),
                                model_lib.predict(model='logreg', weights=LOCAL, features=x))
  # The same for the MLP.
  mlp = [model_lib.build_keras_model(model='mlp', num_features=FEATURES, seed=s).get_weights()
         for s in (1, 2)]
  both = personalization.Mixture(model='mlp', global_weights=mlp[0], local_weights=mlp[1], a=1.0)
  np.testing.assert_array_equal(both.predict(x),
                                model_lib.predict(model='mlp', weights=mlp[0], features=x))
  # In between, for logistic regression: the model of the interpolated weights.
  halfway = [0.5 * fed + 0.5 * own for fed, own in zip(GLOBAL, LOCAL)]
  np.testing.assert_allclose(mixed(0.5).predict(x),
                             model_lib.predict(model='logreg', weights=halfway, features=x),
                             rtol=1e-5)


def test_mixture_is_chosen_on_validation():
  def choose(on):
    x_val, y_val = rows(300, on=on, seed=5)
    return personalization.mixture(global_weights=GLOBAL, local_weights=LOCAL, model='logreg',
                                   x_val=x_val, y_val=y_val, steps=10, se=0.0)
  assert choose(on=0).a >= 0.8   # the federated relation: close to the federated model
  local = choose(on=1)
  assert local.a <= 0.2 and local.describe() == f'a={local.a:g} (val AUC {local.val_auc:.4f})'
  assert local.summary()['best_a'] == local.a


def test_the_one_standard_error_rule_keeps_the_federated_end_on_few_rows():
  aucs = [0.80, 0.85, 0.90]  # 0 epochs (or a = 1) first
  few = np.array([1] * 5 + [0] * 5)
  many = np.array([1] * 500 + [0] * 500)
  # On 10 rows the standard error of 0.90 is about 0.1: 0.80 is within it.
  assert metrics.auc_standard_error(0.9, 5, 5) > 0.1
  choice = personalization.choose(aucs, few, se=1.0)
  assert (choice.index, choice.best_index, choice.val_auc) == (0, 2, 0.80)
  kept = personalization.Mixture(model='logreg', global_weights=GLOBAL, local_weights=LOCAL, a=1.0,
                                 choice=choice, steps=2)
  tolerance = metrics.auc_standard_error(0.9, 5, 5)
  assert kept.describe() == f'a=1 (val AUC 0.8000; a=0 had 0.9000, within 1 s.e. = {tolerance:.4f})'
  assert personalization.choose(aucs, many, se=1.0).index == 2
  assert personalization.choose(aucs, few, se=0.0).index == 2
  assert personalization.choose([0.9, 0.9], few, se=0.0).index == 0  # ties: the federated end


def test_logits_are_the_models_log_odds():
  x, _ = rows(40, on=0, seed=6)
  for model in ('logreg', 'mlp'):
    keras_model = model_lib.build_keras_model(model=model, num_features=FEATURES, seed=3)
    weights = [w + 0.1 for w in keras_model.get_weights()]  # logreg starts at zeros
    p = model_lib.predict(model=model, weights=weights, features=x)
    z = personalization.logits(model=model, weights=weights, features=x)
    np.testing.assert_allclose(1 / (1 + np.exp(-z)), p, rtol=1e-5)


@pytest.mark.parametrize('y_val,reason', [
    (np.zeros(12, np.float32), '12 validation rows are all "good"'),
    (np.zeros(0, np.float32), 'no validation rows')])
def test_no_choice_on_validation_falls_back_to_the_federated_model(y_val, reason):
  x_val = np.zeros((len(y_val), FEATURES), np.float32)
  config = personalization.PersonalizeConfig()
  train = rows(100, on=1, seed=7)
  for method in personalization.METHODS:
    personal = personalization.personalize(
        method, global_weights=GLOBAL, local_weights=LOCAL, model='logreg', train=train,
        val=(x_val, y_val), config=config, seed=0)
    assert reason in personal.describe()
    assert 'fallback to the federated model' in personal.describe()
    assert personal.summary()['fallback'] and personal.summary()['val_auc'] is None
    np.testing.assert_array_equal(personal.predict(train[0]),
                                  model_lib.predict(model='logreg', weights=GLOBAL,
                                                    features=train[0]))
    if not len(y_val):  # a run without a validation split
      assert personalization.personalize(
          method, global_weights=GLOBAL, local_weights=LOCAL, model='logreg', train=train,
          val=None, config=config, seed=0).describe() == personal.describe()
  assert personalization.finetune(weights=GLOBAL, model='logreg', x_train=train[0],
                                  y_train=train[1], x_val=x_val, y_val=y_val, max_epochs=3,
                                  learning_rate=0.1, batch_size=32, seed=0).epochs == 0


def test_config():
  assert personalization.PersonalizeConfig(personalize=['none']).methods == ()
  assert personalization.parse_methods('finetune') == ('finetune',)
  assert personalization.parse_methods(['mixture', 'finetune']) == ('mixture', 'finetune')
  for bad, message in (('finetune,bogus', "--personalize='finetune,bogus'"),
                       ('finetune,finetune', 'each once'), ('finetune,,mixture', 'each once'),
                       ('none,mixture', 'a comma list of finetune, mixture'),
                       ('', "'none' or a comma list")):
    with pytest.raises(errors.InputError, match=message):
      personalization.parse_methods(bad)
  with pytest.raises(errors.InputError, match="--personalize='': expected 'none' or"):
    personalization.PersonalizeConfig(personalize=[]).check()  # an empty --personalize=
  personalization.PersonalizeConfig(personalize=['none']).check()
  with pytest.raises(errors.InputError, match='--personalize_epochs=0'):
    personalization.PersonalizeConfig(personalize_epochs=0).check()
  with pytest.raises(errors.InputError, match='--personalize_lr=0'):
    personalization.PersonalizeConfig(personalize_lr=0.0).check()
