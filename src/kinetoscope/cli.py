"""The ``kinetoscope`` command line: one typer app; each command is a thin call into the library.

Heavy imports (torch, av) happen inside commands so that ``--help`` stays instant.
Any :class:`~kinetoscope.errors.KinetoscopeError` becomes one sentence on stderr and exit 2.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
from pathlib import Path
from typing import Callable, Optional

import typer

from kinetoscope.bundled import CAPTIONER, WORLD, bundled_model
from kinetoscope.errors import KinetoscopeError

app = typer.Typer(
    name="kinetoscope",
    help="Open, trainable text-to-video: a causal 3D VAE, spacetime patches and a diffusion transformer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from kinetoscope import __version__

        typer.echo(f"kinetoscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Open, trainable text-to-video: a causal 3D VAE, spacetime patches and a diffusion transformer."""


# ---------------------------------------------------------------- io (kinetoscope.io)
@app.command()
def info(
    file: Path = typer.Argument(..., help="A video (mp4, gif, webp, ...), an image, or a folder of frames."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of aligned lines."),
) -> None:
    """Print a video's fps, frame count, duration, size and codec (from metadata; nothing is decoded)."""
    import dataclasses
    import json

    from kinetoscope.io import probe

    fields = {"file": str(file), **dataclasses.asdict(probe(file))}
    if as_json:
        typer.echo(json.dumps(fields))
        return
    fields["size"] = f"{fields.pop('width')}x{fields.pop('height')}"
    fields["fps"] = f"{fields['fps']:g}"
    fields["duration"] = f"{fields['duration']:.3f} s"
    for key in ("file", "codec", "size", "fps", "num_frames", "duration"):
        typer.echo(f"{key.replace('num_', ''):<9} {fields[key]}")


@app.command()
def convert(
    source: Path = typer.Argument(..., metavar="IN", help="Any readable video, image or folder of frames."),
    target: Path = typer.Argument(..., metavar="OUT", help="An .mp4, .gif, .webp, an image (.png, .jpg) or a folder."),
    fps: Optional[float] = typer.Option(None, help="Resample to this frame rate (nearest frame). Default: keep."),
    start: Optional[float] = typer.Option(None, help="First second to keep. Default: the beginning."),
    end: Optional[float] = typer.Option(None, help="Second to stop at (exclusive). Default: the end."),
    quality: Optional[int] = typer.Option(
        None, min=0, max=100, help="0-100, higher is better (mp4 CRF, WebP/jpg quality). Default: 75 (jpg 95)."
    ),
) -> None:
    """Convert between video formats, images and folders of frames, optionally cutting and resampling."""
    import warnings

    from kinetoscope.errors import InvalidInputError
    from kinetoscope.io import is_video_path, read_video, write_image, write_video

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        video = read_video(source, start=start, end=end, fps=fps)
    for warning in caught:
        typer.echo(f"warning: {warning.message}", err=True)
    if target.suffix.lower() in (".png", ".jpg", ".jpeg"):
        if video.num_frames != 1:
            raise InvalidInputError(
                f"{target} is an image but {source} gives {video.num_frames} frames; "
                "write a .mp4, .gif, .webp or a folder, or pick one frame with --start/--end.",
                param="target",
            )
        write_image(target, video.frames[0], **({} if quality is None else {"quality": quality}))
    else:
        write_video(target, video.frames, video.fps, **({} if quality is None else {"quality": quality}))
    frames = "1 frame" if video.num_frames == 1 else f"{video.num_frames} frames"
    typer.echo(f"wrote {target}: {frames}, {video.width}x{video.height}, {video.fps:g} fps")


# ---------------------------------------------------------------- world (kinetoscope.world)
world_app = typer.Typer(help="The procedural physical world: render clips with ground truth.", no_args_is_help=True)
app.add_typer(world_app, name="world")


@world_app.command("sample")
def world_sample(
    scenario: str = typer.Option("mixed", help="Scenario name; `kinetoscope world scenarios` lists them."),
    n: int = typer.Option(1, "--n", help="How many clips."),
    size: str = typer.Option("128x128", help="WIDTHxHEIGHT in pixels, each 4 to 2048."),
    frames: int = typer.Option(32, help="Frames per clip (1 writes PNG images)."),
    fps: float = typer.Option(10.0, help="Frames per second."),
    seed: int = typer.Option(0, help="Same seed, same clips and a byte-identical manifest."),
    out: Path = typer.Option(..., help="Folder for the clips, their ground truth and manifest.jsonl."),
) -> None:
    """Render clips of the procedural world as mp4, each with its ground truth, plus a JSONL manifest."""
    from kinetoscope.world.dataset import parse_size, write_world_dataset

    width, height = parse_size(size)
    manifest = write_world_dataset(
        out, scenario=scenario, n=n, width=width, height=height, frames=frames, fps=fps, seed=seed
    )
    typer.echo(f"wrote {n} clip{'s' if n != 1 else ''} and {manifest}")


@world_app.command("scenarios")
def world_scenarios() -> None:
    """List the world's scenarios with a one-line description each."""
    from kinetoscope.world import SCENARIOS

    width = max(len(name) for name in SCENARIOS)
    for scenario in SCENARIOS.values():
        typer.echo(f"{scenario.name:<{width}}  {scenario.description}")


# ---------------------------------------------------------------- data (kinetoscope.data)
data_app = typer.Typer(help="Datasets: encode clips to latents once, for training the transformer.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("encode")
def data_encode(
    source: str = typer.Argument(..., help="A JSONL manifest, or `world` to render clips of the procedural world."),
    vae: Path = typer.Option(..., "--vae", help="The frozen VAE: a VAE directory, or a model directory with vae/ inside."),
    out: Path = typer.Option(..., "--out", "-o", help="The latent dataset directory to write (must not hold one)."),
    n: int = typer.Option(1000, "--n", min=1, help="world: how many clips."),
    scenarios: str = typer.Option("mixed", help="world: comma-separated scenario names, each clip picks one."),
    sizes: str = typer.Option("128x128", help="world: comma-separated WIDTHxHEIGHT sizes, each clip picks one."),
    frames: str = typer.Option("17", help="world: comma-separated frame counts (1 + 4k), each clip picks one."),
    fps: float = typer.Option(10.0, help="world: frames per second."),
    seed: int = typer.Option(0, help="world: same seed, same clips."),
    max_frames: int = typer.Option(33, min=1, help="manifest: longest clip kept, in frames (cut, never resampled)."),
    max_side: int = typer.Option(256, min=8, help="manifest: longer sides are scaled down to this."),
    batch_size: int = typer.Option(16, min=1, help="Clips of one shape encoded together."),
    device: str = typer.Option("cpu", help="torch device (cpu, cuda, ...)."),
) -> None:
    """Encode clips once with a frozen VAE into a latent dataset (safetensors shards: latents, captions, ground truth)."""
    from kinetoscope.data.datasets import ShapeRule
    from kinetoscope.errors import InvalidInputError
    from kinetoscope.data.latents import manifest_items, world_items, write_latent_dataset
    from kinetoscope.vae.evaluate import load_vae
    from kinetoscope.world import SCENARIOS
    from kinetoscope.world.dataset import parse_size

    model = load_vae(vae)  # refuse a missing VAE before anything is rendered or read
    skipped: list[tuple[str, str]] = []
    if source == "world":
        names = tuple(name.strip() for name in scenarios.split(","))
        unknown = [name for name in names if name not in SCENARIOS]
        if unknown:
            raise InvalidInputError(f"Unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}.", param="scenarios")
        shapes = tuple(parse_size(size) for size in sizes.split(","))
        if not all(count.strip().isdigit() for count in frames.split(",")):
            raise InvalidInputError(f"--frames takes comma-separated whole numbers, got {frames!r}.", param="frames")
        counts = tuple(int(count) for count in frames.split(","))
        for width, height in shapes:
            model.check_size(height, width)
        for count in counts:
            model.check_frames(count)
        items, total = world_items(n, seed=seed, scenarios=names, sizes=shapes, frames=counts, fps=fps), n
    else:
        shape = ShapeRule(model.spatial_compression, model.temporal_compression, max_frames, max_side)
        items, total = manifest_items(source, shape, skipped=skipped), None
    del model
    index = write_latent_dataset(items, vae, out, total=total, batch_size=batch_size, device=device)
    for what, why in skipped:
        typer.echo(f"skipped {what}: {why}", err=True)
    typer.echo(f"wrote {index}")


# ---------------------------------------------------------------- train (kinetoscope.train)
train_app = typer.Typer(
    help="Train the models with one loop: config files, torchrun (DDP/FSDP2), checkpoints and exact resume.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")

_CONFIG_OPTION = typer.Option(..., "--config", "-c", help="A YAML, TOML or JSON config file, or the name of a shipped one (dit-tiny, dit-cpu, vae-cpu, ...).")
_SET_OPTION = typer.Option(None, "--set", help="Override a config value, e.g. --set optim.lr=1e-4 (repeatable).")
_RESUME_OPTION = typer.Option(
    None, "--resume", help="Resume from this checkpoint or run directory (a run directory with checkpoints resumes by itself)."
)


def _train(kind: str, config: Path, overrides: Optional[list[str]], resume: Optional[Path]) -> None:
    import os

    from kinetoscope.train import load_train_config, train

    cfg = load_train_config(kind, config, overrides or [])
    final = train(cfg, resume=resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, say it once
        typer.echo(f"Trained {kind} written to {final}")


@train_app.command("vae")
def train_vae(config: Path = _CONFIG_OPTION, set_: Optional[list[str]] = _SET_OPTION, resume: Optional[Path] = _RESUME_OPTION) -> None:
    """Train the causal 3D VAE on the world or a manifest at native sizes."""
    _train("vae", config, set_, resume)


@train_app.command("dit")
def train_dit(config: Path = _CONFIG_OPTION, set_: Optional[list[str]] = _SET_OPTION, resume: Optional[Path] = _RESUME_OPTION) -> None:
    """Train (or fine-tune, fully or with LoRA) the diffusion transformer and its text encoder on VAE latents."""
    _train("dit", config, set_, resume)


@train_app.command("captioner")
def train_captioner(config: Path = _CONFIG_OPTION, set_: Optional[list[str]] = _SET_OPTION, resume: Optional[Path] = _RESUME_OPTION) -> None:
    """Train the re-captioner (video to detailed caption) on world clips or a manifest."""
    _train("captioner", config, set_, resume)


@train_app.command("toy", hidden=True)
def train_toy(config: Path = _CONFIG_OPTION, set_: Optional[list[str]] = _SET_OPTION, resume: Optional[Path] = _RESUME_OPTION) -> None:
    """Train the toy regression task that tests the loop itself."""
    _train("toy", config, set_, resume)


# ---------------------------------------------------------------- eval (kinetoscope.eval)
eval_app = typer.Typer(
    help="Measure world simulation without pretrained networks: velocity error, adherence, permanence, consistency, flicker.",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")


def _print_summary(results: list, report: Path) -> None:
    for result in results:
        for metric, row in result.summary().items():
            mean = "-" if row["mean"] is None else f"{row['mean']:.4g} {row['unit']}"
            rate = "-" if row["pass_rate"] is None else f"{100 * row['pass_rate']:.0f}% pass"
            typer.echo(f"{result.suite.name:<14} {metric:<13} {mean:<28} {rate:<10} ({row['clips']} of {row['of']} clips)")
        rates = result.claim_rates()
        if rates:
            shares = ", ".join(f"{kind} {100 * share:.0f}%" for kind, share in rates.items())
            typer.echo(f"{result.suite.name:<14} objects shown: {shares}")
    typer.echo(f"wrote {report} and {report.parent / 'results.json'}")


@eval_app.command("videos")
def eval_videos(
    manifest: Path = typer.Option(..., help="JSONL manifest of the videos to score; ground truth from each line's state."),
    out: Path = typer.Option(..., help="Folder for results.json, report.md and its pictures."),
    given: int = typer.Option(3, min=0, help="First frames that were given (not generated): scored for fidelity, not velocity."),
) -> None:
    """Score existing videos against the ground truth their manifest names, and write JSON and a report with pictures."""
    from kinetoscope.eval.report import write_report
    from kinetoscope.eval.suites import score_manifest

    results = score_manifest(manifest, given=given)
    report = write_report(out, results, title=f"Evaluation of {manifest}", command=" ".join(["kinetoscope", *sys.argv[1:]]))
    _print_summary(results, report)


@eval_app.command("world")
def eval_world(
    model: Optional[Path] = typer.Option(None, help="Model directory with a generation pipeline. Default: the bundled model."),
    suite: str = typer.Option(
        ..., help="uniform, collision, parabola (each also -ood), adherence, objects, permanence, pan, flicker or loop."
    ),
    n: int = typer.Option(10, "--n", min=1, help="How many clips."),
    size: str = typer.Option("128x128", help="WIDTHxHEIGHT of the clips."),
    frames: int = typer.Option(32, min=2, help="Frames per clip."),
    fps: float = typer.Option(10.0, help="Frames per second."),
    seed: int = typer.Option(0, help="Seed of the world clips (and of generation)."),
    device: str = typer.Option("cpu", help="torch device to generate on (cpu, cuda, ...)."),
    out: Path = typer.Option(..., help="Folder for results.json, report.md and its pictures."),
) -> None:
    """Generate world clips with a model (given their first frames) and score them against the world's ground truth."""
    from kinetoscope.eval.report import write_report
    from kinetoscope.eval.suites import get_suite, pipeline_generator, run_suite
    from kinetoscope.world.dataset import parse_size

    get_suite(suite)
    width, height = parse_size(size)
    model = model or bundled_model(WORLD)
    generator = pipeline_generator(model, device=device)
    result = run_suite(suite, generator, n=n, seed=seed, width=width, height=height, frames=frames, fps=fps)
    report = write_report(out, [result], title=f"{model} on the {suite} suite", command=" ".join(["kinetoscope", *sys.argv[1:]]))
    _print_summary([result], report)


# ---------------------------------------------------------------- vae (kinetoscope.vae)
vae_app = typer.Typer(help="The causal 3D VAE: compress videos to latents and back.", no_args_is_help=True)
app.add_typer(vae_app, name="vae")

_VAE_MODEL_OPTION = typer.Option(
    None, "--model", help="A VAE directory, or a model directory with vae/ inside. Default: the bundled model."
)


@vae_app.command("reconstruct")
def vae_reconstruct(
    source: Path = typer.Argument(..., metavar="IN", help="A video, image or folder of frames."),
    out: Path = typer.Option(..., "-o", "--out", help="The reconstruction: .mp4, .gif, .webp, an image or a folder."),
    model: Optional[Path] = _VAE_MODEL_OPTION,
    fit: bool = typer.Option(
        False, "--fit", help="Drop trailing frames to 1 + 4k and centre-crop to multiples of 8 instead of refusing."
    ),
    tile_size: int = typer.Option(512, min=0, help="Split frames larger than this many pixels into tiles (0: never)."),
    device: str = typer.Option("cpu", help="torch device (cpu, cuda, ...)."),
) -> None:
    """Encode a video or image with the VAE, decode it again, write the result and print PSNR and SSIM."""
    from kinetoscope.io import read_video, write_image, write_video
    from kinetoscope.vae.evaluate import fit_frames, load_vae, reconstruct

    vae = load_vae(model or bundled_model(WORLD), device=device)
    video = read_video(source)
    frames = fit_frames(video.frames, vae) if fit else video.frames
    vae.latent_shape(*frames.shape[:3])  # refuse shapes the VAE cannot take before any work
    result, scores = reconstruct(vae, frames, tile_size=tile_size or None)
    if out.suffix.lower() in (".png", ".jpg", ".jpeg") and len(result) == 1:
        write_image(out, result[0])
    else:
        write_video(out, result, video.fps)
    t, h, w = result.shape[:3]
    typer.echo(f"wrote {out}: {t} frames, {w}x{h}, PSNR {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.4f}")


@eval_app.command("vae")
def eval_vae(
    manifest: Path = typer.Option(..., help="JSONL manifest of the videos and images to reconstruct."),
    model: Optional[Path] = _VAE_MODEL_OPTION,
    limit: Optional[int] = typer.Option(None, min=1, help="Score only the first N entries."),
    device: str = typer.Option("cpu", help="torch device (cpu, cuda, ...)."),
) -> None:
    """Reconstruct a manifest's clips through the VAE (each fitted to 1 + 4k frames, multiples of 8) and print PSNR and SSIM."""
    from kinetoscope.data.manifest import read_manifest
    from kinetoscope.errors import InvalidInputError
    from kinetoscope.io import read_video
    from kinetoscope.progress import ProgressBar
    from kinetoscope.vae.evaluate import fit_frames, load_vae, reconstruct

    entries = read_manifest(manifest)[:limit]
    if not entries:
        raise InvalidInputError(f"Manifest {manifest} has no entries to score.", param="manifest")
    vae = load_vae(model or bundled_model(WORLD), device=device)
    totals = {"psnr": 0.0, "ssim": 0.0}
    with ProgressBar(len(entries), "reconstructing", unit="clip") as bar:
        for entry in entries:
            _, scores = reconstruct(vae, fit_frames(read_video(entry.path).frames, vae))
            for key in totals:
                totals[key] += scores[key]
            bar.advance(1, psnr=f"{scores['psnr']:.2f}")
    n = len(entries)
    typer.echo(f"{n} clips: PSNR {totals['psnr'] / n:.2f} dB, SSIM {totals['ssim'] / n:.4f}")


# ---------------------------------------------------------------- serve (kinetoscope.serve)
@app.command()
def serve(
    model: Optional[Path] = typer.Option(
        None, help="Model directory (model_index.json, vae/, dit/, text/). Default: the bundled model."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on."),
    data: Path = typer.Option(Path("kinetoscope-data"), help="Folder for the job database, uploads and videos."),
    database: Optional[Path] = typer.Option(None, help="SQLite job database. Default: DATA/jobs.sqlite3."),
    api_key: Optional[str] = typer.Option(
        None, envvar="KINETOSCOPE_API_KEY", help="Require 'Authorization: Bearer KEY' on /v1 (env KINETOSCOPE_API_KEY)."
    ),
    device: str = typer.Option("cpu", help="torch device to generate on (cpu, cuda, ...)."),
    max_queue: int = typer.Option(256, min=1, help="Videos queued or running at once; more are refused with 429."),
    max_upload_mb: float = typer.Option(64.0, min=0.001, help="Largest request body (uploads included), in MiB."),
    max_prompt_chars: int = typer.Option(4000, min=1, help="Longest prompt, in characters."),
) -> None:
    """Serve the OpenAI-compatible /v1/videos API and a web page at / (FastAPI on uvicorn).

    Videos are signed with a C2PA manifest when KINETOSCOPE_C2PA_CERT and KINETOSCOPE_C2PA_KEY
    name a PEM certificate chain and its key, as for `kinetoscope generate`.
    """
    from kinetoscope.errors import require

    for module in ("fastapi", "python_multipart"):
        require(module, "kinetoscope serve")
    uvicorn = require("uvicorn", "kinetoscope serve")

    from kinetoscope.pipeline import Pipeline
    from kinetoscope.safety import SigningKey
    from kinetoscope.serve import Settings, create_app

    signing = SigningKey.from_env()  # checked before the model loads
    pipe = Pipeline.from_pretrained(model or bundled_model(WORLD), device=device)
    settings = Settings(
        data_dir=data,
        database=database,
        api_key=api_key,
        max_queue=max_queue,
        max_upload_bytes=int(max_upload_mb * 2**20),
        max_prompt_chars=max_prompt_chars,
        c2pa=signing,
    )
    signed = f", videos signed with C2PA by {signing.cert_chain}" if signing else ""
    typer.echo(f"serving {pipe.model_id} at http://{host}:{port}/ (data in {data}{signed})")
    uvicorn.run(create_app(pipe, settings), host=host, port=port, log_level="info")


# ---------------------------------------------------------------- safety (kinetoscope.safety)
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


# ---------------------------------------------------------------- language (kinetoscope.language)
_BACKEND_OPTION = typer.Option("builtin", help="builtin (the world-trained model) or openai (any OpenAI-compatible chat endpoint).")
_BASE_URL_OPTION = typer.Option(None, "--base-url", help="openai backend: the endpoint, e.g. http://localhost:8000/v1.")
_API_KEY_ENV_OPTION = typer.Option("OPENAI_API_KEY", help="openai backend: the environment variable holding the API key.")
_TIMEOUT_OPTION = typer.Option(60.0, help="openai backend: seconds to wait for an answer.")


def _openai_backend(backend: str, base_url: Optional[str], model: Optional[str], api_key_env: str, timeout: float, frames: int = 4):
    """The OpenAI-compatible backend the options describe, or None for the built-in one."""
    from kinetoscope.errors import InvalidInputError

    if backend == "builtin":
        return None
    if backend != "openai":
        raise InvalidInputError(f"Unknown backend {backend!r}; use builtin or openai.", param="backend")
    if not base_url or not model:
        raise InvalidInputError("The openai backend needs --base-url URL and --model NAME.", param="base_url")
    from kinetoscope.language.openai_backend import OpenAIBackend

    return OpenAIBackend(base_url, model, api_key_env=api_key_env, timeout=timeout, frames=frames)


@app.command()
def caption(
    source: Path = typer.Argument(..., metavar="DIR_OR_MANIFEST", help="A folder of videos and images, or a JSONL manifest."),
    out: Path = typer.Option(..., "--out", help="The manifest to write (JSONL), with the new captions."),
    backend: str = _BACKEND_OPTION,
    captioner: Optional[Path] = typer.Option(
        None, help="builtin backend: a trained captioner directory. Default: the bundled captioner."
    ),
    base_url: Optional[str] = _BASE_URL_OPTION,
    model: Optional[str] = typer.Option(None, "--model", help="openai backend: the model name."),
    api_key_env: str = _API_KEY_ENV_OPTION,
    frames: int = typer.Option(4, help="openai backend: evenly spaced frames sent per video."),
    timeout: float = _TIMEOUT_OPTION,
    batch_size: int = typer.Option(8, min=1, help="Videos captioned together."),
) -> None:
    """Write a detailed caption for every video or image, keeping any original caption as original_caption."""
    from kinetoscope.language.recaption import builtin_captioner, collect_entries, openai_captioner, recaption

    entries = collect_entries(source)
    remote = _openai_backend(backend, base_url, model, api_key_env, timeout, frames)
    caption_batch, max_frames, name = openai_captioner(remote) if remote is not None else builtin_captioner(captioner or bundled_model(CAPTIONER))
    result = recaption(entries, out, caption_batch, caption_source=name, max_frames=max_frames, batch_size=batch_size)
    for path, reason in result.skipped:
        typer.echo(f"skipped {path}: {reason}", err=True)
    typer.echo(f"captioned {result.written} file{'s' if result.written != 1 else ''} into {result.manifest}")


@app.command()
def expand(
    prompt: str = typer.Argument(..., help="A short prompt, e.g. \"a red ball bounces\"."),
    seed: int = typer.Option(0, help="Same prompt and seed, same expansion (built-in backend)."),
    backend: str = _BACKEND_OPTION,
    size: str = typer.Option("128x128", help="WIDTHxHEIGHT of the clip the caption is for (what fits in the view)."),
    frames: int = typer.Option(32, help="Frames of the clip (event frame numbers)."),
    fps: float = typer.Option(10.0, help="Frames per second of the clip."),
    base_url: Optional[str] = _BASE_URL_OPTION,
    model: Optional[str] = typer.Option(None, "--model", help="openai backend: the model name."),
    api_key_env: str = _API_KEY_ENV_OPTION,
    timeout: float = _TIMEOUT_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: caption, unknown words, scenario, seed."),
) -> None:
    """Expand a short prompt into a detailed caption in the training captions' style."""
    import dataclasses
    import json

    from kinetoscope.language import expand_prompt
    from kinetoscope.world.dataset import parse_size

    width, height = parse_size(size)
    remote = _openai_backend(backend, base_url, model, api_key_env, timeout)
    result = expand_prompt(prompt, seed, remote or "builtin", width=width, height=height, frames=frames, fps=fps)
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(result)))
        return
    typer.echo(result.caption)
    if result.unknown_words:
        typer.echo(f"note: words outside the world's vocabulary, kept as written: {', '.join(result.unknown_words)}", err=True)


# ---------------------------------------------------------------- generation (kinetoscope.pipeline)
_MODEL_OPTION = typer.Option(
    None, "--model", help="Model directory (model_index.json, vae/, dit/, text/). Default: the bundled model."
)
_OUT_OPTION = typer.Option(
    None, "--out", "-o", help="Output: .mp4, .gif, .webp, a folder, or .png for one frame. Default: from the prompt."
)
_WIDTH_OPTION = typer.Option(
    None, help="Width in pixels, rounded to the model's grid (reported). Default: the input's, else the model's."
)
_HEIGHT_OPTION = typer.Option(None, help="Height in pixels (rounded like --width).")
_FRAMES_OPTION = typer.Option(None, "--frames", help="Frames of the clip (exact). Default: 2 seconds.")
_SECONDS_OPTION = typer.Option(None, help="Duration in seconds instead of --frames.")
_FPS_OPTION = typer.Option(None, help="Frames per second. Default: the input video's, else the model's.")
_DEVICE_OPTION = typer.Option("cpu", help="torch device to generate on (cpu, cuda, ...).")


@dataclasses.dataclass
class _Sampling:
    """The options every generation command takes; a command receives them as ``sampling``."""

    steps: int
    guidance: float
    seed: int
    negative: Optional[str]
    expand: bool
    model: Optional[Path]
    out: Optional[Path]
    device: str

    def options(self) -> dict:
        """The pipeline keyword arguments among them."""
        return {
            "steps": self.steps,
            "guidance": self.guidance,
            "seed": self.seed,
            "negative_prompt": self.negative,
            "expand": self.expand,
        }


_SAMPLING_PARAMETERS = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
    for name, annotation, default in (
        ("steps", int, typer.Option(30, help="Sampling steps.")),
        ("guidance", float, typer.Option(5.0, help="Classifier-free guidance scale (1 switches it off).")),
        ("seed", int, typer.Option(0, help="Same seed, same frames.")),
        ("negative", Optional[str], typer.Option(None, "--negative", help="What the video should not show.")),
        ("expand", bool, typer.Option(True, "--expand/--no-expand", help="Expand the prompt into a detailed caption first.")),
        ("model", Optional[Path], _MODEL_OPTION),
        ("out", Optional[Path], _OUT_OPTION),
        ("device", str, _DEVICE_OPTION),
    )
]


def _generation_command(command: Callable[..., None]) -> Callable[..., None]:
    """Register ``command`` with the shared sampling options appended to its own (so ``--help`` lists
    them after the mode's options); it is called with them gathered into ``sampling``."""
    own = [p for name, p in inspect.signature(command, eval_str=True).parameters.items() if name != "sampling"]

    @functools.wraps(command)
    def with_sampling(**kwargs) -> None:
        sampling = _Sampling(**{p.name: kwargs.pop(p.name) for p in _SAMPLING_PARAMETERS})
        command(sampling=sampling, **kwargs)

    del with_sampling.__wrapped__  # typer must read the signature below, not the command's
    with_sampling.__signature__ = inspect.Signature(own + _SAMPLING_PARAMETERS)
    with_sampling.__annotations__ = {}
    return app.command()(with_sampling)


def _generate(sampling: _Sampling, name: str, suffix: str, mode: str, *args, **options) -> None:
    """Load the model, run one pipeline mode (a ``Pipeline`` method) with a progress bar over the steps,
    save the result (default name: ``name`` as a slug + ``suffix``) and report it."""
    import contextlib
    import re

    from kinetoscope.errors import CheckpointError
    from kinetoscope.pipeline import Pipeline
    from kinetoscope.progress import ProgressBar

    model, out = sampling.model, sampling.out
    pipe = Pipeline.from_pretrained(model or bundled_model(WORLD), device=sampling.device)
    with contextlib.ExitStack() as stack:
        bar = None

        def progress(step: int, total: int) -> None:  # the bar starts once the sampler knows its step count
            nonlocal bar
            if bar is None:
                bar = stack.enter_context(ProgressBar(total, mode, unit="step"))
            bar.advance(1)

        result = getattr(pipe, mode)(*args, progress=progress, **sampling.options(), **options)
    out = out or Path((re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or mode) + suffix)
    result.save(out)
    _sign_if_configured(out, pipe.model_id)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    t, h, w = result.frames.shape[:3]
    length = "1 frame" if t == 1 else f"{t} frames at {result.fps:g} fps"
    typer.echo(f"wrote {out}: {length}, {w}x{h}, seed {result.seed}")


def _sign_if_configured(path: Path, model_id: str) -> None:
    """Sign a generated mp4 with C2PA when KINETOSCOPE_C2PA_CERT/KEY are set (every mode, one place)."""
    from kinetoscope.safety import SigningKey

    signing = SigningKey.from_env()
    if signing is None:
        return
    if path.suffix.lower() != ".mp4":
        typer.echo(f"note: C2PA signing applies to mp4 files; {path} was not signed.", err=True)
        return
    signing.sign(path, model_id)
    typer.echo(f"signed {path} with a C2PA manifest naming model {model_id}", err=True)


@_generation_command
def generate(
    prompt: str = typer.Argument(..., help="What the video shows."),
    preview: bool = typer.Option(False, "--preview", help="Sample small and fast: half the size, half the steps."),
    upscale: Optional[Path] = typer.Option(
        None, "--upscale", metavar="PREVIEW", help="Bring this preview to full size (SDEdit from it)."
    ),
    strength: Optional[float] = typer.Option(None, help="With --upscale: how much is re-sampled (0-1). Default: 0.6."),
    width: Optional[int] = _WIDTH_OPTION,
    height: Optional[int] = _HEIGHT_OPTION,
    frames: Optional[int] = _FRAMES_OPTION,
    seconds: Optional[float] = _SECONDS_OPTION,
    fps: Optional[float] = _FPS_OPTION,
    *,
    sampling: _Sampling,
) -> None:
    """Text to video at any size, duration and aspect ratio the model allows; --preview, then --upscale one."""
    from kinetoscope.errors import InvalidInputError

    if preview and upscale is not None:
        raise InvalidInputError("Give --preview or --upscale PREVIEW, not both.", param="upscale")
    if strength is not None and upscale is None:
        raise InvalidInputError(
            "--strength applies to --upscale PREVIEW (for editing a video use `kinetoscope edit`).", param="strength"
        )
    options = {"width": width, "height": height}
    if upscale is not None:
        if frames is not None or seconds is not None:
            raise InvalidInputError(
                "An upscale keeps the preview's length; leave out --frames and --seconds.", param="frames"
            )
        options |= {"strength": strength} if strength is not None else {}
        _generate(sampling, prompt, ".mp4", "upscale", upscale, prompt, fps=fps, **options)
        return
    options |= {"num_frames": frames, "seconds": seconds, "fps": fps}
    if preview:
        _generate(sampling, f"{prompt}-preview", ".mp4", "preview", prompt, **options)
    else:
        _generate(sampling, prompt, ".mp4", "generate", prompt, **options)


@_generation_command
def image(
    prompt: str = typer.Argument(..., help="What the image shows."),
    width: Optional[int] = _WIDTH_OPTION,
    height: Optional[int] = _HEIGHT_OPTION,
    *,
    sampling: _Sampling,
) -> None:
    """Text to image (one frame), up to 2048x2048; large images decode in VAE tiles."""
    options = {"width": width, "height": height}
    _generate(sampling, prompt, ".png", "image", prompt, **options)


@_generation_command
def animate(
    image_path: Path = typer.Argument(..., metavar="IMAGE", help="The image (png, jpg, webp)."),
    prompt: str = typer.Argument(..., help="What happens."),
    frame: int = typer.Option(0, help="Where the image goes: 0 (first), -1 (last) or any frame."),
    width: Optional[int] = _WIDTH_OPTION,
    height: Optional[int] = _HEIGHT_OPTION,
    frames: Optional[int] = _FRAMES_OPTION,
    seconds: Optional[float] = _SECONDS_OPTION,
    fps: Optional[float] = _FPS_OPTION,
    *,
    sampling: _Sampling,
) -> None:
    """Image to video: the image at the first frame, the last, or any frame."""
    options = {"width": width, "height": height, "fps": fps}
    options |= {"num_frames": frames, "seconds": seconds, "image_frame": frame}
    _generate(sampling, prompt, ".mp4", "animate", image_path, prompt, **options)


@_generation_command
def extend(
    video: Path = typer.Argument(..., help="The video to continue."),
    prompt: str = typer.Argument(..., help="What happens next (or before)."),
    forward: bool = typer.Option(True, "--forward/--backward", help="Continue after the end, or lead up to the start."),
    seconds: float = typer.Option(2.0, help="Seconds to add."),
    fps: Optional[float] = _FPS_OPTION,
    *,
    sampling: _Sampling,
) -> None:
    """Extend a video forwards or backwards in time; its own frames stay as they were."""
    options = {"seconds": seconds, "fps": fps}
    direction = "forward" if forward else "backward"
    name = f"{prompt}-{direction}"
    _generate(sampling, name, ".mp4", "extend", video, prompt, direction=direction, **options)


@_generation_command
def loop(
    prompt: str = typer.Argument(..., help="What the loop shows."),
    video: Optional[Path] = typer.Option(None, help="Start the loop with this video's frames."),
    width: Optional[int] = _WIDTH_OPTION,
    height: Optional[int] = _HEIGHT_OPTION,
    frames: Optional[int] = typer.Option(
        None, "--frames", help="Frames of the loop (a multiple of 4; others are rounded and reported)."
    ),
    seconds: Optional[float] = _SECONDS_OPTION,
    fps: Optional[float] = _FPS_OPTION,
    *,
    sampling: _Sampling,
) -> None:
    """A seamless loop: its last frame flows into its first."""
    options = {"video": video, "width": width, "height": height, "num_frames": frames, "seconds": seconds, "fps": fps}
    _generate(sampling, f"{prompt}-loop", ".mp4", "loop", prompt, **options)


@_generation_command
def edit(
    video: Path = typer.Argument(..., help="The video to edit."),
    prompt: str = typer.Argument(..., help="What the video should become."),
    strength: float = typer.Option(0.7, help="How much changes, above 0 to 1: low keeps more of the video."),
    width: Optional[int] = _WIDTH_OPTION,
    height: Optional[int] = _HEIGHT_OPTION,
    *,
    sampling: _Sampling,
) -> None:
    """Video to video (SDEdit): layout and motion kept, what the prompt changes changed."""
    options = {"width": width, "height": height}
    _generate(sampling, f"{prompt}-edit", ".mp4", "edit", video, prompt, strength=strength, **options)


@_generation_command
def connect(
    first: Path = typer.Argument(..., metavar="A", help="The video to start from."),
    second: Path = typer.Argument(..., metavar="B", help="The video to arrive at."),
    prompt: str = typer.Argument("", help="What happens in between (optional)."),
    seconds: float = typer.Option(
        2.0, help="Seconds of transition (4k + 3 frames; other lengths are rounded and reported)."
    ),
    fps: Optional[float] = _FPS_OPTION,
    *,
    sampling: _Sampling,
) -> None:
    """Connect two videos: A, then a transition from A's end to B's start, then B."""
    options = {"seconds": seconds, "fps": fps}
    name = f"{first.stem}-to-{second.stem}"
    _generate(sampling, name, ".mp4", "connect", first, second, prompt, **options)


# ---------------------------------------------------------------- bundle (kinetoscope.bundle)
@app.command("bundle")
def bundle_command(
    model: Path = typer.Option(..., help="A trained transformer export: the final/ directory of `kinetoscope train dit`."),
    note: str = typer.Option(..., help="How the model was trained, in a sentence (goes into MODEL.md as written)."),
    captioner: Optional[Path] = typer.Option(None, help="A trained captioner directory to ship as captioner/."),
    vae: Optional[Path] = typer.Option(
        None, help="A VAE to ship instead of the model's: one whose decoder alone trained on (task.train_encoder: false)."
    ),
    run: Optional[list[Path]] = typer.Option(
        None, "--run", help="A run directory (config.json, metrics.csv) for the card (repeatable). Default: the runs behind --model and --captioner."
    ),
    out: Path = typer.Option(Path("models/world"), help="The bundle directory (replaced whole when everything succeeded)."),
    dtype: str = typer.Option("fp16", help="Storage precision of the weights: fp16 or bf16 (they load in fp32 on a CPU)."),
    max_mb: float = typer.Option(150.0, help="Refuse a bundle larger than this many megabytes."),
    n: int = typer.Option(10, "--n", min=1, help="Clips per evaluation suite (and for the VAE PSNR)."),
    size: str = typer.Option("128x128", help="WIDTHxHEIGHT of the evaluation clips (the paper's is 128x128)."),
    frames: int = typer.Option(32, min=2, help="Frames per evaluation clip (the paper's is 32)."),
    seed: int = typer.Option(0, help="Seed of the evaluation clips and samples."),
    device: str = typer.Option("cpu", help="torch device for the evaluation (the timed main command always runs on the CPU)."),
    timing_size: str = typer.Option("128x128", help="WIDTHxHEIGHT of the timed main command."),
    timing_seconds: float = typer.Option(2.0, help="Seconds of video the timed main command makes."),
) -> None:
    """Ship a trained model: copy it in fp16, evaluate it, time the main command and write MODEL.md."""
    from kinetoscope.bundle import BundleOptions, bundle
    from kinetoscope.world.dataset import parse_size

    width, height = parse_size(size)
    timing_width, timing_height = parse_size(timing_size)
    options = BundleOptions(
        model=model, out=out, captioner=captioner, vae=vae, runs=tuple(run or ()), dtype=dtype, max_mb=max_mb, n=n,
        width=width, height=height, frames=frames, seed=seed, device=device, note=note,
        timing_width=timing_width, timing_height=timing_height, timing_seconds=timing_seconds,
    )  # fmt: skip
    card = bundle(options)
    typer.echo(f"wrote {card.parent} and its model card {card}")


# ---------------------------------------------------------------- entry point
def run(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` and return the exit code (used by ``main`` and the tests)."""
    command = typer.main.get_command(app)
    try:
        # Standalone mode lets click/typer print usage errors and help the way users expect.
        command.main(args=argv, prog_name="kinetoscope", standalone_mode=True)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KinetoscopeError as e:
        typer.echo(f"error: {e}", err=True)
        return 2
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
