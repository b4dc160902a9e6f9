"""A job's verification as the report pages show it, and the signed share links of those pages. No HTTP here.

The verifier stores its files under `reports/<checkpoint>/<report>/` (common/jobs/verification.py): `report.json`
(summary and one entry per attacked case), `report.html` (the same with image grids inline, one per case, whose
alt text is the judge's verdict on that case) and any other files it wrote, PNG grids among them. The pages show
the grids of report.html and every PNG file, each with the verdict of its case where the report has one. Where
report.json also has the judge's verdict on each image (`verdicts` of a case, `grid_columns`: persguard_core/
verify/report.py), a case's grid is cut into its images (`Grid.tiles`), each shown with its own verdict; reports
without them show the grid whole, with the case's verdict.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import html
import io
import json
import logging
import math
import re
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from api.schemas.jobs import JobOut
from api.services import jobs as job_service
from api.services.errors import NotFound
from api.services.principal import Principal
from common.audit import record_event
from common.models import Checkpoint, ProtectionJob, Subject, SubjectImage, VerificationReport, job_subjects
from common.storage import Storage, StorageError
from persguard_core.verify.verdicts import ImageVerdict, verdict_label

log = logging.getLogger(__name__)

MAX_REPORT_BYTES = 64 * 1024 * 1024  # report.html carries its grids inline; larger files are not read
MAX_GRIDS = 64
MAX_TILES = 64  # images of one grid shown one by one
_INLINE_IMAGE = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
_CASE_LABEL = re.compile(r"^(?P<case>.+?) \((?P<kind>protected|unprotected)\): (?P<verdict>.+)$")

# What each headline figure means, in one sentence, for the report page.
PSR_MEANING = (
    "Protection success rate: the share of images showing the protective output after an attacker fine-tuned the "
    "protected model on the protected subject's photos; higher is better."
)
FALSE_TRIGGER_MEANING = (
    "False trigger rate: the share of images showing the protective output after fine-tuning on a subject that is "
    "not protected; it should stay near zero, so that ordinary users of the model are not affected."
)


@dataclass(frozen=True)
class Tile:
    """One generated image of a case's grid, with the judge's verdict on it."""

    number: int  # its place in the grid, from 1, left to right and top to bottom
    png: bytes = field(repr=False)
    verdict: str  # in words: "pattern found", "no pattern", "false trigger (pattern)", ...
    protective: bool  # protected case: the protective output; unprotected: a false trigger
    similarity: float | None = None  # identity similarity to the case's subject


@dataclass(frozen=True)
class Grid:
    """One image grid of a verification: where it comes from, which case it shows and the judge's verdict; with
    the verdict on each image, its images one by one (`tiles`) and how many of all generated images the judge
    flagged (`tally`)."""

    title: str
    png: bytes = field(repr=False)
    case: str | None = None
    protected: bool | None = None
    verdict: str | None = None
    tiles: tuple[Tile, ...] = ()
    tally: str | None = None


@dataclass
class Verification:
    """A verification report as the pages show it."""

    report: VerificationReport
    cases: list[dict[str, Any]]
    grids: list[Grid]

    @property
    def summary(self) -> dict[str, Any]:
        return self.report.summary or {}

    @property
    def error(self) -> str | None:
        error = self.summary.get("error")
        return str(error) if error else None

    @property
    def failed_checks(self) -> list[str]:
        """Why the verification did not pass, in words (the worker's `failed_checks`; empty for older reports)."""
        checks = self.summary.get("failed_checks")
        return [str(c) for c in checks] if isinstance(checks, list) else []

    def figure(self, name: str) -> float | None:
        value = self.summary.get(name)
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None

    def grids_of(self, protected: bool) -> list[Grid]:
        return [grid for grid in self.grids if grid.protected is protected]

    def index_of(self, grid: Grid) -> int:
        """Where `grid` is in `grids` (the number its image is served under)."""
        return next(i for i, g in enumerate(self.grids) if g is grid)

    @property
    def other_grids(self) -> list[Grid]:
        return [grid for grid in self.grids if grid.protected is None]


class ReportCache:
    """The files of the last `size` reports read, by report id (a report's files never change once its row
    exists); each request pairs them with the row it loaded itself."""

    def __init__(self, size: int = 8) -> None:
        self._size = size
        self._items: OrderedDict[uuid.UUID, tuple[list[dict[str, Any]], list[Grid]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, storage: Storage, report: VerificationReport) -> Verification:
        with self._lock:
            if (cached := self._items.get(report.id)) is not None:
                self._items.move_to_end(report.id)
                return Verification(report, *cached)
        loaded = load_verification(storage, report)
        with self._lock:
            self._items[report.id] = (loaded.cases, loaded.grids)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return loaded


def load_verification(storage: Storage, report: VerificationReport) -> Verification:
    """The report's cases and grids from storage; a report without stored files (a failed verification) has
    none, and files that cannot be read are left out (logged)."""
    if not report.storage_key:
        return Verification(report, [], [])
    prefix = report.storage_key.rsplit("/", 1)[0] + "/"
    parsed = _report_json(storage, report)
    listed = parsed.get("cases")
    cases = [c for c in listed if isinstance(c, dict)] if isinstance(listed, list) else []
    grids = inline_grids(_read(storage, prefix + "report.html") or b"")
    try:
        pngs = sorted(o.key for o in storage.list_objects(prefix) if o.key.endswith(".png"))
    except StorageError as exc:
        log.warning("report %s: cannot list its files: %s", report.id, exc)
        pngs = []
    for key in pngs[: max(0, MAX_GRIDS - len(grids))]:
        png = _read(storage, key)
        if png is not None:
            grids.append(_file_grid(key[len(prefix) :], png, cases))
    columns = parsed.get("grid_columns")
    if _is_number(columns) and isinstance(columns, int) and columns > 0:
        grids = [with_tiles(grid, cases, columns) for grid in grids]
    return Verification(report, cases, grids)


def _report_json(storage: Storage, report: VerificationReport) -> dict[str, Any]:
    """report.json as a dict; empty when it cannot be read or is not a JSON object (logged)."""
    data = _read(storage, report.storage_key)
    if data is None:
        return {}
    try:
        parsed = json.loads(data)
    except ValueError:
        log.warning("report %s: report.json is not JSON", report.id)
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _read(storage: Storage, key: str) -> bytes | None:
    try:
        with storage.open(key) as handle:
            data = handle.read(MAX_REPORT_BYTES + 1)
    except StorageError as exc:
        log.warning("cannot read %s: %s", key, exc)
        return None
    return data if len(data) <= MAX_REPORT_BYTES else None


def inline_grids(page: bytes) -> list[Grid]:
    """The PNG grids report.html carries inline, each with the case and verdict its alt text names."""
    grids = []
    for alt, data in _INLINE_IMAGE.findall(page.decode("utf-8", "replace"))[:MAX_GRIDS]:
        try:
            png = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            continue
        label = html.unescape(alt)
        match = _CASE_LABEL.match(label)
        if match:
            grids.append(
                Grid(label, png, match["case"], match["kind"] == "protected", match["verdict"].replace(", ", "; "))
            )
        else:
            grids.append(Grid(label, png))
    return grids


def _file_grid(name: str, png: bytes, cases: list[dict[str, Any]]) -> Grid:
    """A PNG file of the report; named after a case (`<case>.png`, `grids/<case>.png`), it carries that case's
    verdict from report.json."""
    stem = name.rsplit("/", 1)[-1].removesuffix(".png")
    case = next((c for c in cases if str(c.get("case")) == stem), None)
    if case is None:
        return Grid(name, png)
    protected = bool(case.get("protected"))
    return Grid(name, png, stem, protected, case_verdict(case))


def image_verdicts(case: dict[str, Any]) -> list[ImageVerdict]:
    """The judge on each generated image of a report.json case (its `verdicts`), leaving out malformed entries."""
    verdicts = case.get("verdicts")
    if not isinstance(verdicts, list):
        return []
    return [v for v in map(_image_verdict, verdicts) if v is not None]


def _image_verdict(entry: Any) -> ImageVerdict | None:
    """One entry of a case's `verdicts`; None unless it has a bool `protective` (a similarity that is not a finite
    number counts as none, as does a sample that is not a non-negative int)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("protective"), bool):
        return None
    kinds = entry.get("kinds")
    similarity, sample = entry.get("similarity"), entry.get("sample")
    return ImageVerdict(
        protective=entry["protective"],
        kinds=tuple(k for k in kinds if isinstance(k, str)) if isinstance(kinds, list) else (),
        similarity=float(similarity) if _is_number(similarity) and math.isfinite(similarity) else None,
        sample=sample if _is_number(sample) and isinstance(sample, int) and sample >= 0 else None,
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def with_tiles(grid: Grid, cases: list[dict[str, Any]], columns: int) -> Grid:
    """`grid` with its images one by one, each with the judge's verdict from its case's `verdicts` in report.json
    (`columns` images to a row); `grid` as it is when its case has no verdicts or its images cannot be cut out."""
    case = next((c for c in cases if grid.case is not None and str(c.get("case")) == grid.case), None)
    verdicts = image_verdicts(case) if case is not None else []
    shown = sorted((v for v in verdicts if v.sample is not None), key=lambda v: v.sample)
    if not shown or len({v.sample for v in shown}) != len(shown) or shown[-1].sample >= MAX_TILES:
        return grid
    pngs = cut_grid(grid.png, shown[-1].sample + 1, columns)
    if pngs is None:
        log.warning("grid %r: its images cannot be cut out of a %d-column grid", grid.title, columns)
        return grid
    protected, behaviour = bool(case.get("protected")), case.get("behaviour")
    behaviour = behaviour if isinstance(behaviour, str) else None
    tiles = tuple(
        Tile(
            v.sample + 1,
            pngs[v.sample],
            verdict_label(protected, behaviour, v.protective, v.kinds),
            v.protective,
            v.similarity,
        )
        for v in shown
    )
    return dataclasses.replace(grid, tiles=tiles, tally=verdict_tally(protected, verdicts))


def verdict_tally(protected: bool, verdicts: list[ImageVerdict]) -> str:
    """How many of a case's generated images the judge flagged, in words."""
    flagged = sum(v.protective for v in verdicts)
    output = "the protective output" if protected else "a false trigger"
    return f"{flagged} of {len(verdicts)} generated images show {output}"


def cut_grid(png: bytes, count: int, columns: int) -> list[bytes] | None:
    """The first `count` images of a grid PNG of `columns` images to a row (verify/report.py's grid_png), each as
    a PNG; None when the grid's size does not divide into that many square images."""
    rows = -(-count // columns)
    try:
        with Image.open(io.BytesIO(png)) as image:
            width, height = image.size
            if width % columns or height % rows or width // columns != height // rows:
                return None
            w, h = width // columns, height // rows
            boxes = [((i % columns) * w, (i // columns) * h) for i in range(count)]
            return [_png(image.crop((x, y, x + w, y + h))) for x, y in boxes]
    except (OSError, Image.DecompressionBombError):
        return None


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


def case_verdict(case: dict[str, Any]) -> str:
    """The judge's verdict on one attacked case of report.json, in words."""
    rate = case.get("protective_rate")
    similarity = case.get("similarity")
    parts = []
    if isinstance(rate, int | float) and math.isfinite(rate):
        parts.append(f"protective output in {rate:.0%} of images")
    if isinstance(similarity, int | float) and math.isfinite(similarity):
        parts.append(f"identity similarity {similarity:.2f}")
    return "; ".join(parts) or "no verdict recorded"


# --- share links ---


class ReportLinks:
    """Signed, expiring tokens that open one job's report page without a sign-in: `<job id>.<expiry>.<hmac>`."""

    def __init__(self, secret: bytes, ttl_s: int) -> None:
        self._secret = hashlib.sha256(b"persguard-report-link\0" + secret).digest()
        self.ttl_s = ttl_s

    def make(self, job_id: uuid.UUID, now: float | None = None) -> tuple[str, datetime]:
        expires = int((now if now is not None else time.time()) + self.ttl_s)
        token = f"{job_id.hex}.{expires}.{self._sign(job_id.hex, expires)}"
        return token, datetime.fromtimestamp(expires, UTC)

    def job_of(self, token: str, now: float | None = None) -> uuid.UUID | None:
        """The job a live, untampered token opens; None otherwise."""
        parts = token.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        job_hex, expires, signature = parts[0], int(parts[1]), parts[2]
        expected = self._sign(job_hex, expires)
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            return None
        if expires < (now if now is not None else time.time()):
            return None
        try:
            return uuid.UUID(hex=job_hex)
        except ValueError:
            return None

    def _sign(self, job_hex: str, expires: int) -> str:
        digest = hmac.new(self._secret, f"{job_hex}.{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def share_link(
    session: Session, links: ReportLinks, principal: Principal, job: ProtectionJob, base_url: str
) -> tuple[str, datetime]:
    """A share link of `job`'s report page (the caller may see the job), audited; (url, expiry)."""
    token, expires = links.make(job.id)
    record_event(
        session,
        "report.share",
        job,
        tenant_id=job.tenant_id,
        actor_key_id=principal.key_id,
        details={"expires_at": expires.isoformat()},
    )
    session.commit()
    return f"{base_url}/reports/{job.id}?token={token}", expires


# --- the report page ---


@dataclass
class JobReport:
    """What a report page shows: the job (the API's JobOut), its subjects, checkpoint and verification."""

    out: JobOut
    subjects: list[Subject]
    checkpoint: Checkpoint | None
    verification: Verification | None

    @property
    def subject_names(self) -> dict[str, str]:
        return {str(s.id): s.name for s in self.subjects}

    def grids_of(self, subject: Subject) -> list[Grid]:
        if self.verification is None:
            return []
        return [g for g in self.verification.grids if g.case == str(subject.id)]

    @property
    def unprotected_grids(self) -> list[Grid]:
        return self.verification.grids_of(False) if self.verification else []


def shared_job(session: Session, job_id: uuid.UUID) -> ProtectionJob:
    """The job a valid share link names, whatever its tenant (the link is the credential); NotFound if gone."""
    job = session.get(ProtectionJob, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def job_artefacts(
    session: Session, job: ProtectionJob, out: JobOut
) -> tuple[list[Subject], Checkpoint | None, VerificationReport | None]:
    """A job's subjects (with their images, in the job's order), its checkpoint and the checkpoint's report."""
    subjects = list(
        session.scalars(select(Subject).where(Subject.id.in_(out.subject_ids)).options(selectinload(Subject.images)))
    )
    order = {sid: i for i, sid in enumerate(out.subject_ids)}
    subjects.sort(key=lambda s: order[s.id])
    checkpoint = session.scalar(select(Checkpoint).where(Checkpoint.job_id == job.id))
    report = checkpoint.reports[0] if checkpoint is not None and checkpoint.reports else None
    return subjects, checkpoint, report


def job_report(session: Session, storage: Storage, cache: ReportCache, job: ProtectionJob) -> JobReport:
    """The report page of a job the caller may see (`jobs.get_visible_job`, or a share link's `shared_job`)."""
    out = job_service.job_out(job)
    subjects, checkpoint, report = job_artefacts(session, job, out)
    verification = cache.get(storage, report) if report is not None else None
    return JobReport(out, subjects, checkpoint, verification)


def job_image_key(session: Session, job: ProtectionJob, image_id: uuid.UUID) -> str:
    """The storage key of one image of one of `job`'s subjects; NotFound for any other image."""
    key = session.scalar(
        select(SubjectImage.storage_key)
        .join(job_subjects, job_subjects.c.subject_id == SubjectImage.subject_id)
        .where(job_subjects.c.job_id == job.id, SubjectImage.id == image_id)
    )
    if key is None:
        raise NotFound(f"no image {image_id} among the job's subjects")
    return key
