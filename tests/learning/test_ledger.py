import json
from pathlib import Path

import pytest

from fedward.errors import PrivacyLedgerError
from fedward.learning.ledger import LedgerEntry, PrivacyLedger


def entry(run: str = "run-a", server_round: int = 1, eps: float = 0.5) -> LedgerEntry:
    return LedgerEntry(
        site="general",
        run=run,
        round=server_round,
        epsilon=eps,
        run_epsilon=eps * server_round,
        lifetime_epsilon=eps * server_round,
        delta=1e-4,
        lifetime_delta=1e-4,
        noise_multiplier=1.1,
        max_grad_norm=1.0,
        steps=8,
        sample_rate=0.25,
        unit="image",
        units=40,
        accountant="rdp",
    )


def filled(tmp_path: Path, rounds: int = 3) -> PrivacyLedger:
    ledger = PrivacyLedger(tmp_path / "general-privacy-ledger.jsonl")
    for r in range(1, rounds + 1):
        ledger.append(entry(server_round=r))
    return ledger


def test_entries_chain_and_survive_a_new_reader(tmp_path: Path) -> None:
    ledger = filled(tmp_path)

    again = PrivacyLedger(ledger.path).entries()

    assert [e.round for e in again] == [1, 2, 3]
    assert again[0].time  # stamped when written
    lines = [json.loads(x) for x in ledger.path.read_text().splitlines()]
    assert lines[1]["prev"] == lines[0]["hash"]
    assert json.loads(ledger.head.read_text()) == {
        "entries": 3,
        "hash": lines[2]["hash"],
    }


def test_an_edited_line_stops_training(tmp_path: Path) -> None:
    ledger = filled(tmp_path)
    text = ledger.path.read_text().replace('"epsilon": 0.5', '"epsilon": 0.05', 1)
    ledger.path.write_text(text)

    with pytest.raises(PrivacyLedgerError, match="line 1 was changed"):
        ledger.entries()
    with pytest.raises(PrivacyLedgerError, match="never reset"):
        ledger.append(entry(server_round=4))


def test_removed_entries_are_found_by_the_head(tmp_path: Path) -> None:
    ledger = filled(tmp_path)
    lines = ledger.path.read_text().splitlines(keepends=True)
    ledger.path.write_text("".join(lines[:1]))  # the last two rounds removed

    with pytest.raises(PrivacyLedgerError, match="1 entries but its head records 3"):
        ledger.entries()


def test_a_deleted_ledger_or_head_is_damage_not_a_fresh_start(tmp_path: Path) -> None:
    ledger = filled(tmp_path)
    ledger.path.unlink()
    with pytest.raises(PrivacyLedgerError, match="head records 3"):
        ledger.entries()

    other = filled(tmp_path / "b")
    other.head.unlink()
    with pytest.raises(PrivacyLedgerError, match=r"head.*missing"):
        other.entries()


def test_a_line_that_is_not_json_stops_training(tmp_path: Path) -> None:
    ledger = filled(tmp_path)
    with ledger.path.open("a") as fh:
        fh.write("garbage\n")

    with pytest.raises(PrivacyLedgerError, match="line 4 is not a ledger entry"):
        ledger.entries()


def test_a_write_torn_by_a_crash_is_dropped_and_the_chain_goes_on(
    tmp_path: Path,
) -> None:
    ledger = filled(tmp_path, rounds=2)
    with ledger.path.open("a") as fh:
        fh.write('{"site": "general", "run": "ru')  # crashed mid-line, before head

    assert [e.round for e in ledger.entries()] == [1, 2]
    ledger.append(entry(server_round=3))
    assert [e.round for e in PrivacyLedger(ledger.path).entries()] == [1, 2, 3]
