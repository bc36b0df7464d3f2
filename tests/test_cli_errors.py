"""Bad input at the command line: one line naming the value, exit code 2, no traceback, nothing lost."""

import hashlib
import os

import pytest

from conftest import SMALL_CORA, run_cli

FLAKY = "task: plugin_tasks:flaky\nobjectives: {accuracy: max, latency_ms: min}\nknobs: {x: {low: 0.0, high: 1.0}}\n"


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A real stored study (in-process runner) that bad commands must leave untouched."""
    root = tmp_path_factory.mktemp("cli")
    (root / "flaky.yaml").write_text(FLAKY)
    (root / "bad.yaml").write_text(SMALL_CORA.replace("layers: {low: 1, high: 2}", "layers: {low: 3, high: 2}"))
    (root / "badref.yaml").write_text(SMALL_CORA + "baselines:\n  - {fastrain.stages: 4}\n")
    (root / "empty").mkdir()
    done = run_cli("search", "--task", "plugin_tasks:flaky", "--space", "flaky.yaml", "--budget", "3trials",
                   "--runner", "local", "--study", "keep", "--no-progress", cwd=root)
    assert done.returncode == 0, done.stderr
    return root


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


CASES = [
    (["search", "--task", "sst3", "--budget", "1trials"],
     "unknown task 'sst3'; choices: cifar10, citeseer, cola, cora, cora-curves, fashion-mnist, mrpc, nasbench-graph:arxiv"),
    (["search", "--task", "cora", "--budget", "20gpus"], "bad budget '20gpus'; expected a positive number followed by one of gpu-h, cpu-h"),
    (["search", "--task", "cora", "--budget=-3h"], "bad budget '-3h'"),
    (["search", "--task", "cora", "--budget", "2trials", "--space", "bad.yaml"], "bad.yaml: knobs.layers: low must be <= high; got low=3, high=2"),
    (["search", "--task", "cora", "--budget", "2trials", "--space", "badref.yaml"],
     "badref.yaml: baselines[0].fastrain.stages is not a searched knob; choices: model, layers"),
    (["search", "--task", "cora-fewshot", "--budget", "2trials", "--space", "sst2"], "is a space for task 'sst2', not 'cora'"),
    (["search", "--task", "cora", "--budget", "2trials", "--space", "nope"],
     "unknown search space 'nope'; choices: cifar10, citeseer, cola, cora, cora-curves, cora-ensemble, cora-fewshot, fashion-mnist, mrpc"),
    (["search", "--task", "cora", "--budget", "2trials", "--objectives", "val_accuracy:max,speed:min"], "--objectives: unknown metric 'speed'"),
    (["search", "--task", "cora", "--budget", "2trials", "--workers", "0"], "--workers must be a whole number >= 1; got 0"),
    (["search", "--task", "cora", "--budget", "2trials", "--storage", "notadb://x"], "cannot open storage 'notadb://x'"),
    (["search", "--task", "cora", "--budget", "2trials", "--storage", "postgresql://me:secret@127.0.0.1:1/db"],
     "cannot open storage 'postgresql://me:***@127.0.0.1:1/db'"),
    (["search", "--task", "cora"], "the following arguments are required: --budget"),
    (["search", "--task", "cora", "--budget", "2trials", "--storage-wait", "soon"],
     "--storage-wait 'soon': expected a duration such as 300, 300s, 5m or 1h"),
    (["search", "--task", "cora", "--budget", "2trials", "--storage-wait", "0s"], "--storage-wait '0s': expected a positive duration"),
    (["search", "--task", "plugin_tasks:flaky", "--space", "flaky.yaml", "--budget", "2trials", "--study", "keep",
      "--objectives", "accuracy,latency_ms:max"], "study 'keep' exists with a different space"),
    (["front", "--study", "nosuch"], "no study database at studies/nosuch.db"),
    (["front", "--study", "nosuch", "--storage", "sqlite:///studies/keep.db"], "unknown study 'nosuch'; studies in this storage: keep"),
    (["export", "--study", "keep", "--trial", "99", "-o", "x.yaml"], "has no trial 99; trials are 0..2"),
    (["export", "--study", "keep", "--pick", "min", "-o", "x.yaml"], "bad pick rule 'min'"),
    (["trial", "--task", "cora", "--config", "missing.yaml"], "config file 'missing.yaml' does not exist"),
    (["trial", "--task", "cora", "--config", "flaky.yaml"], "flaky.yaml: unknown knob 'knobs' for task cora; choices: model"),
    (["search", "--task", "cora", "--budget", "2trials", "--model", "bert-base-uncased"],
     "--model applies to language tasks; task 'cora' has no pretrained model"),
    (["search", "--task", "sst2", "--budget", "2trials", "--model", "/no/such/model"], "model '/no/such/model' not found"),
    (["apply", "flaky.yaml", "-o", "out"], "flaky.yaml: has no task; apply needs a file written by `autotradeoff export`"),
    (["apply", "missing.yaml", "-o", "out"], "config file 'missing.yaml' does not exist"),
]


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(c[0][:3]) + f" #{i}" for i, c in enumerate(CASES)])
def test_bad_input_exits_2_with_one_line_and_keeps_the_study(stored, args, message):
    db = stored / "studies" / "keep.db"
    before = digest(db)
    result = run_cli(*args, cwd=stored, timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert message in lines[0]
    assert digest(db) == before


@pytest.mark.parametrize("data, message", [
    ("/does/not/exist", "AUTOTRADEOFF_DATA='/does/not/exist' is not a directory"),
    ("empty", "Planetoid Cora not found: looked for ind.cora.tx"),
    ("empty", "GLUE SST-2 not found: looked for train.tsv, dev.tsv"),
    ("real", "Planetoid CiteSeer not found: looked for ind.citeseer.tx"),  # only Cora is in the test data
])
def test_bad_data_directory_exits_2_naming_where_it_looked(stored, data, message):
    path = data if data.startswith("/") else os.environ["AUTOTRADEOFF_DATA"] if data == "real" else str(stored / data)
    task = "sst2" if "SST-2" in message else "citeseer" if "CiteSeer" in message else "cora"
    result = run_cli("search", "--task", task, "--budget", "1trials", cwd=stored,
                     env={"AUTOTRADEOFF_DATA": path, "AUTOTRADEOFF_CACHE": str(stored / "empty-cache")})
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (stored / "studies" / f"{task}.db").exists()  # nothing created before the data was found


def test_listing_commands(stored):
    tasks = run_cli("tasks", cwd=stored)
    assert tasks.returncode == 0 and "cora" in tasks.stdout and "edge_drop" in tasks.stdout
    spaces = run_cli("spaces", cwd=stored)
    assert spaces.returncode == 0 and "val_accuracy:max, latency_ms:min" in spaces.stdout
