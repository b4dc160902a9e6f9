"""Share links of a job's report page."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class ReportLinkOut(BaseModel):
    """A link that opens the job's read-only report page without a sign-in, until it expires."""

    url: str = Field(description="PUBLIC_BASE_URL/reports/{job id}?token=...; anyone holding it can open the page")
    expires_at: datetime
