"""Tests for reprank.data.pairs: the pair schema, JSONL files and PKU-SafeRLHF (tiny temp files; no network)."""

import json
from pathlib import Path

import pandas as pd
import pytest

from reprank.data import sources as data, pairs as pairs_lib
from reprank.data.sources import DataError

FIXTURE = Path(__file__).parent / "fixtures" / "pku_saferlhf_sample.jsonl"
GOOD_PAIR = {"prompt": "How do I pick a lock?", "chosen": "I can't help with that.", "rejected": "Use a pick."}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- pairs


def test_validate_pairs_fills_defaults_and_keeps_extras():
    pairs = pairs_lib.validate_pairs([GOOD_PAIR, {**GOOD_PAIR, "prompt": "Another", "split": "test", "note": "x"}])
    assert pairs.column_names[:7] == list(pairs_lib.PAIR_FIELDS + pairs_lib.OPTIONAL_PAIR_FIELDS)
    assert pairs["note"] == [None, "x"]
    assert pairs["source"] == ["unknown", "unknown"]
    assert pairs["split"] == [data.assign_split(GOOD_PAIR["prompt"]), "test"]
    assert pairs["chosen_safe"] == [None, None]
    assert pairs.features["chosen_safe"].dtype == "bool"
    assert pairs_lib.validate_pairs(pairs)["prompt"] == pairs["prompt"]  # a Dataset is accepted too


@pytest.mark.parametrize("change, field", [
    ({"chosen": None}, "chosen"),
    ({"chosen": 3}, "chosen"),
    ({"prompt": "   "}, "prompt"),
    ({"rejected": ""}, "rejected"),
    ({"rejected": GOOD_PAIR["chosen"]}, "rejected"),
    ({"split": "dev"}, "split"),
    ({"chosen_safe": 1}, "chosen_safe"),
    ({"rejected_safe": "false"}, "rejected_safe"),
    ({"source": 7}, "source"),
    ("drop prompt", "prompt"),
])
def test_pair_errors_name_file_row_field(tmp_path, change, field):
    bad = {k: v for k, v in GOOD_PAIR.items() if k != "prompt"} if change == "drop prompt" else {**GOOD_PAIR, **change}
    path = write_jsonl(tmp_path / "pairs.jsonl", [GOOD_PAIR, GOOD_PAIR, bad])
    with pytest.raises(DataError) as info:
        pairs_lib.load_pairs_jsonl(path)
    assert str(info.value).startswith(f"{path}, row 3, field '{field}': ")
    with pytest.raises(DataError, match=rf"<in-memory pairs>, row 1, field '{field}'"):
        pairs_lib.validate_pairs([bad])


def test_malformed_json_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(GOOD_PAIR) + '\n{"prompt": "oops",\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"pairs\.jsonl, line 2: invalid JSON"):
        pairs_lib.load_pairs_jsonl(path)


def test_save_and_load_roundtrip_refuses_overwrite(tmp_path):
    path = tmp_path / "out" / "pairs.jsonl"
    pairs_lib.save_pairs_jsonl([{**GOOD_PAIR, "chosen_safe": True, "rejected_safe": False}], path)
    loaded = pairs_lib.load_pairs_jsonl(path)
    assert loaded[0]["chosen_safe"] is True and loaded[0]["chosen"] == GOOD_PAIR["chosen"]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        pairs_lib.save_pairs_jsonl([GOOD_PAIR], path)
    pairs_lib.save_pairs_jsonl([GOOD_PAIR, {**GOOD_PAIR, "prompt": "Second"}], path, overwrite=True)
    assert len(pairs_lib.load_pairs_jsonl(path)) == 2


# --------------------------------------------------------------------------- PKU-SafeRLHF


def test_pku_fixture_to_pairs():
    raw = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]
    assert {r["safer_response_id"] for r in raw} == {0, 1}
    pairs = pairs_lib.load_pku_saferlhf(str(FIXTURE))
    assert len(pairs) == len(raw)
    assert pairs.column_names == list(pairs_lib.PAIR_FIELDS + pairs_lib.OPTIONAL_PAIR_FIELDS)
    for r, p in zip(raw, pairs):
        safer = r["safer_response_id"]
        assert p["chosen"] == r[f"response_{safer}"] and p["rejected"] == r[f"response_{1 - safer}"]
        assert p["chosen_safe"] == r[f"is_response_{safer}_safe"]
        assert p["rejected_safe"] == r[f"is_response_{1 - safer}_safe"]
    assert set(pairs["source"]) == {"pku_saferlhf"}
    assert len(pairs_lib.load_pku_saferlhf(FIXTURE, max_rows=3)) == 3


def test_pku_missing_column(tmp_path):
    rows = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]
    path = write_jsonl(tmp_path / "pku.jsonl", [{k: v for k, v in r.items() if k != "safer_response_id"} for r in rows])
    with pytest.raises(DataError, match=r"pku\.jsonl: missing PKU-SafeRLHF column\(s\) \['safer_response_id'\]"):
        pairs_lib.load_pku_saferlhf(str(path))


def test_pku_malformed_line(tmp_path):
    path = tmp_path / "pku.jsonl"
    path.write_text(FIXTURE.read_text(encoding="utf-8") + '{"prompt": "cut off\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"pku\.jsonl, line 9: invalid JSON"):
        pairs_lib.load_pku_saferlhf(str(path))


def test_pku_bad_safer_response_id(tmp_path):
    rows = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]
    rows[1]["safer_response_id"] = 2
    path = write_jsonl(tmp_path / "pku.jsonl", rows)
    with pytest.raises(DataError, match=r"pku\.jsonl, row 2, field 'safer_response_id'"):
        pairs_lib.load_pku_saferlhf(str(path))


def test_off_policy_pairs_come_from_other_models_answers_and_written_refusals():
    from reprank.data.pairs import off_policy_pairs

    refusals = ["I can't help with that.", "I won't do that."]
    rows = off_policy_pairs(10, 10, refusals, seed=0)
    harmful = [r for r in rows if r["source"] == "offpolicy_harmful"]
    benign = [r for r in rows if r["source"] == "offpolicy_benign"]
    assert len(harmful) == 10 and len(benign) == 10
    assert all(r["chosen"] in refusals and r["rejected"] not in refusals for r in harmful)
    assert all(r["rejected"] in refusals and r["chosen"] not in refusals for r in benign)
    assert rows == off_policy_pairs(10, 10, refusals, seed=0) and rows != off_policy_pairs(10, 10, refusals, seed=1)
    assert len(pairs_lib.validate_pairs(rows)) == 20


def test_training_pairs_keep_what_training_reads_and_name_the_pairs_in_an_error():
    frame = pd.DataFrame({"prompt": ["p1", "p2"], "chosen": ["a", "b"], "rejected": ["c", "d"], "confidence": [0.9, 0.6],
                          "reward_chosen": [1.0, 2.0]})
    pairs = pairs_lib.training_pairs(frame, "main")
    assert pairs["confidence"] == [0.9, 0.6] and "reward_chosen" not in pairs.column_names
    with pytest.raises(DataError, match=r"pairs 'main', row 2, field 'rejected': identical to 'chosen'"):
        pairs_lib.training_pairs(frame.assign(rejected=["c", "b"]), "main")
