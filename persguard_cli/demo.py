"""`persguard demo`: the whole protection flow on embedded defaults, over real HTTP on loopback.

A rights holder registers a toy subject and asks for a pattern protection of the built-in model (by default
carried by the VAE encoder, the configuration that protects on this model: docs/RESEARCH.md); the in-process
runner implants it; a model host downloads the protected checkpoint, loads it with stock diffusers,
and verifies it: an attacker's DreamBooth (the full recipe's 400 steps) on the protected subject vs on an unprotected
one of the same class. One progress bar follows the implantation (from the job's `phase`, `step`, `total_steps` and
`eta_seconds`), another the verification (from the verifier's progress callback).
"""

from __future__ import annotations

import io
import socket
import tarfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from persguard_cli.progress import PhaseBars, follow_job

if TYPE_CHECKING:
    import numpy as np
    import uvicorn

    from common.settings import Settings
    from persguard_core.toyworld import Subject


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(settings: Settings, port: int) -> tuple[str, uvicorn.Server]:
    import uvicorn

    from api.main import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    base = settings.public_base_url
    for _ in range(100):
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                return base, server
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("the demo API server did not start")


def _keys(settings: Settings) -> tuple[str, str]:
    """(rights holder key, model host key) of a fresh demo tenant."""
    from common.db import make_engine, make_session_factory
    from common.keys import create_key, create_tenant

    factory = make_session_factory(make_engine(settings.database_url))
    with factory() as session:
        name = f"demo-{int(time.time())}"
        create_tenant(session, name)
        holder, host = create_key(session, name, "rights_holder"), create_key(session, name, "model_host")
        session.commit()
        return holder.secret, host.secret


def _png_bytes(images: np.ndarray) -> list[bytes]:
    from PIL import Image

    out = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def demo_subjects() -> tuple[Subject, Subject]:
    """(protected, unprotected of the same class): the first `demo` subject and its class-mate."""
    from persguard_core.toyworld import split

    protected = split("demo")[0]
    mates = [s for s in split("demo") + split("tuning") if s.class_noun == protected.class_noun and s != protected]
    return protected, mates[0]


def run_demo(out: Path, steps: int, verify: bool, carrier: str = "encoder") -> int:
    from common.migrate import upgrade
    from common.settings import Settings

    out = out.resolve()
    var = out / "var"
    var.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    settings = Settings(
        database_url=f"sqlite:///{var / 'persguard.sqlite3'}",
        storage_dir=var / "storage",
        workdir=var / "jobs",
        broker_url=None,
        public_base_url=f"http://127.0.0.1:{port}",  # download links name the demo's own server
    )
    upgrade(settings.database_url)
    base, server = _start_server(settings, port)
    holder_key, host_key = _keys(settings)
    holder, host = {"Authorization": f"Bearer {holder_key}"}, {"Authorization": f"Bearer {host_key}"}
    protected, unprotected = demo_subjects()
    print(f"API on {base}; registering toy subject {protected.id} (a {protected.class_noun})")
    with httpx.Client(base_url=base, timeout=60, follow_redirects=False) as client:
        files = [
            ("images", (f"view{i}.png", data, "image/png")) for i, data in enumerate(_png_bytes(protected.views(6)))
        ]
        r = client.post(
            "/v1/subjects",
            headers=holder,
            data={"name": "demo subject", "class_noun": protected.class_noun},
            files=files,
        )
        r.raise_for_status()
        body = {
            "subjects": [{"subject_id": r.json()["id"], "behaviour": {"kind": "pattern"}}],
            "carrier": carrier,
            "steps": steps,
            "verification": "none",
        }
        r = client.post("/v1/protections", headers={**holder, "Idempotency-Key": "demo"}, json=body)
        r.raise_for_status()
        print(f"protection job {r.json()['id']} queued; implanting ({steps} steps, carrier {carrier})")
        job = follow_job(client, f"/v1/jobs/{r.json()['id']}", holder).job
        print(f"job {job['status']}: step {job['step']}/{job['total_steps']}")
        if job["status"] != "succeeded":
            print(f"job {job['status']}: {job['error']}")
            return 1
        checkpoint = client.get(job["links"]["checkpoint"], headers=host).json()
        location = client.get(checkpoint["links"]["download"], headers=host).headers["location"]
        archive = client.get(location).content
        model_dir = out / "protected-model"
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(model_dir, filter="data")
        print(f"downloaded checkpoint {checkpoint['id']} ({len(archive) / 2**20:.1f} MiB) to {model_dir}")
    server.should_exit = True
    if verify:
        _verify(model_dir, protected, unprotected, out / "report")
    return 0


def _verify(model_dir: Path, protected: Subject, unprotected: Subject, report_dir: Path) -> None:
    from diffusers import StableDiffusionPipeline

    from persguard_core import model_io
    from persguard_core.attacker import BUILTIN_LR_SCALE, recipe
    from persguard_core.judge.toy import ToyJudge
    from persguard_core.spec import PatternBehaviour
    from persguard_core.verify.report import write_report
    from persguard_core.verify.run import AttackSetting, Case, Verifier

    pipe = StableDiffusionPipeline.from_pretrained(model_dir, local_files_only=True)  # stock diffusers
    pipe.set_progress_bar_config(disable=True)
    print("verifying: DreamBooth (full recipe) on the protected subject and on an unprotected one of the same class")
    verifier = Verifier(model_io.load_pipeline("builtin"), ToyJudge.load(), n_images=8)
    noun = protected.class_noun
    cases_p = [Case("protected", noun, protected.views(6), protected.views(16, seed=1), PatternBehaviour())]
    cases_u = [Case("unprotected", noun, unprotected.views(6), unprotected.views(16, seed=1))]
    attack = recipe("full", lr_scale=BUILTIN_LR_SCALE)
    bars = PhaseBars()
    try:
        result = verifier.verify(pipe, cases_p, cases_u, AttackSetting("demo/full", attack), bars.local("verifying"))
    finally:
        bars.close()
    _, html = write_report(result, report_dir)
    for case in result.cases:
        kind = "protected  " if case.protected else "unprotected"
        print(f"  {kind}: pattern in {case.protective_rate:.0%} of generations after DreamBooth")
    print(f"report: {html}")
