import os

import pytest

os.environ.setdefault("KINETOSCOPE_PROGRESS", "0")


def pytest_configure(config):
    # Under xdist each worker gets its share of the cores instead of fighting for all of them.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: ``code, out, err = cli("world", "sample", ...)``."""
    from kinetoscope.cli import run

    def invoke(*args: str):
        code = run([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke
