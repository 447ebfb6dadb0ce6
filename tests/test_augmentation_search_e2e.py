"""The default search through the local starter kit on digits: the policy search runs once validation passes
the trigger, its choice is logged to the kit's console, and predictions go on within the budget. The
trigger is lowered to 0.9 and the scratch rate to 0.01 (the 8x8 digits make the scratch ResNet collapse for a
while at 0.05), so that the search comes early also on a machine busy with other work."""

import re

import pytest

from autoclint.harness.cli import main
from autoclint.harness.scoring import read_end_file, read_start_file

BUDGET_S = 60.0
EARLY_SEARCH = '{"faa_trigger_nauc": 0.9, "scratch_lr_per_64": 0.01}'


@pytest.mark.slow
def test_default_search_on_digits_through_the_starter_kit(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("AUTOCLINT_CONFIG", EARLY_SEARCH)
    output, scores = tmp_path / "out", tmp_path / "scores"
    lines = []
    argv = ["--time_budget", str(BUDGET_S), "--output_dir", str(output), "--score_dir", str(scores)]
    assert main(argv, emit=lines.append) == 0
    console = capfd.readouterr().err  # the ingestion child writes its log to the kit's stderr

    assert "choosing the 'searched' training augmentation" in console
    assert "policy search plan" in console
    searched = re.search(r"policy search: (\d+)/(\d+) candidates beat [\d.]+; chose (\d+) sub-policies", console)
    assert searched, console[-3000:]
    beat, candidates, chosen = (int(searched.group(index)) for index in (1, 2, 3))
    assert candidates >= 3 and 0 <= beat <= candidates
    # the choice follows the search's own numbers: sub-policies exactly when some candidate beat the baseline
    # (each outcome on its own, made certain, is in test_trainer_augmentation)
    assert (chosen > 0) == (beat > 0), searched.group(0)
    installed = "training on augmented data from now on" in console
    unaugmented = "training continues unaugmented" in console
    assert (installed, unaugmented) == ((True, False) if beat else (False, True)), console[-3000:]

    start = read_start_file(output)
    assert read_end_file(output)["ingestion_success"] == "1"
    times = sorted(start.prediction_times.values())
    assert times[-1] - start.start_time < BUDGET_S
    # training and predictions continue after the search
    after_search = console[console.index("policy search:"):]
    assert re.search(r"epoch \d+: valid NAUC", after_search)
    assert re.search(r"prediction \d+ written", after_search)
    assert any(line.startswith("ALC = ") for line in lines)
