"""``fcm-encode``: placeholder until the feature-coding pipeline lands (issue 5)."""

import click

from fcm_common.cli_support import FcmCommand


@click.command(name="fcm-encode", cls=FcmCommand)
def main():
    """Encode a video's JDE features into an fcm bitstream (not implemented yet)."""
    raise click.UsageError("not implemented yet")
