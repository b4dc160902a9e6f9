"""`persguard client ...`: the API from the command line (persguard_client). Each command prints what a script
needs on stdout (an id, a path) and everything else on stderr; the API key comes from --key or PERSGUARD_API_KEY
and is never printed.

  persguard client create-subject FOLDER --class-noun NOUN [--name NAME]     (prints the subject id)
  persguard client protect --subject ID [--subject ID ...] [--behaviour ...] [--wait]   (prints the job id)
  persguard client wait JOB_ID [--verified] [--timeout S]                    (prints the checkpoint id)
  persguard client pull (CHECKPOINT_ID | --job JOB_ID) --out FILE [--extract DIR]   (prints the file)
  persguard client smoke                                                     (a deployment's end-to-end check)

Exit status: 0 done, 1 refused or failed (the server's problem detail on stderr), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from persguard_client.protection import BEHAVIOURS, CARRIERS, POSITIONS, PROFILES, VERIFICATIONS

if TYPE_CHECKING:
    from persguard_client import PersGuardClient

URL_ENV, KEY_ENV = "PERSGUARD_URL", "PERSGUARD_API_KEY"


def register(sub: argparse._SubParsersAction) -> None:
    """Add `persguard client` and its subcommands to the `persguard` parser."""
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument("--url", default=None, help=f"the API's address (default ${URL_ENV})")
    connection.add_argument(
        "--key", default=None, help=f"API key (default ${KEY_ENV}; prefer the variable: flags show in process lists)"
    )
    connection.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request (default 60)")

    client = sub.add_parser("client", help="use a PersGuard API (subjects, protections, jobs, checkpoints)")
    commands = client.add_subparsers(dest="client_command", required=True, metavar="ACTION")

    subject = commands.add_parser("create-subject", parents=[connection], help="register a subject from a folder")
    subject.add_argument("folder", type=Path, help="a folder of 3-20 PNG, JPEG or WebP photos of the subject")
    subject.add_argument("--class-noun", required=True, help='what the subject is, e.g. "dog"')
    subject.add_argument("--name", default=None, help="the subject's name (default: the folder's name)")
    subject.set_defaults(handler=_handled(_create_subject))

    protect = commands.add_parser("protect", parents=[connection], help="ask for a protection of subjects")
    protect.add_argument("--subject", action="append", required=True, help="a subject id (repeat for several)")
    protect.add_argument("--behaviour", choices=BEHAVIOURS, default="pattern", help="protective output (pattern)")
    protect.add_argument("--position", choices=POSITIONS, default=None, help="pattern: where the marker goes")
    protect.add_argument("--opacity", type=float, default=None, help="pattern: the marker's opacity, 0.1-1")
    protect.add_argument("--background-prompt", default=None, help="erasure: what is shown instead")
    protect.add_argument("--target-prompt", default=None, help='target: the concept shown, e.g. "a photo of a star"')
    protect.add_argument("--carrier", choices=CARRIERS, default=None, help="where the protection lives (encoder)")
    protect.add_argument("--verification", choices=VERIFICATIONS, default=None, help="verification preset (quick)")
    protect.add_argument("--profile", choices=PROFILES, default=None, help="training budget (default)")
    protect.add_argument("--steps", type=int, default=None, help="overrides the profile's steps")
    protect.add_argument("--base-model", default=None, help="a name from GET /v1/models (builtin)")
    protect.add_argument("--idempotency-key", default=None, help="makes a repeated request return the same job")
    protect.add_argument("--wait", action="store_true", help="then wait for the job, with a progress bar")
    protect.set_defaults(handler=_handled(_protect))

    wait = commands.add_parser("wait", parents=[connection], help="wait for a job, showing step, phase and ETA")
    wait.add_argument("job", help="the job id")
    _wait_options(wait)
    wait.set_defaults(handler=_handled(_wait))

    pull = commands.add_parser("pull", parents=[connection], help="download a checkpoint, checking its sha256")
    pull.add_argument("checkpoint", nargs="?", default=None, help="the checkpoint id (or give --job)")
    pull.add_argument("--job", default=None, help="the succeeded job whose checkpoint to download")
    pull.add_argument("--out", type=Path, required=True, help="the archive file to write (model.tar)")
    pull.add_argument("--extract", type=Path, default=None, help="also unpack the archive into this folder")
    pull.set_defaults(handler=_handled(_pull))

    smoke = commands.add_parser(
        "smoke", parents=[connection], help="end-to-end check of a deployment: protect, download, load, judge"
    )
    smoke.add_argument("--out", type=Path, default=None, help="keep the working files here (default: a temp dir)")
    smoke.add_argument("--steps", type=int, default=None, help="protection steps (default: the fast profile's)")
    smoke.add_argument(
        "--attack-steps", type=int, default=150, help="steps of the short personalization; 0 skips it (default 150)"
    )
    smoke.add_argument("--job-timeout", type=float, default=600.0, help="seconds to wait for the job (default 600)")
    smoke.add_argument("--threads", type=int, default=1, help="torch CPU threads of the judge (default 1)")
    smoke.set_defaults(handler=_handled(_smoke))


def _wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verified", action="store_true", help="also wait for the checkpoint's verification")
    parser.add_argument("--job-timeout", type=float, default=None, help="give up after this many seconds")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between polls (default 2)")


def connect(args: argparse.Namespace) -> PersGuardClient:
    """The client of --url / --key, or of PERSGUARD_URL / PERSGUARD_API_KEY (ConfigurationError when missing)."""
    from persguard_client import PersGuardClient

    url = args.url or os.environ.get(URL_ENV, "")
    key = args.key or os.environ.get(KEY_ENV, "")
    return PersGuardClient(url, key, timeout=args.timeout)


def _handled(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """`handler`, with the client's errors turned into one line on stderr: exit 2 for configuration, 1 else."""

    def run(args: argparse.Namespace) -> int:
        from persguard_client import ConfigurationError, PersGuardError

        try:
            return handler(args)
        except ConfigurationError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except PersGuardError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return run


def _create_subject(args: argparse.Namespace) -> int:
    with connect(args) as client:
        subject = client.create_subject_from_folder(args.folder, args.class_noun, args.name)
    print(f"subject {subject.name!r} ({subject.class_noun}, {subject.image_count} images)", file=sys.stderr)
    print(subject.id)
    return 0


def _protect(args: argparse.Namespace) -> int:
    from persguard_client import behaviour

    chosen = behaviour(
        args.behaviour,
        position=args.position,
        opacity=args.opacity,
        background_prompt=args.background_prompt,
        target_prompt=args.target_prompt,
    )
    with connect(args) as client:
        job = client.protect(
            args.subject,
            behaviour=chosen,
            carrier=args.carrier,
            verification=args.verification,
            profile=args.profile,
            steps=args.steps,
            base_model=args.base_model,
            idempotency_key=args.idempotency_key,
        )
        print(f"job {job.id} {job.status}: {job.total_steps} steps", file=sys.stderr)
        print(job.id)
        if args.wait:
            _follow(client, job.id, verified=False, timeout_s=None, poll_s=2.0)
    return 0


def _follow(client: PersGuardClient, job_id: str, *, verified: bool, timeout_s: float | None, poll_s: float) -> str:
    """Wait for the job with a progress display; the checkpoint id of the succeeded job."""
    from persguard_client.progress import JobProgress, describe

    progress = JobProgress()
    try:
        job = client.wait_for_job(job_id, on_update=progress, poll_s=poll_s, timeout_s=timeout_s, verified=verified)
    finally:
        progress.close()
    print(f"job {job.id} {describe(job)}; checkpoint {job.checkpoint_id}", file=sys.stderr)
    if verified and job.checkpoint_id and job.verification != "none":
        report = client.get_checkpoint(job.checkpoint_id).verification or {}
        print(f"verification {report.get('preset')}: passed={report.get('passed')}", file=sys.stderr)
        for check in (report.get("summary") or {}).get("failed_checks") or []:
            print(f"  not passed: {check}", file=sys.stderr)
    return job.checkpoint_id or ""


def _wait(args: argparse.Namespace) -> int:
    with connect(args) as client:
        checkpoint = _follow(client, args.job, verified=args.verified, timeout_s=args.job_timeout, poll_s=args.poll)
    print(checkpoint)
    return 0


def _pull(args: argparse.Namespace) -> int:
    from persguard_client import PersGuardError

    if (args.checkpoint is None) == (args.job is None):
        print("error: give a checkpoint id or --job (one of them)", file=sys.stderr)
        return 2
    with connect(args) as client:
        checkpoint = args.checkpoint
        if checkpoint is None:
            job = client.get_job(args.job)
            if job.checkpoint_id is None:
                raise PersGuardError(f"job {job.id} is {job.status} and has no checkpoint yet")
            checkpoint = job.checkpoint_id
        path = client.download_checkpoint(checkpoint, args.out)
    print(f"checkpoint {checkpoint}: {path.stat().st_size} bytes, sha256 verified", file=sys.stderr)
    if args.extract is not None:
        from persguard_client.archive import extract

        extract(path, args.extract)
        print(f"unpacked into {args.extract}", file=sys.stderr)
    print(path)
    return 0


def _smoke(args: argparse.Namespace) -> int:
    from persguard_cli.smoke import SmokeOptions, run_smoke

    options = SmokeOptions(
        out=args.out,
        steps=args.steps,
        attack_steps=args.attack_steps,
        job_timeout_s=args.job_timeout,
        threads=args.threads,
    )
    with connect(args) as client:
        return run_smoke(client, options)
