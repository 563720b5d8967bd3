"""``fedward certs``: the consortium's keys (CA, server TLS and signing, hospitals)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Consortium keys: CA, server TLS, hospitals.", no_args_is_help=True
)


@app.command("init")
def certs_init(
    out: Annotated[Path, typer.Option(help="Folder for the consortium's keys.")] = Path(
        "certs"
    ),
    server_name: Annotated[
        list[str] | None, typer.Option(help="Server DNS name or IP (repeat).")
    ] = None,
    hospital: Annotated[
        list[str] | None, typer.Option(help="Enrol a hospital.")
    ] = None,
) -> None:
    """Make the consortium CA, the server's TLS and signing keys, hospital keys."""
    from fedward.deployment.certs import (
        make_ca,
        make_hospital_key,
        make_server_cert,
        make_signing_cert,
    )

    # the server registers hospital keys over its own loopback, so the
    # certificate always names it too
    names = list(dict.fromkeys([*(server_name or []), "localhost", "127.0.0.1"]))
    typer.echo(f"CA: {make_ca(out)[0]}")
    typer.echo(f"server: {make_server_cert(out, names)[0]} for {', '.join(names)}")
    typer.echo(f"model signing: {make_signing_cert(out)[0]}")
    for name in hospital or []:
        typer.echo(f"hospital {name}: {make_hospital_key(out, name)[0]}")


@app.command("signing")
def certs_signing(
    out: Annotated[Path, typer.Option(help="The consortium's keys folder.")] = Path(
        "certs"
    ),
) -> None:
    """(Re)issue the server's model-signing certificate from the consortium CA."""
    from fedward.deployment.certs import make_signing_cert

    typer.echo(f"model signing: {make_signing_cert(out)[0]}")


@app.command("hospital")
def certs_hospital(
    name: Annotated[str, typer.Argument(help="The hospital's short name.")],
    out: Annotated[Path, typer.Option(help="The consortium's keys folder.")] = Path(
        "certs"
    ),
) -> None:
    """Enrol one more hospital: a node key pair whose .pub the server accepts."""
    from fedward.deployment.certs import make_hospital_key

    key, pub = make_hospital_key(out, name)
    typer.echo(f"give {key} to {name}; {pub} is registered at the next server start")


@app.command("node-certificate")
def certs_node_certificate(
    name: Annotated[str, typer.Argument(help="The hospital's short name.")],
    out: Annotated[Path, typer.Option(help="The consortium's keys folder.")] = Path(
        "certs"
    ),
) -> None:
    """(Re)issue a hospital's node.crt: the CA certifies its node key."""
    from fedward.deployment.certs import certify_node_key

    path = certify_node_key(out, name)
    typer.echo(f"give {path} to {name} (secure aggregation: node-certificate)")
