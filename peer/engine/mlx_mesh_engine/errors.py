"""One error type for replies: a stable code plus a message, sent back as `{ok: false, error}`."""


class EngineError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def bad_request(message: str) -> EngineError:
    return EngineError("BAD_REQUEST", message)
