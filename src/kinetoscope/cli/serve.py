"""The OpenAI-compatible video service: ``serve``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kinetoscope.bundled import WORLD, bundled_model
from kinetoscope.cli.app import app
from kinetoscope.cli.options import Device, Dtype, Model


@app.command()
def serve(
    model: Model = None,
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on."),
    data: Path = typer.Option(Path("kinetoscope-data"), help="Folder for the job database, uploads and videos."),
    database: Optional[Path] = typer.Option(None, help="SQLite job database. Default: DATA/jobs.sqlite3."),
    api_key: Optional[str] = typer.Option(
        None, envvar="KINETOSCOPE_API_KEY", help="Require 'Authorization: Bearer KEY' on /v1 (env KINETOSCOPE_API_KEY)."
    ),
    device: Device = "auto",
    dtype: Dtype = "auto",
    max_queue: int = typer.Option(256, min=1, help="Videos queued or running at once; more are refused with 429."),
    max_upload_mb: float = typer.Option(64.0, min=0.001, help="Largest request body (uploads included), in MiB."),
    max_prompt_chars: int = typer.Option(4000, min=1, help="Longest prompt, in characters."),
    max_work: Optional[int] = typer.Option(
        None, min=1, help="Most work per request, frames x pixels x steps. Default: 64 times the model's default request."
    ),
    job_time_limit: float = typer.Option(900.0, min=0, help="Seconds a video may take before it fails (0: no limit)."),
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
    pipe = Pipeline.from_pretrained(model or bundled_model(WORLD), device, dtype)
    settings = Settings(
        data_dir=data,
        database=database,
        api_key=api_key,
        max_queue=max_queue,
        max_upload_bytes=int(max_upload_mb * 2**20),
        max_prompt_chars=max_prompt_chars,
        max_work=max_work,
        job_time_limit=job_time_limit or None,
        c2pa=signing,
    )
    signed = f", videos signed with C2PA by {signing.cert_chain}" if signing else ""
    typer.echo(f"serving {pipe.model_id} at http://{host}:{port}/ (data in {data}{signed})")
    uvicorn.run(create_app(pipe, settings), host=host, port=port, log_level="info")
