"""Telling an unreachable hub apart from other failures."""

from prefix_titan.data.hub import explain, unreachable


class ConnectError(Exception):  # the HTTP client's class name, as httpx spells it
    pass


def test_the_cause_chain_is_searched():
    try:
        try:
            raise ConnectError("[Errno -2] Name or service not known")
        except ConnectError as e:
            raise RuntimeError("while listing files") from e
    except RuntimeError as e:
        found = unreachable(e)
    assert isinstance(found, ConnectError)
    message = str(explain(found, "list the files", ["--source DIR"]))
    assert "could not reach the Hugging Face hub to list the files (ConnectError: " in message
    assert message.endswith("Without the hub:\n  --source DIR")


def test_other_failures_are_not_called_unreachable():
    assert unreachable(ValueError("bad value")) is None
    assert explain(KeyError("x"), "do it", []) is None
    assert unreachable(ConnectionRefusedError()) is not None  # a builtin ConnectionError
