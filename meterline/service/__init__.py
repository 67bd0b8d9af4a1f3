"""The HTTP service (`meterline serve`, docs/service.md): events in, invoices,
explanations and usage out, behind API keys with scopes. It calls the jobs and the audit
(meterline.jobs, meterline.audit): it does not compute."""

from meterline.service.app import create_app

__all__ = ["create_app"]
