"""The benchmark's arithmetic and tables (bench/), without training or timing."""

from bench import accuracy
from bench.__main__ import summarise, target_text


def fake_run(precision: str, seed: int, reached_at: float | None, final: float) -> dict:
    reached = None if reached_at is None else {"epoch": 3, "train_seconds": reached_at}
    return {"backend": "auto", "resolved": "stock", "precision": precision, "seed": seed,
            "epochs": 4, "rows": [{"train_seconds": 50.0}], "final_test_accuracy": final,
            "reached_target": reached}


def test_the_mean_time_counts_only_the_seeds_that_reached_the_target():
    runs = [fake_run("fp32", 1, 30.0, 0.991), fake_run("fp32", 2, 40.0, 0.992),
            fake_run("fp32", 3, None, 0.989), fake_run("bf16", 1, None, 0.98)]
    fp32, bf16 = accuracy.summarise(runs)
    assert (fp32["precision"], fp32["seeds"], fp32["reached"]) == ("fp32", 3, 2)
    assert fp32["mean_seconds_to_target"] == 35.0
    assert abs(fp32["mean_final_test_accuracy"] - 0.990667) < 1e-6
    assert (bf16["reached"], bf16["mean_seconds_to_target"]) == (0, None)


def test_the_markdown_names_each_run_and_the_summary():
    runs = [fake_run("fp32", 1, 30.0, 0.991), fake_run("fp32", 2, None, 0.989)]
    recipe = {"model": {"hidden_size": 128, "dropout": 0.1}, "data": {"augment_shift": 2},
              "train": {"lr": 5e-3, "clip": 1.0, "batch_size": 256}}
    result = {"target": 0.99, "recipe": recipe,
              "runs": runs, "summary": accuracy.summarise(runs)}
    text = "\n".join(accuracy.markdown(result))
    assert "time to 99.0% test accuracy" in text
    assert "LSTM(128), dropout 0.1, random shifts up to 2 px, Adam 0.005" in text
    assert "| auto (stock) | fp32 | 1 | 4 | epoch 3, 30s | 99.10% | 50 |" in text
    assert "| auto (stock) | fp32 | 2 | 4 | not reached | 98.90% | 50 |" in text
    assert "| auto | fp32 | 1 of 2 | 30.0 | 99.00% |" in text


def fake_model(name: str, seq_per_s: dict[str, float]) -> dict:
    return {"model": name, "rows": [{"method": method, "train_seq_per_s": value,
                                     "train_share": 0.5, "train_share_fp32": 0.5}
                                    for method, value in seq_per_s.items()]}


def test_the_plain_process_ratio_divides_the_default_path_by_the_plain_bare_loop():
    models = [fake_model("LSTM", {"bare nn.*": 100.0, "rnnlab stock fp32": 98.0,
                                  "rnnlab compiled fp32": 150.0})]
    picks = {"LSTM": {"path": "compiled"}}
    (entry,) = summarise(models, picks, {"LSTM": 75.0}).values()
    assert entry["default_over_bare"] == 1.5
    assert entry["default_over_bare_plain"] == 2.0
    assert entry["default_over_stock"] == 150.0 / 98.0
    assert "default_over_bare_plain" not in summarise(models, picks)["LSTM"]


def test_the_default_row_is_autos_path_in_autos_precision():
    models = [fake_model("LSTM", {"bare nn.*": 100.0, "rnnlab stock fp32": 98.0,
                                  "rnnlab stock bf16": 200.0, "rnnlab compiled fp32": 90.0})]
    (entry,) = summarise(models, {"LSTM": {"path": "stock", "precision": "bf16"}}).values()
    assert (entry["default_method"], entry["default_over_bare"]) == ("rnnlab stock bf16", 2.0)
    (entry,) = summarise(models, {"LSTM": {"path": "stock"}}).values()  # an old record
    assert entry["default_method"] == "rnnlab stock fp32"


def test_the_issue_17_column_says_met_or_missed():
    assert target_text("LSTM", 1.81) == "1.8: met"
    assert target_text("GRU", 1.39) == "1.4: missed"
    assert target_text("LSTM", None) == "–"


def test_the_plain_baseline_is_measured_in_several_fresh_processes(monkeypatch):
    import subprocess
    from types import SimpleNamespace

    from bench import bare_plain

    outputs = iter(['{"LSTM": 100.0, "GRU": 50.0}', '{"LSTM": 130.0, "GRU": 40.0}',
                    'a warning line\n{"LSTM": 90.0, "GRU": 45.0}'])
    commands = []

    def fake_run(command, **_kwargs):
        commands.append(command)
        return SimpleNamespace(stdout=next(outputs) + "\n")

    monkeypatch.setattr(subprocess, "run", fake_run)
    found = bare_plain.measure_models(["LSTM", "GRU"], threads=2, steps=8, rounds=4)
    assert found == {"LSTM": [100.0, 130.0, 90.0], "GRU": [50.0, 40.0, 45.0]}
    assert len(commands) == bare_plain.PROCESSES == 3
    assert commands[0][1:3] == ["-m", "bench.bare_plain"] and "--models" in commands[0]
