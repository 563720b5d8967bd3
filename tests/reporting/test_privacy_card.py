from pathlib import Path

from fedward.config import FedwardConfig
from fedward.fl.recorder import RunRecorder
from fedward.reporting.study import write_report
from tests.fl.test_recorder import counts


def spent(eps: float, unit: str) -> dict[str, object]:
    return {
        "dp-epsilon": eps,
        "dp-delta": 1e-4,
        "dp-unit": unit,
        "dp-noise-multiplier": 1.1,
        "dp-max-grad-norm": 1.0,
        "dp-sample-rate": 0.25,
        "dp-steps": 8,
        "dp-accountant": "rdp",
    }


def test_the_model_card_shows_epsilon_per_hospital_and_round_and_the_unit(
    tmp_path: Path,
) -> None:
    config = FedwardConfig(num_server_rounds=2, dp=True, dp_target_epsilon=3.0)
    recorder = RunRecorder(tmp_path, config)
    for server_round, (general, mary) in enumerate([(1.5, 1.2), (2.9, 2.4)], 1):
        recorder.record_privacy(server_round, "general", spent(general, "patient"))
        recorder.record_privacy(server_round, "st-mary", spent(mary, "image"))
        recorder.record_error(server_round, "st-jude", "hospital st-jude: budget")
        recorder.record_evaluation(
            server_round, {"general": counts(8), "st-mary": counts(6)}
        )
    summary = recorder.finish()

    html, md = write_report(tmp_path)

    card = md.read_text()
    assert summary["privacy"]["sites"]["general"]["epsilon-per-round"] == {
        "1": 1.5,
        "2": 2.9,
    }
    assert "Differential privacy: on, see below." in card
    assert "| general | patient | 2.90 | 1.0e-04 | 1.10 | 1 | 1.50 | 2.90 |" in card
    assert "| st-mary | image | 2.40 | 1.0e-04 | 1.10 | 1 | 1.20 | 2.40 |" in card
    assert "protects one image or patient" in card
    assert "At st-mary the unit is one image, not one patient" in card
    assert card.count("refused: round") == 2
    assert "<td>general</td>" in html.read_text()


def test_a_run_without_dp_says_so(tmp_path: Path) -> None:
    recorder = RunRecorder(tmp_path, FedwardConfig(num_server_rounds=1))
    recorder.record_evaluation(1, {"general": counts(8)})
    summary = recorder.finish()

    _, md = write_report(tmp_path)

    assert "privacy" not in summary
    assert "Differential privacy: off." in md.read_text()
    assert "### Differential privacy" not in md.read_text()
