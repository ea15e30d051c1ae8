"""Provenance and policy: ``detect``, ``watermark`` and ``policy check``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kinetoscope.cli.app import app


@app.command()
def detect(
    file: Path = typer.Argument(..., help="A video or image to check."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of lines."),
    model_id: Optional[list[str]] = typer.Option(
        None, "--model-id", help="A model id to recognise besides the bundled models (repeatable)."
    ),
    trust_anchors: Optional[Path] = typer.Option(
        None, help="PEM bundle of root certificates whose C2PA signatures count as trusted."
    ),
) -> None:
    """Say whether a video or image carries kinetoscope's watermark, which model made it, and its C2PA manifest."""
    import json

    from kinetoscope.safety import detect as run_detect

    found = run_detect(file, model_ids=model_id or [], trust_anchors=trust_anchors)
    if as_json:
        typer.echo(json.dumps({"file": str(file), **found.to_dict()}))
        return
    if found.watermarked:
        if found.model_id:
            model = found.model_id
        elif found.model_hash:
            model = f"not one known here (hash {found.model_hash}; name it with --model-id)"
        else:
            model = "unreadable (the mark is too damaged to name it)"
        typer.echo(f"{file}: made by kinetoscope, model {model}")
    else:
        typer.echo(f"{file}: no kinetoscope watermark found")
    typer.echo(
        f"  watermark score {found.score:.1f} (3 or more means watermarked), confidence {found.confidence:.6f}, "
        f"{found.frames_checked} frames checked"
    )
    manifest = found.c2pa
    if manifest is None:
        typer.echo("  C2PA: no manifest")
    else:
        signer = manifest.get("signer", {})
        failures = f"; failures: {', '.join(manifest['failures'])}" if manifest["failures"] else ""
        typer.echo(
            f"  C2PA: {manifest['state']}, model {manifest.get('model_id')}, "
            f"signed by {signer.get('common_name')} ({signer.get('issuer')}){failures}"
        )


@app.command()
def watermark(
    source: Path = typer.Argument(..., metavar="IN", help="A video or image to watermark."),
    target: Path = typer.Argument(..., metavar="OUT", help="Where to write it (.mp4, .gif, .webp, .png, ...)."),
    model_id: str = typer.Option(..., "--model-id", help="The model id the watermark names."),
    quality: Optional[int] = typer.Option(None, min=0, max=100, help="0-100 as in `kinetoscope convert`. Default: 75 (images 95)."),
    c2pa_cert: Optional[Path] = typer.Option(None, help="PEM certificate chain (leaf first) to sign a C2PA manifest with."),
    c2pa_key: Optional[Path] = typer.Option(None, help="PEM private key of the C2PA certificate."),
) -> None:
    """Put kinetoscope's invisible watermark for MODEL_ID into every frame; optionally sign a C2PA manifest."""
    from kinetoscope.errors import InvalidInputError
    from kinetoscope.safety import sign_file, watermark_file

    if (c2pa_cert is None) != (c2pa_key is None):
        raise InvalidInputError("give both --c2pa-cert and --c2pa-key to sign, or neither.", param="c2pa_cert")
    watermark_file(source, target, model_id, quality=quality)
    if c2pa_cert is not None:
        sign_file(target, target, cert_chain=c2pa_cert, private_key=c2pa_key, model_id=model_id)
    typer.echo(f"wrote {target} with the watermark of model {model_id}" + (" and a signed C2PA manifest" if c2pa_cert else ""))


policy_app = typer.Typer(help="The prompt policy: check prompts against the (replaceable) policy file.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


@policy_app.command("check")
def policy_check(
    prompt: str = typer.Argument(..., help="The prompt to check."),
    policy: Optional[Path] = typer.Option(
        None, help="Policy file (YAML, JSON or TOML). Default: $KINETOSCOPE_POLICY, else the built-in policy."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Check a prompt against the content policy: exit 0 when allowed, 1 when refused (with the reason)."""
    import dataclasses
    import json

    from kinetoscope.safety import load_policy

    decision = load_policy(policy).check(prompt)
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(decision)))
    elif decision.allowed:
        typer.echo("allowed")
    else:
        typer.echo(f"refused: {decision.reason}")
    if not decision.allowed:
        raise typer.Exit(1)
