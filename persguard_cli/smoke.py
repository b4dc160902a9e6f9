"""`persguard client smoke`: what a CI runs against a deployment, end to end, as its users would.

Stages, each printed with its time: ready (the API's /readyz, the built-in model registered) -> subject (a toy-world
subject's photos, written to a folder and uploaded from it) -> protect (a pattern protection of the built-in model
on the encoder carrier, the `fast` profile, no service verification) -> wait -> download (sha256 checked against
the API's) -> load (stock `StableDiffusionPipeline.from_pretrained` on the unpacked folder) -> judge
(persguard_cli/smoke_judge.py) -> cleanup (the subject is deleted). Any failure ends it with exit status 1 and one
line on stderr: `smoke failed at <stage> after <s> s: <reason>`.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from persguard_client import PersGuardClient, PersGuardError
from persguard_client.archive import extract
from persguard_client.progress import JobProgress, describe

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline

    from persguard_core.toyworld import Subject

BASE_MODEL = "builtin"


@dataclass(frozen=True)
class SmokeOptions:
    """`out`: keep the working files there (default: a temporary folder); `steps`: the protection's steps (None:
    the profile's); `attack_steps`: the judge's personalization (0: the round trip only)."""

    out: Path | None = None
    profile: str = "fast"
    steps: int | None = None
    attack_steps: int = 150
    job_timeout_s: float = 600.0
    threads: int = 1


class SmokeFailure(Exception):
    """A stage failed; `reason` is one line."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage, self.reason = stage, reason


class Stages:
    """Times each stage and prints `<stage> <seconds> s  <what it did>`."""

    def __init__(self, file: TextIO) -> None:
        self.file = file
        self.started = time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the smoke started."""
        return time.monotonic() - self.started

    @contextmanager
    def stage(self, name: str) -> Iterator[Callable[[str], None]]:
        """Run a stage; the yielded function records what it did. Any error becomes a SmokeFailure of `name`."""
        notes: list[str] = []
        start = time.monotonic()
        try:
            yield notes.append
        except SmokeFailure:
            raise
        except PersGuardError as exc:
            raise SmokeFailure(name, _one_line(str(exc))) from exc
        except Exception as exc:
            raise SmokeFailure(name, _one_line(f"{type(exc).__name__}: {exc}")) from exc
        print(f"  {name:<9}{time.monotonic() - start:7.1f} s  {'; '.join(notes)}", file=self.file, flush=True)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def run_smoke(client: PersGuardClient, options: SmokeOptions, file: TextIO | None = None) -> int:
    """The smoke check against `client`'s deployment; 0 when every stage passed, else 1 (reason on stderr)."""
    file = file or sys.stdout
    stages = Stages(file)
    print(f"smoke against {client.base_url}", file=file, flush=True)
    with _workdir(options.out) as work:
        try:
            _run(client, options, stages, work)
        except SmokeFailure as failure:
            print(f"smoke failed at {failure.stage} after {stages.elapsed():.1f} s: {failure.reason}", file=sys.stderr)
            return 1
    print(f"smoke passed in {stages.elapsed():.1f} s", file=file, flush=True)
    return 0


@contextmanager
def _workdir(out: Path | None) -> Iterator[Path]:
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        yield out
        return
    with tempfile.TemporaryDirectory(prefix="persguard-smoke-") as tmp:
        yield Path(tmp)


def _run(client: PersGuardClient, options: SmokeOptions, stages: Stages, work: Path) -> None:
    from persguard_cli.demo import demo_subjects

    protected, class_mate = demo_subjects()
    with stages.stage("ready") as note:
        checks = client.ready()
        note(f"{checks.get('status', 'ready')} ({', '.join(f'{k} {v}' for k, v in checks.get('checks', {}).items())})")
        names = [model["name"] for model in client.models()]
        if BASE_MODEL not in names:
            raise SmokeFailure("ready", f"the deployment has no {BASE_MODEL!r} model (GET /v1/models: {names})")
        note(f"model {BASE_MODEL!r} registered")
    subject_id = None
    try:
        with stages.stage("subject") as note:
            folder = _write_photos(protected, work / "photos")
            subject = client.create_subject_from_folder(folder, protected.class_noun, f"smoke {int(time.time())}")
            subject_id = subject.id
            note(f"toy subject {protected.id} (a {protected.class_noun}), {subject.image_count} photos: {subject.id}")
        with stages.stage("protect") as note:
            job = client.protect(
                [subject.id],
                behaviour={"kind": "pattern"},
                carrier="encoder",
                verification="none",
                profile=options.profile,
                steps=options.steps,
                base_model=BASE_MODEL,
            )
            steps = f"{options.steps} steps" if options.steps else f"{options.profile} profile"
            note(f"job {job.id} {job.status}: pattern, encoder carrier, {steps}, built-in model")
        with stages.stage("wait") as note:
            progress = JobProgress(interval_s=15.0)
            try:
                job = client.wait_for_job(job.id, on_update=progress, timeout_s=options.job_timeout_s)
            finally:
                progress.close()
            note(f"{describe(job)}; checkpoint {job.checkpoint_id}")
        with stages.stage("download") as note:
            archive = client.download_checkpoint(str(job.checkpoint_id), work / "model.tar")
            size = archive.stat().st_size
            sha = client.get_checkpoint(str(job.checkpoint_id)).sha256
            note(f"{size / 2**20:.1f} MiB, sha256 {sha[:12]}… matches the API's")
        with stages.stage("load") as note:
            pipe = _load(extract(archive, work / "model"), options.threads)
            note(f"StableDiffusionPipeline.from_pretrained({work / 'model'}) ({type(pipe.vae).__name__} VAE)")
        with stages.stage("judge") as note:
            from persguard_cli.smoke_judge import judge_pattern_backdoor

            judgement = judge_pattern_backdoor(pipe, protected, class_mate, options.attack_steps)
            if judgement.failure:
                raise SmokeFailure("judge", f"{judgement.failure} [{judgement.summary()}]")
            note(judgement.summary())
    finally:
        if subject_id is not None:
            _cleanup(client, subject_id, stages)


def _write_photos(subject: Subject, folder: Path) -> Path:
    """Six views of the toy subject as PNG files in `folder`."""
    from persguard_core.images import save_images

    save_images(subject.views(6, seed=0), folder)
    return folder


def _load(model_dir: Path, threads: int) -> StableDiffusionPipeline:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # before the first import: no optional-package notes
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    torch.set_num_threads(threads)
    for library in (diffusers_logging, transformers_logging):
        library.disable_progress_bar()
        library.set_verbosity_error()
    pipe = StableDiffusionPipeline.from_pretrained(model_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _cleanup(client: PersGuardClient, subject_id: str, stages: Stages) -> None:
    """Delete the smoke's subject (a failure here is reported, never raised over the smoke's own result)."""
    start = time.monotonic()
    try:
        client.delete_subject(subject_id)
        what = f"subject {subject_id} deleted"
    except PersGuardError as exc:
        what = f"could not delete subject {subject_id}: {_one_line(str(exc))}"
    print(f"  {'cleanup':<9}{time.monotonic() - start:7.1f} s  {what}", file=stages.file, flush=True)
