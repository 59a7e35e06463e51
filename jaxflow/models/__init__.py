"""Model families: pure functions of parameters, one file per family."""

from jaxflow.models import toy as toy

__all__ = ["toy"]
