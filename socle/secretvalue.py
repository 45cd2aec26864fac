"""A secret value of a stack: encrypted in the stack file (`pulumi config set --secret --path socle:params.KEY`), its
clear value known only to the Pulumi engine's run of the program, never to `socle validate|render`.

In a stack file the field holds `{secure: v1:...}`; a clear string there is refused (it would sit in git). The program
run by the engine receives the decrypted value and turns it into a Kubernetes Secret (a secret output of the state,
encrypted by the stack's secrets provider); offline, the value stays unknown and the render lists the Secret as
required without writing anything.
"""
from __future__ import annotations

from typing import Any

from pydantic_core import core_schema

# validate_config's context: the program run by the engine gets the configuration decrypted.
DECRYPTED = "decrypted"
NOT_ENCRYPTED = ("must be encrypted in the stack file: `pulumi config set --secret --path socle:params.<key> VALUE` "
                 "(a value in clear would be kept in git)")
HIDDEN = "<secret: encrypted in the stack file>"


class SecretValue:
    """The secret itself (`value`, None when only its encrypted form is known). Never printed."""

    __slots__ = ("value",)

    def __init__(self, value: str | None):
        self.value = value

    def __repr__(self) -> str:
        return "SecretValue(<hidden>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretValue) and other.value == self.value

    def __hash__(self) -> int:
        return hash(("SecretValue", self.value))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        def validate(v: Any, info: core_schema.ValidationInfo) -> "SecretValue":
            if isinstance(v, SecretValue):
                return v
            if isinstance(v, dict) and set(v) == {"secure"} and isinstance(v["secure"], str) and v["secure"]:
                return cls(None)
            if isinstance(v, str) and v and (info.context or {}).get(DECRYPTED):
                return cls(v)
            raise ValueError(NOT_ENCRYPTED)

        return core_schema.with_info_plain_validator_function(
            validate, serialization=core_schema.plain_serializer_function_ser_schema(lambda v: HIDDEN))
