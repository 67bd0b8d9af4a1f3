"""`meterline apikeys create|list|revoke`: the API keys of the HTTP service
(docs/service.md). A key's token is printed once, by `create`; the ledger keeps only its
SHA-256, so a lost token cannot be shown again: revoke the key and create another."""

from __future__ import annotations

import click

from meterline.cli.options import Id
from meterline.output import json_text

SCOPES = ("ingest", "read", "support")


@click.group("apikeys")
def apikeys() -> None:
    """API keys of the HTTP service: create (the token is shown once), list, revoke."""


@apikeys.command("create")
@click.option("--name", required=True, help="What the key is for (1 to 100 characters).")
@click.option(
    "--scope",
    "scopes",
    required=True,
    multiple=True,
    type=click.Choice(SCOPES),
    help="ingest (send events), read (invoices, explanations, usage), support; repeat for several.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object (with the token).")
def create(name: str, scopes: tuple[str, ...], as_json: bool) -> None:
    """Create an API key and print its token, once: store it now."""
    from meterline.jobs.apikeys import create_api_key

    created = create_api_key(name, scopes)
    if as_json:
        click.echo(json_text(created))
        return
    key = created.key
    click.echo(f"API key {key.id} {key.name!r}, scopes: {', '.join(key.scopes)}")
    click.echo(f"token (shown only now; send it as Authorization: Bearer): {created.token}")


@apikeys.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
def list_keys(as_json: bool) -> None:
    """List the API keys (never their tokens): id, name, scopes, token prefix, state."""
    from meterline.jobs.apikeys import list_api_keys

    keys = list_api_keys()
    if as_json:
        click.echo(json_text(keys))
        return
    if not keys:
        click.echo("no API keys (`meterline apikeys create --name N --scope S` makes one)")
    for key in keys:
        state = f"revoked {key.revoked_at:%Y-%m-%dT%H:%M:%SZ}" if key.revoked_at else "live"
        click.echo(
            f"{key.id:>6}  {key.name:<24} {','.join(key.scopes):<22} {key.prefix}...  "
            f"created {key.created_at:%Y-%m-%dT%H:%M:%SZ}  {state}"
        )


@apikeys.command("revoke")
@click.argument("key_id", type=Id("an API key id"))
def revoke(key_id: int) -> None:
    """Revoke API key KEY_ID: every request with its token is refused from now on."""
    from meterline.jobs.apikeys import revoke_api_key

    key, revoked = revoke_api_key(key_id)
    when = f"{key.revoked_at:%Y-%m-%dT%H:%M:%SZ}" if key.revoked_at else ""
    if revoked:
        click.echo(f"API key {key.id} ({key.name}) revoked")
    else:
        click.echo(f"API key {key.id} ({key.name}) was already revoked, at {when}")
