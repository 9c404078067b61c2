"""A run's config: derived fields, config.json, and which other configs describe the same run."""

import json
import math

import ml_collections
import pytest

from anonymax import run_config
from anonymax.configs import okvqa, synthetic


def test_derive_fills_the_fields_left_none_and_changes_nothing_else():
  config = synthetic.get_config("smoke")
  assert config.reviewer.num_classes is None and config.optim.scalarization.ideal[1] is None
  derived = run_config.derive(config, num_attributes=7)
  assert derived.reviewer.num_classes == 7
  assert derived.optim.scalarization.ideal == (0.5, pytest.approx(-math.log(2)))
  # A pure function: the given config is untouched, and deriving again changes nothing.
  assert config.reviewer.num_classes is None
  assert run_config.derive(derived, num_attributes=7).to_dict() == derived.to_dict()
  rest = {k: v for k, v in derived.to_dict().items() if k not in ("reviewer", "optim")}
  assert rest == {k: v for k, v in config.to_dict().items() if k not in ("reviewer", "optim")}


def test_derive_keeps_explicit_values_and_names_a_contradiction():
  config = synthetic.get_config("smoke")
  config.optim.scalarization.ideal = (0.4, -0.5)  # an explicit privacy ideal is the user's choice
  config.privacy_loss = "bce_to_half"  # whose own ideal would be +log 2
  assert run_config.derive(config, num_attributes=7).optim.scalarization.ideal == (0.4, -0.5)
  config.reviewer.num_classes = 5
  with pytest.raises(ValueError, match=r"config.reviewer.num_classes=5 .* 7 attributes"):
    run_config.derive(config, num_attributes=7)
  config.reviewer.num_classes = 7
  config.optim.scalarization.ideal = (0.4, "low")
  with pytest.raises(ValueError, match=r"ideal\[1\]='low'"):
    run_config.derive(config, num_attributes=7)


def test_a_dataset_without_privacy_attributes_asks_for_privacy_data():
  config = okvqa.get_config()
  with pytest.raises(ValueError, match="no privacy attributes.*config.privacy_data"):
    run_config.derive(config, num_attributes=0)


def test_config_json_round_trips_without_secrets(tmp_path):
  config = run_config.derive(synthetic.get_config("smoke,oracle=openai"), num_attributes=7)
  with config.unlocked():
    config.oracle.openai.api_key = "sk-live-123"
  path = run_config.save(config, str(tmp_path))
  assert "sk-live-123" not in open(path).read()
  loaded = run_config.load(str(tmp_path))
  assert loaded.anonymizer.features == (8, 16)  # tuples come back as tuples
  assert loaded.oracle.openai.api_key == "<redacted>"
  assert loaded.oracle.openai.api_key_env == "OPENAI_API_KEY"  # a variable's name, not a secret
  assert run_config.differences(config, loaded) == []


def test_load_names_a_missing_or_broken_file(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"config.json not found: train first"):
    run_config.load(str(tmp_path))
  (tmp_path / "config.json").write_text("{not json")
  with pytest.raises(ValueError, match=r"config.json: not a readable config"):
    run_config.load(str(tmp_path))
  (tmp_path / "config.json").write_text(json.dumps([1, 2]))
  with pytest.raises(ValueError, match=r"config.json: not a config"):
    run_config.load(str(tmp_path))


@pytest.fixture
def saved_run(tmp_path):
  run_config.save(run_config.derive(synthetic.get_config("smoke"), num_attributes=7), str(tmp_path))
  return str(tmp_path)


def test_resolve_without_config_is_the_saved_one(saved_run):
  config = run_config.resolve(saved_run)
  assert config.reviewer.num_classes == 7 and config.total_steps == 6


def test_a_given_config_may_change_runtime_fields_only(saved_run):
  given = synthetic.get_config("smoke")
  given.eval.judge_steps_scale = 0.5  # evaluation settings, locations, the loop's length: allowed
  given.data.data_dir = "/elsewhere"
  given.total_steps = 100
  config = run_config.resolve(saved_run, given)
  assert config.eval.judge_steps_scale == 0.5 and config.data.data_dir == "/elsewhere"
  assert config.reviewer.num_classes == 7  # the derived field stays the run's
  given.optim.gains["a"] = 0.5  # what is trained: refused, naming the field and both values
  with pytest.raises(ValueError, match=r"^config.optim.gains.a=0.5 but .*config.json has 0.02"):
    run_config.resolve(saved_run, given)


def test_another_config_file_is_another_run(saved_run):
  with pytest.raises(
    ValueError, match=r"config.anonymizer.features=\[8, 16, 32\] but .* has \[8, 16\] .*more field"
  ):
    run_config.resolve(saved_run, synthetic.get_config())


def test_a_value_set_where_the_run_has_an_empty_dict_is_a_difference(saved_run):
  given = synthetic.get_config("smoke")
  given.reviewer.kwargs = {"num_filters": 16}  # the smoke run has kwargs {}
  assert [d[0] for d in run_config.differences(given, run_config.load(saved_run))] == [
    "reviewer.kwargs"
  ]


def test_a_field_the_saved_run_lacks_is_taken_from_the_given_config(saved_run):
  given = synthetic.get_config("smoke")
  with given.unlocked():
    given.new_section = ml_collections.ConfigDict({"flag": True})
  assert run_config.resolve(saved_run, given).new_section.flag is True


def test_scrub_secrets_redacts_keys_but_keeps_variable_names():
  config = {
    "oracle": {"api_key": "sk-live-123", "api_key_env": "OPENAI_API_KEY", "budget_tokens": 5},
    "headers": [{"Authorization": "Bearer sk-live-123"}],
    "lr": 0.1,
  }
  scrubbed = run_config.scrub_secrets(config)
  assert "sk-live-123" not in json.dumps(scrubbed)
  assert scrubbed["oracle"]["api_key_env"] == "OPENAI_API_KEY"
  assert scrubbed["oracle"]["budget_tokens"] == 5
  assert scrubbed["lr"] == 0.1
