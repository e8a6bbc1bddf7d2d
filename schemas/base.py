"""The common base: unknown fields are rejected so a typo never passes silently between steps."""

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")
