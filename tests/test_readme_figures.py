"""The README's main-job figures are the recorded run's (docs/main_job.json, written with the README
sentence by scripts/main_job_figures.py): a figure edited by hand, or a record rerun without
rewriting the README, fails here."""

import json
import re

from script_support import ROOT, load_benchmark_script

figures_script = load_benchmark_script("main_job_figures", ROOT / "scripts")


def test_readme_main_job_figures_are_the_recorded_run():
    record = json.loads((ROOT / "docs" / "main_job.json").read_text())
    assert record["command"] == "python run_recbole.py --model=RecGOAT" and record["model"] == "RecGOAT"
    readme = (ROOT / "README.md").read_text()
    found = [m.groupdict() for m in figures_script.SENTENCE.finditer(readme)]
    assert len(found) == 1, "README: expected one main-job sentence (scripts/main_job_figures.py writes it)"
    assert found[0] == figures_script.figures(record)


def test_a_changed_figure_is_caught():
    record = json.loads((ROOT / "docs" / "main_job.json").read_text())
    text = figures_script.sentence(record)
    assert figures_script.SENTENCE.search(text).groupdict() == figures_script.figures(record)
    edited = re.sub(r"test Recall@20 [\d.]+", "test Recall@20 0.9999", text)
    assert figures_script.SENTENCE.search(edited).groupdict() != figures_script.figures(record)
