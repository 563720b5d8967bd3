import json
from pathlib import Path

import numpy as np
import pytest

from fedward.errors import SecureAggregationError
from fedward.fl.secagg import party
from fedward.fl.secagg.masking import new_keypair, prg
from fedward.fl.secagg.party import Session, canonical
from fedward.fl.secagg.quantise import Vectors
from fedward.fl.secagg.shares import combine_secret, split_secret
from tests.fl.secagg.parties import identities, random_inputs, secure_sum, shared


def plain_sum(inputs: dict[int, Vectors], nodes: list[int]) -> Vectors:
    total = {k: v.copy() for k, v in inputs[nodes[0]].items()}
    for node in nodes[1:]:
        for k, v in inputs[node].items():
            total[k] += v
    return total


def test_the_unmasked_sum_is_the_plain_sum(tmp_path: Path) -> None:
    ca, ids = identities(tmp_path, 3)
    inputs = random_inputs(list(ids), 1000)

    total = secure_sum(ca, ids, inputs, threshold=2)

    expected = plain_sum(inputs, list(ids))
    for name in expected:
        np.testing.assert_array_equal(total[name], expected[name])


def test_hospitals_dropping_before_and_after_their_input_are_recovered(
    tmp_path: Path,
) -> None:
    ca, ids = identities(tmp_path, 5)
    nodes = list(ids)
    inputs = random_inputs(nodes, 500, seed=1)

    total = secure_sum(
        ca, ids, inputs, threshold=3,
        drop_before_input=[nodes[0]], drop_after_input=[nodes[1]],
    )  # fmt: skip

    # the input of the hospital that dropped after sending it is in the sum
    expected = plain_sum(inputs, nodes[1:])
    for name in expected:
        np.testing.assert_array_equal(total[name], expected[name])


def test_below_the_threshold_the_sum_is_abandoned(tmp_path: Path) -> None:
    ca, ids = identities(tmp_path, 3)
    nodes = list(ids)

    with pytest.raises(SecureAggregationError, match="below the threshold 2"):
        secure_sum(
            ca, ids, random_inputs(nodes, 10), threshold=2,
            drop_after_input=nodes[:2],
        )  # fmt: skip


def test_a_masked_input_looks_nothing_like_the_input(tmp_path: Path) -> None:
    ca, ids = identities(tmp_path, 2)
    states, sealed = shared(ca, ids, threshold=2)
    a, b = list(ids)
    party.receive(states[a], [a, b], {b: sealed[b][a]})
    x = np.zeros(10_000, dtype=np.uint32)

    y = party.masked_input(states[a], {"update": x})["update"]

    assert np.count_nonzero(y == 0) < 10  # uniform residues, not the zeros sent


def test_a_key_substituted_by_the_server_is_refused(tmp_path: Path) -> None:
    ca, ids = identities(tmp_path, 3)
    session = Session(1, 1, "train", 2, 3)
    states, bundles = {}, {}
    for node, identity in ids.items():
        states[node], bundles[node] = party.advertise(session, node, identity)
    a, b, _ = list(ids)
    # the server swaps b's mask key for one of its own, keeping b's signature
    raw = json.loads(bundles[b])
    raw["statement"]["s-pk"] = new_keypair()[1].hex()
    forged = canonical(raw)

    with pytest.raises(SecureAggregationError, match="signature does not verify"):
        party.share(states[a], [bundles[a], forged], ca.trust())


def test_a_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    ca, ids = identities(tmp_path, 2)
    _, strangers = identities(tmp_path / "other", 1)
    session = Session(1, 1, "train", 2, 2)
    mine, stranger = next(iter(ids.items())), next(iter(strangers.items()))
    state, own = party.advertise(session, *mine)
    _, foreign = party.advertise(session, stranger[0] + 50, stranger[1])

    with pytest.raises(SecureAggregationError, match="not certified by the trusted CA"):
        party.share(state, [own, foreign], ca.trust())


def test_a_hospital_reveals_shares_once_and_only_for_the_list_it_signed(
    tmp_path: Path,
) -> None:
    ca, ids = identities(tmp_path, 3)
    states, sealed = shared(ca, ids, threshold=2)
    nodes = list(ids)
    for n in nodes:
        party.receive(states[n], nodes, {s: sealed[s][n] for s in nodes if s != n})
    signatures = {n: party.consistency(states[n], nodes, ids[n]) for n in nodes}
    a = nodes[0]

    with pytest.raises(SecureAggregationError, match="differ from the list"):
        party.unmask(states[a], nodes[:2], signatures, ca.trust())
    party.unmask(states[a], nodes, signatures, ca.trust())
    with pytest.raises(SecureAggregationError, match="already revealed"):
        party.unmask(states[a], nodes, signatures, ca.trust())


def test_a_threshold_of_half_or_less_is_refused_by_the_hospital() -> None:
    with pytest.raises(SecureAggregationError, match="not more than half"):
        Session.from_json(Session(1, 1, "train", 2, 4).to_json())
    assert Session.from_json(Session(1, 1, "train", 3, 4).to_json()).threshold == 3


def test_shamir_shares_of_a_32_byte_secret_recover_it_from_any_threshold() -> None:
    secret = bytes(range(32))
    shares = split_secret(secret, 3, 5)

    assert combine_secret({1: shares[0], 3: shares[2], 5: shares[4]}, 3) == secret
    assert combine_secret({2: shares[1], 4: shares[3]} | {1: shares[0]}, 3) == secret
    with pytest.raises(SecureAggregationError):
        combine_secret({1: shares[0], 2: shares[1]}, 3)


def test_prg_streams_differ_by_seed_and_label_and_repeat_for_the_same() -> None:
    a = prg(b"k" * 32, b"x", 1000, np.uint32)
    assert np.array_equal(a, prg(b"k" * 32, b"x", 1000, np.uint32))
    assert not np.array_equal(a, prg(b"k" * 32, b"y", 1000, np.uint32))
    assert not np.array_equal(a, prg(b"j" * 32, b"x", 1000, np.uint32))
