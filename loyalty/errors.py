"""The one application error type. Views turn it into a message, the API into a 4xx."""


class ApplicationError(Exception):
    """A business rule said no. `code` is machine-readable, `field` names the input at fault."""

    code = "invalid"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None, **extra):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.field = field
        self.extra = extra

    def as_dict(self) -> dict:
        body = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        body.update(self.extra)
        return body
