"""``fcm-decode``: placeholder until the feature-coding pipeline lands (issue 5)."""

import click

from fcm_common.cli_support import FcmCommand


@click.command(name="fcm-decode", cls=FcmCommand)
def main():
    """Decode an fcm bitstream and track (not implemented yet)."""
    raise click.UsageError("not implemented yet")
