"""SQLAlchemy models of the service, shared by api and worker. Importing this package registers every table."""

from common.models.audit import AuditEvent
from common.models.base import Base, utcnow
from common.models.checkpoints import Checkpoint, VerificationReport
from common.models.jobs import JobPhase, JobStatus, ProtectionJob, job_subjects
from common.models.registry import BUILTIN_MODEL_ID, BUILTIN_MODEL_NAME, BaseModelEntry
from common.models.subjects import Subject, SubjectImage, SubjectStatus
from common.models.tenancy import ApiKey, Role, Tenant

__all__ = [
    "BUILTIN_MODEL_ID",
    "BUILTIN_MODEL_NAME",
    "ApiKey",
    "AuditEvent",
    "Base",
    "BaseModelEntry",
    "Checkpoint",
    "JobPhase",
    "JobStatus",
    "ProtectionJob",
    "Role",
    "Subject",
    "SubjectImage",
    "SubjectStatus",
    "Tenant",
    "VerificationReport",
    "job_subjects",
    "utcnow",
]
