"""The signed final model: sent to every hospital after the last round, checked there.

Server side (:func:`deliver_final_model`): after the last round the ServerApp
sends each connected hospital the final model as the files a hospital uses,
``model.json`` (the card) and ``model.safetensors`` (the weights), with
``manifest.json`` signed by the server's model-signing key. Each answer, accepted
or refused with its reason, is written to the run folder's ``final-model.json``.

Hospital side (:func:`receive_final_model`): the ClientApp checks the manifest's
signature, that the consortium CA in the hospital's own ``site.toml``
(``root-certificates``) issued the signer's code-signing certificate, each file's
SHA-256, and that the weights fit the model card, before it writes the files to
``models-dir/run-<id>/``. Anything else is refused, written nowhere, and the
refusal goes back to the server. Simulated hospitals have no CA; a run signed by
a run-local key sends no final model.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, Message, RecordDict
from flwr.serverapp import Grid

from fedward.config import SiteConfig
from fedward.errors import FedwardError, SignatureError, WeightsError
from fedward.fl.protocol import (
    FINAL_MODEL_MESSAGE,
    RecordKey,
    files_record,
    final_model_status,
    site_name,
)
from fedward.models.checkpoint import ModelCard, model_files
from fedward.runfolder import RunFolder
from fedward.signing import Signer, Trust, read_manifest, sha256_bytes

logger = logging.getLogger(__name__)

MODEL_FILES = (RunFolder.MODEL_META, RunFolder.MODEL_WEIGHTS)
# a hospital only checks and writes two files: it answers in seconds, and a
# hospital that cannot answer must not hold the end of the run for a round timeout
DELIVERY_TIMEOUT = 300.0


def signed_model_files(
    card: ModelCard, arrays: ArrayRecord, signer: Signer
) -> dict[str, bytes]:
    """``model.json``, ``model.safetensors`` and their signed ``manifest.json``."""
    files = model_files(card, arrays.to_torch_state_dict())
    digests = {name: sha256_bytes(data) for name, data in files.items()}
    return {**files, RunFolder.MANIFEST: signer.sign(digests, card.meta())}


def deliver_final_model(
    grid: Grid,
    folder: RunFolder,
    card: ModelCard,
    arrays: ArrayRecord,
    signer: Signer,
    timeout: float = DELIVERY_TIMEOUT,
) -> dict[str, Any]:
    """Send the signed final model to every connected hospital; record the answers."""
    if signer.certificate is None:
        logger.info(
            "final model not sent to hospitals: signed by a %s key, which they "
            "cannot check against a CA", signer.kind,
        )  # fmt: skip
        return {}
    files = signed_model_files(card, arrays, signer)
    record = files_record(files)
    messages = [
        Message(RecordDict({RecordKey.FILES: record}), node, FINAL_MODEL_MESSAGE)
        for node in grid.get_node_ids()
    ]
    accepted: list[str] = []
    refused: dict[str, str] = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        ok, reason = final_model_status(reply)
        name = site_name(reply)
        if ok:
            accepted.append(name)
        else:
            refused[name] = reason
            logger.warning("final model: %s refused it: %s", name, reason)
    silent = len(messages) - len(accepted) - len(refused)
    if silent:
        logger.warning("final model: %d hospital(s) did not answer in %.0fs",
                       silent, timeout)  # fmt: skip
    result = {
        "round": card.server_round,
        "manifest-sha256": sha256_bytes(files[RunFolder.MANIFEST]),
        "accepted": sorted(accepted),
        "refused": refused,
        "no-answer": silent,
    }
    logger.info("final model accepted by %d hospital(s)", len(accepted))
    folder.write_json(RunFolder.FINAL_MODEL, result)
    return result


def _check_final_model(site: SiteConfig, files: Mapping[str, bytes]) -> ModelCard:
    """The card of received files after every check; raise on any failure."""
    if not site.root_certificates:
        raise SignatureError(
            "no 'root-certificates' in the site config to check the final model with"
        )
    trust = Trust.from_ca_file(Path(site.root_certificates))
    manifest = files.get(RunFolder.MANIFEST)
    if manifest is None:
        raise SignatureError("the final model came without a signed manifest.json")
    signed = read_manifest(manifest, trust, "the final model's manifest.json")
    model = {name: data for name, data in files.items() if name != RunFolder.MANIFEST}
    if set(model) != set(MODEL_FILES):
        raise SignatureError(f"the final model must be exactly {list(MODEL_FILES)}")
    signed.check(
        {name: sha256_bytes(data) for name, data in model.items()}, "final model"
    )
    from safetensors.torch import load

    try:  # the weights fit the card
        card = ModelCard.from_meta(signed.card)
        card.build(load(model[RunFolder.MODEL_WEIGHTS]))
    except (TypeError, RuntimeError) as exc:
        raise WeightsError(
            f"the final model's weights do not fit its card: {exc}"
        ) from None
    logger.info("%s: final model signed by %s", site.name, signed.signer)
    return card


def receive_final_model(
    site: SiteConfig | None, files: Mapping[str, bytes], run_id: int
) -> tuple[bool, str, str]:
    """Check the final model and keep it; return (accepted, manifest SHA-256, reason).

    The reason, sent back to the server, names no path of this hospital.
    """
    digest = sha256_bytes(files.get(RunFolder.MANIFEST, b""))
    if site is None:
        return False, digest, "a simulated hospital keeps no final model"
    try:
        card = _check_final_model(site, files)
    except SignatureError as exc:
        logger.error("%s: refused the final model: %s", site.name, exc)
        return False, digest, str(exc)
    except FedwardError as exc:  # an unreadable CA file, weights that do not fit
        logger.error("%s: refused the final model: %s", site.name, exc)
        return False, digest, f"{type(exc).__name__}: see the hospital's log"
    target = Path(site.models_dir) / f"run-{run_id}"
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    logger.info("%s: kept the final model (round %d) in %s",
                site.name, card.server_round, target)  # fmt: skip
    return True, digest, ""
