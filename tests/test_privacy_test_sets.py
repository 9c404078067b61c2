"""anonymax.privacy_test_sets: which sets the judges are scored on, and each set's figures."""

import numpy as np
import pytest

from anonymax import privacy_judge, privacy_test_sets
from anonymax.configs import hmdb51_vispr, okvqa, synthetic
from anonymax.data.pipeline import Split
from anonymax.types import Query

# Two sets of two attributes; two judges' scores on their 2 + 3 examples, with the cMAPs by hand
# (AP = Σ (R_n − R_{n−1}) P_n over thresholds in decreasing order).
LABELS = {"a": np.array([[1, 0], [0, 1]], np.float32), "b": np.array([[1, 1], [0, 0], [1, 0]])}
SCORES = {
  # a: perfect ranking (cMAP 1). b: attribute 0 ranks neg, pos, pos: AP = ½·½ + ½·⅔ = 7/12;
  # attribute 1 ranks neg, pos, neg: AP = ½. cMAP = (7/12 + ½) / 2 = 13/24.
  "j1": np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.3], [0.9, 0.6], [0.5, 0.2]]),
  # a: each attribute's positive ranked second of two: AP ½ each, cMAP ½. b: perfect (1).
  "j2": np.array([[0.1, 0.9], [0.8, 0.2], [0.9, 0.9], [0.1, 0.1], [0.8, 0.2]]),
}


def _fake_judge_rows(calls):
  def judge_rows(rows, train_labels, test_labels, judges, **kwargs):
    calls.append((rows, train_labels, test_labels, kwargs))
    scores = {j: s[: len(test_labels)] for j, s in SCORES.items()}
    return {r: {"scores": scores, "cmap_max": 0.0} for r in rows}

  return judge_rows


def test_judges_train_once_and_are_scored_on_each_set(monkeypatch):
  calls = []
  monkeypatch.setattr(privacy_judge, "judge_rows", _fake_judge_rows(calls))
  train = np.zeros((4, 8, 8, 3), np.uint8)
  tests = {"a": np.full((2, 8, 8, 3), 1, np.uint8), "b": np.full((3, 8, 8, 3), 2, np.uint8)}
  out = privacy_test_sets.judge({"ours": (train, tests)}, np.eye(4, 2), LABELS, judges=())
  # One training per row, on the union of the sets, in their order.
  (rows, _, test_labels, kwargs), *more = calls
  assert not more and kwargs["keep_scores"]
  np.testing.assert_array_equal(test_labels, np.concatenate([LABELS["a"], LABELS["b"]]))
  assert rows["ours"][1][:, 0, 0, 0].tolist() == [1, 1, 2, 2, 2]
  a, b = out["ours"]["a"], out["ours"]["b"]
  assert a["judges"] == {"j1": 1.0, "j2": 0.5} and a["strongest"] == "j1"
  assert a["cmap_max"] == 1.0 and a["cmap_mean"] == 0.75
  assert b["judges"]["j1"] == pytest.approx(13 / 24) and b["strongest"] == "j2"
  assert b["cmap_max"] == 1.0 and b["cmap_mean"] == pytest.approx((13 / 24 + 1) / 2)
  assert b["per_attribute_ap"] == [1.0, 1.0]
  assert b["chance_cmap"] == privacy_judge.chance_cmap(LABELS["b"])
  with pytest.raises(ValueError, match="test sets' visuals differ per example"):
    tests["b"] = np.zeros((3, 4, 4, 3), np.uint8)
    privacy_test_sets.judge({"ours": (train, tests)}, np.eye(4, 2), LABELS, judges=())


def test_one_set_is_judged_as_it_always_was(monkeypatch):
  calls = []

  def judge_rows(rows, train_labels, test_labels, judges, **kwargs):
    calls.append((rows, test_labels, kwargs))
    figures = dict(cmap_max=0.7, cmap_mean=0.6, strongest="j", per_attribute_ap=[0.7, 0.7])
    return {r: {**figures, "judges": {"j": 0.7}, "chance_cmap": 0.5, "seconds": {}} for r in rows}

  monkeypatch.setattr(privacy_judge, "judge_rows", judge_rows)
  test = np.zeros((2, 8, 8, 3), np.uint8)
  out = privacy_test_sets.judge({"raw": (test, {"a": test})}, LABELS["a"], {"a": LABELS["a"]}, ())
  ((rows, test_labels, kwargs),) = calls
  assert rows["raw"][1] is test and test_labels is LABELS["a"] and not kwargs
  assert out == {
    "raw": {
      "a": dict(
        cmap_max=0.7,
        cmap_mean=0.6,
        strongest="j",
        per_attribute_ap=[0.7, 0.7],
        judges={"j": 0.7},
        chance_cmap=0.5,
      )
    }
  }


def _split(names, n=2):
  return Split(
    visuals=np.zeros((n, 8, 8, 3), np.uint8),
    privacy=np.zeros((n, len(names)), np.float32),
    queries=[Query("q", ("a",))] * n,
    labels=np.full(n, -1, np.int32),
    attribute_names=tuple(names),
    class_names=(),
  )


def test_the_sets_must_share_the_judges_label_space(monkeypatch):
  c = hmdb51_vispr.get_config("model=/m")
  assert list(privacy_test_sets.sections(c)) == ["pa_hmdb51"]
  five = ("skin_color", "face", "gender", "nudity", "relationship")
  monkeypatch.setattr(privacy_test_sets, "load_section", lambda d, split: _split(five))
  got = privacy_test_sets.load(c, "test", _split(five))
  assert list(got) == ["pa_hmdb51"] and got["pa_hmdb51"].attribute_names == five
  with pytest.raises(ValueError) as e:
    privacy_test_sets.load(c, "test", _split(("a4_gender", "a9_face_complete")))
  assert str(e.value).startswith(
    "config.eval.privacy_test_data.pa_hmdb51: its attributes (skin_color, face, gender, nudity, "
    "relationship) are not those the judges learn from the privacy training split (a4_gender, "
    "a9_face_complete)"
  )
  with pytest.raises(ValueError, match=r"^config.eval.split='validation': .* names test sets"):
    privacy_test_sets.load(c, "validation", _split(five))
  with c.unlocked():
    c.eval.privacy_test_data = {"x": {"image_size": 8}}
  with pytest.raises(ValueError, match=r"^config.eval.privacy_test_data.x: .* needs 'dataset'"):
    privacy_test_sets.load(c, "test", _split(five))


def test_without_sections_the_privacy_datasets_own_split(monkeypatch):
  c = synthetic.get_config("smoke")
  assert privacy_test_sets.sections(c) == {}
  utility = _split(("face",))
  assert privacy_test_sets.load(c, "validation", utility, utility) == {"synthetic": utility}
  assert list(okvqa.get_config().eval.privacy_test_data) == ["okvqa", "vispr"]
  assert list(okvqa.get_config("privacy_test=vispr").eval.privacy_test_data) == ["vispr"]
  # HMDB51 judged in VISPR's own label space cannot be scored on PA-HMDB51.
  assert not privacy_test_sets.sections(hmdb51_vispr.get_config("attributes=paper"))


def test_markdown_lists_every_set_when_there_are_several():
  result = {
    "privacy_test_sets": ["okvqa", "vispr"],
    "chance_cmap_by_set": {"okvqa": 40.0, "vispr": 35.24},
    "rows": [
      {"name": "raw", "privacy_test_sets": {"okvqa": {"privacy_cmap_max": 61.04}, "vispr": {}}},
      {"name": "ours", "privacy_test_sets": {"okvqa": {"privacy_cmap_max": None}}},
    ],
  }
  text = privacy_test_sets.markdown(result)
  assert "| row | okvqa cMAP max ↓ | vispr cMAP max ↓ |" in text
  assert "| raw | 61.0 | n/a |" in text and "| ours | n/a | n/a |" in text
  assert "Chance floors: okvqa 40.0, vispr 35.2." in text
  assert privacy_test_sets.markdown({**result, "privacy_test_sets": ["okvqa"]}) == ""
